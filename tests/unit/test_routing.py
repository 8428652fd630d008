"""Fast-path detection and the order providers are tried in."""

from __future__ import annotations

import pytest

from llmrouter.wire.contract import parse_request
from llmrouter.core.flag_state import FlagState, Mark, Override
from llmrouter.core.routing import (Figures, RoutingRules, assess, choose, effective_chain, hedge_after_s, is_simple_task,
                                   order_equivalents, plan, plan_chain, route_of)

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


# ---- choose: the whole routing choice in one pure call ------------------------------------------------------------

RULES = RoutingRules(equivalent=(("huggingface", "together"),), strategy="round_robin")
BOB = Mark("bob", 1_777_636_800_000, "maintenance")


def test_choose_plans_orders_the_equivalents_by_turn_and_says_why():
    """Round-robin among equivalents: turn 1 puts together before huggingface, and route_reason says so."""
    route = choose(request(), CHAIN, figures={}, flags=FlagState(), rules=RULES, turn=1)
    assert route.chain == ["local", "together", "huggingface", "premium"]
    assert route.reason.endswith("local model first; together/huggingface by round-robin")
    assert (route.skipped, route.refusal, route.hedge_after_s) == ((), None, None)


def test_choose_puts_an_unhealthy_provider_last():
    """A failed health check sends the provider behind the healthy ones."""
    route = choose(request(), CHAIN, figures={"local": Figures(healthy=False)}, flags=FlagState(),
                   rules=RoutingRules(), turn=0)
    assert route.chain == ["huggingface", "together", "premium", "local"]


def test_choose_leaves_out_what_the_flags_keep_out_with_their_codes():
    """no_premium: the premium providers are skipped with degraded_no_premium, the rest keep their order."""
    state = FlagState(flags={"no_premium": BOB})
    route = choose(request(), CHAIN, figures={}, flags=state, rules=RoutingRules(), turn=0, premium={"premium"})
    assert route.chain == ["local", "huggingface", "together"]
    assert [(s.provider, s.code) for s in route.skipped] == [("premium", "degraded_no_premium")]


def test_choose_refuses_when_no_provider_may_serve_and_hedges_nothing():
    """A disabled only provider: a rejected refusal (degraded_no_provider), no chain, no hedge."""
    state = FlagState(overrides={"local": Override("local", "disable", BOB)})
    rules = RoutingRules(hedge_after_s=0.5, hedge_priorities=frozenset({"normal"}))
    route = choose(request(providers=["local"]), CHAIN, figures={}, flags=state, rules=rules, turn=0)
    assert route.chain == [] and route.refusal is not None and route.refusal.code == "degraded_no_provider"
    assert route.hedge_after_s is None


def test_choose_orders_emergency_providers_last_and_honours_a_forced_one():
    """Emergency-only providers stay last; a forced provider still in the chain goes first."""
    state = FlagState(overrides={"together": Override("together", "force", BOB)})
    route = choose(request(), CHAIN, figures={}, flags=state, rules=RoutingRules(), turn=0, emergency={"local"})
    assert route.chain == ["together", "huggingface", "premium", "local"]
    assert "forced first: together" in route.reason


def test_the_hedge_is_for_the_listed_priorities_and_never_for_a_stream():
    """hedge_after_s: the delay for a hedged priority; None for another priority, a stream, or hedging off."""
    rules = RoutingRules(hedge_after_s=0.25, hedge_priorities=frozenset({"normal"}))
    assert hedge_after_s(request(), rules) == 0.25
    assert hedge_after_s(request(stream=True), rules) is None
    assert hedge_after_s(parse_request({"request_id": "r", "prompt": "p"}, priority="low", received_at_ms=0),
                         rules) is None
    assert hedge_after_s(request(), RoutingRules()) is None
    assert choose(request(), CHAIN, figures={}, flags=FlagState(), rules=rules, turn=0).hedge_after_s == 0.25
