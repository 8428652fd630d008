"""What makes an LLMRequest valid, and what makes one unservable as asked."""

from __future__ import annotations

import pytest

from llmrouter.contract import Request, check_limits, parse_request
from llmrouter.errors import InvalidRequest

LIMITS = dict(max_prompt_chars=100, max_tokens=512, known_providers=("local", "together"), default_timeout_s=60)


def parse(**fields) -> Request:
    return parse_request({"request_id": "r1", "prompt": "hello", **fields}, priority="high", received_at_ms=1_000)


def test_a_minimal_request_gets_defaults_and_the_topics_priority():
    """request_id + prompt is enough; the topic's priority wins over the field."""
    request = parse(priority="low")
    assert (request.priority, request.max_tokens, request.temperature, request.cache_policy) == ("high", 256, 0.0, "use")
    assert request.received_at_ms == 1_000


def test_chat_messages_stand_in_for_a_prompt():
    """messages alone make a valid request; the provider prompt carries them."""
    request = parse_request({"request_id": "r", "messages": [{"role": "user", "content": "hi"}]},
                            priority="normal", received_at_ms=0)
    assert request.to_prompt().messages == (("user", "hi"),)


@pytest.mark.parametrize("fields, message", [
    ({"request_id": ""}, "request_id is missing"),
    ({"request_id": 7}, "request_id is missing"),
    ({"request_id": "x" * 201}, "at most 200"),
    ({"prompt": None}, "neither a prompt nor chat messages"),
    ({"max_tokens": 0}, "at least 1"),
    ({"max_tokens": "10"}, "max_tokens must be an integer"),
    ({"max_tokens": True}, "max_tokens must be an integer"),
    ({"temperature": 3}, "between 0 and 2"),
    ({"cache_policy": "maybe"}, "cache_policy must be one of"),
    ({"providers": "local"}, "providers must be a list"),
    ({"metadata": {"a": 1}}, "metadata must be a map"),
    ({"messages": [{"role": "user"}]}, r"messages\[0\]"),
    ({"stream": "yes"}, "stream must be true or false"),
])
def test_invalid_requests_are_refused_with_a_sentence(fields, message):
    """Each contract violation raises InvalidRequest naming the field."""
    with pytest.raises(InvalidRequest, match=message):
        parse(**fields)


def test_the_internal_json_form_round_trips():
    """Request.to_json / from_json give back the same request (the accepted topics carry it)."""
    request = parse(messages=[{"role": "user", "content": "x"}], providers=["local"], metadata={"k": "v"}, seed=3)
    assert Request.from_json(request.to_json()) == request


@pytest.mark.parametrize("fields, status, code", [
    ({"prompt": "x" * 101}, "rejected", "prompt_too_long"),
    ({"max_tokens": 513}, "rejected", "max_tokens_too_large"),
    ({"providers": ["local", "nonesuch"]}, "rejected", "unknown_provider"),
    ({"deadline_ms": 500}, "timeout", "deadline_exceeded"),
    ({"created_at_ms": 0, "timeout_ms": 900}, "timeout", "deadline_exceeded"),
])
def test_requests_over_a_limit_get_a_refusal_with_a_code(fields, status, code):
    """check_limits says why a valid request cannot be served, with status and code."""
    refusal = check_limits(parse(**fields), now_ms=1_000, **LIMITS)
    assert (refusal.status, refusal.code) == (status, code)


def test_a_request_within_every_limit_is_not_refused():
    """No refusal when the prompt, max_tokens, providers and deadline are fine."""
    assert check_limits(parse(providers=["together"], timeout_ms=5_000), now_ms=2_000, **LIMITS) is None
