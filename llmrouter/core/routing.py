"""Routing choice: which providers to try for a request, in which order.

Pure: the dispatcher asks, nothing here does I/O.

Fast-path detection (specification F036): a *simple* task goes to the local
model first and falls back along the configured chain; a *complex* one goes
down the cloud part of the chain first and keeps the local model as the last
resort before the emergency-only providers (F014's premium APIs), which always
come last. A request's provider allow-list narrows either order.

Among providers the settings call equivalent (``routing.equivalent``: groups
that may stand in for each other), :func:`order_equivalents` picks the order
by round-robin, by recent latency or by free capacity (F002, F055), and a
provider whose last health check failed goes after the healthy ones of the
chain (F020: health-based routing). An open breaker is the dispatcher's
business: it skips that provider at once.

:func:`choose` is the whole choice in one call, the one the answer stage
makes: the plan, the equivalents' order, the operator's flags and overrides
(:mod:`llmrouter.core.degrade`) and the hedge delay, as one :class:`Route`.
Its inputs are plain values: the request's fields, the chain, the
providers' figures, the flags, the routing rules as numbers and the
round-robin turn (the caller counts the requests routed).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from llmrouter.core.degrade import Skip, degrade
from llmrouter.core.flag_state import FlagState

if TYPE_CHECKING:
    from llmrouter.core.outcomes import Refusal



class Request(Protocol):
    """What routing reads of a request (``llmrouter.wire.contract.Request`` is one): plain fields, no wire type."""

    @property
    def prompt(self) -> str | None: ...
    @property
    def messages(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def task_type(self) -> str: ...
    @property
    def priority(self) -> str: ...
    @property
    def stream(self) -> bool: ...
    @property
    def providers(self) -> tuple[str, ...] | None: ...


SIMPLE_TASK_TYPES = frozenset({"general", "classify", "extract", "summarize", "qa", "chat"})
SIMPLE_MAX_PROMPT_CHARS = 2000
SIMPLE_MAX_TOKENS = 256


@dataclass(frozen=True)
class Assessment:
    """Whether a request is simple, and why, in words an operator can check against the request."""

    simple: bool
    reason: str


def prompt_chars(request: Request) -> int:
    return len(request.prompt or "") + sum(len(content) for _, content in request.messages)


def assess(request: Request) -> Assessment:
    """Simple when the task type is a simple one, the prompt is short and the answer asked for is short.

    The reason names each of the three measures with its limit, e.g. ``simple: task qa, prompt 120 <= 2000
    chars, max_tokens 64 <= 256`` or ``complex: task code_generation is not a simple type, max_tokens 1024 >
    256``: the complex reason names only the measures that failed.
    """
    chars = prompt_chars(request)
    failed = []
    if request.task_type not in SIMPLE_TASK_TYPES:
        failed.append(f"task {request.task_type} is not a simple type")
    if chars > SIMPLE_MAX_PROMPT_CHARS:
        failed.append(f"prompt {chars} > {SIMPLE_MAX_PROMPT_CHARS} chars")
    if request.max_tokens > SIMPLE_MAX_TOKENS:
        failed.append(f"max_tokens {request.max_tokens} > {SIMPLE_MAX_TOKENS}")
    if failed:
        return Assessment(False, "complex: " + ", ".join(failed))
    return Assessment(True, f"simple: task {request.task_type}, prompt {chars} <= {SIMPLE_MAX_PROMPT_CHARS} chars, "
                            f"max_tokens {request.max_tokens} <= {SIMPLE_MAX_TOKENS}")


def is_simple_task(request: Request) -> bool:
    """True when the local model is the right first try (short prompt, short answer, simple task type)."""
    return assess(request).simple


@dataclass(frozen=True)
class Plan:
    """The providers to try, first choice first, and the reason for that order (``route_reason`` of the result)."""

    chain: list[str]
    reason: str


def effective_chain(configured: Sequence[str], registered: Sequence[str]) -> list[str]:
    """The chain's own names that are registered, in chain order, then every other
    registered provider (e.g. one registered at run time) in registration order."""
    present = set(registered)
    return [name for name in configured if name in present] + [name for name in registered if name not in configured]


def plan(
    request: Request, fallback_chain: Sequence[str], *, emergency: Collection[str] = (), local_name: str = "local",
) -> Plan:
    """The provider names to try for ``request``, first choice first, and why."""
    assessment = assess(request)
    chain = [name for name in fallback_chain if name not in emergency]
    if local_name in chain:
        order = "local model first" if assessment.simple else "cloud first, local model last"
    else:
        order = "no local model in the chain"
    if not assessment.simple and local_name in chain:
        chain = [name for name in chain if name != local_name] + [local_name]
    chain += [name for name in fallback_chain if name in emergency]
    reason = f"{assessment.reason}: {order}"
    if request.providers is not None:
        allowed = set(request.providers)
        chain = [name for name in chain if name in allowed]
        reason += f"; allow-list {','.join(sorted(allowed))}"
    return Plan(chain, reason)


def plan_chain(
    request: Request, fallback_chain: Sequence[str], *, emergency: Collection[str] = (), local_name: str = "local",
) -> list[str]:
    """The provider names to try for ``request``, first choice first."""
    return plan(request, fallback_chain, emergency=emergency, local_name=local_name).chain


def route_of(provider: str | None, *, local_name: str = "local") -> str:
    """The path a result took, for the result and the summary: local | cloud | none."""
    if provider is None:
        return "none"
    return "local" if provider == local_name else "cloud"


STRATEGIES = ("round_robin", "latency", "capacity")


@dataclass(frozen=True)
class Figures:
    """What is known of a provider right now, for choosing among equivalent ones."""

    latency_ms: float | None = None  # the median of its recent good calls; None: no call yet
    free_share: float = 1.0  # the share of its concurrency (bulkhead) free, 0 to 1
    healthy: bool | None = None  # its last health check; None: not checked yet


def order_equivalents(chain: Sequence[str], groups: Sequence[Sequence[str]], figures: Mapping[str, Figures], *,
                      strategy: str, turn: int) -> tuple[list[str], str]:
    """``chain`` with each group's members reordered among the places they hold, and the unhealthy last; why.

    round_robin: the members take turns first (``turn`` counts requests); latency: the fastest first, one with
    no figure yet before the rest (so it gets one); capacity: the most free concurrency first. Ties keep the
    chain's order. The reason names each reordering, for ``route_reason``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"routing strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    out, notes = list(chain), []
    for group in groups:
        places = [i for i, name in enumerate(out) if name in group]
        if len(places) < 2:
            continue
        members = [out[i] for i in places]
        if strategy == "round_robin":
            shift = turn % len(members)
            ordered = members[shift:] + members[:shift]
        elif strategy == "latency":
            ordered = sorted(members, key=lambda m: (figures.get(m, Figures()).latency_ms is not None,
                                                     figures.get(m, Figures()).latency_ms or 0.0))
        else:
            ordered = sorted(members, key=lambda m: -figures.get(m, Figures()).free_share)
        for i, name in zip(places, ordered):
            out[i] = name
        if ordered != members:
            notes.append(f"{'/'.join(ordered)} by {strategy.replace('_', '-')}")
    unhealthy = [name for name in out if figures.get(name, Figures()).healthy is False]
    if unhealthy and len(unhealthy) < len(out):
        out = [name for name in out if name not in unhealthy] + unhealthy
        notes.append(f"{', '.join(unhealthy)} last: failed its health check")
    return out, "; ".join(notes)


