"""What the load test sends: a seeded stream of LLM requests.

Pure: no clock, no I/O. The same spec and seed give the same sequence of
priorities, prompts, task types and stream flags, so a run can be repeated
and the echo baseline sends requests of the very same sizes.

* The **priority** of each request is drawn from a weighted mix
  (``critical=1,high=2,normal=6,low=1``); the priority decides the topic.
* A share of the requests (``repeat_share``) **repeats a prompt** from a
  small pool of ``pool_size`` prompts; the others carry a prompt seen once.
  With temperature 0 a repeated prompt is cacheable, so the share sets the
  cache-hit ratio (the first use of each pooled prompt is a miss). Every
  request, repeated or not, has a fresh ``request_id``: a repeat is a new
  request with the same content, not a redelivery. Pool prompts carry the
  run id, so each run starts from a cold cache.
* A share of the requests (``complex_share``) is **complex** (a task type
  the router sends to the cloud first), the others simple (the local model
  first). A pooled prompt keeps its task type, as everything else that goes
  into a cache key, so its repeats can hit.
* A share of the requests (``stream_share``) asks to be **streamed**.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmrouter.wire.contract import PRIORITIES
from llmrouter.errors import ConfigError

SIMPLE_TASK_TYPE = "general"  # in llmrouter.core.routing.SIMPLE_TASK_TYPES: the local model first
COMPLEX_TASK_TYPE = "analysis"  # not in it: the cloud chain first
QUESTIONS = (
    "what does a message broker do",
    "why do consumer groups rebalance",
    "how does a cache decide what to evict",
    "when is a retry with backoff the right answer",
    "what makes a request idempotent",
    "why would a router prefer a local model",
)


def parse_priority_mix(text: str) -> dict[str, float]:
    """``"critical=1,high=2,normal=6,low=1"`` -> weights by priority; a bare ``"normal"`` is weight 1."""
    mix: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in PRIORITIES:
            raise ConfigError(f"--priorities: {name!r} is not a priority; the priorities are {', '.join(PRIORITIES)}")
        if name in mix:
            raise ConfigError(f"--priorities names {name} twice")
        try:
            mix[name] = float(weight) if weight.strip() else 1.0
        except ValueError:
            raise ConfigError(f"--priorities: the weight of {name} must be a number, not {weight.strip()!r}") from None
    return mix


@dataclass(frozen=True)
class WorkloadSpec:
    """The mix of requests; shares are fractions from 0 to 1."""

    priorities: Mapping[str, float] = field(default_factory=lambda: {"normal": 1.0})
    repeat_share: float = 0.0
    pool_size: int = 16
    complex_share: float = 0.0
    stream_share: float = 0.0
    max_tokens: int = 16
    providers: tuple[str, ...] | None = None
    user_id: str = "loadtest"
    seed: int = 1

    def __post_init__(self) -> None:
        for name in ("repeat_share", "complex_share", "stream_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1, not {value:g}")
        unknown = [p for p in self.priorities if p not in PRIORITIES]
        if unknown:
            raise ConfigError(f"unknown priority {unknown[0]!r}; the priorities are {', '.join(PRIORITIES)}")
        if any(w < 0 for w in self.priorities.values()) or not sum(self.priorities.values()) > 0:
            raise ConfigError("--priorities: weights must not be negative, and at least one must be more than 0")
        if self.pool_size < 1:
            raise ConfigError(f"--pool-size must be at least 1, not {self.pool_size}")
        if self.max_tokens < 1:
            raise ConfigError(f"--max-tokens must be at least 1, not {self.max_tokens}")

    def as_dict(self) -> dict[str, Any]:
        return {"priorities": dict(self.priorities), "repeat_share": self.repeat_share, "pool_size": self.pool_size,
                "complex_share": self.complex_share, "stream_share": self.stream_share,
                "max_tokens": self.max_tokens, "providers": list(self.providers) if self.providers else None,
                "user_id": self.user_id, "seed": self.seed}


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the workload: its sequence number, priority, and the LLMRequest fields
    (``created_at_ms`` is set when it is sent)."""

    seq: int
    priority: str
    repeated: bool
    fields: dict[str, Any]

    @property
    def request_id(self) -> str:
        return self.fields["request_id"]


def request_id(run_id: str, seq: int) -> str:
    """The request_id of request ``seq`` of run ``run_id``."""
    return f"{run_id}-{seq}"


def seq_of(run_id: str, rid: str) -> int | None:
    """The sequence number in a request_id of run ``run_id``, or None when it is not one of the run's."""
    prefix = f"{run_id}-"
    if not rid.startswith(prefix):
        return None
    tail = rid[len(prefix):]
    return int(tail) if tail.isdigit() else None


class Workload:
    """The requests of one run, drawn in order from ``spec`` with its seed; ``run_id`` makes the
    request_ids (and pooled prompts) the run's own."""

    def __init__(self, spec: WorkloadSpec, run_id: str) -> None:
        self.spec = spec
        self.run_id = run_id
        self._rng = random.Random(spec.seed)
        self._priorities = [p for p in PRIORITIES if spec.priorities.get(p, 0) > 0]
        self._cum_weights = list(itertools.accumulate(spec.priorities[p] for p in self._priorities))
        self._pool = [self._prompt(f"prompt {k}", k) for k in range(spec.pool_size)]
        self._seq = 0

    def _prompt(self, label: str, k: int) -> tuple[str, str]:
        """A prompt and its task type; what makes it unique is ``label``."""
        complex_ = self._rng.random() < self.spec.complex_share
        text = f"load test {self.run_id} {label}: in one sentence, {QUESTIONS[k % len(QUESTIONS)]}?"
        return text, COMPLEX_TASK_TYPE if complex_ else SIMPLE_TASK_TYPE

    def next(self) -> PlannedRequest:
        """The next request of the sequence."""
        seq, rng = self._seq, self._rng
        self._seq += 1
        priority = rng.choices(self._priorities, cum_weights=self._cum_weights)[0]
        repeated = rng.random() < self.spec.repeat_share
        if repeated:
            prompt, task_type = self._pool[rng.randrange(len(self._pool))]
        else:
            prompt, task_type = self._prompt(f"request {seq}", seq)
        fields: dict[str, Any] = {
            "request_id": request_id(self.run_id, seq), "prompt": prompt, "max_tokens": self.spec.max_tokens,
            "temperature": 0.0, "task_type": task_type, "user_id": self.spec.user_id,
            "stream": rng.random() < self.spec.stream_share,
        }
        if self.spec.providers:
            fields["providers"] = list(self.spec.providers)
        return PlannedRequest(seq=seq, priority=priority, repeated=repeated, fields=fields)
