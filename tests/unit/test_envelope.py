"""The origin of a request survives the hop from intake to the answer stage."""

from __future__ import annotations

import pytest

from llmrouter.wire.envelope import KEY, SOURCE, Origin, normalize_headers, origin_of_forwarded


def test_the_origin_is_rebuilt_exactly_from_the_forwarded_copy():
    """Topic, partition, offset, key, value, upstream headers and receive time all come back."""
    origin = Origin(topic="llm.requests.high", partition=3, offset=1234, key=b"\x00k", value=b"{\"a\": 1}",
                    headers=(("trace", b"abc"), ("empty", None)), received_at_ms=1_700_000_000_000)
    forwarded = normalize_headers(origin.forward_headers())
    again = origin_of_forwarded(origin.value, forwarded)
    assert again == Origin(topic="llm.requests.high", partition=3, offset=1234, key=b"\x00k", value=b"{\"a\": 1}",
                           headers=(("trace", b"abc"), ("empty", None)), received_at_ms=1_700_000_000_000)


def test_a_null_key_stays_null_and_upstream_cannot_forge_our_headers():
    """No key header without a key; an upstream header named like ours is dropped at intake."""
    origin = Origin(topic="t", partition=0, offset=5, key=None, value=b"v",
                    headers=((SOURCE, b"evil:9:9"), (KEY, b"forged")))
    again = origin_of_forwarded(b"v", normalize_headers(origin.forward_headers()))
    assert (again.topic, again.partition, again.offset, again.key, again.headers) == ("t", 0, 5, None, ())


def test_headers_in_any_client_form_become_str_bytes_pairs():
    """A dict, a list of tuples, str values and None all normalise to (str, bytes|None)."""
    assert normalize_headers({"a": "x"}) == (("a", b"x"),)
    assert normalize_headers([("b", None), ("c", b"y")]) == (("b", None), ("c", b"y"))
    assert normalize_headers(None) == ()


def test_a_message_without_our_headers_is_refused_with_the_reason():
    """Something on the accepted topic that intake did not write raises ValueError."""
    with pytest.raises(ValueError, match="lacks intake's headers"):
        origin_of_forwarded(b"v", (("x", b"1"),))
