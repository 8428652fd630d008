"""A provider's state as every worker shares it (F003, F006): pure.

Each worker keeps a breaker of its own (it reacts to its own calls at once)
and reports what its calls showed: a :class:`Report` per provider, every
outcome in order (``"1"`` ok, ``"0"`` a failure that says the provider is
unwell) and the latest time a 429 asked it to wait until (wall clock: a
duration would be stretched by the report's own delay). The provider's *owner* folds the
reports of every worker into one breaker (:func:`apply`) and writes the
result to a table; every worker follows that table's changelog and opens its
own breaker when the owner's is open, and holds off a provider that asked
any worker to wait. So a provider that fails for one worker is closed to all
within the report interval plus a trip through Kafka, and a worker that
starts while a provider is down knows it before its first call.

The owner's breaker runs on the wall clock (seconds since the epoch), so the
state it writes means the same on every machine.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from llmrouter.core.breaker import Breaker, BreakerConfig, State, Transition

MAX_OUTCOMES_PER_REPORT = 1000  # a busier interval keeps its last outcomes: the window only needs the recent ones


@dataclass(frozen=True)
class Report:
    """What one worker's calls to one provider showed since its last report."""

    worker: str
    outcomes: str = ""  # "1" ok, "0" failed, oldest first
    throttled_until_s: float | None = None  # the latest end of a 429's Retry-After among them (time.time())

    def to_bytes(self) -> bytes:
        return json.dumps({"worker": self.worker, "outcomes": self.outcomes,
                           "throttled_until_s": self.throttled_until_s}, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Report:
        """Raises ValueError on anything that is not a report."""
        try:
            data = json.loads(raw)
            outcomes = str(data.get("outcomes", ""))
            throttled = data.get("throttled_until_s")
            report = cls(worker=str(data["worker"]), outcomes=outcomes,
                         throttled_until_s=None if throttled is None else float(throttled))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a provider report: {exc!r}") from None
        if set(report.outcomes) - {"0", "1"}:
            raise ValueError("a report's outcomes are 0s and 1s")
        return report


class OutcomeBuffer:
    """A worker's outcomes per provider since its last report."""

    def __init__(self) -> None:
        self._outcomes: dict[str, list[str]] = defaultdict(list)
        self._throttled: dict[str, float] = {}

    def add(self, provider: str, ok: bool | None) -> None:
        if ok is not None:
            self._outcomes[provider].append("1" if ok else "0")

    def throttled(self, provider: str, until_s: float) -> None:
        """``provider`` asked this worker to wait until ``until_s`` (time.time())."""
        self._throttled[provider] = max(self._throttled.get(provider, 0.0), until_s)

    def drain(self, worker: str) -> dict[str, Report]:
        """The reports to send now, and an empty buffer."""
        names = set(self._outcomes) | set(self._throttled)
        reports = {name: Report(worker, "".join(self._outcomes.get(name, [])[-MAX_OUTCOMES_PER_REPORT:]),
                                self._throttled.get(name)) for name in sorted(names)}
        self._outcomes.clear()
        self._throttled.clear()
        return reports


def apply(state: dict[str, Any] | None, report: Report, *, config: BreakerConfig,
          now_s: float) -> tuple[dict[str, Any], list[Transition]]:
    """The provider's state after ``report``, and the breaker's moves it caused (for llm.events).

    While HALF_OPEN every reported outcome counts as a probe: the workers probe on their own breakers, and
    the owner closes once enough of them came back ok (or opens again, cool-down doubled, on a failure).
    Outcomes that arrive while OPEN are of calls made before it opened, and are not counted.
    """
    breaker = Breaker.from_dict(config, state["breaker"]) if state else Breaker(config, now_s=now_s)
    moves = [t for t in [breaker.tick(now_s)] if t is not None]
    for outcome in report.outcomes:
        moved = breaker.record(now_s, outcome == "1", probe=breaker.state is State.HALF_OPEN)
        if moved is not None:
            moves.append(moved)
    throttled_until = max((state or {}).get("throttled_until_s") or 0.0, report.throttled_until_s or 0.0)
    reason = moves[-1].reason if moves else (state or {}).get("reason", "")
    return {"state": breaker.state.value, "open_until_s": breaker.open_until(), "throttled_until_s": throttled_until,
            "reason": reason, "updated_s": now_s, "breaker": breaker.to_dict()}, moves
