"""The failover benchmark's ``recovery`` phase: Hugging Face goes down under a steady load, then comes back.

Open loop: request *i* is due at *i* / ``rate`` whatever came back, and that due time is its
``created_at_ms`` (a send that runs late counts in its latency). The timeline follows the breaker's
settings, so that each stage happens once:

* healthy for ``LEAD_S``;
* down (every call a 500) for two cool-downs: the breaker opens, its first half-open probes fail and the
  cool-down doubles; the provider is back before the doubled cool-down is over;
* healthy again, until the probes have closed the breaker and the ramp after it is over, plus ``TAIL_S``.

What the breaker did is read from the results: the first Hugging Face attempt of each request is what the
breaker answered when the request was dispatched: a call, or a skip with ``circuit_open`` whose reason says
open, half-open or ramping back. A call while the breaker was last seen open is a half-open probe. The
worker's own breaker events on ``llm.events`` are read too, as a check. Both simulators' counters are sampled
every ``SAMPLE_EVERY_S`` for the calls each provider saw per second.

Used by ``failover.py`` (``--phases recovery``); nothing here starts a worker or a simulator.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from llmrouter.config.settings import Settings
from llmrouter.topics import EVENTS

HF, TOGETHER = "huggingface", "together"
LEAD_S = 4.0  # healthy before the outage
BASELINE_FROM_S = 1.0  # the healthy baseline leaves out the first second (connections still opening)
TAIL_S = 3.0  # after the ramp should be over
SAMPLE_EVERY_S = 0.2
Snapshot = tuple[float, dict[str, dict[str, Any]]]  # (wall-clock s, each simulator's stats())


@dataclass(frozen=True)
class Schedule:
    """When Hugging Face goes down and comes back, in seconds from the first request, and the load."""

    rate: float
    outage_start_s: float
    outage_end_s: float
    duration_s: float

    @classmethod
    def for_breaker(cls, rate: float, cooldown_s: float, ramp_s: float) -> Schedule:
        """Down for two cool-downs: the first probes (one cool-down after opening) fail, and the provider is
        back before the doubled cool-down ends; then time for the probes and the whole ramp."""
        return cls(rate, LEAD_S, LEAD_S + 2 * cooldown_s, LEAD_S + 3 * cooldown_s + ramp_s + TAIL_S)


@dataclass(frozen=True)
class Run:
    """What the phase collected: the requests' due times and results, the simulators' samples, the events."""

    t0: float  # wall-clock s of the first request's due time
    schedule: Schedule
    due_s: list[float]
    records: list[dict[str, Any]]
    samples: list[Snapshot]
    switched: dict[str, Snapshot]  # "down" and "back": when the profile changed, and the counters then
    events: list[dict[str, Any]]


@dataclass(frozen=True)
class Request:
    """One request as the analysis needs it; times in seconds from t0."""

    due_s: float
    dispatched_s: float
    done_s: float
    latency_ms: float
    ok: bool
    provider: str | None
    calls: int  # provider calls (skipped chain entries not counted)
    hf_calls: int
    hf_failed: int
    breaker: str  # what Hugging Face's breaker said at dispatch: called, open, half_open, ramping (none: not asked)


# ---- running ----

async def run(settings: Settings, schedule: Schedule, *, switch_hf: Callable[[dict[str, Any]], Snapshot],
              snapshot: Callable[[], Snapshot], down: dict[str, Any], healthy: dict[str, Any]) -> Run:
    """Send the load, take Hugging Face down and back on time, sample the simulators; wait for every result."""
    samples = [snapshot()]
    stop = threading.Event()
    sampler = threading.Thread(target=_sample, args=(snapshot, samples, stop), name="sampler", daemon=True)
    async with RouterClient(settings) as client:
        t0 = time.time() + 0.5
        sampler.start()
        try:
            switches = asyncio.create_task(_switch_on_time(t0, schedule, switch_hf, down, healthy))
            sent = await _send_open_loop(client, t0, schedule)
            switched = await switches
            print(f"recovery: {len(sent)} requests sent; waiting for their results", flush=True)
            collected = await client.wait_for([rid for _, rid in sent], timeout_s=60)
        finally:
            stop.set()
            sampler.join()
        samples.append(snapshot())
        events = await read_breaker_events(settings, HF)
    records = [collected.results[rid][0].record for _, rid in sent]
    return Run(t0, schedule, [due - t0 for due, _ in sent], records, samples, switched, events)


def _sample(snapshot: Callable[[], Snapshot], samples: list[Snapshot], stop: threading.Event) -> None:
    while not stop.wait(SAMPLE_EVERY_S):
        samples.append(snapshot())


async def _switch_on_time(t0: float, schedule: Schedule, switch_hf: Callable[[dict[str, Any]], Snapshot],
                          down: dict[str, Any], healthy: dict[str, Any]) -> dict[str, Snapshot]:
    switched = {}
    for name, at_s, profile, said in (("down", schedule.outage_start_s, down, "down: every call a 500"),
                                      ("back", schedule.outage_end_s, healthy, "back, healthy")):
        await asyncio.sleep(max(0.0, t0 + at_s - time.time()))
        switched[name] = await asyncio.to_thread(switch_hf, profile)
        print(f"[{switched[name][0] - t0:5.1f} s] huggingface {said}", flush=True)
    return switched


async def _send_open_loop(client: RouterClient, t0: float, schedule: Schedule) -> list[tuple[float, str]]:
    """Request i due at t0 + i / rate, each produced by a task of its own; (due wall-clock s, request id)."""
    dues = [t0 + i / schedule.rate for i in range(int(schedule.duration_s * schedule.rate))]
    sends = []
    for i, due in enumerate(dues):
        await asyncio.sleep(max(0.0, due - time.time()))
        prompt = f"recovery request {i} {uuid.uuid4().hex[:8]}: explain failover in a few words"
        sends.append(asyncio.create_task(client.send({"prompt": prompt, "max_tokens": 16,
                                                      "created_at_ms": int(due * 1000)})))
    return list(zip(dues, await asyncio.gather(*sends)))


async def read_breaker_events(settings: Settings, provider: str) -> list[dict[str, Any]]:
    """The worker's breaker transitions for ``provider`` on ``llm.events``, oldest first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = settings.topic(EVENTS)
        partitions = [TopicPartition(topic, p) for p in range(settings.kafka.partitions)]  # as topics/ declares it
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        events, deadline = [], time.monotonic() + 10
        while any([await consumer.position(tp) < end[tp] for tp in partitions]) and time.monotonic() < deadline:
            for messages in (await consumer.getmany(timeout_ms=500)).values():
                events += [Codec().decode("Event", m.value) for m in messages]
    finally:
        await consumer.stop()
    mine = [e for e in events if e["entity"] == f"provider:{provider}" and e["kind"].startswith("breaker_")]
    return sorted(mine, key=lambda e: e["at_ms"])


