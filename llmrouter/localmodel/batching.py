"""The local model's dynamic batching policy (specification F040): which
queued requests run in the next batch, how long to wait for more first,
and which new requests to refuse at once.

Pure: no asyncio, no ONNX Runtime. Times come in as ``now_s`` (any
monotonic clock, the same for every argument); what the policy learns
(arrival rate, step cost) comes in as :class:`ArrivalRate` and
:class:`StepCost`, which the caller feeds.

:meth:`BatchPolicy.next_batch`, asked whenever a model worker is free or a
request arrives while one waits, applies these rules in order:

1. The batch cap is ``max_batch``, lowered to the requests at the head of
   the queue whose padded KV cache fits the memory budget.
2. A full batch (as many queued as the cap) runs at once.
3. ``latency`` never waits, and no mode waits with a critical request
   (priority 0) queued: what is queued runs now.
4. Waiting ends ``max_wait_s`` after the oldest queued request arrived.
5. Waiting ends early enough that the full batch still finishes
   (estimated run time) before the earliest deadline in the queue.
6. ``balanced`` also waits no longer than the batch takes to fill at the
   recent arrival rate, nor than a quarter of the batch's estimated run
   time (waiting must cost little beside the work it batches), and only
   when at least one more arrival is expected within the wait (rate x wait
   >= 1: never at idle or low load). Before any cost is measured it does
   not wait.
7. ``throughput`` waits for a full batch, bounded by rules 4 and 5 only.

A wait ends early when a request arrives: the caller asks again.

:meth:`BatchPolicy.admit` refuses a new request at once when ``max_queue``
requests already wait for a busy model (beyond those an idle worker is
about to take), or when there is work ahead of it and
its estimated finish (the batches running, those ahead of it, then its
own, spread over the workers) would be past its deadline; the second rule
applies only once the step cost has been measured. A refused request goes
on to the next provider instead of queueing without bound.

Every decision carries its reason, for the log and for tests.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from llmrouter.localmodel.config import BATCHING_MODES as MODES
from llmrouter.localmodel.memory import MemoryBudget

__all__ = ["MODES", "Queued", "Decision", "Refusal", "BatchPolicyConfig", "BatchPolicy", "ArrivalRate", "StepCost"]

DEFAULT_MAX_WAIT_S = {"latency": 0.0, "balanced": 0.05, "throughput": 0.2}
CRITICAL = 0  # the priority that never waits for a batch to fill
BALANCED_WAIT_SHARE = 0.25  # balanced mode waits at most this share of the batch's run time


@dataclass(frozen=True, kw_only=True)
class Queued:
    """What the policy needs to know of one waiting request."""

    prompt_tokens: int
    max_tokens: int  # new tokens at most (already capped by the context window)
    arrived_s: float
    deadline_s: float
    priority: int = 2  # 0 = critical


@dataclass(frozen=True)
class Decision:
    """Run the first ``take`` queued requests now, or (``take == 0``) wait up to ``wait_s`` and ask again."""

    take: int
    wait_s: float
    reason: str


@dataclass(frozen=True)
class Refusal:
    """Why a new request is not queued: ``kind`` is ``queue_full`` or ``deadline``."""

    kind: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class BatchPolicyConfig:
    """The latency-versus-throughput setting and the bounds (units in the names)."""

    mode: str = "balanced"
    max_batch: int = 1
    max_wait_s: float | None = None  # None: the mode's default (latency 0, balanced 50 ms, throughput 200 ms)
    max_queue: int = 32  # requests waiting for a busy model at most; more are refused
    workers: int = 1  # batches run at once

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"batching must be one of {', '.join(MODES)}, got {self.mode!r}.")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}.")
        if self.max_wait_s is not None and self.max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {self.max_wait_s}.")
        if self.max_queue < 0:
            raise ValueError(f"max_queue must be 0 or more, got {self.max_queue}.")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, got {self.workers}.")

    @property
    def wait_s(self) -> float:
        """The longest wait for more requests: latency mode never waits, whatever max_wait_s says."""
        if self.mode == "latency":
            return 0.0
        return DEFAULT_MAX_WAIT_S[self.mode] if self.max_wait_s is None else self.max_wait_s


class ArrivalRate:
    """Requests per second over the last ``horizon_s``: (arrivals - 1) / (now - the oldest of them).

    One arrival says nothing about a rate (0); the estimate decays as time
    passes without arrivals, and forgets everything older than the horizon.
    """

    def __init__(self, *, horizon_s: float = 2.0, keep: int = 64) -> None:
        self._horizon_s = horizon_s
        self._times: deque[float] = deque(maxlen=keep)

    def record(self, now_s: float) -> None:
        """One request arrived at ``now_s``."""
        self._times.append(now_s)

    def per_s(self, now_s: float) -> float:
        """The estimated arrival rate at ``now_s``."""
        recent = [t for t in self._times if now_s - t <= self._horizon_s]
        if len(recent) < 2 or now_s <= recent[0]:
            return 0.0
        return (len(recent) - 1) / (now_s - recent[0])


class StepCost:
    """What batches cost here, learned from the batches run (exponentially weighted).

    * seconds per prompt token of prefill (padding included);
    * seconds per decode step, per number of rows in the step;
    * the share of ``max_tokens`` requests actually use (end-of-sequence
      stops many early), so estimates do not assume every answer is as long
      as allowed.
    """

    def __init__(self, *, weight: float = 0.2) -> None:
        self._weight = weight
        self.prefill_s_per_token: float | None = None
        self._step_s: dict[int, float] = {}
        self.used_share = 1.0

    def _blend(self, old: float | None, new: float) -> float:
        return new if old is None else old + self._weight * (new - old)

    def observe_prefill(self, tokens: int, seconds: float) -> None:
        """A prefill of ``tokens`` padded positions took ``seconds``."""
        if tokens > 0:
            self.prefill_s_per_token = self._blend(self.prefill_s_per_token, seconds / tokens)

    def observe_step(self, rows: int, seconds: float) -> None:
        """One decode step over ``rows`` sequences took ``seconds``."""
        self._step_s[rows] = self._blend(self._step_s.get(rows), seconds)

    def observe_usage(self, max_tokens: int, used_tokens: int) -> None:
        """A request allowed ``max_tokens`` new tokens used ``used_tokens``."""
        self.used_share = self._blend(self.used_share, min(1.0, used_tokens / max_tokens))

    @property
    def known(self) -> bool:
        """Whether a prefill and a decode step have been measured."""
        return self.prefill_s_per_token is not None and bool(self._step_s)

    def step_s(self, rows: int) -> float:
        """Seconds per decode step at ``rows``: measured, else the nearest measured size (more rows
        scale it up linearly, fewer keep it: decode costs about the same for a few rows)."""
        if rows in self._step_s:
            return self._step_s[rows]
        nearest = min(self._step_s, key=lambda known: (abs(known - rows), known))
        return self._step_s[nearest] * max(1.0, rows / nearest)

    def batch_s(self, batch: Sequence[Queued], *, rows: int | None = None) -> float | None:
        """Estimated seconds to run ``batch`` (left-padded prefill, then decode) as ``rows`` rows
        (default: as many as in ``batch``); None before any measurement."""
        if not self.known or not batch:
            return None
        assert self.prefill_s_per_token is not None
        rows = rows or len(batch)
        prefill = self.prefill_s_per_token * rows * max(q.prompt_tokens for q in batch)
        steps = max(math.ceil(q.max_tokens * self.used_share) for q in batch)
        return prefill + steps * self.step_s(rows)


class BatchPolicy:
    """The rules in the module docstring, for one configuration and memory budget."""

    def __init__(self, config: BatchPolicyConfig, *, memory: MemoryBudget | None = None) -> None:
        self.config = config
        self._memory = memory

    def cap(self, queue: Sequence[Queued]) -> int:
        """Rule 1: the most rows a batch starting with ``queue``'s head may have. Rows not queued
        yet are assumed as long as the queued ones; one row always fits (the engine checked at
        load that one full-context sequence does)."""
        for rows in range(self.config.max_batch, 1, -1):
            head = queue[:rows]
            width = max(q.prompt_tokens for q in head) + max(q.max_tokens for q in head)
            if self._memory is None or self._memory.fits(rows, width):
                return rows
        return 1

    def next_batch(self, queue: Sequence[Queued], *, now_s: float, rate_per_s: float, cost: StepCost) -> Decision:
        """What a free worker should do now with ``queue`` (in service order)."""
        if not queue:
            return Decision(0, 0.0, "empty")
        cap = self.cap(queue)
        if len(queue) >= cap:
            return Decision(cap, 0.0, "full" if cap == self.config.max_batch else "memory")
        if self.config.mode == "latency":
            return Decision(len(queue), 0.0, "latency")
        if any(q.priority == CRITICAL for q in queue):
            return Decision(len(queue), 0.0, "critical")
        run_s = cost.batch_s(queue, rows=cap)
        limits = {"waited": self.config.wait_s - (now_s - min(q.arrived_s for q in queue)),
                  "deadline": min(q.deadline_s for q in queue) - now_s - (run_s or 0.0)}
        if self.config.mode == "balanced":
            if run_s is None:
                return Decision(len(queue), 0.0, "unmeasured")
            if rate_per_s <= 0:
                return Decision(len(queue), 0.0, "low_load")
            limits["filling"] = (cap - len(queue)) / rate_per_s
            limits["short_work"] = BALANCED_WAIT_SHARE * run_s
        reason, wait = min(limits.items(), key=lambda item: item[1])
        if wait <= 0:
            return Decision(len(queue), 0.0, reason)
        if self.config.mode == "balanced" and rate_per_s * wait < 1.0:
            return Decision(len(queue), 0.0, "low_load")
        return Decision(0, wait, reason)

    def admit(self, queue: Sequence[Queued], new: Queued, *, now_s: float, busy_until_s: Sequence[float],
              cost: StepCost) -> Refusal | None:
        """None to queue ``new``, else why it is refused.

        ``queue`` is in service order; requests of ``new``'s priority or more urgent stay
        ahead of it. ``busy_until_s`` holds, per busy worker, when its batch is expected to
        end. A request that would start at once is always admitted (its own length is its
        timeout's business, and refusing it would stop the cost from ever being learned).
        """
        idle_workers = max(0, self.config.workers - len(busy_until_s))
        if len(queue) - idle_workers * self.config.max_batch >= self.config.max_queue:
            return Refusal("queue_full", f"the local model's queue is full ({len(queue)} waiting, "
                                         f"max_queue {self.config.max_queue})")
        if not cost.known:
            return None
        free_at = sorted(max(now_s, t) for t in busy_until_s)[:self.config.workers]
        free_at += [now_s] * (self.config.workers - len(free_at))
        ahead = [q for q in queue if q.priority <= new.priority] + [new]
        start, finish = 0, now_s
        while start < len(ahead):
            rows = self.cap(ahead[start:])
            free_at.sort()
            begins = free_at[0]
            finish = free_at[0] = begins + (cost.batch_s(ahead[start:start + rows]) or 0.0)
            start += rows
        if begins > now_s and finish > new.deadline_s:
            return Refusal("deadline", f"the local model cannot answer in time: about {begins - now_s:.2f}s of "
                                       f"work ahead and {finish - begins:.2f}s of its own batch, "
                                       f"{new.deadline_s - now_s:.2f}s left")
        return None
