"""Faust web views for operators: health, metrics and table state.

* ``/health``  — liveness and readiness, with each dependency (Kafka
  assignment, providers, Redis) and why it is not ready;
* ``/metrics`` — Prometheus text format;
* ``/providers/`` — the registry: each provider's configuration (never a
  key), availability, capabilities, health, latency, error rate and cost;
* ``/requests/{request_id}/`` — the stored result of a request, answered by
  the worker that owns the key (``table_route``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from faust.web import Request, Response, View

if TYPE_CHECKING:
    from llmrouter.app import Router

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"  # aiohttp adds the charset itself


def register(router: Router) -> None:
    app, answered = router.app, router.tables.answered
    redis_client = aioredis.from_url(router.settings.redis.url, socket_connect_timeout=0.5, socket_timeout=0.5)

    @app.page("/health/")
    class Health(View):
        async def get(self, request: Request) -> Response:
            providers = router.providers.status()
            assigned = len(app.consumer.assignment()) if app.consumer else 0
            redis_ok = await _redis_ok(redis_client)
            ready = (
                router.providers.started and not app.rebalancing and assigned > 0
                and any(p["available"] for p in providers.values())
            )
            body = {
                "live": True,
                "ready": ready,
                "kafka": {"assigned_partitions": assigned, "rebalancing": bool(app.rebalancing)},
                "redis": {"ok": redis_ok, "note": "" if redis_ok else "Redis unreachable: L2 cache off"},
                "providers": providers,
            }
            return self.json(body, status=200 if ready else 503)

    @app.page("/metrics/")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(router.metrics.render(), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.page("/providers/")
    class Providers(View):
        async def get(self, request: Request) -> Response:
            return self.json({"worker": router.providers.worker_id, "providers": router.providers.describe()})

    @app.page("/requests/{request_id}/")
    @app.table_route(table=answered, match_info="request_id")
    async def stored_result(web: View, request: Request, request_id: str) -> Response:
        stored = answered.get(request_id)
        if stored is None:
            return web.json({"request_id": request_id, "error": "no stored result"}, status=404)
        return web.json(stored)


async def _redis_ok(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (aioredis.RedisError, OSError):
        return False
