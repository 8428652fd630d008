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
"""

from __future__ import annotations

from dataclasses import dataclass

from llmrouter.wire.contract import CACHE_POLICIES, Request

__all__ = ["CacheDecision", "decide", "is_deterministic", "REASONS"]

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
