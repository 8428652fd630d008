"""Finishing a result: the one place every outcome of a request is counted and logged.

Every result the router sends goes through :class:`Finisher`, whatever made it
(a provider's answer, a cache hit at intake, a refusal, a dead letter's
``error`` result, a failure of the router itself, a result it could not
deliver), so ``/metrics``, the windows behind the alerts and the canonical
log line count the same results:

* :meth:`Finisher.result` — a result sent *without* the replay header: one
  ``llmrouter_request_total`` (and its latency), one result in the windows
  (:class:`~llmrouter.alerting.recorder.OutcomeRecorder`), one
  ``request_answered`` line;
* :meth:`Finisher.replayed` — a stored (or recently cached) result sent again
  for a request delivered again: one ``llmrouter_replays_total`` and a
  ``request_answered`` line with ``replayed=true``. Once its first copy went
  out (it carries the replay header) it is not a new result, so neither
  ``request_total`` nor the windows count it again. A stored answer whose first
  copy never went out (a crash between the store and the send) is re-emitted
  without the header: that is its first delivery, and it is counted as the
  result it is
  (``first_copy``).

So ``request_total`` and the windows count each request's result once, when a
copy without the replay header goes out (twice only after a crash between that
send and the delivered mark, the case that also sends a consumer a duplicate).

:meth:`Finisher.calls` counts a dispatch's provider attempts (``provider_*``
metrics, the ``provider:<name>`` windows), results or not (the cache warmer's
refreshes too).

No I/O beyond the log line and in-memory counters: call it after the result's
send was acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from llmrouter.observability.metrics import Metrics
from llmrouter.observability.request_log import request_answered

if TYPE_CHECKING:
    from llmrouter.dispatch.attempts import Dispatched


class Windows(Protocol):
    """The windows' side of a result (:class:`~llmrouter.alerting.recorder.OutcomeRecorder`)."""

    def result(self, priority: str, record: dict[str, Any]) -> None: ...

    def calls(self, outcome: Dispatched) -> None: ...


class Finisher:
    """Counts and logs each result once it is sent; ``windows`` None: the windows are off."""

    def __init__(self, metrics: Metrics, windows: Windows | None = None) -> None:
        self._metrics = metrics
        self._windows = windows

    def result(self, stage: str, record: Mapping[str, Any], **fields: Any) -> None:
        """A result sent for the first time by ``stage`` (intake | answer); ``fields`` add to its log line."""
        self._count(record)
        request_answered(stage, record, **fields)

    def replayed(self, stage: str, *, priority: str, first_copy: bool = False,
                 record: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """A stored result sent again: one replay. ``first_copy``: no copy had gone out before (a crash between
        the store and the send), so this is its first delivery, counted as the result ``record`` is."""
        self._metrics.replays_total.inc()
        if first_copy and record is not None:
            self._count(record)
            request_answered(stage, record, replayed=True, first_copy=True, **fields)
            return
        request_answered(stage, priority=priority, replayed=True, first_copy=first_copy, **fields)

    def calls(self, outcome: Dispatched) -> None:
        """A dispatch's attempts, in /metrics and the windows: every attempt by outcome, the calls' latency, the
        failures by code (a hedge's loser did not fail), and the tokens of the answer."""
        if self._windows is not None:
            self._windows.calls(outcome)
        metrics = self._metrics
        for attempt in outcome.attempts:
            metrics.provider_calls_total.labels(attempt.provider, attempt.outcome).inc()
            if attempt.outcome == "skipped":
                continue
            metrics.provider_call_duration_seconds.labels(attempt.provider, attempt.outcome).observe(
                attempt.latency_ms / 1000.0)
            if attempt.error_code and attempt.outcome in ("error", "timeout"):
                metrics.provider_errors_total.labels(attempt.provider, attempt.error_code).inc()
        if outcome.ok and outcome.generation is not None:
            gen = outcome.generation
            metrics.llm_tokens_used.labels(outcome.provider, "prompt").inc(gen.prompt_tokens)
            metrics.llm_tokens_used.labels(outcome.provider, "completion").inc(gen.completion_tokens)

    def _count(self, record: Mapping[str, Any]) -> None:
        priority, counted = record["priority"], dict(record)
        self._metrics.finished(priority, counted)
        if self._windows is not None:
            self._windows.result(priority, counted)
