"""One request's call as its attempts share it: the prompt, the stream callback, the deadline on the dispatcher's
clock, the fence and the books of a hedge; and the provider call itself, in the span ``provider.call``."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from dataclasses import replace

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from llmrouter.dispatch.attempts import OnDelta, Spend, estimated_cost_usd
from llmrouter.errors import MalformedReply, ProviderError
from llmrouter.providers.base import Clock, Deadline, Generation, LLMProvider, Prompt


class Call:
    """One request's prompt, stream callback, deadline and fence, shared by its attempts."""

    def __init__(self, prompt: Prompt, on_delta: OnDelta | None, deadline: float,
                 before_call: Callable[[], None] | None, spend: Spend | None,
                 wait: Callable[[float], Awaitable[None]], hedge_after_s: float | None = None, *,
                 tracer: trace.Tracer, clock: Clock) -> None:
        self.tracer, self.clock = tracer, clock
        self.prompt, self.on_delta, self.deadline, self.before_call = prompt, on_delta, deadline, before_call
        self.spend, self.wait, self.hedge_after_s = spend, wait, hedge_after_s
        self.seq = 0  # stream chunks sent so far, over every attempt
        self.started: dict[str, float] = {}  # hedged calls: provider -> when its call started
        self.hedge_costs: list[float] = []  # hedged calls cancelled after they started: their estimates
        self._branch_of: str | None = None

    def branch(self, provider: str) -> Call:
        """This call as one of a hedge's two (no streaming): the same deadline, fence and books."""
        branch = copy.copy(self)
        branch._branch_of = provider
        return branch

    def estimate(self, provider: LLMProvider) -> float:
        return estimated_cost_usd(provider, self.prompt)

    def deadline_passed(self, now: float) -> bool:
        return now >= self.deadline

    async def run(self, provider: LLMProvider, timeout_s: float) -> Generation:
        """:meth:`_run` in the span ``provider.call``: which provider, and how the call ended."""
        with self.tracer.start_as_current_span("provider.call", kind=SpanKind.CLIENT,
                                               attributes={"llm.provider": provider.name}) as span:
            try:
                generation = await self._run(provider, timeout_s)
            except asyncio.CancelledError:  # its timeout (the dispatcher says so), a hedge lost, a drain
                span.set_attribute("llm.outcome", "cancelled")
                raise
            except ProviderError as exc:
                span.set_attributes({"llm.outcome": "error", "llm.error_code": exc.code})
                raise
            span.set_attributes({"llm.outcome": "ok", "llm.prompt_tokens": generation.prompt_tokens,
                                 "llm.completion_tokens": generation.completion_tokens})
            return generation

    async def _run(self, provider: LLMProvider, timeout_s: float) -> Generation:
        """One call; the prompt carries its deadline on the dispatcher's own clock (the same clock object)."""
        if self.before_call is not None:
            self.before_call()
        now = self.clock()
        if self._branch_of is not None:
            self.started[self._branch_of] = now
        prompt = replace(self.prompt, deadline=Deadline(min(self.deadline, now + timeout_s), self.clock))
        if self.on_delta is None:
            return await provider.generate(prompt)
        restart = self.seq > 0  # an earlier attempt sent text: tell consumers to drop it
        final: Generation | None = None
        async for piece in provider.stream(prompt):
            if piece.final is not None:
                final = piece.final
            await self.on_delta(self.seq, piece.delta, piece.final is not None, provider.name, restart)
            self.seq += 1
            restart = False
        if final is None:
            raise MalformedReply(f"{provider.name} ended its stream without a final piece", provider=provider.name)
        return final
