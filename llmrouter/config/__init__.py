"""Configuration: the settings file (loaded once, passed in, never read from globals) and the API keys.

* :mod:`.settings` — the root :class:`~.settings.Settings` and :func:`~.settings.load_settings`:
  one YAML file whose sections mirror the specification, over :file:`default_settings.yaml`;
  every section's name is importable from it;
* the sections, by topic: :mod:`.platform` (Kafka, Redis, the worker, limits, tables,
  tracing), :mod:`.providers` (local model, cloud APIs, §5.2 limits, registry),
  :mod:`.cache`, :mod:`.guards` (routing, rate limits, breaker, backpressure, quotas);
  the windows and alerts sections live in :mod:`llmrouter.alerting.config`;
* :mod:`.types` — the sections' base model and the one annotated type each for a written
  rate, size and money limit, and :func:`~.types.parse_rate`;
* :mod:`.secrets` — API keys from the environment or a secrets file, never
  from the settings file.
"""
