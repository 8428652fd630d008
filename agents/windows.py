"""Windows: the owner of each subject adds up every worker's counts and judges the alert rules (F025).

``llm.router.outcomes`` is keyed by subject, so each subject's batches reach
the one worker that owns its partition; that worker's agent hands each record
to :class:`~llmrouter.alerting.owner.WindowOwner`, which writes the
``outcome_windows`` and ``alert_state`` tables in the record's partition
(faust restores them on whoever owns it next) and sends alerts to llm.alerts.
A record with no key is a tick: judge this partition's subjects now.
"""

from __future__ import annotations

import faust

from llmrouter.alerting.owner import WindowOwner


def register(app: faust.App, outcomes: faust.TopicT, owner: WindowOwner) -> None:
    @app.agent(outcomes, name="own_windows")
    async def own_windows(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await owner.handle(event.key, event.value, event.message.partition)
