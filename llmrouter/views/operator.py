"""Faust web views for operators: health, metrics and table state.

* ``/health/`` — the whole report: liveness, readiness and why not, and
  ``dependencies``, each with a status (Kafka: assignment and lag; Redis; each
  provider: health check and breaker; the local model: its queue;
  :mod:`llmrouter.observability.dependencies`); 200 whenever the worker
  answers at all;
* ``/health/live/`` — liveness: 200 while the worker's event loop answers (a
  live worker that owns no partition is live);
* ``/health/ready/`` — readiness: 200 once the worker has started, recovered
  its tables, is not in a rebalance and has a provider to serve with; 503
  otherwise. Owning a partition is not required: an idle spare worker is
  ready to take partitions over;
* ``/metrics/`` and ``/metrics`` — Prometheus text format (:mod:`llmrouter.observability.metrics`);
* ``/dashboard/`` — live charts (:mod:`llmrouter.views.dashboard`, which declares its views);
* ``/providers/`` — the registry: each provider's configuration (never a
  key), availability, capabilities, health, latency, error rate and cost;
  ``rejected``: the llm.providers records refused, each with its reason;
* ``/work/`` — this worker's jobs under way (partition, offset, phase) and
  each partition its agents read (committed offset, end, last read, busy,
  queued, looks stalled);
* ``/cache/`` — the response cache of this worker: lookups, hits per level,
  misses, stores, and each level's own figures (L2: Redis up or down);
* ``/breakers/`` — each provider's circuit breaker in this worker (``here``)
  and as the group's owner of the provider last wrote it (``group``);
* ``/limits/`` — this worker's share of each provider's rate limit: share,
  rate, tokens, how long a 429 holds it off;
* ``/backpressure/`` — the priorities paused for more urgent requests (and for
  how long), the partitions held, the requests waiting for a provider slot by
  priority, the settings and the last changes (``/health/`` has the paused ones);
* ``/ledger/`` — the cost ledger's accounts in the partitions this worker
  owns, their sums per account over those partitions and cost hints;
  ``/ledger/?all=1``: every partition of the group, read from the changelog
  (any worker answers for every account). Only with the admin key (it names
  users and what they spent);
* ``/admin/flags/`` — the degradation flags and overrides (:mod:`llmrouter.views.admin`:
  anyone may read them, a change needs the admin key);
* ``/requests/{request_id}/`` — the stored result of a request, answered by
  the worker that owns the key (``table_route``). Only with the admin key (it
  is the whole answer).

The two views that show what users asked and spent need the admin key in the
``X-Admin-Key`` header, as a change on ``/admin/flags/`` does (401 without it,
403 on a worker with none configured: :func:`llmrouter.views.admin.key_refusal`).
Every other view shows the router's own state and is open to whoever reaches
the port (bound to loopback by default). Roles come with the gateway.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from faust.web import Request, Response, View

from llmrouter.wire.codec import Codec
from llmrouter.dispatch.budgets import read_all_accounts
from llmrouter.core.ledger_totals import cost_hints, ledger_totals
from llmrouter.core.stored import StoredAnswer
from llmrouter.observability import dependencies
from llmrouter.topics import LEDGER_CHANGELOG
from llmrouter.router import Router
from llmrouter.views.admin import KEY_HEADER, key_refusal

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4"  # aiohttp adds the charset itself

log = structlog.get_logger("llmrouter.views")


def register(router: Router) -> None:
    app, answered = router.app, router.tables.answered

    def _refused(web: View, request: Request) -> Response | None:
        """The 401/403 answer when ``request`` lacks this worker's admin key (checked before a request is routed
        to the key's owner, and again there: faust forwards the headers)."""
        refusal = key_refusal(router.admin_key, request.headers.get(KEY_HEADER))
        if refusal is None:
            return None
        status, reason = refusal
        log.warning("view_refused", path=request.path, status=status)
        return web.json({"error": reason}, status=status)

    def _admin_only(view: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
        @functools.wraps(view)
        async def guarded(web: View, request: Request, *args: Any, **kwargs: Any) -> Response:
            refused = _refused(web, request)
            return refused if refused is not None else await view(web, request, *args, **kwargs)
        return guarded
    redis_client = aioredis.from_url(router.settings.redis.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    codec = Codec()

    def readiness() -> tuple[bool, list[str]]:
        providers = router.providers.status()
        waiting = []
        if not router.providers.started:
            waiting.append("the provider registry has not read llm.providers yet")
        if not router.flags.started:
            waiting.append("the degradation flags have not been read from llm.router.flags yet")
        if not app.tables.recovery.completed.is_set():
            waiting.append("tables are still being recovered from their changelogs")
        if app.rebalancing:
            waiting.append("the consumer group is rebalancing")
        if not any(p["available"] for p in providers.values()):
            waiting.append("no provider is available")
        return not waiting, waiting

    @app.page("/health/")
    class Health(View):
        async def get(self, request: Request) -> Response:
            ready, waiting = readiness()
            redis_ok = await _redis_ok(redis_client)
            cache = router.cache.status()
            degraded = [] if redis_ok else ["redis: unreachable"]
            if cache["l2"].startswith("down"):  # the cache's own view: it takes Redis back at its next probe
                degraded.append(f"cache: L2 (Redis) {cache['l2']}; answers come from the L1 and L3 levels only")
            degraded += router.flags.current.notes()  # set by an operator: llmrouter flags / override, /admin/flags/
            body = {
                "live": True,
                "ready": ready,
                "not_ready_because": waiting,
                "kafka": {"assigned_partitions": len(app.consumer.assignment()) if app.consumer else 0,
                          "rebalancing": bool(app.rebalancing), "generation": app.consumer_generation_id},
                "work_in_flight": app.in_flight.jobs if app.in_flight is not None else 0,
                "redis": {"ok": redis_ok, "note": "" if redis_ok else "Redis unreachable: L2 cache off"},
                "cache": cache,
                "degraded": degraded,
                "providers": router.providers.status(),
                "paused_priorities": [p["priority"] for p in router.backpressure.describe()["paused"]]
                if router.backpressure is not None else [],
                "dependencies": dependencies.report(router, redis_ok=redis_ok),
            }
            return self.json(body)

    @app.page("/health/live/")
    class Live(View):
        async def get(self, request: Request) -> Response:
            return self.json({"live": True})

    @app.page("/health/ready/")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready, waiting = readiness()
            return self.json({"ready": ready, "not_ready_because": waiting}, status=200 if ready else 503)

    @app.page("/metrics/")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(router.metrics.render(), content_type=PROMETHEUS_CONTENT_TYPE)

    @app.page("/metrics")  # Prometheus' default metrics_path, without the slash the other views have
    class PrometheusDefaultPath(MetricsView):
        pass

    @app.page("/work/")
    class Work(View):
        async def get(self, request: Request) -> Response:
            partitions = router.stall_watch.describe() if app.tables.recovery.completed.is_set() else []
            return self.json({"jobs": router.in_flight.describe(), "partitions": partitions})

    @app.page("/cache/")
    class Cache(View):
        async def get(self, request: Request) -> Response:
            return self.json(router.cache.stats())

    @app.page("/providers/")
    class Providers(View):
        async def get(self, request: Request) -> Response:
            return self.json({"worker": router.providers.worker_id, "providers": router.providers.describe(),
                              "rejected": router.providers.rejected_records()})

    @app.page("/breakers/")
    class Breakers(View):
        async def get(self, request: Request) -> Response:
            return self.json({"worker": router.providers.worker_id, "here": router.breakers.states(),
                              "group": router.shared.states})

    @app.page("/limits/")
    class Limits(View):
        async def get(self, request: Request) -> Response:
            return self.json({"worker": router.providers.worker_id, "enabled": router.settings.rate_limits.enabled,
                              "share": router.limits.share, "providers": router.limits.snapshot()})

    @app.page("/backpressure/")
    class Backpressure(View):
        async def get(self, request: Request) -> Response:
            state = router.backpressure.describe() if router.backpressure is not None else {"enabled": False}
            return self.json({"worker": router.providers.worker_id, **state})

    @app.page("/ledger/")
    class Ledger(View):
        async def get(self, request: Request) -> Response:
            """The partitions this worker owns; ``?all=1``: every partition, read from the changelog."""
            if (refused := _refused(self, request)) is not None:
                return refused
            if request.query.get("all") in ("1", "true"):
                accounts = await read_all_accounts(router.settings.kafka.bootstrap_servers,
                                                   LEDGER_CHANGELOG.format(app_id=router.settings.worker.app_id))
            else:
                accounts = router.ledger.accounts()
            totals = ledger_totals(accounts)
            return self.json({"worker": router.providers.worker_id, "every_partition": "all" in request.query,
                              "accounts": accounts, "totals": totals, "hints": cost_hints(totals)})

    @app.page("/requests/{request_id}/")
    @_admin_only
    @app.table_route(table=answered, match_info="request_id")
    async def stored_result(web: View, request: Request, request_id: str) -> Response:
        raw = answered.get(request_id.encode())
        if raw is None:
            return web.json({"request_id": request_id, "error": "no stored result"}, status=404)
        stored = StoredAnswer.from_bytes(raw)
        return web.json({**codec.decode("LLMResult", stored.result), "stored_at_ms": stored.stored_at_ms,
                         "delivered": stored.delivered})


async def _redis_ok(client: aioredis.Redis) -> bool:
    try:
        return bool(await client.ping())
    except (aioredis.RedisError, OSError):
        return False