# ---- reading the results ----

def request_of(record: dict[str, Any], due_s: float) -> Request:
    """A result record, its times made relative to t0 (``due_s`` is its due time from t0)."""
    hf = [a for a in record["attempts"] if a["provider"] == HF]
    return Request(
        due_s=due_s, dispatched_s=due_s + record["queue_latency_ms"] / 1000,
        done_s=due_s + record["total_latency_ms"] / 1000, latency_ms=float(record["total_latency_ms"]),
        ok=record["status"] == "ok", provider=record.get("provider") if record["status"] == "ok" else None,
        calls=sum(a["outcome"] != "skipped" for a in record["attempts"]),
        hf_calls=sum(a["outcome"] != "skipped" for a in hf),
        hf_failed=sum(a["outcome"] in ("error", "timeout") for a in hf),
        breaker=_breaker_said(hf[0]) if hf else "none")


def _breaker_said(attempt: dict[str, Any]) -> str:
    """What the breaker answered for this attempt. The attempt's error_code is circuit_open in all three
    refusing states, so the state is told apart by the reason's words (llmrouter/core/breaker.py)."""
    if attempt["outcome"] != "skipped" or attempt["error_code"] != "circuit_open":
        return "called"
    reason = attempt["error"] or ""
    for prefix, said in (("circuit open", "open"), ("circuit half-open", "half_open"), ("circuit ramping", "ramping")):
        if reason.startswith(prefix):
            return said
    return f"unknown: {reason}"


def breaker_marks(requests: list[Request]) -> list[dict[str, Any]]:
    """The breaker's changes of state as the results show them, at the dispatch of the first request that
    shows each: a skip says open, half-open or closed (ramping back); a call after an open one is a probe."""
    state, marks = "closed", []
    for r in sorted(requests, key=lambda r: r.dispatched_s):
        seen = {"open": "open", "half_open": "half_open", "ramping": "closed"}.get(r.breaker)
        if r.breaker == "called" and state == "open":
            seen = "half_open"
        if seen and seen != state:
            marks.append({"at_s": round(r.dispatched_s, 3), "state": seen})
            state = seen
    return marks


# ---- the figures ----

