"""The dashboard's recent past, kept by the worker itself: one point per ``interval_s``.

Sampling on the worker, not in the browser, gives every page the same series
from the moment it opens (a page opened mid-incident sees the minutes before
it) and costs one walk of the metrics registry per interval, however many
pages poll. Points are kept in memory for ``keep`` intervals; a restart
starts an empty history, as the counters themselves start from zero.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import mode

from llmrouter.views.dashboard.series import Reading, Sample, point, reading_from

DEFAULT_INTERVAL_S = 1.0
DEFAULT_KEEP = 600  # ten minutes at one point a second
LATENCY_WINDOW = 10  # intervals a point's percentiles look back over


class DashboardHistory(mode.Service):
    def __init__(self, *, samples: Callable[[], Iterable[Sample]], breakers: Callable[[], dict[str, Any]],
                 interval_s: float = DEFAULT_INTERVAL_S, keep: int = DEFAULT_KEEP,
                 clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interval_s = interval_s
        self._samples, self._breakers, self._clock = samples, breakers, clock
        self._readings: deque[Reading] = deque(maxlen=LATENCY_WINDOW + 1)
        self.points: deque[dict[str, Any]] = deque(maxlen=keep)

    @mode.Service.task
    async def _sample(self) -> None:
        async for _ in self.itertimer(self.interval_s, name="dashboard_history"):
            self.sample()

    def sample(self) -> None:
        """Read the counters now and, from the second reading on, add a point."""
        reading = reading_from(self._samples(), at_s=self._clock())
        if self._readings:
            entry = point(self._readings[-1], reading, window_start=self._readings[0])
            entry["breakers"] = self._breakers()
            self.points.append(entry)
        self._readings.append(reading)


def registry_samples(registry: Any) -> Iterable[Sample]:
    """Every sample of a prometheus_client registry as (name, labels, value)."""
    for family in registry.collect():
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value
