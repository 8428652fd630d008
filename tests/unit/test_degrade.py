"""How the degradation flags and manual overrides change a request's provider chain."""

from __future__ import annotations

from llmrouter.core.degrade import degrade
from llmrouter.core.flag_state import FlagState, Mark, Override
from llmrouter.core.routing import Plan

ROUTE = Plan(["local", "huggingface", "together", "openai", "anthropic"], "simple: ...: local model first")
PREMIUM = {"openai", "anthropic"}
BOB = Mark("bob", 1_777_636_800_000, "maintenance")  # 2026-05-01T12:00:00Z


def flags(*names: str, **overrides: str) -> FlagState:
    """A state with ``names`` on and ``provider=action`` overrides, all set by bob (later ones later)."""
    return FlagState(flags={name: BOB for name in names},
                     overrides={p: Override(p, action, Mark("bob", BOB.at_ms + i, "")) for i, (p, action)
                                in enumerate(overrides.items())})


def test_with_nothing_set_the_chain_and_its_reason_are_the_plans():
    """No flag, no override: the route as routing.plan made it."""
    degraded = degrade(ROUTE, FlagState(), premium=PREMIUM)
    assert (degraded.chain, degraded.reason, degraded.skipped, degraded.refusal) == (
        ROUTE.chain, ROUTE.reason, (), None)


def test_no_premium_skips_the_premium_providers_with_a_code_and_who_set_it():
    """openai and anthropic (and any emergency-only provider, as the caller names them) are never called."""
    degraded = degrade(ROUTE, flags("no_premium"), premium=PREMIUM | {"my-vllm"})
    assert degraded.chain == ["local", "huggingface", "together"]
    assert [(s.provider, s.code) for s in degraded.skipped] == [("openai", "degraded_no_premium"),
                                                                 ("anthropic", "degraded_no_premium")]
    assert "set by bob at 2026-05-01T12:00:00Z: maintenance" in degraded.skipped[0].reason
    assert degraded.reason.endswith("left out by the operator: openai (degraded_no_premium), "
                                    "anthropic (degraded_no_premium)")


def test_a_disabled_provider_is_skipped_and_the_reason_says_by_whom_when_and_why():
    """disable together: provider_disabled, 'disabled by <who> at <time>: <note>'."""
    state = FlagState(overrides={"together": Override("together", "disable", BOB)})
    degraded = degrade(ROUTE, state, premium=PREMIUM)
    assert "together" not in degraded.chain
    (skip,) = degraded.skipped
    assert (skip.provider, skip.code, skip.reason) == (
        "together", "provider_disabled", "disabled by bob at 2026-05-01T12:00:00Z: maintenance")


def test_local_only_leaves_the_local_model_alone_in_the_chain():
    """Offline operation: every cloud provider is skipped."""
    degraded = degrade(ROUTE, flags("local_only"), premium=PREMIUM)
    assert degraded.chain == ["local"]
    assert {s.code for s in degraded.skipped} == {"degraded_local_only"}
    assert len(degraded.skipped) == 4


def test_cache_only_refuses_the_request_without_any_provider():
    """A miss (hits never reach the answer stage) is rejected with degraded_cache_only; nothing is tried."""
    degraded = degrade(ROUTE, flags("cache_only", "local_only"), premium=PREMIUM)
    assert degraded.chain == [] and degraded.skipped == ()
    assert (degraded.refusal.status, degraded.refusal.code) == ("rejected", "degraded_cache_only")
    assert "only cached answers are served" in degraded.refusal.message


def test_a_forced_provider_goes_first_and_the_rest_keep_their_order():
    """force anthropic: first, even though it is premium and would otherwise come last."""
    degraded = degrade(ROUTE, flags(anthropic="force"), premium=PREMIUM)
    assert degraded.chain == ["anthropic", "local", "huggingface", "together", "openai"]
    assert "forced first: anthropic (by bob at 2026-05-01T12:00:00Z)" in degraded.reason


def test_the_most_recently_forced_provider_goes_first():
    """Two forced: the later command wins the first place."""
    degraded = degrade(ROUTE, flags(together="force", huggingface="force"), premium=PREMIUM)
    assert degraded.chain[:2] == ["huggingface", "together"]


def test_forcing_adds_no_provider_the_chain_does_not_have():
    """A provider outside the request's allow-list (or not registered) stays out."""
    degraded = degrade(Plan(["local", "together"], "r"), flags(openai="force"), premium=PREMIUM)
    assert degraded.chain == ["local", "together"]


def test_flags_win_over_force():
    """Forcing openai while no_premium is on does not call openai."""
    degraded = degrade(ROUTE, flags("no_premium", openai="force"), premium=PREMIUM)
    assert "openai" not in degraded.chain and degraded.chain[0] == "local"


def test_a_disabled_provider_is_skipped_once_even_when_a_flag_also_keeps_it_out():
    """The override's reason is the one given: the operator named that provider."""
    state = FlagState(flags={"no_premium": BOB}, overrides={"openai": Override("openai", "disable", BOB)})
    skips = degrade(ROUTE, state, premium=PREMIUM).skipped
    assert [(s.provider, s.code) for s in skips] == [("openai", "provider_disabled"),
                                                      ("anthropic", "degraded_no_premium")]


def test_when_nothing_is_left_the_request_is_rejected_with_every_reason():
    """local_only for a request whose allow-list has no local model: rejected, degraded_no_provider."""
    degraded = degrade(Plan(["together", "openai"], "r"), flags("local_only"), premium=PREMIUM)
    assert degraded.chain == []
    assert (degraded.refusal.status, degraded.refusal.code) == ("rejected", "degraded_no_provider")
    assert "together: local_only is on" in degraded.refusal.message
    assert len(degraded.skipped) == 2


def test_an_empty_plan_is_left_to_the_dispatcher():
    """Nothing was left out by the flags, so there is nothing to refuse for them."""
    degraded = degrade(Plan([], "r"), flags("no_premium"), premium=PREMIUM)
    assert degraded.refusal is None and degraded.chain == []
