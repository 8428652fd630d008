"""Builds the Faust app from the settings: the only place that creates it.

``build_router(settings)`` wires topics, tables, providers, the publisher and
the agents together and returns a :class:`~llmrouter.router.Router` holding them.
"""

from __future__ import annotations

import time
from pathlib import Path

import faust
import structlog

from llmrouter.views import admin, dashboard, operator as views
from llmrouter.agents import answer, intake, provider_state
from llmrouter.alerting.wiring import wire_windows
from llmrouter.dispatch.breakers import LocalBreakers
from llmrouter.dispatch.budgets import Budget, Ledger
from llmrouter.cache.policy import AnswerSources, disabled_providers
from llmrouter.cache.service import ResponseCache
from llmrouter.wire.codec import Codec
from llmrouter.wire.contract import PRIORITIES
from llmrouter.core.quota import UserQuotas
from llmrouter.dispatch.dispatcher import Dispatcher
from llmrouter.dispatch.serving import QuotaGate, Serving, routing_rules
from llmrouter.dispatch.flags import FlagsService
from llmrouter.dispatch.fleet import SharedProviderState
from llmrouter.dispatch.ledger_audit import LedgerEvents
from llmrouter.dispatch.limits import Adapt, RateLimits
from llmrouter.observability.logs import configure_logging
from llmrouter.observability.finish import Finisher
from llmrouter.observability.metrics import Metrics
from llmrouter.observability.gauges import StateGauges
from llmrouter.runtime.clock import wall_ms
from llmrouter.runtime.publisher import Publisher
from llmrouter.registry import ProviderRegistry
from llmrouter.runtime.backpressure import Backpressure, sample_load
from llmrouter.router import Router
from llmrouter.runtime.faust_app import RouterApp
from llmrouter.runtime.delivery import Delivery
from llmrouter.runtime.inflight import InFlight
from llmrouter.runtime.stall_watch import StallWatch
from llmrouter.runtime.stream_marks import StreamMarks
from llmrouter.runtime.topic_directory import TopicDirectory
from llmrouter.config.secrets import Secrets
from llmrouter.providers.spec import PREMIUM_KINDS
from llmrouter.config.settings import PREMIUM, REBALANCE_TIMEOUT_S, Settings
from llmrouter.tables import Tables, declare_tables
from llmrouter.topics import FLAGS, PROVIDER_STATE_CHANGELOG, Topics, declare_topics
from llmrouter.observability.tracing import Tracing

PROCESS_SAMPLE_INTERVAL_S = 1.0  # memory and CPU gauges: CPU is the share over the last interval, as top shows it
log = structlog.get_logger("llmrouter.app")


