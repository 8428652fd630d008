"""Windowed aggregations and alerting (F025, spec §7.1-7.2): the parts that do I/O.

The pure parts are in :mod:`llmrouter.core.windows`, :mod:`llmrouter.core.alerts`
and :mod:`llmrouter.core.anomaly`; docs/observability.md tells the whole story.

* :mod:`.config` -- the ``windows`` and ``alerts`` settings sections;
* :mod:`.recorder` -- each worker's side: outcomes gathered on the hot path,
  sent to their owners in batches, ticks for the owned partitions;
* :mod:`.owner` -- the owner's side: windows and alert states in tables,
  alerts onto ``llm.alerts`` through an outbox;
* :mod:`.webhook` -- alerts POSTed to an HTTP endpoint;
* :mod:`.views` -- ``/windows/`` and ``/alerts/``.

Import the submodules themselves: this package's ``__init__`` imports nothing,
so :mod:`llmrouter.config.settings` can import :mod:`.config` without a cycle.
"""
