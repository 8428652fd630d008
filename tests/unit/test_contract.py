"""What makes an LLMRequest valid, and what makes one unservable as asked."""

from __future__ import annotations

import pytest

from llmrouter.wire.contract import (Request, check_dispatch, check_reply_to, check_size, parse_request, result_record,
                                     unparsed_result_record)
from llmrouter.errors import InvalidRequest

SIZES = dict(max_prompt_chars=100, max_tokens=512)
DISPATCH = dict(known_providers=("local", "together"), default_timeout_s=60)


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
    ({"request_id": "\ud800"}, "not valid Unicode"),
    ({"seed": -1}, "seed must be between 0"),
    ({"seed": 2**64}, "seed must be between 0"),
])
def test_invalid_requests_are_refused_with_a_sentence(fields, message):
    """Each contract violation raises InvalidRequest naming the field."""
    with pytest.raises(InvalidRequest, match=message):
        parse(**fields)


@pytest.mark.parametrize("fields, code", [
    ({"prompt": "x" * 101}, "prompt_too_long"),
    ({"messages": [{"role": "user", "content": "x" * 60}] * 2, "prompt": None}, "prompt_too_long"),
    ({"max_tokens": 513}, "max_tokens_too_large"),
])
def test_requests_over_a_size_limit_are_rejected_with_a_code(fields, code):
    """check_size says which size limit a valid request is over."""
    refusal = check_size(parse(**fields), **SIZES)
    assert (refusal.status, refusal.code) == ("rejected", code)


@pytest.mark.parametrize("fields, status, code", [
    ({"providers": ["local", "nonesuch"]}, "rejected", "unknown_provider"),
    ({"deadline_ms": 500}, "timeout", "deadline_exceeded"),
    ({"created_at_ms": 0, "timeout_ms": 900}, "timeout", "deadline_exceeded"),
])
def test_requests_that_cannot_be_dispatched_get_a_refusal_with_a_code(fields, status, code):
    """check_dispatch says why a valid request cannot be dispatched now, with status and code."""
    refusal = check_dispatch(parse(**fields), now_ms=1_000, **DISPATCH)
    assert (refusal.status, refusal.code) == (status, code)


def test_a_request_within_every_limit_is_not_refused():
    """No refusal when the prompt, max_tokens, providers and deadline are fine."""
    request = parse(providers=["together"], timeout_ms=5_000)
    assert check_size(request, **SIZES) is None
    assert check_dispatch(request, now_ms=2_000, **DISPATCH) is None


@pytest.mark.parametrize("reply_to, exists, code", [
    ("llm.replies.team-a", True, None),
    ("llm.results", True, None),
    (None, False, None),
    ("llm.replies.team-b", False, "reply_to_unknown"),
    ("llm.router.accepted.normal", True, "reply_to_not_allowed"),
    ("llm-router-answered-changelog", True, "reply_to_not_allowed"),
])
def test_reply_to_must_be_an_allowed_topic_that_exists(reply_to, exists, code):
    """Only topics matching the allow-list, and existing, may receive a result."""
    refusal = check_reply_to(reply_to, allowed=("llm.results", "llm.replies.*"), exists=exists)
    assert (refusal.code if refusal else None) == code
    assert refusal is None or refusal.status == "rejected"


def test_a_dead_lettered_request_s_result_has_the_fields_of_any_result():
    """unparsed_result_record: the same keys as result_record, timed from when the router received the message."""
    record = unparsed_result_record("r1", priority="low", received_at_ms=100, now_ms=130, error_code="invalid_request",
                                    error_message="no prompt")
    like = result_record(Request(request_id="r1", prompt="x", priority="low", received_at_ms=100), status="error",
                         now_ms=130, error_code="invalid_request", error_message="no prompt")
    assert record == like and record["total_latency_ms"] == 30.0
