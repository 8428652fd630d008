"""Builds the Faust app from the settings: the only place that creates it.

``build_router(settings)`` wires topics, tables, providers, the publisher and
the agents together and returns a :class:`Router` holding them.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from llmrouter import views
from llmrouter.agents import answer, intake
from llmrouter.codec import Codec
from llmrouter.dispatch import Dispatcher
from llmrouter.logs import configure_logging
from llmrouter.metrics import Metrics
from llmrouter.publisher import Publisher
from llmrouter.registry import ProviderRegistry
from llmrouter.secrets import Secrets
from llmrouter.settings import Settings
from llmrouter.tables import Tables, declare_tables
from llmrouter.topics import Topics, declare_topics

PROCESS_SAMPLE_INTERVAL_S = 5.0


@dataclass(frozen=True)
class Router:
    app: faust.App
    settings: Settings
    topics: Topics
    tables: Tables
    providers: ProviderRegistry
    metrics: Metrics


def build_router(settings: Settings, secrets: Secrets | None = None) -> Router:
    """The worker's app; API keys come from ``secrets`` (default: the environment and LLMROUTER_SECRETS_FILE)."""
    configure_logging(settings.worker.log_format)
    worker = settings.worker
    app = faust.App(
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
        broker_commit_interval=1.0,
        broker_session_timeout=worker.session_timeout_s,
        broker_heartbeat_interval=max(1.0, worker.session_timeout_s / 4),
        autodiscover=False,
        # Do not wait at shutdown for in-flight requests to be acked: a request
        # not answered yet is delivered again after a restart, and one that was
        # answered re-emits its stored result.
        stream_wait_empty=False,
    )
    topics = declare_topics(app, settings)
    tables = declare_tables(app, settings)
    metrics = Metrics()
    providers = ProviderRegistry(settings, secrets or Secrets.load(), metrics,
                                 providers_topic=topics.providers.get_topic_name(), loop=app.loop, beacon=app.beacon)
    app.add_dependency(providers)
    publisher = Publisher(app, topics, Codec(output=worker.result_encoding), metrics)
    dispatcher = Dispatcher(providers.entries)

    intake.register(app, topics, Codec(), publisher)
    answerer = answer.Answerer(settings=settings, tables=tables, dispatcher=dispatcher, publisher=publisher,
                               metrics=metrics, app=app, registry=providers)
    answer.register(app, topics, answerer, settings)
    router = Router(app=app, settings=settings, topics=topics, tables=tables, providers=providers, metrics=metrics)
    views.register(router)

    @app.timer(PROCESS_SAMPLE_INTERVAL_S)
    async def sample_process() -> None:
        metrics.sample_process()
        for name, bulkhead in providers.bulkheads().items():
            metrics.active_connections.labels(name).set(bulkhead.in_use)

    @app.task
    async def publish_registry_events() -> None:
        """Provider changes this worker applied, onto llm.events (the audit trail)."""
        while True:
            entity, kind, data = await providers.events.get()
            await publisher.event(entity, kind, data)

    return router
