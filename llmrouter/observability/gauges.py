"""The gauges that read the worker's state, set just before each scrape of ``/metrics``.

A timer would show a scrape what was true up to a period ago (a breaker open
for the last four seconds missed); reading at the scrape costs a few dict
walks. A provider or a stage that is gone has its series removed, not left at
its last value (:class:`LabelledSeries`).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import Gauge

from llmrouter.observability.state import breaker_states, calls_in_flight, consumer_lag
from llmrouter.router import Router

BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}  # the gauge's value; higher is worse


class LabelledSeries:
    """A gauge whose whole set of series is given each time: those not given again are removed."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self._shown: set[tuple[str, ...]] = set()

    def show(self, values: Mapping[tuple[str, ...], float]) -> None:
        for labels in self._shown - values.keys():
            self._gauge.remove(*labels)
        for labels, value in values.items():
            self._gauge.labels(*labels).set(value)
        self._shown = set(values)


class StateGauges:
    """``refresh`` sets the state gauges of ``router.metrics`` from the router (hand it to ``Metrics.on_render``)."""

    def __init__(self, router: Router) -> None:
        self._router = router
        metrics = router.metrics
        self._in_flight = LabelledSeries(metrics.active_connections)
        self._breakers = LabelledSeries(metrics.breaker_state)
        self._tokens = LabelledSeries(metrics.rate_limit_tokens)
        self._rates = LabelledSeries(metrics.rate_limit_rate_per_s)
        self._lag = LabelledSeries(metrics.consumer_lag)

    def refresh(self) -> None:
        router = self._router
        self._in_flight.show({(name,): n for name, n in calls_in_flight(router).items()})
        self._breakers.show({(name, scope): BREAKER_LEVEL[state] for name, scopes in breaker_states(router).items()
                             for scope, state in scopes.items() if state in BREAKER_LEVEL})
        buckets = router.limits.snapshot()
        self._tokens.show({(name,): bucket["tokens"] for name, bucket in buckets.items()})
        self._rates.show({(name,): bucket["rate_per_s"] for name, bucket in buckets.items()})
        self._lag.show({(stage, priority): n for stage, by_priority in consumer_lag(router).items()
                        for priority, n in by_priority.items() if n is not None})
