"""A watchdog for partitions whose messages faust dropped before they reached an agent.

faust hands fetched messages to an agent through a queue that it empties
whenever flow resumes, and relies on a seek back to the committed offset to
fetch them again. Around a rebalance that seek can race the fetcher: messages
of a batch fetched before the seek are queued (then emptied away) and mark the
partition as read up to the batch's end, so the same messages fetched again
after the seek are dropped as already read. Nothing is committed past them
(the commit waits for their acks), but nothing delivers them either: the
partition stalls until the next rebalance. Seen on the worker that takes over
after a SIGKILL (``tests/integration/test_crash.py``), one start in six.

The watch looks every ``interval_s`` at each partition the agents read: when
the group's committed offset is behind the partition's end, nothing of it is
in flight, its queue is empty and nothing new was delivered since the last
look, for ``confirm`` looks in a row, it stops the fetcher, seeks that
partition alone back to its committed offset (faust's own recovery move, for
the one partition: the others keep their positions) and resumes. Work already
done there is then delivered again and re-emitted from the ``answered`` table,
never paid for twice. The partition's end is its last stable offset: the
consumer reads committed transactions only, and nothing past an open one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import faust
import structlog
from faust.types import TP
from mode import Service

from llmrouter.core.stall import stalled_looks

log = structlog.get_logger("llmrouter.stall")


class StallWatch(Service):
    def __init__(self, app: faust.App, *, topics: Callable[[], Iterable[str]], busy: Callable[[], set[TP]],
                 on_reseek: Callable[[int], None] = lambda n: None, interval_s: float = 2.0, confirm: int = 2,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._app = app
        self._topics = topics
        self._busy = busy
        self._on_reseek = on_reseek
        self._interval_s = interval_s
        self._confirm = confirm
        self._seen: dict[TP, tuple[int | None, int]] = {}  # tp -> (read offset last look, looks stalled)

    @Service.task
    async def _watch(self) -> None:
        async for _ in self.itertimer(self._interval_s, name="stall_watch"):
            stalled = self.stalled()
            if stalled:
                await self._reseek(stalled)

    def stalled(self) -> list[TP]:
        """The partitions stalled for ``confirm`` looks in a row (one more look counted)."""
        app = self._app
        if app.rebalancing or not app.tables.recovery.completed.is_set():
            self._seen.clear()
            return []
        consumer = app.consumer
        watched = set(self._topics())
        busy = self._busy()
        out = []
        for tp in consumer.assignment():
            if tp.topic not in watched:
                continue
            read = consumer._read_offset.get(tp)
            read_before, looks_before = self._seen.get(tp, (None, 0))
            looks = stalled_looks(committed=consumer._committed_offset.get(tp), end=consumer.stable_end(tp),
                                  busy=tp in busy, queued=self._queued(tp), read=read,
                                  read_before=read_before, looks_before=looks_before)
            self._seen[tp] = (read, looks)
            if looks >= self._confirm:
                out.append(tp)
        return out

    def describe(self) -> list[dict[str, object]]:
        """Each watched partition as the watch sees it (for the /work/ view)."""
        consumer = self._app.consumer
        watched = set(self._topics())
        busy = self._busy()
        active = consumer._active_partitions or set()
        return [{"topic": tp.topic, "partition": tp.partition, "committed": consumer._committed_offset.get(tp),
                 "end": consumer.stable_end(tp), "read": consumer._read_offset.get(tp), "busy": tp in busy,
                 "queued": self._queued(tp), "stalled_looks": self._seen.get(tp, (None, 0))[1],
                 "fetching": tp in active, **_fetch_state(consumer, tp)}
                for tp in sorted(consumer.assignment()) if tp.topic in watched]

    def _queued(self, tp: TP) -> bool:
        return any(channel.queue.qsize() for channel in self._app.topics._tp_index.get(tp, ()))

    async def _reseek(self, stalled: list[TP]) -> None:
        consumer = self._app.consumer
        log.warning("partitions_stalled", partitions=[f"{tp.topic}[{tp.partition}]" for tp in stalled],
                    action="seek them back to their committed offsets")
        consumer.stop_flow()
        try:
            await consumer.wait_for_stopped_flow()
            await consumer.seek_to_committed_only(stalled)
        finally:
            consumer.resume_flow()
        self._seen.clear()
        self._on_reseek(len(stalled))


def _fetch_state(consumer: object, tp: TP) -> dict[str, object]:
    """Where aiokafka's fetcher stands on ``tp`` (read across threads: a diagnostic, not a decision)."""
    try:
        state = consumer._thread._consumer._subscription.subscription.assignment.state_value(tp)
        return {"position": state._position, "fetch_paused": state.paused, "awaiting_reset": state.awaiting_reset}
    except AttributeError:
        return {}
