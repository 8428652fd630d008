"""Routing choice: which providers to try for a request, in which order.

Pure: the dispatcher asks, nothing here does I/O.

Fast-path detection (specification F036): a *simple* task goes to the local
model first and falls back along the configured chain; a *complex* one goes
down the cloud part of the chain first and keeps the local model as the last
resort before the emergency-only providers (F014's premium APIs), which always
come last. A request's provider allow-list narrows either order.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from llmrouter.contract import Request

SIMPLE_TASK_TYPES = frozenset({"general", "classify", "extract", "summarize", "qa", "chat"})
SIMPLE_MAX_PROMPT_CHARS = 2000
SIMPLE_MAX_TOKENS = 256


def is_simple_task(request: Request) -> bool:
    """True when the local model is the right first try (short prompt, short answer, simple task type)."""
    prompt_chars = len(request.prompt or "") + sum(len(content) for _, content in request.messages)
    return (
        request.task_type in SIMPLE_TASK_TYPES
        and prompt_chars <= SIMPLE_MAX_PROMPT_CHARS
        and request.max_tokens <= SIMPLE_MAX_TOKENS
    )


def effective_chain(configured: Sequence[str], registered: Sequence[str]) -> list[str]:
    """The chain's own names that are registered, in chain order, then every other
    registered provider (e.g. one registered at run time) in registration order."""
    present = set(registered)
    return [name for name in configured if name in present] + [name for name in registered if name not in configured]


def plan_chain(
    request: Request, fallback_chain: Sequence[str], *, emergency: Collection[str] = (), local_name: str = "local",
) -> list[str]:
    """The provider names to try for ``request``, first choice first."""
    chain = [name for name in fallback_chain if name not in emergency]
    if not is_simple_task(request) and local_name in chain:
        chain = [name for name in chain if name != local_name] + [local_name]
    chain += [name for name in fallback_chain if name in emergency]
    if request.providers is not None:
        allowed = set(request.providers)
        chain = [name for name in chain if name in allowed]
    return chain


def route_of(provider: str | None, *, local_name: str = "local") -> str:
    """The path a result took, for the result and the summary: local | cloud | none."""
    if provider is None:
        return "none"
    return "local" if provider == local_name else "cloud"
