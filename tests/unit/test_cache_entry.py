"""A cached answer's bytes: round trips, compression only when it pays, and corrupt bytes refused."""

from __future__ import annotations

import random
import zlib

import pytest

from llmrouter.cache.entry import COMPRESS_ABOVE_BYTES, FORMAT_VERSION, MAX_BODY_BYTES, CachedAnswer

ANSWER = CachedAnswer(text="Kafka is a distributed log. " * 40, provider="together", model="llama-3-8b",
                      finish_reason="stop", prompt_tokens=12, completion_tokens=240, cost_usd=0.0504,
                      stored_at_ms=1_714_000_000_000, expires_at_ms=1_714_000_003_600)
SHORT = CachedAnswer(text="Yes.", provider="local", model="tiny", finish_reason="length", prompt_tokens=3,
                     completion_tokens=1, cost_usd=0.0, stored_at_ms=1, expires_at_ms=2)


@pytest.mark.parametrize("answer", [ANSWER, SHORT], ids=["long", "short"])
@pytest.mark.parametrize("compress", [True, False])
def test_an_answer_survives_the_round_trip(answer, compress):
    """Every field comes back equal, compressed or not."""
    assert CachedAnswer.from_bytes(answer.to_bytes(compress=compress)) == answer


def test_a_long_answer_is_compressed_and_a_short_one_is_not():
    """zlib only above the threshold; the flag byte says which."""
    packed, plain = ANSWER.to_bytes(compress=True), ANSWER.to_bytes(compress=False)
    assert (packed[0], packed[1]) == (FORMAT_VERSION, 1) and len(packed) < len(plain) / 4
    assert plain[1] == 0
    short = SHORT.to_bytes(compress=True)
    assert short[1] == 0 and len(short) < COMPRESS_ABOVE_BYTES


def test_the_stored_form_is_never_longer_than_the_plain_one():
    """Whatever the text (here random, the hardest for zlib), compress=True never costs bytes."""
    rng = random.Random(1)
    for length in range(200, 400, 7):
        noisy = _with_text(SHORT, "".join(chr(rng.randrange(0x21, 0x110000)) for _ in range(length)))
        packed = noisy.to_bytes(compress=True)
        assert len(packed) <= len(noisy.to_bytes(compress=False))
        assert CachedAnswer.from_bytes(packed) == noisy


def test_unicode_and_lone_surrogates_round_trip():
    """Text from a provider's JSON may hold any code point, a lone surrogate included."""
    odd = _with_text(SHORT, "naïve 日本語 \U0001f600 \ud800 end")
    assert CachedAnswer.from_bytes(odd.to_bytes(compress=False)).text == odd.text


def test_expiry_is_from_expires_at_on():
    """expired() is true at expires_at_ms; remaining_ms() counts down to 0."""
    assert not ANSWER.expired(ANSWER.expires_at_ms - 1) and ANSWER.expired(ANSWER.expires_at_ms)
    assert ANSWER.remaining_ms(ANSWER.expires_at_ms - 250) == 250 and ANSWER.remaining_ms(10**15) == 0


def test_a_field_that_does_not_fit_is_refused():
    """Negative token counts cannot be written."""
    with pytest.raises(ValueError, match="does not fit"):
        CachedAnswer(**{**_fields(SHORT), "prompt_tokens": -1}).to_bytes(compress=False)


PLAIN = ANSWER.to_bytes(compress=False)
PACKED = ANSWER.to_bytes(compress=True)


@pytest.mark.parametrize("data, problem", [
    (b"", "at least 2 bytes"),
    (bytes([9, 0]) + PLAIN[2:], "version 9 is unknown"),
    (bytes([FORMAT_VERSION, 0x80]) + PLAIN[2:], "unknown bits"),
    (PLAIN[:20], "shorter than its"),
    (PLAIN[:-1], "header announces"),
    (PLAIN + b"x", "header announces"),
    (PACKED[:-5], "truncated zlib"),
    (PACKED + b"junk", "after its zlib body"),
    (bytes([FORMAT_VERSION, 1]) + b"not zlib at all", "not valid zlib"),
    (bytes([FORMAT_VERSION, 1]) + zlib.compress(bytes(MAX_BODY_BYTES + 1)), "inflates to more than"),
], ids=["empty", "version", "flags", "short-head", "truncated", "trailing", "zlib-truncated", "zlib-trailing",
        "zlib-garbage", "zlib-bomb"])
def test_malformed_bytes_are_refused_with_the_reason(data, problem):
    """Anything from_bytes cannot read whole is a ValueError that says what is wrong."""
    with pytest.raises(ValueError, match=problem):
        CachedAnswer.from_bytes(data)


def test_text_that_is_not_utf8_is_refused():
    """A flipped byte inside the text is caught, not decoded into garbage."""
    broken = bytearray(SHORT.to_bytes(compress=False))
    broken[-1] = 0xFF
    with pytest.raises(ValueError, match="not UTF-8"):
        CachedAnswer.from_bytes(bytes(broken))


def _fields(answer: CachedAnswer) -> dict:
    return {name: getattr(answer, name) for name in CachedAnswer.__dataclass_fields__}


def _with_text(answer: CachedAnswer, text: str) -> CachedAnswer:
    return CachedAnswer(**{**_fields(answer), "text": text})
