"""The response cache of one worker: its levels built from the settings, and what the agents ask of it.

Intake asks :meth:`ResponseCache.decide` whether a request may be read from
the cache, and :meth:`ResponseCache.lookup` for its answer; the answer stage
calls :meth:`ResponseCache.store` with every result a provider gave that may
be written. Levels (``cache.l1_enabled`` …) and the TTL, size and compression
of ``cache_config`` (§5.2) come from the settings; what it must know of the
providers (their kinds, the ones an override disables) comes through
:class:`~llmrouter.cache.policy.AnswerSources`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mode

from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.hot import HotKeys
from llmrouter.cache.keys import cache_key
from llmrouter.cache.l1 import L1Cache
from llmrouter.cache.l2 import RedisCache
from llmrouter.cache.l3 import L3Store
from llmrouter.cache.policy import AnswerSources, CacheDecision, decide, may_store
from llmrouter.cache.sync import CacheApplier, CacheFollower, Clears
from llmrouter.cache.tiers import CacheTiers, Hit
from llmrouter.cache.warm import CacheWarmer
from llmrouter.wire.contract import Request
from llmrouter.observability.metrics import Metrics
from llmrouter.config.settings import Settings

if TYPE_CHECKING:
    from llmrouter.cache.semantic import SemanticIndex

NO_CACHE = CacheDecision(read=False, write=False, reason="cache_disabled")


def l2_namespace(settings: Settings) -> str:
    """What Redis keys of this deployment (its consumer group) start with."""
    return f"{settings.worker.app_id}/"


class ResponseCache(mode.Service):
    def __init__(self, settings: Settings, *, datadir: Path, cache_topic: str, metrics: Metrics,
                 publish: Callable[[bytes, bytes], object], now_ms: Callable[[], int],
                 sources: AnswerSources = AnswerSources(), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sources = sources
        cache, config = settings.cache, settings.cache_config
        self.enabled = cache.enabled and config.ttl_default > 0
        self._settings = settings
        self._metrics = metrics
        self._now_ms = now_ms
        self._ttl_ms = config.ttl_default * 1000
        self.semantic: SemanticIndex | None = None  # cache.semantic_enabled: opened at start
        self._templates = cache.compiled_templates()
        self.l1 = L1Cache(settings.cache_l1_bytes()) if cache.l1_enabled else None
        self.l2 = RedisCache(settings.redis.url, timeout_s=cache.redis_timeout_s, retry_s=cache.redis_retry_s,
                             batch_max=cache.l2_batch_max, write_queue_max=cache.write_queue_max) \
            if cache.l2_enabled else None
        self.l3 = L3Store(datadir / "cache-l3", ttl_s=config.ttl_default) if cache.l3_enabled else None
        clears = Clears()
        self.tiers = CacheTiers(l1=self.l1, l2=self.l2, l3=self.l3, publish=publish, compress=config.compression,
                                now_ms=now_ms, clears=clears, l2_namespace=l2_namespace(settings))
        self.follower = CacheFollower(settings.kafka.bootstrap_servers, cache_topic,
                                      CacheApplier(self.l1, self.l3, clears), loop=self.loop, beacon=self.beacon)
        self.hot = HotKeys(cache.hot_keys, half_life_s=cache.hot_half_life_s, clock=time.monotonic)
        self.warmer = CacheWarmer(hot=self.hot, tiers=self.tiers, l3=self.l3, top_k=cache.warm_top_k,
                                  interval_s=cache.warm_interval_s, refresh_ahead_ms=int(cache.refresh_ahead_s * 1000),
                                  now_ms=now_ms, loop=self.loop, beacon=self.beacon)
        if self.enabled:
            self.add_dependency(self.follower)
            if cache.warm_top_k:
                self.add_dependency(self.warmer)

    async def on_start(self) -> None:
        if self.enabled and self.l2 is not None:
            await self.l2.start()
        cache = self._settings.cache
        if self.enabled and cache.semantic_enabled:
            from llmrouter.cache.semantic import open_index  # numpy work only when asked for

            self.semantic = await open_index(threshold=cache.semantic_threshold,
                                             max_entries=cache.semantic_max_entries,
                                             shared_namespace=cache.shared_namespace, templates=self._templates)

    async def on_stop(self) -> None:
        if self.l2 is not None:
            await self.l2.stop()
        if self.l3 is not None:
            self.l3.close()

    def decide(self, request: Request) -> CacheDecision:
        if not self.enabled:
            return NO_CACHE
        return decide(request, cache_nondeterministic=self._settings.cache.cache_nondeterministic)

    def key(self, request: Request) -> str:
        cache = self._settings.cache
        return cache_key(request, version=cache.namespace_version, templates=self._templates,
                         shared_namespace=cache.shared_namespace)

    async def lookup(self, request: Request, raw: bytes) -> Hit | None:
        """The exact entry of ``request``, else (semantic cache on) the entry of an earlier request worded
        differently that the index and its guard match; None when neither is there. ``raw``: the request
        as upstream sent it, kept with the popular keys for a refresh."""
        key = self.key(request)
        self.hot.touch(key, raw)
        hit = await self.tiers.lookup(key, self._usable())
        if self.semantic is not None:
            hit = hit or await self._semantic_lookup(request)
            if hit is not None and hit.similarity is None:
                self.semantic.add(request, key)  # an entry another worker stored: its paraphrases hit too
        if hit is None:
            self._metrics.cache_misses_total.inc()
        elif hit.answer.request_id != request.request_id:  # its own answer, delivered again: a replay, not a hit
            self._metrics.cache_hits_total.labels(hit.level if hit.similarity is None else f"{hit.level}_semantic").inc()
        return hit

    async def _semantic_lookup(self, request: Request) -> Hit | None:
        match = self.semantic.nearest(request)
        if match is None:
            return None
        usable = self._usable()
        hit = await self.tiers.lookup(match.cache_key, usable)
        if hit is None and usable is None:
            self.semantic.discard(match.cache_key)  # expired or cleared since it was indexed
            return None
        return replace(hit, similarity=match.similarity)

    def _usable(self) -> Callable[[CachedAnswer], bool] | None:
        """What a hit must pass now: not the answer of a provider an override disables (None: nothing to refuse)."""
        disabled = self._sources.disabled()
        return (lambda answer: answer.provider not in disabled) if disabled else None

    def store(self, request: Request, record: dict[str, Any]) -> bool:
        """Keep an ``ok`` result a provider gave (text, who, tokens, what it cost then) for
        ``cache_config.ttl_default``, unless it is a sampled answer the provider could not make repeatable
        (:func:`~llmrouter.cache.policy.may_store`); True if stored."""
        provider = record.get("provider") or ""
        if not may_store(request, kind=self._sources.kind_of(provider),
                         cache_nondeterministic=self._settings.cache.cache_nondeterministic):
            return False
        now = self._now_ms()
        key = self.key(request)
        self.tiers.store(key, CachedAnswer(
            text=record.get("text") or "", provider=provider, model=record.get("model") or "",
            finish_reason=record.get("finish_reason") or "", prompt_tokens=record.get("prompt_tokens", 0),
            completion_tokens=record.get("completion_tokens", 0), cost_usd=record.get("cost_usd", 0.0),
            stored_at_ms=now, expires_at_ms=now + self._ttl_ms, request_id=request.request_id))
        if self.semantic is not None:
            self.semantic.add(request, key)
        return True

    def status(self) -> dict[str, str]:
        """Per level: ``ok``, ``off`` or ``down: <reason>`` (Redis): what /health/ shows."""
        out = {"l1": "ok" if self.l1 is not None else "off", "l3": "ok" if self.l3 is not None else "off"}
        out["l2"] = "off" if self.l2 is None else self.l2.status()
        return out

    def stats(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "status": self.status(), **self.tiers.stats(),
                "l1": asdict(self.l1.stats()) if self.l1 is not None else None,
                "l2": asdict(self.l2.stats()) if self.l2 is not None else None,
                "l3": self.l3.stats() if self.l3 is not None else None,
                "semantic": asdict(self.semantic.stats()) if self.semantic is not None else None,
                "warming": self.warmer.stats(), "follower_caught_up": self.follower.caught_up}