def build_router(settings: Settings, secrets: Secrets | None = None) -> Router:
    """The worker's app; API keys come from ``secrets`` (default: the environment and LLMROUTER_SECRETS_FILE)."""
    configure_logging(settings.worker.log_format)
    secrets = secrets or Secrets.load()
    worker = settings.worker
    app = RouterApp(
        worker.app_id,
        broker=f"kafka://{settings.kafka.bootstrap_servers}",
        store="rocksdb://",
        datadir=str(worker.datadir),
        web_host=worker.web_host,
        web_bind=worker.web_host,
        web_port=worker.web_port,
        topic_partitions=settings.kafka.partitions,
        topic_replication_factor=settings.kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_request_timeout=worker.producer_timeout_s,
        producer_linger=worker.producer_linger_ms / 1000.0,
        producer_max_request_size=settings.kafka.max_record_bytes,  # the one limit: every size check reads it
        broker_commit_interval=1.0,
        broker_rebalance_timeout=REBALANCE_TIMEOUT_S,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=max(1.0, worker.session_timeout_s / 4),
        autodiscover=False,
        # faust's own wait has no bound and cannot tell a paid call from a queued
        # one: RouterApp drains the work in flight itself (llmrouter.runtime).
        stream_wait_empty=False,
    )
    app.fetch_max_wait_ms = worker.fetch_max_wait_ms
    # before the work in flight: children stop in reverse, so the spans of drained work are still exported
    tracing = app.add_dependency(Tracing.build(**settings.tracing.model_dump(), loop=app.loop, beacon=app.beacon))
    in_flight = InFlight(generation=lambda: app.consumer_generation_id, grace_s=worker.revoke_grace_s,
                         delivery_timeout_s=worker.producer_timeout_s, loop=app.loop, beacon=app.beacon)
    app.attach(in_flight)
    directory = TopicDirectory(settings.kafka.bootstrap_servers, loop=app.loop, beacon=app.beacon)
    app.add_dependency(directory)
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    metrics = Metrics()
    sources = {t.get_topic_name() for t in (*topics.requests.values(), *topics.accepted.values())}
    stall_watch = app.add_dependency(StallWatch(
        app, topics=lambda: sources, loop=app.loop, beacon=app.beacon,
        # a partition the backpressure holds is behind on purpose: waiting, not stalled
        busy=lambda: in_flight.busy_partitions() | app.consumer.partitions_in_flight() | app.consumer.held_partitions(),
        on_reseek=metrics.partitions_reseeked_total.inc))
    providers = ProviderRegistry(settings, secrets, metrics,
                                 providers_topic=topics.providers.get_topic_name(), loop=app.loop, beacon=app.beacon)
    app.add_dependency(providers)
    flags = app.add_dependency(FlagsService(  # read whole before the agents start, like the registry
        bootstrap_servers=settings.kafka.bootstrap_servers, topic=settings.topic(FLAGS),
        catch_up_timeout_s=settings.registry.catch_up_timeout_s, loop=app.loop, beacon=app.beacon))
    publisher = Publisher(app, topics, Codec(output=worker.result_encoding), metrics)
    breakers, limits, shared = _provider_guards(app, settings, topics, providers)
    # the router's clock is the wall clock: a request's deadline (deadline_ms, created_at_ms + timeout_ms) is a
    # wall time, so it is handed to the dispatcher and on to the providers as it is, one absolute time on one clock
    dispatcher = Dispatcher(providers.entries, guard=breakers, limiter=limits, tracer=tracing.tracer, clock=time.time)
    provider_state.register(app, topics.health, provider_state.ProviderStateOwner(
        tables.provider_state, settings.breaker.to_config(), publisher, write_attempts=worker.write_attempts))
    ledger = Ledger(tables.ledger, [Budget.parse(PREMIUM, settings.premium_config.usage_limit, PREMIUM_KINDS,
                                                 emergency_only=True)], spec_of=providers.specs.get,
                    partitions=settings.kafka.partitions, write_attempts=worker.write_attempts, now_ms=wall_ms,
                    events=LedgerEvents(publisher.event, write_attempts=worker.write_attempts))

    cache = app.add_dependency(ResponseCache(
        settings, datadir=Path(worker.datadir), cache_topic=topics.cache.get_topic_name(), metrics=metrics,
        publish=lambda key, value: topics.cache.send_soon(key=key, value=value), now_ms=wall_ms,
        sources=AnswerSources(kind_of=lambda name: getattr(providers.specs.get(name), "kind", None),
                              disabled=lambda: disabled_providers(flags.current)),
        loop=app.loop, beacon=app.beacon))

    outcomes = wire_windows(app, settings, topics, tables, publisher, worker=providers.worker_id)  # F025
    finish = Finisher(metrics, outcomes)  # one place counts every result sent (docs/observability.md)
    inbound = Codec(on_legacy_header=lambda schema: metrics.avro_legacy_headers_total.labels(schema).inc())
    intake.register(app, topics, in_flight, intake.Intake(settings=settings, topics=topics, codec=inbound,
                                                          publisher=publisher, directory=directory, cache=cache,
                                                          finish=finish, tracing=tracing), settings)
    quotas = _user_quotas(app, settings, topics)
    answerer = _answer_stage(settings, topics, tables, inbound, dispatcher=dispatcher, providers=providers,
                             flags=flags, finish=finish, publisher=publisher, cache=cache, ledger=ledger,
                             quotas=quotas, metrics=metrics, tracing=tracing)
    lanes = answer.register(app, topics, in_flight, answerer, settings)
    backpressure = app.add_dependency(Backpressure(
        settings.backpressure, consumer=lambda: app.consumer, lanes=lanes,
        topics={p: topics.accepted[p].get_topic_name() for p in PRIORITIES},
        sample=lambda: sample_load(providers, limits), publish=publisher.event, metrics=metrics,
        worker=providers.worker_id, loop=app.loop, beacon=app.beacon))
    app.assignment_listeners.append(backpressure.on_assignment)
    cache.warmer.refresh = answerer.refresh_cached
    inert = settings.inert()
    if inert:
        log.warning("settings_not_enforced_yet", count=len(inert), settings=", ".join(inert),
                    note="read and validated, but no stage acts on them yet")
    router = Router(app=app, settings=settings, topics=topics, tables=tables, providers=providers, metrics=metrics,
                    in_flight=in_flight, stall_watch=stall_watch, cache=cache, breakers=breakers, limits=limits,
                    shared=shared, ledger=ledger, flags=flags, backpressure=backpressure, quotas=quotas,
                    admin_key=secrets.get(admin.ADMIN_KEY_ENV))
    views.register(router)
    metrics.on_render(StateGauges(router).refresh)  # breakers, buckets, lag, calls in flight: read at each scrape
    dashboard.register(router)
    admin.register(app, flags, publisher, topic=settings.topic(FLAGS), admin_key=router.admin_key,
                   worker_id=providers.worker_id)

    @app.timer(PROCESS_SAMPLE_INTERVAL_S)
    async def sample_process() -> None:
        metrics.sample_process()

    @app.task
    async def publish_registry_events() -> None:
        """Provider changes this worker applied, onto llm.events (the audit trail)."""
        while True:
            entity, kind, data = await providers.events.get()
            await publisher.event(entity, kind, data)

    return router


