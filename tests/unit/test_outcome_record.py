"""The result record a dispatch outcome becomes."""

from __future__ import annotations

from llmrouter.dispatch.serving import outcome_record
from llmrouter.wire.contract import parse_request
from llmrouter.dispatch.attempts import Attempt, Dispatched

REQUEST = parse_request({"request_id": "r", "prompt": "p", "created_at_ms": 1_000}, priority="high",
                        received_at_ms=1_000)


def exhausted(*attempts: Attempt) -> Dispatched:
    return Dispatched(attempts=list(attempts), error_code="all_providers_unavailable", error_message="none answered")


def test_a_chain_that_only_timed_out_is_a_timeout_with_the_timeout_code():
    """Every provider timed out (or was skipped): status timeout, code provider_timeout."""
    record = outcome_record(REQUEST, exhausted(Attempt("a", "skipped", error_code="provider_unavailable"),
                                               Attempt("b", "timeout", 30_000.0, "provider_timeout", "slow")),
                            dispatched_at_ms=1_010, now_ms=31_010)
    assert (record["status"], record["error_code"]) == ("timeout", "provider_timeout")


def test_no_time_left_for_any_call_is_deadline_exceeded():
    """Skipped for the deadline before any call: status timeout, code deadline_exceeded."""
    record = outcome_record(REQUEST, exhausted(Attempt("a", "skipped", error_code="deadline_exceeded")),
                            dispatched_at_ms=1_010, now_ms=1_020)
    assert (record["status"], record["error_code"]) == ("timeout", "deadline_exceeded")


def test_a_chain_with_errors_is_all_providers_unavailable():
    """Any error among the attempts: status error, the dispatcher's code, every attempt kept."""
    record = outcome_record(REQUEST, exhausted(Attempt("a", "timeout", 10.0, "provider_timeout", "slow"),
                                               Attempt("b", "error", 5.0, "provider_unavailable", "500")),
                            dispatched_at_ms=1_010, now_ms=1_100)
    assert (record["status"], record["error_code"]) == ("error", "all_providers_unavailable")
    assert [a["provider"] for a in record["attempts"]] == ["a", "b"]


def test_an_answer_after_a_failover_says_which_providers_failed_before_it():
    """route_reason: the plan's reason, then who answered after whom (skipped providers were not tried)."""
    from llmrouter.providers.base import Generation

    outcome = Dispatched(attempts=[Attempt("a", "skipped", error_code="provider_unavailable"),
                                   Attempt("b", "error", 5.0, "provider_unavailable", "500"),
                                   Attempt("c", "ok", 7.0)],
                         provider="c", generation=Generation(text="hi", model="m", prompt_tokens=1, completion_tokens=1))
    record = outcome_record(REQUEST, outcome, dispatched_at_ms=1_010, now_ms=1_100, route_reason="simple: ...")
    assert (record["status"], record["route_reason"]) == ("ok", "simple: ...; c answered after b failed")
    first = Dispatched(attempts=[Attempt("c", "ok", 7.0)], provider="c", generation=Generation(text="hi", model="m", prompt_tokens=1, completion_tokens=1))
    assert outcome_record(REQUEST, first, dispatched_at_ms=1_010, now_ms=1_100,
                          route_reason="simple: ...")["route_reason"] == "simple: ..."
