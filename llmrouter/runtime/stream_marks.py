"""Which requests' streams have sent text already, kept in the ``streamed`` table, so that a
request delivered again (a rebalance cut its stream off, its worker died) starts its new stream
with ``restart: true`` on whichever worker serves it.

Within one delivery the dispatcher's :class:`~llmrouter.dispatch.call.Call` counts the chunks
sent over its attempts and flags the first chunk of a later attempt. A new delivery has a new
``Call`` and starts from seq 0; only this table knows that an earlier delivery sent chunks. The
mark is written, and its changelog record acknowledged, *before* a delivery's first chunk is
sent: a chunk on ``llm.stream`` always has its mark, whatever is cut off after either write. A
mark costs one table write per streamed delivery (none per chunk), and the first chunk waits
for its acknowledgement (a few milliseconds on a local broker).

Like every table write, the mark is written in the event's context (its partition is the
table partition), so the next owner of the partition finds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import faust

from llmrouter.dispatch.attempts import OnDelta
from llmrouter.runtime.writes import put_durably

Chunk = Callable[[str, int, str, bool, "str | None", bool], Awaitable[None]]  # the publisher's chunk()
MARK = b"\x01"


class StreamMarks:
    """A request's stream sender that marks the request before its first chunk and flags ``restart``
    on the first chunk of a delivery that finds a mark (an earlier delivery's text went out)."""

    def __init__(self, table: faust.Table, chunk: Chunk) -> None:
        self._table, self._chunk = table, chunk

    def sender(self, request_id: str) -> OnDelta:
        key = request_id.encode()
        earlier = self._table.get(key) is not None
        marked, first = earlier, True

        async def on_delta(seq: int, delta: str, final: bool, provider: str, restart: bool) -> None:
            nonlocal marked, first
            if not marked:
                await put_durably(self._table, key, MARK)
                marked = True
            await self._chunk(request_id, seq, delta, final, provider, restart or (first and earlier))
            first = False

        return on_delta
