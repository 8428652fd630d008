"""The dependencies of ``/health/`` (F019): for each, a status and what it rests on.

Each dependency says ``ok``, ``degraded`` (serving, with less: L1 and L3
without Redis, a provider whose last health check failed) or ``down`` (not
used now: a provider unavailable or with its breaker open here), or ``off``
(not configured). Readiness stays in :mod:`llmrouter.views.operator`: a dependency
down is not a reason to stop taking partitions when another can serve, which
is how the router keeps one failing provider from taking the rest down with
it (the breakers route around it; ``/health/ready/`` fails only when no
provider at all is available).

:func:`provider_status` is pure; :func:`report` reads the router.
"""

from __future__ import annotations

import time
from typing import Any

from llmrouter.observability.state import breaker_states, calls_in_flight, consumer_lag
from llmrouter.router import Router


def provider_status(*, available: bool, healthy: bool | None, here: str | None,
                    group: str | None) -> tuple[str, str]:
    """(status, why) of a provider from whether it can take traffic, its last health check (None: not checked
    yet) and its breaker here and in the group (None: never called / never written)."""
    if not available:
        return "down", "unavailable"
    if here == "open":
        return "down", "breaker open in this worker: calls go to the next provider until its cool-down ends"
    if group == "open":
        return "degraded", "breaker open for the group (this worker follows it at its next record)"
    if healthy is False:
        return "degraded", "its last health check failed"
    if here == "half_open":
        return "degraded", "breaker half-open: trial calls only"
    return "ok", ""


def report(router: Router, *, redis_ok: bool) -> dict[str, Any]:
    """Every dependency of the worker: Kafka, Redis, each provider, the local model."""
    providers = _providers(router)
    local = [name for name, spec in router.providers.specs.items() if spec.kind == "local"]
    return {"kafka": _kafka(router), "redis": _redis(router, redis_ok), "providers": providers,
            "local_model": _local_model(router, local[0], providers[local[0]]) if local and local[0] in providers
            else {"status": "off", "note": "no local provider is configured"}}


def _kafka(router: Router) -> dict[str, Any]:
    app = router.app
    consumer = app.consumer
    assigned = sorted(consumer.assignment()) if consumer is not None else []
    recovered = app.tables.recovery.completed.is_set()
    status, note = "ok", ""
    if app.rebalancing:
        status, note = "degraded", "the consumer group is rebalancing: nothing is read until it ends"
    elif not recovered:
        status, note = "degraded", "tables are being recovered from their changelogs"
    return {"status": status, "note": note, "bootstrap_servers": router.settings.kafka.bootstrap_servers,
            "generation": app.consumer_generation_id, "rebalancing": bool(app.rebalancing),
            "assigned_partitions": len(assigned),
            "assignment": sorted({f"{tp.topic}[{tp.partition}]" for tp in assigned}),
            "lag": consumer_lag(router)}


def _redis(router: Router, redis_ok: bool) -> dict[str, Any]:
    l2 = router.cache.status()["l2"]
    if redis_ok and not l2.startswith("down"):
        return {"status": "ok", "url_host": _host_of(router.settings.redis.url), "l2": l2, "note": ""}
    return {"status": "degraded", "url_host": _host_of(router.settings.redis.url), "l2": l2,
            "note": "Redis unreachable: the L2 cache is off; answers come from the L1 and L3 levels only"}


def _providers(router: Router) -> dict[str, dict[str, Any]]:
    now = time.monotonic()
    breakers, in_flight, registry = breaker_states(router), calls_in_flight(router), router.providers
    out = {}
    for name, state in registry.status().items():
        stats = registry.stats.get(name)
        health = stats.snapshot(now_s=now)["health"] if stats is not None else {"healthy": None}
        breaker = breakers.get(name, {"here": None, "group": None})
        status, why = provider_status(available=state["available"], healthy=health["healthy"], **breaker)
        out[name] = {"status": status, "note": state.get("reason", why) if not state["available"] else why,
                     "kind": registry.specs[name].kind if name in registry.specs else None,
                     "available": state["available"], "health_check": health, "breaker": breaker,
                     "in_flight": in_flight.get(name, 0)}
    return out


def _local_model(router: Router, name: str, provider: dict[str, Any]) -> dict[str, Any]:
    """The local provider's entry, with its model directory and its batcher's queue."""
    entry = router.providers.entries[name].provider
    out = {**provider, "provider": name, "model_path": str(router.settings.local_config.model_path)}
    batch_stats = getattr(entry, "batch_stats", None)
    if batch_stats is not None:
        stats = batch_stats()
        out["queue"] = {key: stats[key] for key in ("queued", "running", "max_queue", "max_batch")}
    return out


def _host_of(url: str) -> str:
    """``redis://user:secret@host:6379/0`` -> ``host:6379``: never a password in a view."""
    rest = url.split("://", 1)[-1]
    return rest.rsplit("@", 1)[-1].split("/", 1)[0]
