"""Whether a request may read and write the cache (F031, the request's ``cache_policy``).

Only what is safe to cache is cached. A deterministic request (temperature
0, or a seed given) gets the same answer every time, so a stored answer is
as good as a new one. A sampled request (temperature above 0 and no seed)
asked twice is meant to get two answers; serving it from the cache changes
what the caller asked for, so it is cached only when the operator opts in
with ``cache.cache_nondeterministic``.

The request's ``cache_policy`` then decides:

===========  ==================  =========================================
policy       cacheable request   not cacheable (sampled, no opt-in)
===========  ==================  =========================================
``use``      read and write      neither (``nondeterministic``)
``refresh``  write only          neither (``nondeterministic``)
``bypass``   neither             neither
===========  ==================  =========================================

``refresh`` skips the read and stores the new answer over the old one. A
sampled answer is not written under ``refresh`` either: no request could
read it (the same rule keeps it from being read), so it would only take room.

``reason`` is one of :data:`REASONS`, short and stable, for results and
metric labels.

That table is judged on the request, before anyone answers it. A seed only
makes an answer repeatable if the provider that answered sent it on: the
Anthropic client sends none (the Messages API takes no seed), so a sampled,
seeded answer from an ``anthropic``-kind provider is a sampled answer and is
not stored (:func:`may_store`, asked with the answering provider's kind;
:data:`SEEDED_KINDS` is checked against the clients' request bodies by
``tests/unit/test_cache_isolation.py``).

What else the cache needs to know of the providers comes through
:class:`AnswerSources`: each provider's kind, and which providers an
operator disabled (``override disable X``): a disabled provider's cached
answers are not served (a hit on one is a miss), as its calls are not made.
A refresh ahead asks only the provider that gave the entry
(:func:`refresh_request`), never another provider, and streams nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from llmrouter.core.flag_state import FlagState
from llmrouter.wire.contract import CACHE_POLICIES, Request

__all__ = ["CacheDecision", "decide", "is_deterministic", "may_store", "refresh_request", "disabled_providers",
           "AnswerSources", "REASONS", "SEEDED_KINDS"]

# The provider kinds whose clients send the request's seed: openai_chat.py (openai, together,
# openai_compatible), huggingface.py, and the local model's seeded sampler. Not anthropic.
SEEDED_KINDS = frozenset({"openai", "together", "openai_compatible", "huggingface", "local"})

REASONS = ("use", "use_nondeterministic", "refresh", "bypass", "nondeterministic", "disabled")


@dataclass(frozen=True, slots=True)
class CacheDecision:
    read: bool
    write: bool
    reason: str


_DISABLED = CacheDecision(read=False, write=False, reason="disabled")
_BYPASS = CacheDecision(read=False, write=False, reason="bypass")
_NONDETERMINISTIC = CacheDecision(read=False, write=False, reason="nondeterministic")
_USE = CacheDecision(read=True, write=True, reason="use")
_USE_NONDETERMINISTIC = CacheDecision(read=True, write=True, reason="use_nondeterministic")
_REFRESH = CacheDecision(read=False, write=True, reason="refresh")


def is_deterministic(request: Request) -> bool:
    """Temperature 0 or a seed: the provider is expected to give the same answer again."""
    return request.temperature == 0 or request.seed is not None


def may_store(request: Request, *, kind: str | None, cache_nondeterministic: bool) -> bool:
    """Whether an answer to ``request`` from a provider of ``kind`` (None: unknown) is deterministic enough
    to store: temperature 0, or a seed that provider sends; any answer once the operator opted in."""
    if cache_nondeterministic or request.temperature == 0:
        return True
    return request.seed is not None and kind in SEEDED_KINDS


def refresh_request(request: Request, provider: str) -> Request:
    """The copy of a popular request the warmer asks again: only ``provider`` (the one whose answer the entry
    holds) may answer, at low priority, with no deadline, stored over the entry, and not streamed (a stream
    would publish chunks under the request_id of a request that was answered long ago)."""
    return replace(request, providers=(provider,), cache_policy="refresh", stream=False, priority="low",
                   deadline_ms=None, created_at_ms=None, timeout_ms=None)


def disabled_providers(state: FlagState) -> frozenset[str]:
    """The providers an operator's override disables: their cached answers are not served either."""
    return frozenset(name for name, override in state.overrides.items() if override.action == "disable")


@dataclass(frozen=True)
class AnswerSources:
    """What the cache asks of the providers: a provider's kind (None when unknown) and the disabled ones now.
    The defaults know no provider and disable none (tools and tests without a registry)."""

    kind_of: Callable[[str], str | None] = lambda _provider: None
    disabled: Callable[[], Collection[str]] = frozenset


def decide(request: Request, *, cache_nondeterministic: bool, enabled: bool = True) -> CacheDecision:
    """The table of the module docstring; ``enabled=False`` (``cache.enabled``) turns both off."""
    policy = request.cache_policy
    if policy not in CACHE_POLICIES:
        raise ValueError(f"unknown cache_policy {policy!r}; one of {', '.join(CACHE_POLICIES)}")
    if not enabled:
        return _DISABLED
    if policy == "bypass":
        return _BYPASS
    deterministic = is_deterministic(request)
    if not deterministic and not cache_nondeterministic:
        return _NONDETERMINISTIC
    if policy == "refresh":
        return _REFRESH
    return _USE if deterministic else _USE_NONDETERMINISTIC
