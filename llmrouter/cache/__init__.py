"""The answer cache (F009, F031-F035): building blocks, one idea per module.

* :mod:`~llmrouter.cache.normalise` — text normalisation and operator templates (pure);
* :mod:`~llmrouter.cache.keys` — the cache key of a request, scoped per tenant (pure);
* :mod:`~llmrouter.cache.policy` — whether a request may read and write the cache (pure);
* :mod:`~llmrouter.cache.entry` — a cached answer and its bytes, the same in every level (pure);
* :mod:`~llmrouter.cache.l1` — the in-process LRU bounded in bytes (pure, clock injected);
* :mod:`~llmrouter.cache.l2` — the shared Redis level, batched reads, queued writes, survives Redis down;
* :mod:`~llmrouter.cache.semantic` — the opt-in semantic index: a reworded prompt to an earlier exact key;
* :mod:`~llmrouter.cache.semantic_guard` — what two prompts must share before one's answer serves the other (pure);
* :mod:`~llmrouter.cache.embedding` — the sentence-embedding model the ``semantic`` extra ships (numpy, no torch).

Nothing is imported here, so the pure modules load without redis.
"""
