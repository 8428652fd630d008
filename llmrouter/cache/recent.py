"""The results this worker answered from the cache lately, by request_id (pure).

A request answered from the cache at intake is in no table (that is the point of the fast path), so
when the same request is delivered again (a producer retry, a redelivery after a crash) the answer
stage cannot re-emit a stored result for it. Intake keeps the last ``capacity`` such results instead
and re-emits one byte for byte, flagged as a replay, when its request comes back to this worker (a
producer retry lands on the same partition, so on the same worker, unless a rebalance came between).
"""

from __future__ import annotations

from collections import OrderedDict


class RecentAnswers:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._results: OrderedDict[str, bytes] = OrderedDict()

    def get(self, request_id: str) -> bytes | None:
        return self._results.get(request_id)

    def put(self, request_id: str, result: bytes) -> None:
        if self.capacity < 1:
            return
        self._results[request_id] = result
        self._results.move_to_end(request_id)
        while len(self._results) > self.capacity:
            self._results.popitem(last=False)

    def __len__(self) -> int:
        return len(self._results)
