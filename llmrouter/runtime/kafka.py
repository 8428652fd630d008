"""faust's Kafka transport with two fixes the router's correctness stands on.

* :class:`SafeCommitConsumer` commits a partition only up to the first message
  still in flight (:func:`llmrouter.core.offsets.commit_point`), whatever
  order concurrent handlers finish in; faust 0.15.3 commits past such a
  message (faust issue #606). It also ignores acks of messages delivered in an
  earlier consumer generation: faust acks the events it skips after a
  rebalance, and those will be delivered again, so their offsets are not done.
* :class:`IdempotentProducer` turns on Kafka's idempotent producer (acks=all),
  which faust enables only in its experimental exactly-once mode, so a send
  retried by the client never writes a record twice.

These override private methods of faust-streaming 0.15.3 (pinned in
pyproject.toml); ``tests/unit/test_safe_commit.py`` drives the real faust
consumer class, so an upgrade that changes them fails there first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from llmrouter.core.offsets import commit_point


class SafeCommitConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, committing only what is done."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # faust keeps the messages delivered and not acked in a WeakSet, so one
        # dropped unacked (its work cancelled in a drain, or fenced) vanishes from
        # it as soon as nothing refers to it, and the commit point would step over
        # it. Held strongly here until acked, or until a rebalance makes it stale.
        self._unacked_messages = set()

    def ack(self, message: Message) -> bool:
        if message.generation_id != self.app.consumer_generation_id:
            # Delivered before the last rebalance: it will be delivered again (and
            # acked then); counting it now could commit past its new delivery.
            message.acked = True
            self._unacked_messages.discard(message)
            return False
        return super().ack(message)

    def _filter_committable_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        in_flight = self._in_flight_min()
        points = {}
        for tp in tps:
            point = self._commit_point(tp, in_flight.get(tp))
            if point is not None and self._should_commit(tp, point):
                points[tp] = point
        return points

    def _new_offset(self, tp: TP) -> int | None:
        """faust's hook, kept so no caller of it can take the old rule."""
        return self._commit_point(tp, self._in_flight_min().get(tp))

    def _commit_point(self, tp: TP, in_flight_min: int | None) -> int | None:
        acked = self._acked[tp]
        acked.sort()
        point = commit_point(acked, in_flight_min=in_flight_min, committed=self._committed_offset[tp])
        if point is not None:
            done = [offset for offset in acked if offset < point]
            del acked[:len(done)]
            self._acked_index[tp].difference_update(done)
        return point

    def partitions_in_flight(self) -> set[TP]:
        """The partitions with a message delivered in this generation and not acked yet."""
        return set(self._in_flight_min())

    def _in_flight_min(self) -> Mapping[TP, int]:
        """The smallest offset per partition delivered in this generation and not acked yet
        (messages of earlier generations are let go: they are delivered again)."""
        generation = self.app.consumer_generation_id
        lowest: dict[TP, int] = {}
        for message in list(self._unacked_messages):
            if message.acked or message.generation_id != generation:
                self._unacked_messages.discard(message)
                continue
            if message.tp not in lowest or message.offset < lowest[message.tp]:
                lowest[message.tp] = message.offset
        return lowest


class IdempotentProducer(faust_aiokafka.Producer):
    """faust's aiokafka producer with Kafka's idempotence on (and so acks=all)."""

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class RouterTransport(faust_aiokafka.Transport):
    Consumer = SafeCommitConsumer
    Producer = IdempotentProducer