@dataclass(frozen=True)
class RoutingRules:
    """The routing settings as plain values (``routing.*``): equivalent groups, the strategy among them, and
    the hedge (``hedge_after_s`` None: off; only for ``hedge_priorities``, never for a stream)."""

    equivalent: tuple[tuple[str, ...], ...] = ()
    strategy: str = "latency"
    hedge_after_s: float | None = None
    hedge_priorities: frozenset[str] = frozenset({"critical"})


@dataclass(frozen=True)
class Route:
    """The routing choice for one request: the providers to try, first choice first, why (``route_reason``),
    the providers the operator's flags left out with their codes, the refusal when none may serve, and how
    long the first call may take before the next provider is asked too (None: no hedge)."""

    chain: list[str]
    reason: str
    skipped: tuple[Skip, ...] = ()
    refusal: Refusal | None = None
    hedge_after_s: float | None = None


def choose(request: Request, chain: Sequence[str], *, figures: Mapping[str, Figures], flags: FlagState,
           rules: RoutingRules, turn: int, emergency: Collection[str] = (), premium: Collection[str] = (),
           local_name: str = "local") -> Route:
    """The route for ``request`` over the registered ``chain``: :func:`plan`, then :func:`order_equivalents`
    (``turn``: round-robin's), then the flags and overrides (``premium``: what ``no_premium`` keeps out)."""
    planned = plan(request, chain, emergency=emergency, local_name=local_name)
    ordered, why = order_equivalents(planned.chain, rules.equivalent, figures, strategy=rules.strategy, turn=turn)
    degraded = degrade(Plan(ordered, f"{planned.reason}; {why}" if why else planned.reason), flags,
                       premium=premium, local_name=local_name)
    hedge = hedge_after_s(request, rules) if degraded.refusal is None else None
    return Route(degraded.chain, degraded.reason, degraded.skipped, degraded.refusal, hedge)


def hedge_after_s(request: Request, rules: RoutingRules) -> float | None:
    """When to ask the next provider too (F037): the rule's delay for a hedged priority, never for a stream."""
    if rules.hedge_after_s is None or request.stream or request.priority not in rules.hedge_priorities:
        return None
    return rules.hedge_after_s
