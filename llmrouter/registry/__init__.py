"""The provider registry (F001, F051, F052): which providers a worker may call,
how they are doing, and what they cost.

* :mod:`.stats` — pure per-provider figures (latency, error rate, cost, health);
* :mod:`.reader` — reads the compacted ``llm.providers`` topic on every worker;
* :mod:`.service` — :class:`ProviderRegistry`, the service that owns the providers.
"""

from llmrouter.registry.service import ProviderRegistry

__all__ = ["ProviderRegistry"]
