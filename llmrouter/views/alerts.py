"""``/windows/`` and ``/alerts/`` on every worker.

* ``/windows/`` -- each subject's latest tumbling windows (count, errors,
  p50/p95/p99 from the buckets, cache hit rate, tokens, cost), each alert
  span as the rules read it now (the hopping window: a merge of the tumbling
  ones), and the sum of every window retained. ``?subject=provider:x`` for
  one subject, ``?limit=N`` windows per subject (10).
* ``/alerts/`` -- every (rule, subject) pair with a state: firing first, then
  pending, then ok (value and threshold as last judged).

Both show the partitions this worker owns: the windows live with the owner
of each subject (tables/__init__.py), so two workers show two halves.
``?all=1`` reads the table's changelog whole instead, as ``/ledger/?all=1``
does: any worker answers for the whole group, the figures as last written
(a window at its last batch, an alert state at its last move).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from llmrouter.alerting.owner import WindowOwner
from llmrouter.core.alerts import AlertState, Policy, Rule, describe_states
from llmrouter.core.windows import Aggregate, Row, merge_all, parse_row_key, span_starts
from llmrouter.registry.reader import read_whole
from llmrouter.runtime.clock import wall_ms

DEFAULT_LIMIT = 10


def register(app: faust.App, *, windows: faust.Table, states: faust.Table, owner: WindowOwner, policy: Policy | None,
             size_s: float, bootstrap_servers: str, worker: str) -> None:
    @app.page("/windows/")
    class Windows(View):
        async def get(self, request: Request) -> Response:
            every = _every(request)
            rows = (await read_whole(bootstrap_servers, windows.changelog_topic.get_topic_name()) if every
                    else dict(windows.data.items()))
            limit = int(request.query.get("limit", DEFAULT_LIMIT))
            body = windows_view(rows, policy, size_s=size_s, now_ms=wall_ms(), limit=limit,
                                subject=request.query.get("subject"))
            return self.json({"worker": worker, "every_partition": every, "window_s": size_s, **body})

    @app.page("/alerts/")
    class Alerts(View):
        async def get(self, request: Request) -> Response:
            every = _every(request)
            if every:
                raw = await read_whole(bootstrap_servers, states.changelog_topic.get_topic_name())
            else:  # the partitions owned now, as last judged here (the table has the figures as last written)
                raw = {key: as_last_judged(value, owner.latest.get(key)) for key, value in states.data.items()}
            described = describe_states(raw)
            return self.json({"worker": worker, "every_partition": every, "enabled": policy is not None,
                              "firing": [s for s in described if s["status"] == "firing"], "states": described})


def as_last_judged(stored: bytes, judged: AlertState | None) -> bytes:
    """The state of an alert as the view shows it: the one last judged here, unless the table's is newer.
    A worker that owned the subject once (and judged it then) and owns it again after a takeover must show
    what the owner in between wrote (firing, say), not its own judgement from before."""
    if judged is None:
        return stored
    try:
        written = AlertState.from_bytes(stored)
    except ValueError:
        return judged.to_bytes()
    return judged.to_bytes() if judged.judged_ms >= written.judged_ms else stored


def _every(request: Request) -> bool:
    return request.query.get("all") in ("1", "true")


def windows_view(rows: dict[bytes, bytes], policy: Policy | None, *, size_s: float, now_ms: int, limit: int,
                 subject: str | None = None) -> dict[str, Any]:
    """Rows (table key -> value) as the operator reads them, by subject."""
    by_subject: dict[str, dict[int, Aggregate]] = {}
    for key, raw in rows.items():
        try:
            name, start = parse_row_key(key)
            if subject is None or name == subject:
                by_subject.setdefault(name, {})[start] = Row.from_bytes(raw).aggregate
        except ValueError:
            continue
    size_ms = round(size_s * 1000)
    out = {}
    for name, windows in sorted(by_subject.items()):
        spans = {}
        for rule in policy.rules_for(name) if policy else []:
            if isinstance(rule, Rule):
                starts = span_starts(now_ms, size_ms, round(rule.window_s * 1000))
                spans[rule.name] = {"window_s": len(starts) * size_s,
                                    **merge_all([windows[s] for s in starts if s in windows]).summary()}
        latest = sorted(windows, reverse=True)[:limit]
        out[name] = {"windows": [{"start_ms": start, **windows[start].summary()} for start in latest],
                     "spans": spans, "retained": {"windows": len(windows),
                                                  **merge_all(list(windows.values())).summary()}}
    return {"subjects": out}
