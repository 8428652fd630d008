"""What an operator sees of a worker: the state gauges of ``/metrics``, the dependencies of ``/health/``.

* :mod:`.state` reads the worker's state into plain values (provider calls in
  flight, breaker states here and in the group, consumer lag by priority);
* :mod:`.gauges` sets the Prometheus gauges from it before each scrape;
* :mod:`.dependencies` builds the per-dependency report of ``/health/``.

The dashboard (``/dashboard/``) lives in :mod:`llmrouter.views.dashboard`.
"""