def analyse(result: Run, breaker: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the phase, with the series the plot draws; times in seconds from the first request.

    * time to open: outage start to the dispatch of the first request whose Hugging Face attempt was skipped
      as circuit open;
    * added latency once open: percentiles of end-to-end latency of the requests dispatched while the
      breaker was open or half-open (first open to closed, as seen from the results), less the same
      percentile of the healthy requests: those due from ``BASELINE_FROM_S`` to the outage, and those
      dispatched after the ramp was over (both simulators have the same latency profile, so Together alone
      costs what Hugging Face did);
    * calls per request once open: over those same requests (a request that carried a probe counts its
      failed probe and Together's call);
    * failed Hugging Face calls: before it opened and while open (probes) from the results, after the
      provider came back from its simulator's counters;
    * the ramp: per second after closing, the share of requests dispatched that second that Hugging Face
      answered, beside the share the breaker's ramp admits (1 / half_open_probes growing to 1 over ramp_s).
    """
    down_s, back_s = (round(result.switched[k][0] - result.t0, 3) for k in ("down", "back"))  # as it happened
    requests = [request_of(r, due) for r, due in zip(result.records, result.due_s)]
    marks = breaker_marks(requests)
    events = [{"at_s": round(e["at_ms"] / 1000 - result.t0, 3), "state": e["kind"].removeprefix("breaker_"),
               "reason": e["data"].get("reason", "")} for e in result.events]
    opened = next((m["at_s"] for m in marks if m["state"] == "open" and m["at_s"] >= down_s), None)
    opened_said = next((e["at_s"] for e in events if e["state"] == "open" and e["at_s"] >= down_s), None)
    closed = next((m["at_s"] for m in marks if m["state"] == "closed" and opened and m["at_s"] > opened), None)
    ramping = [r.dispatched_s for r in requests if r.breaker == "ramping"]
    ramp_over = max(ramping) if ramping else math.inf
    baseline = [r for r in requests if BASELINE_FROM_S <= r.due_s < down_s or r.dispatched_s > ramp_over]
    held = [r for r in requests if opened is not None and opened <= r.dispatched_s < (closed or math.inf)]
    before = [r for r in requests if down_s <= r.dispatched_s < (opened or math.inf)]
    base_p50, base_p95 = _percentiles(baseline)
    open_p50, open_p95 = _percentiles(held)
    hf_failed_back = _hf_failed(result.samples[-1]) - _hf_failed(result.switched["back"])
    last, back = result.samples[-1][1][HF], result.switched["back"][1][HF]
    return {
        "requests": len(requests), "ok": sum(r.ok for r in requests),
        "answered_by": {p: sum(r.provider == p for r in requests) for p in (HF, TOGETHER)},
        "breaker_marks": marks,
        "breaker_events": events,
        "outage_s": [down_s, back_s],
        "opened_s": opened, "closed_s": closed,
        "time_to_open_ms": None if opened is None else round((opened - down_s) * 1000),
        "time_to_open_events_ms": None if opened_said is None else round((opened_said - down_s) * 1000),
        "closed_after_back_s": None if closed is None else round(closed - back_s, 3),
        "ramp_over_s": round(ramp_over, 3) if ramping else None,
        "baseline": {"requests": len(baseline), "p50_ms": base_p50, "p95_ms": base_p95},
        "once_open": {"requests": len(held), "p50_ms": open_p50, "p95_ms": open_p95,
                      "added_p50_ms": _less(open_p50, base_p50), "added_p95_ms": _less(open_p95, base_p95),
                      "calls_per_request": round(float(np.mean([r.calls for r in held])), 3) if held else None,
                      "requests_with_more_than_one_call": sum(r.calls > 1 for r in held),
                      "hf_calls": sum(r.hf_calls for r in held)},
        "hf_failed_calls": {"before_open": sum(r.hf_failed for r in before),
                            "while_open_probes": sum(r.hf_failed for r in held),
                            "after_back": hf_failed_back,
                            "total_results": sum(r.hf_failed for r in requests),
                            "total_simulator": _hf_failed(result.samples[-1]) - _hf_failed(result.samples[0])},
        "hf_connections_opened_after_back": last["connections_opened"] - back["connections_opened"],
        "requests_before_open": len(before),
        "calls_per_request_before_open": round(float(np.mean([r.calls for r in before])), 3) if before else None,
        "per_second": per_second(requests, result, closed, breaker),
        "requests_table": {"columns": ["due_s", "dispatched_s", "latency_ms", "provider", "calls", "breaker"],
                           "rows": [[round(r.due_s, 3), round(r.dispatched_s, 3), r.latency_ms, r.provider, r.calls,
                                     r.breaker] for r in requests]},
    }


def per_second(requests: list[Request], result: Run, closed: float | None, breaker: dict[str, Any]) -> dict[str, list]:
    """Series in 1 s bins: calls each simulator saw (by arrival), answers by provider (by completion), the share
    Hugging Face answered and the share the ramp admits (by dispatch), latency p50 / p95 (by due time)."""
    bins = int(math.ceil(max(r.done_s for r in requests)))
    by_done = _binned(requests, bins, lambda r: r.done_s)
    by_dispatch = _binned(requests, bins, lambda r: r.dispatched_s)
    by_due = _binned(requests, bins, lambda r: r.due_s)
    return {
        "t_s": list(range(bins)),
        "hf_ok_calls": _calls_per_bin(result, bins, lambda s: s[HF]["outcomes"]["ok"]),
        "hf_failed_calls": _calls_per_bin(result, bins, lambda s: _hf_failed((0.0, s))),
        "together_calls": _calls_per_bin(result, bins, lambda s: s[TOGETHER]["requests"]["openai"]),
        "answered": {p: [sum(r.provider == p for r in b) for b in by_done] for p in (HF, TOGETHER)},
        "not_ok": [sum(not r.ok for r in b) for b in by_done],
        "hf_share": [round(sum(r.provider == HF for r in b) / len(b), 3) if b else None for b in by_dispatch],
        "ramp_admits": [_ramp_admits(t + 0.5, closed, breaker) for t in range(bins)],
        "p50_ms": [_percentiles(b)[0] for b in by_due],
        "p95_ms": [_percentiles(b)[1] for b in by_due],
    }


def _binned(requests: list[Request], bins: int, when: Callable[[Request], float]) -> list[list[Request]]:
    out: list[list[Request]] = [[] for _ in range(bins)]
    for r in requests:
        if 0 <= when(r) < bins:
            out[int(when(r))].append(r)
    return out


def _calls_per_bin(result: Run, bins: int, count: Callable[[dict[str, dict[str, Any]]], int]) -> list[float]:
    """A simulator counter per 1 s bin: the samples' cumulative counts, interpolated at each second, differenced."""
    at = [wall - result.t0 for wall, _ in result.samples]
    cumulative = np.interp(np.arange(bins + 1), at, [count(stats) for _, stats in result.samples])
    return np.diff(cumulative).round(1).tolist()


def _ramp_admits(t_s: float, closed: float | None, breaker: dict[str, Any]) -> float | None:
    """The share of calls the breaker admits at ``t_s`` (core/breaker.py's ramp_share), closed at ``closed``."""
    if closed is None or t_s < closed:
        return None
    if breaker["ramp_s"] == 0:
        return 1.0
    floor = 1 / breaker["half_open_probes"]
    return round(min(1.0, floor + (1 - floor) * (t_s - closed) / breaker["ramp_s"]), 3)


def _hf_failed(snapshot: Snapshot) -> int:
    outcomes = snapshot[1][HF]["outcomes"]
    return sum(outcomes.values()) - outcomes["ok"]


def _percentiles(requests: list[Request]) -> tuple[float | None, float | None]:
    if not requests:
        return None, None
    p50, p95 = np.percentile([r.latency_ms for r in requests], [50, 95])
    return round(float(p50), 1), round(float(p95), 1)


def _less(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 1)


# ---- telling it ----

def summary(figures: dict[str, Any], schedule: Schedule) -> str:
    """A few lines for the terminal."""
    f, held, failed = figures, figures["once_open"], figures["hf_failed_calls"]
    seen = ", ".join(f"{m['state']} {m['at_s']:.2f}" for m in f["breaker_marks"])
    said = ", ".join(f"{e['state']} {e['at_s']:.2f}" for e in f["breaker_events"])
    first = math.floor(f["closed_s"]) if f["closed_s"] is not None else len(f["per_second"]["hf_share"])
    after = [f"{s:.0%}" if s is not None else "-" for s in f["per_second"]["hf_share"][first:]]
    return "\n".join([
        f"recovery: {f['ok']}/{f['requests']} ok at {schedule.rate:g} req/s; huggingface down "
        f"{f['outage_s'][0]:.2f}-{f['outage_s'][1]:.2f} s; answered hf / together "
        f"{f['answered_by'][HF]} / {f['answered_by'][TOGETHER]}",
        f"  breaker as the results show it (s): {seen}",
        f"  breaker as llm.events says it (s):  {said}",
        f"  time to open: {f['time_to_open_ms']} ms after the outage began ({f['time_to_open_events_ms']} ms by "
        f"llm.events; {f['requests_before_open']} requests before, {f['calls_per_request_before_open']} calls "
        f"each); closed {f['closed_after_back_s']} s after it came back; ramp over at {f['ramp_over_s']} s",
        f"  once open ({held['requests']} requests): {held['calls_per_request']} calls per request "
        f"({held['requests_with_more_than_one_call']} with more than one); p50 / p95 {held['p50_ms']} / "
        f"{held['p95_ms']} ms against {f['baseline']['p50_ms']} / {f['baseline']['p95_ms']} healthy: added "
        f"{held['added_p50_ms']} / {held['added_p95_ms']} ms",
        f"  failed huggingface calls: {failed['before_open']} before it opened, {failed['while_open_probes']} "
        f"probes while open, {failed['after_back']} after it came back ({failed['total_simulator']} in all "
        f"by its counters, {failed['total_results']} by the results); {f['hf_connections_opened_after_back']} "
        f"new connections to it after it came back",
        f"  huggingface's share of the requests, per second from the one it closed in: {' '.join(after)}",
    ])


def plot(figures: dict[str, Any], schedule: Schedule, breaker: dict[str, Any], path: Path) -> Path:
    """Calls per second to each provider (stacked), Hugging Face's share of answers against the ramp, and
    latency per second; the outage shaded and the breaker's changes of state (from the results) marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = figures["per_second"]
    t = np.array(s["t_s"]) + 0.5
    fig, (calls, share, latency) = plt.subplots(3, 1, figsize=(12, 9), sharex=True,
                                                gridspec_kw={"height_ratios": [3, 2, 2]})
    bottom = np.zeros(len(t))
    for key, label, color in (("hf_ok_calls", "huggingface ok", "tab:green"),
                              ("hf_failed_calls", "huggingface failed (500)", "tab:red"),
                              ("together_calls", "together", "tab:blue")):
        calls.bar(t, s[key], width=0.9, bottom=bottom, label=label, color=color, alpha=0.85)
        bottom += np.array(s[key])
    calls.set_ylim(0, bottom.max() * 1.3)  # headroom for the marks' labels
    calls.set_ylabel("provider calls / s")
    calls.set_title(f"huggingface down, then back, under {schedule.rate:g} req/s (one worker; breaker cool-down "
                    f"{breaker['cooldown_s']:g} s, {breaker['half_open_probes']} probes, ramp {breaker['ramp_s']:g} s)")
    share.step(t, _nan(s["hf_share"]), where="mid", color="tab:green", label="answered by\nhuggingface")
    share.plot(t, _nan(s["ramp_admits"]), "k--", lw=1, label="the ramp admits")
    share.set_ylabel("share of requests")
    share.set_ylim(-0.05, 1.05)
    latency.plot(t, _nan(s["p95_ms"]), color="tab:purple", marker=".", label="p95")
    latency.plot(t, _nan(s["p50_ms"]), color="tab:gray", marker=".", label="p50")
    latency.set_ylim(0, None)
    latency.set_ylabel("end-to-end ms\n(by send time)")
    latency.set_xlabel("seconds from the first request")
    marks = [(m["at_s"], m["state"].replace("_", "-"), _COLORS[m["state"]]) for m in figures["breaker_marks"]]
    if figures["ramp_over_s"] is not None:
        marks.append((figures["ramp_over_s"], "ramp over", "tab:green"))
    for ax in (calls, share, latency):
        ax.axvspan(*figures["outage_s"], color="0.85", zorder=0, label="huggingface down" if ax is calls else None)
        for at_s, label, color in marks:
            ax.axvline(at_s, color=color, ls=":" if label == "ramp over" else "--", lw=1.2)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    for at_s, label in _grouped(marks):
        calls.text(at_s, calls.get_ylim()[1] * 0.98, label, fontsize=8, rotation=90, va="top", ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_COLORS = {"open": "tab:red", "half_open": "tab:orange", "closed": "tab:green"}


def _grouped(marks: list[tuple[float, str, str]], within_s: float = 0.5) -> list[tuple[float, str]]:
    """Marks closer than ``within_s`` share one label ("half-open, open"), so their labels do not overlap."""
    groups: list[tuple[float, str]] = []
    for at_s, label, _ in sorted(marks):
        if groups and at_s - groups[-1][0] < within_s:
            groups[-1] = (groups[-1][0], f"{groups[-1][1]}, {label}")
        else:
            groups.append((at_s, label))
    return groups


def _nan(values: list[float | None]) -> list[float]:
    return [np.nan if v is None else v for v in values]
