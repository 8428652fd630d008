"""The answer cache's sections: the specification's CACHE_CONFIG (§5.2) and how the cache behaves (F031-F035).

Parts of :class:`~llmrouter.config.settings.Settings`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from llmrouter.cache.normalise import Templates
from llmrouter.config.types import Section, SizeText


class CacheConfig(Section):
    """The specification's CACHE_CONFIG (§5.2)."""

    ttl_default: int = Field(3600, ge=0, description="seconds")
    max_size: SizeText = "256MB"
    eviction_policy: Literal["LRU"] = "LRU"
    compression: bool = True


class CacheTemplate(Section):
    """A volatile part of prompts, replaced by ``<name>`` before the cache key is hashed."""

    name: str
    pattern: str = Field(description="a Python regular expression, matched against normalised text")


class CacheSettings(Section):
    """How the answer cache behaves (F031-F035); TTL, size and compression are in ``cache_config``."""

    enabled: bool = True
    namespace_version: int = Field(1, ge=1, description="in every key; raise it to orphan every cached answer")
    shared_namespace: bool = Field(False, description="one cache for all tenants instead of one per user/tenant")
    cache_nondeterministic: bool = Field(False, description="cache sampled requests too (temperature > 0, no seed)")
    templates: list[CacheTemplate] = Field([], description="volatile parts stripped before hashing; none by default")
    l1_enabled: bool = True
    l2_enabled: bool = True
    l3_enabled: bool = True
    redis_timeout_s: float = Field(0.1, gt=0, le=10, description="connect and reply timeout of the Redis level")
    redis_retry_s: float = Field(1.0, gt=0, description="seconds between pings while Redis is down")
    l2_batch_max: int = Field(256, ge=1, description="most keys in one MGET, most writes in one pipeline")
    write_queue_max: int = Field(10_000, ge=1, description="Redis writes queued before the oldest is dropped")
    recent_answers: int = Field(10_000, ge=0, description="results answered from the cache kept by request_id, "
                                "so a copy of such a request delivered again is re-emitted as a replay")
    hot_keys: int = Field(1000, ge=1, description="popular keys tracked (decaying counts) for warming")
    hot_half_life_s: float = Field(600.0, gt=0, description="how fast a key's popularity fades")
    warm_top_k: int = Field(100, ge=0, description="the most popular keys warmed into L1 each pass (0: off)")
    warm_interval_s: float = Field(30.0, gt=0, description="seconds between warming passes (and at start)")
    refresh_ahead_s: float = Field(300.0, ge=0, description="a popular entry expiring within this is asked "
                                   "again, at low priority, of the provider that answered it and only if that "
                                   "call is free, before anyone misses it (0: never)")
    semantic_enabled: bool = Field(False, description="after an exact miss, serve the answer of an earlier request "
                                   "worded differently (needs the `semantic` extra); see llmrouter/cache/semantic.py")
    semantic_threshold: float = Field(0.75, gt=0, le=1, description="least cosine similarity of a semantic hit "
                                      "(a candidate must also pass the guard); measured by bench/semantic_cache.py")
    semantic_max_entries: int = Field(10_000, ge=1, description="prompts the semantic index remembers per worker, "
                                      "least recently used first out")

    @field_validator("templates")
    @classmethod
    def _templates_compile(cls, value: list[CacheTemplate]) -> list[CacheTemplate]:
        Templates((template.name, template.pattern) for template in value)
        return value

    def compiled_templates(self) -> Templates:
        """The templates, compiled (call once at start and keep the result)."""
        return Templates((template.name, template.pattern) for template in self.templates)