def _answer_stage(settings: Settings, topics: Topics, tables: Tables, codec: Codec, *, dispatcher: Dispatcher,
                  providers: ProviderRegistry, flags: FlagsService, finish: Finisher, publisher: Publisher,
                  cache: ResponseCache, ledger: Ledger, quotas: UserQuotas | None, metrics: Metrics,
                  tracing: Tracing) -> answer.Answer:
    """The answer stage: its decisions (Answer), the serving step (route, dispatch, record) and the delivery."""
    serving = Serving(dispatcher=dispatcher, providers=providers, flags=flags, finish=finish,
                      stream=StreamMarks(tables.streamed, publisher.chunk).sender, rules=routing_rules(settings.routing), default_timeout_s=settings.limits.default_timeout_s)
    delivery = Delivery(answered=tables.answered, publisher=publisher, cache=cache, finish=finish, codec=codec,
                        write_attempts=settings.worker.write_attempts,
                        window_s=settings.tables.idempotency_window_s, now_ms=wall_ms)
    quota = QuotaGate(quotas, counted=lambda priority: metrics.quota_exceeded_total.labels(priority).inc(),
                      clock=time.monotonic)
    return answer.Answer(codec=codec, priority_of={topics.accepted[p].get_topic_name(): p for p in PRIORITIES},
                         serving=serving, delivery=delivery, ledger=ledger, quota=quota, tracing=tracing,
                         now_ms=wall_ms)


def _user_quotas(app: RouterApp, settings: Settings, topics: Topics) -> UserQuotas | None:
    """Each user's quota in this worker (None: quotas are off): a share of it per accepted partition owned, set
    again at every assignment, as the rate limits' shares are (llmrouter/core/quota.py)."""
    config = settings.quotas.to_config()
    if not config.enabled:
        return None
    quotas = UserQuotas(config)
    accepted = {topic.get_topic_name() for topic in topics.accepted.values()}
    partitions = settings.kafka.partitions
    app.assignment_listeners.append(lambda owned: quotas.set_share(
        len({tp.partition for tp in owned if tp.topic in accepted}), partitions, time.monotonic()))
    return quotas


def _provider_guards(app: RouterApp, settings: Settings, topics: Topics,
                     providers: ProviderRegistry) -> tuple[LocalBreakers, RateLimits, SharedProviderState]:
    """Each provider's breaker and rate limit in this worker, and the service that shares them with the group."""
    breakers = LocalBreakers(settings.breaker.to_config(), on_transition=lambda name, moved: log.info(
        "breaker_moved_here", provider=name, before=moved.before.value, after=moved.after.value, reason=moved.reason))
    rates = settings.rate_limits

    def limit_of(name: str) -> str | None:
        spec = providers.specs.get(name)
        return spec.rate_limit if spec is not None and spec.kind != "local" else None

    limits = RateLimits(limit_of, adapt=Adapt(decrease=rates.decrease, floor_share=rates.floor_share,
                                              recover_s=rates.recover_s),
                        enabled=rates.enabled,
                        on_throttled=lambda name, wait_s: breakers.reports.throttled(name, time.time() + wait_s))
    # a failed health check counts against the provider like a failed call; a good one proves nothing of
    # the generation path, so it neither closes nor opens anything
    providers.on_health = lambda name, healthy: None if healthy else breakers.record(name, False, probe=False)
    accepted = {topic.get_topic_name() for topic in topics.accepted.values()}
    partitions = settings.kafka.partitions
    app.assignment_listeners.append(
        lambda owned: limits.set_share(len({tp.partition for tp in owned if tp.topic in accepted}), partitions))
    shared = app.add_dependency(SharedProviderState(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        changelog=PROVIDER_STATE_CHANGELOG.format(app_id=settings.worker.app_id), breakers=breakers, limits=limits,
        send=lambda key, value: topics.health.send_soon(key=key, value=value), worker=providers.worker_id,
        report_interval_s=settings.registry.report_interval_s,
        catch_up_timeout_s=settings.registry.catch_up_timeout_s, loop=app.loop, beacon=app.beacon))
    return breakers, limits, shared
