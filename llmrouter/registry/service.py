"""The provider registry service: owns every provider of a worker.

Providers come from the settings file and from the compacted ``llm.providers``
topic (key: provider name; value: a ``ProviderConfig``; a null value removes
the provider). A starting worker reads the topic to its end before it serves
(``registry.catch_up_timeout_s``), then follows it, so a registration reaches
every worker within about a second. A record that fails validation, or that
the settings do not allow (:mod:`.admission`: no settings provider replaced or
removed, keys only from ``registry.registered_key_envs`` and only to
``registry.registered_endpoints``; :mod:`.signing`: a valid HMAC when
``registry.signing_key_env`` is set), is refused and never applied: logged
once, an event ``provider_refused`` on ``llm.events``, and listed with its
reason under ``rejected`` on ``/providers/``.

An entry that cannot take traffic stays in the registry as
:class:`~llmrouter.dispatch.dispatcher.Unavailable` with its reason (no API key, model
files missing, disabled): the dispatcher skips it and says why, ``/health``
and ``/providers/`` show it. Nothing here crashes the worker.

Each change is published on ``llm.events`` by every worker that applies it
(``data.worker`` says which); records replayed at start-up are applied
without events, since they are not changes.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import mode
import structlog

from llmrouter.dispatch.bulkhead import PriorityBulkhead
from llmrouter.wire.codec import Codec
from llmrouter.dispatch.attempts import ChainEntry, Dispatched, Unavailable
from llmrouter.errors import ConfigError, ModelLoadError, RequestError
from llmrouter.localmodel.config import LocalModelConfig, parse_size
from llmrouter.observability.metrics import Metrics
from llmrouter.providers.base import LLMProvider
from llmrouter.providers.spec import PREMIUM_KINDS, ProviderSpec, spec_from_record
from llmrouter.registry.admission import AdmissionRules, check_admission, removal_problem
from llmrouter.registry.reader import CompactedTopicReader
from llmrouter.registry.signing import key_problem, signature_problem
from llmrouter.registry.stats import ProviderStats
from llmrouter.core.retry import RetryPolicy
from llmrouter.core.routing import Figures, effective_chain
from llmrouter.config.secrets import Secrets
from llmrouter.config.settings import PREMIUM, Settings

log = structlog.get_logger("llmrouter.registry")

HEALTH_CHECK_TIMEOUT_S = 5.0
Event = tuple[str, str, dict[str, str]]  # (entity, kind, data)


class ProviderRegistry(mode.Service):
    """Builds, replaces and removes providers; keeps their figures."""

    def __init__(self, settings: Settings, secrets: Secrets, metrics: Metrics, *, providers_topic: str,
                 worker_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._secrets = secrets
        self._metrics = metrics
        self._codec = Codec()
        self._reader = CompactedTopicReader(settings.kafka.bootstrap_servers, providers_topic, with_headers=True)
        self._rules = admission_rules(settings)
        self._signing_key = _signing_key(settings, secrets)
        self.worker_id = worker_id or f"{socket.gethostname()}:{settings.worker.web_port}"
        self.entries: dict[str, ChainEntry] = {}  # read by the dispatcher at every request
        self.specs: dict[str, ProviderSpec] = {}
        self.stats: dict[str, ProviderStats] = {}
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.rejected: dict[str, dict[str, Any]] = {}  # name -> reason and offset of the record refused last
        self._retiring: set[asyncio.Task] = set()
        self.live = False  # False while replaying the topic at start-up
        self.on_health: Callable[[str, bool], None] | None = None  # each health check's answer (the breakers)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def on_start(self) -> None:
        for spec in self._settings.provider_specs().values():
            await self._install(spec)
        await self._reader.start()
        caught_up = await self._reader.read_to_end(self.apply, timeout_s=self._settings.registry.catch_up_timeout_s)
        if not caught_up:
            log.warning("registry_catch_up_incomplete", timeout_s=self._settings.registry.catch_up_timeout_s)
        self.live = True
        for name, item in self.rejected.items():  # a record refused before this worker ran is still worth an event
            self._event(name, "provider_refused", {"offset": str(item["offset"]), "worker": self.worker_id,
                                                   "reason": item["reason"], "replayed": "true"})
        log.info("registry_ready", providers={name: self._state(name) for name in self.entries})

    async def on_shutdown(self) -> None:
        """After mode has cancelled this service's tasks (the topic follower among them)."""
        await self._reader.stop()
        for task in list(self._retiring):
            task.cancel()
        for entry in self.entries.values():
            if isinstance(entry.provider, LLMProvider):
                await entry.provider.stop()

    @mode.Service.task
    async def _follow_registrations(self) -> None:
        await self._reader.follow(self.apply)

    @mode.Service.task
    async def _check_health_periodically(self) -> None:
        while not self.should_stop:
            await self.check_health()
            await self.sleep(self._settings.registry.health_check_interval_s)

    # -- what the router asks ----------------------------------------------------------------------

    def chain(self) -> list[str]:
        """Provider names in fallback order: the configured chain, then providers registered at run time."""
        return effective_chain(self._settings.chain(), list(self.entries))

    def emergency(self) -> frozenset[str]:
        return frozenset(name for name, spec in self.specs.items() if spec.emergency_only)

    def premium(self) -> frozenset[str]:
        """What the ``no_premium`` flag keeps out: the premium kinds and every emergency-only provider."""
        return frozenset(name for name, spec in self.specs.items()
                         if spec.kind in PREMIUM_KINDS or spec.emergency_only)

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def observe(self, outcome: Dispatched) -> None:
        """Fold one request's attempts into the providers' figures."""
        for attempt in outcome.attempts:
            stats = self.stats.get(attempt.provider)
            if stats is None or attempt.outcome in ("skipped", "cancelled"):  # not calls that say how it does
                continue
            stats.record_call(ok=attempt.outcome == "ok", latency_ms=attempt.latency_ms)
        if outcome.ok and outcome.provider in self.stats:
            gen = outcome.generation
            self.stats[outcome.provider].record_usage(prompt_tokens=gen.prompt_tokens,
                                                      completion_tokens=gen.completion_tokens,
                                                      cost_usd=outcome.cost_usd)
            self._metrics.provider_cost_usd_total.labels(outcome.provider).inc(outcome.cost_usd)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per provider: can it take traffic, and if not, why (for /health)."""
        return {name: self._state(name) for name in self.entries}

    def describe(self) -> list[dict[str, Any]]:
        """Everything known of each provider, in chain order (for /providers/); never a key."""
        now = time.monotonic()
        out = []
        for name in self.chain():
            spec, entry = self.specs[name], self.entries[name]
            item: dict[str, Any] = {**spec.to_record(), "source": spec.source, **self._state(name)}
            item.pop("api_key_env")
            item["key_env"] = spec.key_env
            if isinstance(entry.provider, LLMProvider):
                caps = entry.provider.get_capabilities()
                item["capabilities"] = {"models": list(caps.models), "context_tokens": caps.context_tokens,
                                        "streaming": caps.streaming, "batching": caps.batching,
                                        "tags": list(caps.tags)}
                pool_stats = getattr(entry.provider, "pool_stats", None)
                if pool_stats is not None:
                    item["pool"] = pool_stats()
                batch_stats = getattr(entry.provider, "batch_stats", None)
                if batch_stats is not None:
                    item["batching"] = batch_stats()
            item["stats"] = self.stats[name].snapshot(now_s=now)
            item["in_flight"] = entry.bulkhead.in_use if entry.bulkhead else 0
            if "batching" in item:
                item["in_flight"] = item["batching"]["running"] + item["batching"]["queued"]
            out.append(item)
        return out

    def figures(self) -> dict[str, Figures]:
        """What routing weighs among equivalent providers: recent median latency, free concurrency, health."""
        out = {}
        for name, entry in self.entries.items():
            stats, bulkhead = self.stats.get(name), entry.bulkhead
            free = 1.0 if bulkhead is None else max(0, bulkhead.capacity - bulkhead.in_use - bulkhead.waiting) / \
                bulkhead.capacity
            out[name] = Figures(latency_ms=stats.latency_ms(0.5) if stats else None, free_share=free,
                                healthy=stats.healthy if stats else None)
        return out

    def bulkheads(self) -> Mapping[str, PriorityBulkhead]:
        return {name: e.bulkhead for name, e in self.entries.items() if e.bulkhead is not None}

    # -- changes -----------------------------------------------------------------------------------

    async def apply(self, key: bytes | None, value: bytes | None, offset: int,
                    headers: tuple[tuple[str, bytes | None], ...] = ()) -> None:
        """Apply one ``llm.providers`` record: register, update or (null value) remove, if the rules let it
        (:mod:`.admission`, :mod:`.signing`); a refused record changes nothing and is kept in :attr:`rejected`."""
        name = key.decode("utf-8", "replace") if key else ""
        where = {"offset": str(offset), "worker": self.worker_id}
        try:
            self._check_signature(key or b"", value, headers)
            if value is None:
                problem = removal_problem(name, self._rules)
                if problem:
                    raise ConfigError(problem)
                self.rejected.pop(name, None)
                if name in self.entries:
                    await self._remove(name)
                    self._event(name, "provider_removed", where)
                return
            spec = self._admitted(name, value)
        except (ConfigError, RequestError) as exc:
            self._refuse(name, str(exc), offset, where)
            return
        self.rejected.pop(name, None)
        kind = "provider_updated" if name in self.entries else "provider_registered"
        await self._install(spec)
        self._event(name, kind, {**where, "kind": spec.kind, "endpoint": spec.base_url,
                                 "available": str(self._state(name)["available"]).lower()})

    def rejected_records(self) -> list[dict[str, Any]]:
        """The records of llm.providers this worker refused and still holds (for /providers/), by name."""
        return [{"name": name, **item} for name, item in sorted(self.rejected.items())]

    async def check_health(self) -> None:
        """Ask every available provider whether it can take traffic; keep the answers."""
        checks = {name: e.provider for name, e in self.entries.items() if isinstance(e.provider, LLMProvider)}
        results = await asyncio.gather(*(self._check(p) for p in checks.values()))
        now = time.monotonic()
        for name, (healthy, detail, latency_ms) in zip(checks, results):
            if name in self.stats:
                self.stats[name].record_health(healthy=healthy, detail=detail, latency_ms=latency_ms, at_s=now)
                self._metrics.provider_healthy.labels(name).set(1 if healthy else 0)
            if self.on_health is not None:
                self.on_health(name, healthy)

    # -- internals ---------------------------------------------------------------------------------

    async def _check(self, provider: LLMProvider) -> tuple[bool, str, float]:
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_S):
                health = await provider.health_check()
        except TimeoutError:
            return False, f"no health answer within {HEALTH_CHECK_TIMEOUT_S:.0f}s", HEALTH_CHECK_TIMEOUT_S * 1000
        return health.healthy, health.detail, health.latency_s * 1000.0

    async def _install(self, spec: ProviderSpec) -> None:
        try:
            provider = await self._build(spec)
        except ConfigError as exc:
            provider = Unavailable(f"invalid configuration: {exc}")
        except Exception as exc:  # registry boundary: one provider that cannot start must not stop the worker
            log.exception("provider_start_failed", provider=spec.name)
            provider = Unavailable(f"could not be started: {exc!r}")
        # The local provider bounds itself (workers x batch rows running, max_queue waiting, by priority)
        # and refuses what it cannot take in time; a bulkhead in front would queue without bound exactly
        # what it is there to send on to the next provider.
        bulkhead = None if spec.kind == "local" else PriorityBulkhead(spec.max_concurrent)
        old = self.entries.get(spec.name)
        self.specs[spec.name] = spec
        self.entries[spec.name] = ChainEntry(provider, timeout_s=spec.timeout_s, bulkhead=bulkhead,
                                             retry=RetryPolicy(attempts=spec.retry_attempts))
        self.stats.setdefault(spec.name, ProviderStats(window=self._settings.registry.stats_window))
        if old is not None:
            self._retire(old, spec.timeout_s)
        log.info("provider_installed", provider=spec.name, kind=spec.kind, source=spec.source,
                 **self._state(spec.name))

    async def _remove(self, name: str) -> None:
        entry = self.entries.pop(name)
        self.specs.pop(name, None)
        self._retire(entry, entry.timeout_s or 30.0)
        log.info("provider_removed", provider=name)

    def _retire(self, entry: ChainEntry, grace_s: float) -> None:
        """Stop a replaced or removed provider once calls already in flight on it have had their time."""
        if not isinstance(entry.provider, LLMProvider):
            return

        async def stop_later(provider: LLMProvider) -> None:
            try:
                await asyncio.sleep(grace_s)
            finally:
                await provider.stop()

        task = asyncio.ensure_future(stop_later(entry.provider))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _build(self, spec: ProviderSpec) -> LLMProvider | Unavailable:
        if not spec.enabled:
            return Unavailable("disabled in its configuration")
        if spec.kind == "local":
            return await self._build_local(spec)
        key = self._secrets.get(spec.key_env)
        if spec.key_env and key is None:
            return Unavailable(f"not configured: no API key (set {spec.key_env})")
        from llmrouter.providers.cloud import build_cloud_provider

        provider = build_cloud_provider(spec, key)
        await provider.start()
        return provider

    async def _build_local(self, spec: ProviderSpec) -> LLMProvider | Unavailable:
        local = self._settings.local_config
        if not local.model_path.is_dir():
            return Unavailable(
                f"no model at {local.model_path}: export one (see README) or run `llmrouter model build-tiny DIR`")
        from llmrouter.providers.local import LocalProvider  # onnxruntime is heavy; import when used

        provider = LocalProvider(LocalModelConfig(
            model_path=local.model_path, max_memory_bytes=parse_size(local.max_memory),
            inference_threads=local.inference_threads, quantization=local.quantization,
            batch_size=local.batch_size, batching=local.batching,
            max_batch_wait_s=None if local.max_batch_wait_ms is None else local.max_batch_wait_ms / 1000.0,
            max_queue=local.max_queue, max_concurrent=spec.max_concurrent, timeout_s=spec.timeout_s,
        ))
        try:
            await provider.start()
        except ModelLoadError as exc:
            log.error("local_model_refused", reason=str(exc))
            return Unavailable(f"model not loaded: {exc}")
        return provider

    def _state(self, name: str) -> dict[str, Any]:
        provider = self.entries[name].provider
        if isinstance(provider, LLMProvider):
            return {"available": True}
        return {"available": False, "reason": provider.reason}

    def _check_signature(self, key: bytes, value: bytes | None, headers: tuple[tuple[str, bytes | None], ...]) -> None:
        if self._settings.registry.signing_key_env is None:
            return
        problem = signature_problem(self._signing_key, key, value, headers)
        if problem:
            raise ConfigError(problem)

    def _admitted(self, name: str, value: bytes) -> ProviderSpec:
        """The spec of a registration the rules let in; :class:`ConfigError` naming every reason if not."""
        if not name:
            raise ConfigError("a provider record needs its provider name as the key")
        spec = spec_from_record(self._codec.decode("ProviderConfig", value), source="topic")
        if spec.name != name:
            raise ConfigError(f"the record's name {spec.name!r} differs from its key {name!r}")
        check_admission(spec, self._rules)
        return spec

    def _refuse(self, name: str, reason: str, offset: int, where: dict[str, str]) -> None:
        """Keep a refused record's reason (shown on /providers/); log it and send its event once per record,
        however often the topic is read again."""
        label = name or "?"
        seen = self.rejected.get(label)
        self.rejected[label] = {"reason": reason, "offset": offset}
        if seen is not None and seen["offset"] == offset:
            return
        log.warning("provider_refused", provider=label, reason=reason, offset=offset)
        self._event(label, "provider_refused", {**where, "reason": reason})

    def _event(self, name: str, kind: str, data: dict[str, str]) -> None:
        if self.live:
            self.events.put_nowait((f"provider:{name}", kind, data))


def admission_rules(settings: Settings) -> AdmissionRules:
    """What the settings let a record on llm.providers do (:mod:`.admission`)."""
    registry = settings.registry
    return AdmissionRules.build(settings_providers=set(settings.provider_specs()) | {PREMIUM},
                                key_envs=registry.registered_key_envs, endpoints=registry.registered_endpoints,
                                signing_key_env=registry.signing_key_env)


def _signing_key(settings: Settings, secrets: Secrets) -> str | None:
    """The registry key when signing is on and the key is usable; None otherwise (then every record is refused)."""
    name = settings.registry.signing_key_env
    secret = secrets.get(name) if name else None
    problem = key_problem(secret)
    if problem:
        log.error("registry_key_refused", variable=name, reason=problem)
        return None
    if name and secret is None:
        log.error("registry_key_missing", variable=name, effect="every llm.providers record is refused")
    return secret
