"""Wires the windows and the alerts into the worker's app: called once, by :func:`llmrouter.app.build_router`.

With ``windows.enabled`` off nothing is declared: no agent, no recorder, no
view, and the hot path's hooks see ``None`` (what the aggregation costs is
measured against that, bench/aggregation_cost.py).
"""

from __future__ import annotations

from typing import Any

from llmrouter.agents import windows as windows_agent
from llmrouter.views import alerts as views
from llmrouter.alerting.config import policy
from llmrouter.alerting.owner import WindowOwner
from llmrouter.alerting.recorder import OutcomeRecorder
from llmrouter.alerting.webhook import AlertWebhook
from llmrouter.runtime.publisher import Publisher
from llmrouter.runtime.faust_app import RouterApp
from llmrouter.config.settings import Settings
from llmrouter.tables import Tables
from llmrouter.topics import Topics


def wire_windows(app: RouterApp, settings: Settings, topics: Topics, tables: Tables, publisher: Publisher, *,
                 worker: str) -> OutcomeRecorder | None:
    """The recorder the answer and intake stages report outcomes to (None: windows are off)."""
    w, a = settings.windows, settings.alerts
    if not w.enabled:
        return None
    rules = policy(a, w) if a.enabled else None
    webhook = (app.add_dependency(AlertWebhook(a.webhook_url, timeout_s=a.webhook_timeout_s, worker=worker,
                                               loop=app.loop, beacon=app.beacon))
               if rules is not None and a.webhook_url else None)

    async def publish(record: dict[str, Any]) -> None:
        await publisher.alert(record)
        if webhook is not None:
            webhook.post(record)

    owner = WindowOwner(windows=tables.windows, states=tables.alert_state, policy=rules, publish=publish,
                        partitions=settings.kafka.partitions, size_s=w.size_s, retention_s=w.retention_s,
                        flush_interval_s=w.flush_interval_s, write_attempts=settings.worker.write_attempts)
    windows_agent.register(app, topics.outcomes, owner)
    recorder = app.add_dependency(OutcomeRecorder(
        app, topic=topics.outcomes.get_topic_name(), worker=worker, size_s=w.size_s,
        flush_interval_s=w.flush_interval_s, evaluate_interval_s=a.evaluate_interval_s,
        loop=app.loop, beacon=app.beacon))
    app.assignment_listeners.append(recorder.on_assignment)
    app.on_before_shutdown.connect(recorder.before_shutdown)
    views.register(app, windows=tables.windows, states=tables.alert_state, owner=owner, policy=rules,
                   size_s=w.size_s, bootstrap_servers=settings.kafka.bootstrap_servers, worker=worker)
    return recorder
