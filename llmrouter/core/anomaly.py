"""Anomaly detection (F025): an exponentially weighted mean and variance, and a z-score against them. Pure.

For each provider, once per closed window, the detector reads one figure
(the mean call latency, the failure rate) and asks how far it lies above what
that provider usually does: ``z = (x - mean) / std``, with ``mean`` and
``std`` the EWMA of the earlier windows. ``z`` above the setting (3 by
default) is an anomaly: a provider twice as slow as usual is flagged even
when it is far under the fixed 5-second rule, and one that is always slow
is not flagged for being slow.

* ``alpha`` (0..1) is the weight of the newest window: 0.2 remembers about
  the last ten windows (1/alpha x 2).
* The first ``warmup`` windows only teach the detector: no verdict before.
* ``min_std`` floors the deviation, so a provider that was perfectly steady
  (std 0) is not flagged for a 1 ms wobble.
* Every window, anomalous or not, updates the mean: a lasting change becomes
  the new normal within a few dozen windows and the alert resolves itself.
  It is a detector of changes, not of levels; the fixed rules cover levels.

The update is West's incremental EWMA variance:
``diff = x - mean; mean += alpha * diff; var = (1 - alpha) * (var + alpha * diff**2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Ewma:
    mean: float = 0.0
    var: float = 0.0
    n: int = 0  # windows seen

    def update(self, x: float, alpha: float) -> Ewma:
        if self.n == 0:
            return Ewma(mean=x, var=0.0, n=1)
        diff = x - self.mean
        return Ewma(mean=self.mean + alpha * diff, var=(1 - alpha) * (self.var + alpha * diff * diff), n=self.n + 1)

    def std(self, min_std: float) -> float:
        return max(math.sqrt(self.var), min_std)

    def zscore(self, x: float, *, warmup: int, min_std: float) -> float | None:
        """How many deviations ``x`` lies above the mean (below: negative); None while warming up."""
        if self.n < warmup:
            return None
        return (x - self.mean) / self.std(min_std)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "n": self.n}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Ewma:
        if not data:
            return cls()
        return cls(mean=float(data["mean"]), var=float(data["var"]), n=int(data["n"]))


@dataclass(frozen=True)
class Verdict:
    value: float
    z: float | None  # None: still warming up
    anomalous: bool
    threshold: float  # the value that would have been an anomaly: mean + z_limit x std


def judge(detector: Ewma, x: float, *, alpha: float, z_limit: float, warmup: int,
          min_std: float) -> tuple[Ewma, Verdict]:
    """The verdict on one window's figure, and the detector that has learned it."""
    z = detector.zscore(x, warmup=warmup, min_std=min_std)
    threshold = detector.mean + z_limit * detector.std(min_std)
    return detector.update(x, alpha), Verdict(value=x, z=z, anomalous=z is not None and z > z_limit,
                                              threshold=threshold)
