"""The worker's state read into plain values, for the gauges, ``/health/`` and the dashboard.

Every function here only reads (dicts and counters the router keeps anyway)
and is cheap: it runs at each scrape and each health request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from faust.types import TP

from llmrouter.wire.contract import PRIORITIES
from llmrouter.router import Router

STAGES = ("requests", "accepted")  # intake reads the request topics, the answer stage the accepted ones


def calls_in_flight(router: Router) -> dict[str, int]:
    """Per provider, calls under way now: a cloud provider's bulkhead slots in use; the local model has no
    bulkhead (it bounds itself), so its requests running or queued in the batcher, as ``/providers/`` counts."""
    out = {}
    for name, entry in router.providers.entries.items():
        batch_stats = getattr(entry.provider, "batch_stats", None)
        if batch_stats is not None:
            stats = batch_stats()
            out[name] = stats["running"] + stats["queued"]
        else:
            out[name] = entry.bulkhead.in_use if entry.bulkhead is not None else 0
    return out


def breaker_states(router: Router) -> dict[str, dict[str, str | None]]:
    """Per provider known anywhere: its breaker in this worker (``here``, None before its first call) and as
    the provider's owner last wrote it for the group (``group``, None when no owner has written it yet)."""
    here, group = router.breakers.states(), router.shared.states
    names = sorted(set(router.providers.entries) | set(here) | set(group))
    return {name: {"here": here.get(name), "group": (group.get(name) or {}).get("state")} for name in names}


def topic_stages(router: Router) -> dict[str, tuple[str, str]]:
    """Each source topic's full name -> (stage, priority)."""
    topics = router.topics
    out = {topics.requests[p].get_topic_name(): ("requests", p) for p in PRIORITIES}
    out |= {topics.accepted[p].get_topic_name(): ("accepted", p) for p in PRIORITIES}
    return out


def consumer_lag(router: Router) -> dict[str, dict[str, int | None]]:
    """Stage -> priority -> messages behind the end, over the partitions this worker owns (None: owns none
    of that topic, or nothing is known of them yet)."""
    consumer = router.app.consumer
    if consumer is None:
        return lag_by_priority((), {}, {}, topic_stages(router))
    assigned = consumer.assignment()
    return lag_by_priority(assigned, {tp: consumer.highwater(tp) for tp in assigned},
                           dict(consumer._committed_offset), topic_stages(router))


def lag_by_priority(assigned: Iterable[TP], ends: Mapping[TP, int | None], committed: Mapping[TP, int | None],
                    stages: Mapping[str, tuple[str, str]]) -> dict[str, dict[str, int | None]]:
    """Pure: the lag of each (stage, priority), summed over ``assigned`` partitions of its topic whose end
    (highwater) and committed offset are both known; a partition not known yet counts for nothing."""
    out: dict[str, dict[str, Any]] = {stage: {p: None for p in PRIORITIES} for stage in STAGES}
    for tp in assigned:
        where = stages.get(tp.topic)
        end, done = ends.get(tp), committed.get(tp)
        if where is None or end is None or done is None:
            continue
        stage, priority = where
        out[stage][priority] = (out[stage][priority] or 0) + max(0, end - done)
    return out
