"""The one wall clock in milliseconds (llmrouter/runtime/clock.py) and the old name that still leads to it."""

from __future__ import annotations

import time

from llmrouter.runtime.clock import wall_ms


def test_wall_ms_is_now_in_whole_milliseconds_since_the_epoch():
    """An int between two readings of time.time(), in ms."""
    before = int(time.time() * 1000)
    now = wall_ms()
    assert isinstance(now, int) and before <= now <= int(time.time() * 1000)
