"""How the degradation flags and manual overrides change a request's provider chain (F023, F055). Pure.

The routing choice (:func:`llmrouter.core.routing.choose`) asks right after
:func:`~llmrouter.core.routing.plan` and the equivalents' order have ordered the
chain (and applied the request's allow-list), in this order:

1. ``cache_only``: no chain at all, the request is refused (``rejected``,
   ``degraded_cache_only``). Only misses get here: a cache hit is answered by
   intake (``Intake.accept`` in agents/intake.py) before the request reaches
   the answer stage, and that path does not change under any flag;
2. a provider disabled by an override is skipped (``provider_disabled``,
   "disabled by <who> at <time>: <note>");
3. ``local_only``: every provider but the local model is skipped
   (``degraded_local_only``);
4. ``no_premium``: the premium kinds and every ``emergency_only`` provider are
   skipped (``degraded_no_premium``);
5. ``force``: the forced providers still in the chain go first, the most
   recently forced first. Forcing adds no provider the chain does not have,
   and flags win over it: forcing openai while ``no_premium`` is on does not
   call openai.

Each skip becomes an attempt (``skipped``, its code, its reason) ahead of the
dispatcher's own: it was decided before any call. When nothing is left the
request is refused (``rejected``, ``degraded_no_provider``) with those
attempts. Like ``budget_exceeded`` this is a deliberate refusal, not an
outage, so it is not dead-lettered for a replay.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmrouter.core.outcomes import Refusal
from llmrouter.core.flag_state import FlagState

if TYPE_CHECKING:  # routing.choose calls degrade: no import circle at run time
    from llmrouter.core.routing import Plan

CACHE_ONLY = "degraded_cache_only"
NO_PROVIDER = "degraded_no_provider"
DISABLED = "provider_disabled"
LOCAL_ONLY = "degraded_local_only"
NO_PREMIUM = "degraded_no_premium"


@dataclass(frozen=True)
class Skip:
    """A provider the flags or an override keep out of this request's chain, and why."""

    provider: str
    code: str
    reason: str


@dataclass(frozen=True)
class Degraded:
    """The chain to dispatch and its ``route_reason`` (as in :class:`~llmrouter.core.routing.Plan`), the providers
    left out, and the refusal when no provider may be called."""

    chain: list[str]
    reason: str
    skipped: tuple[Skip, ...] = ()
    refusal: Refusal | None = None


def degrade(route: Plan, state: FlagState, *, premium: Collection[str], local_name: str = "local") -> Degraded:
    """``route`` as the flags and overrides of ``state`` allow; ``premium`` names the providers that
    ``no_premium`` keeps out (the premium kinds and the emergency-only providers)."""
    cache_only = state.on("cache_only")
    if cache_only is not None:
        return Degraded([], route.reason, refusal=Refusal(
            status="rejected", code=CACHE_ONLY,
            message=f"cache_only is on (set by {cache_only.says()}): only cached answers are served, and this "
                    "request was not answered from the cache (a miss, or its cache_policy skips the cache)"))
    kept: list[str] = []
    skipped: list[Skip] = []
    for name in route.chain:
        skip = _skip(name, state, premium=premium, local_name=local_name)
        if skip is None:
            kept.append(name)
        else:
            skipped.append(skip)
    reason = route.reason
    if skipped:
        reason += "; left out by the operator: " + ", ".join(f"{s.provider} ({s.code})" for s in skipped)
    forced = [o for o in sorted(state.overrides.values(), key=lambda o: o.mark.at_ms, reverse=True)
              if o.action == "force" and o.provider in kept]
    if forced:
        first = [o.provider for o in forced]
        kept = first + [name for name in kept if name not in first]
        reason += "; forced first: " + ", ".join(f"{o.provider} (by {o.mark.says()})" for o in forced)
    if not kept and skipped:
        why = "; ".join(f"{s.provider}: {s.reason}" for s in skipped)
        return Degraded([], reason, tuple(skipped), Refusal(
            status="rejected", code=NO_PROVIDER,
            message=f"no provider may serve this request while the router is degraded ({why})"))
    return Degraded(kept, reason, tuple(skipped))


def _skip(name: str, state: FlagState, *, premium: Collection[str], local_name: str) -> Skip | None:
    override = state.overrides.get(name)
    if override is not None and override.action == "disable":
        return Skip(name, DISABLED, f"disabled by {override.mark.says()}")
    local_only = state.on("local_only")
    if local_only is not None and name != local_name:
        return Skip(name, LOCAL_ONLY, f"local_only is on (set by {local_only.says()}): only the local model "
                                      "may answer")
    no_premium = state.on("no_premium")
    if no_premium is not None and name in premium:
        return Skip(name, NO_PREMIUM, f"no_premium is on (set by {no_premium.says()}): premium and "
                                      "emergency-only providers are not called")
    return None
