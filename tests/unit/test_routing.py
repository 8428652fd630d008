"""Fast-path detection and the order providers are tried in."""

from __future__ import annotations

import pytest

from llmrouter.wire.contract import parse_request
from llmrouter.core.routing import (Figures, assess, effective_chain, is_simple_task, order_equivalents, plan, plan_chain,
                               route_of)

CHAIN = ["local", "huggingface", "together", "premium"]


def request(**fields):
    return parse_request({"request_id": "r", "prompt": "short", **fields}, priority="normal", received_at_ms=0)


def test_a_short_simple_task_goes_to_the_local_model_first():
    """Simple: the configured chain as it is, local first."""
    assert is_simple_task(request())
    assert plan_chain(request(), CHAIN) == CHAIN


def test_a_complex_task_goes_to_the_cloud_first_and_keeps_local_as_last_resort():
    """A long prompt, a long answer or a complex task type moves local to the end."""
    for fields in ({"prompt": "x" * 5000}, {"max_tokens": 1024}, {"task_type": "code_generation"}):
        assert not is_simple_task(request(**fields))
        assert plan_chain(request(**fields), CHAIN) == ["huggingface", "together", "premium", "local"]


def test_the_allow_list_narrows_the_chain_in_chain_order():
    """providers=[...] keeps only those, in the chain's order."""
    assert plan_chain(request(providers=["premium", "local"]), CHAIN) == ["local", "premium"]


def test_emergency_only_providers_come_after_local_even_for_a_complex_task():
    """F014: premium APIs are tried only when everything else, the local model included, could not answer."""
    chain = ["local", "huggingface", "openai", "anthropic"]
    emergency = {"openai", "anthropic"}
    assert plan_chain(request(), chain, emergency=emergency) == chain
    assert plan_chain(request(task_type="code_generation"), chain, emergency=emergency) == [
        "huggingface", "local", "openai", "anthropic"]


def test_providers_registered_at_run_time_join_after_the_configured_chain():
    """Configured names keep their order (absent ones drop out); the others follow in registration order."""
    configured = ["local", "huggingface", "together", "openai"]
    registered = ["local", "together", "openai", "my-vllm", "ollama"]
    assert effective_chain(configured, registered) == ["local", "together", "openai", "my-vllm", "ollama"]


def test_route_names_the_path_taken():
    """local model -> local, any other provider -> cloud, none -> none."""
    assert (route_of("local"), route_of("together"), route_of(None)) == ("local", "cloud", "none")


def test_the_assessment_says_why_naming_each_measure_and_its_limit():
    """Simple: the three measures within their limits; complex: only the ones over."""
    assert assess(request(task_type="qa", max_tokens=64)).reason == (
        "simple: task qa, prompt 5 <= 2000 chars, max_tokens 64 <= 256")
    assert assess(request(task_type="code_generation", max_tokens=1024)).reason == (
        "complex: task code_generation is not a simple type, max_tokens 1024 > 256")
    assert assess(request(prompt="x" * 2001)).reason == "complex: prompt 2001 > 2000 chars"


def test_the_plan_gives_the_order_and_its_reason():
    """The reason the result carries: the assessment, the order it chose, and any allow-list."""
    simple = plan(request(max_tokens=8), CHAIN)
    assert (simple.chain, simple.reason) == (CHAIN, "simple: task general, prompt 5 <= 2000 chars, max_tokens 8 <= 256: "
                                                    "local model first")
    narrowed = plan(request(task_type="code_generation", providers=["together", "local"]), CHAIN)
    assert narrowed.chain == ["together", "local"]
    assert narrowed.reason == ("complex: task code_generation is not a simple type: cloud first, local model last; "
                               "allow-list local,together")
    assert plan(request(), ["together"]).reason.endswith(": no local model in the chain")


# ---- equivalent providers ----------------------------------------------------------------------------------------

FULL_CHAIN = ["local", "huggingface", "together", "openai"]
GROUP = [["huggingface", "together"]]


def test_round_robin_takes_turns_among_equivalent_providers_in_the_places_they_hold():
    """local stays first and openai last; huggingface and together swap every other request."""
    orders = [order_equivalents(FULL_CHAIN, GROUP, {}, strategy="round_robin", turn=turn)[0] for turn in range(3)]
    assert orders == [FULL_CHAIN, ["local", "together", "huggingface", "openai"], FULL_CHAIN]


def test_latency_puts_the_fastest_first_and_gives_an_unmeasured_provider_a_try():
    figures = {"huggingface": Figures(latency_ms=300), "together": Figures(latency_ms=80)}
    chain, reason = order_equivalents(FULL_CHAIN, GROUP, figures, strategy="latency", turn=0)
    assert chain == ["local", "together", "huggingface", "openai"] and reason == "together/huggingface by latency"
    fresh = {"huggingface": Figures(latency_ms=30), "together": Figures()}
    assert order_equivalents(FULL_CHAIN, GROUP, fresh, strategy="latency", turn=0)[0][1] == "together"


def test_capacity_puts_the_provider_with_the_most_free_concurrency_first():
    figures = {"huggingface": Figures(free_share=0.0), "together": Figures(free_share=0.5)}
    assert order_equivalents(FULL_CHAIN, GROUP, figures, strategy="capacity", turn=0)[0][1] == "together"


def test_a_provider_that_failed_its_health_check_goes_after_the_healthy_ones():
    figures = {"local": Figures(healthy=False), "together": Figures(healthy=True)}
    chain, reason = order_equivalents(FULL_CHAIN, [], figures, strategy="latency", turn=0)
    assert chain == ["huggingface", "together", "openai", "local"] and "local last" in reason
    everyone_down = {name: Figures(healthy=False) for name in FULL_CHAIN}
    assert order_equivalents(FULL_CHAIN, [], everyone_down, strategy="latency", turn=0)[0] == FULL_CHAIN


def test_an_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="not one of round_robin, latency, capacity"):
        order_equivalents(FULL_CHAIN, GROUP, {}, strategy="fastest", turn=0)
