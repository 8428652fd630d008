"""The worker's dashboard: ``/dashboard/``, a page of live charts, and the JSON it polls.

* :mod:`.series` (pure) turns readings of the worker's Prometheus counters into
  points: throughput by path, latency percentiles per path, cache hit rate,
  errors, spend;
* :mod:`.history` samples them once a second on the worker;
* :mod:`.pages` serves the page (``static/``), the chart library (npm's uPlot,
  :mod:`.assets`) and ``/dashboard/data/``.

Firing alerts are read by the page from ``/alerts/`` when the worker has that
view (``alerts_url`` in the data); without it the page shows none and says why.
A fetch that fails turns the page's header red, and the alerts panel too when
it is ``/alerts/``'s: a failure never reads as "none".
"""

from llmrouter.views.dashboard.pages import register

__all__ = ["register"]
