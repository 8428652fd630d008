"""Degradation flags and manual overrides, through a real worker and Kafka against the provider simulator.

One worker serves the module, its chain ``openai`` (a premium kind, served by
one simulator), ``spare`` (another simulator), then the local tiny model.
``no_premium`` is set before the worker starts, so its first request already
obeys it. Flags are changed with the CLI's function (``change_flags``) and
through ``/admin/flags/`` with the admin key; each change is awaited by
polling the worker's view, never by sleeping. A second worker (no admin key)
joins for one test. Every change made is written down, and the last test
finds exactly one event on llm.events for each, though two workers ran.
The ``breakers``, ``limits`` and ``ledger`` commands read the same worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmrouter.commands import tables as tablescmd
from llmrouter.wire.client import RouterClient
from llmrouter.wire.codec import Codec
from llmrouter.commands.flags import change_flags
from llmrouter.config.settings import Settings
from llmrouter.simulator import SimProfile, Simulator
from llmrouter.topics import EVENTS
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import (SimulatorThread, isolated_settings, read_topic_to_end, sibling_settings, sim_provider,
                            start_worker)

pytestmark = pytest.mark.kafka

ADMIN_KEY = "test-admin-key-9"
FAST = SimProfile(latency_ms=5, token_delay_ms=0)


@dataclass
class Setup:
    settings: Settings
    path: Path
    directory: Path
    worker: WorkerProcess
    sims: SimulatorThread
    premium: Simulator
    spare: Simulator
    changes: list[tuple[str, str]] = field(default_factory=list)  # (entity, kind) of every change made

    def calls(self, sim: Simulator) -> int:
        return self.sims.call(sim.stats)["requests"].get("openai", 0)

    async def change(self, target: str, action: str, note: str = "") -> None:
        """The CLI's change, then wait until the worker shows it."""
        change = await change_flags(self.settings, target, action, who="tester", note=note)
        assert change is not None, f"{target} {action} changed nothing"
        self.changes.append((change.entity, change.kind))
        await until_view(self.worker, lambda view: shows(view, target, action))


@pytest.fixture(scope="module")
def setup(kafka_and_redis: None, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    directory = tmp_path_factory.mktemp("degradation")
    with SimulatorThread(FAST, FAST) as sims:
        premium, spare = sims.sims
        settings, path = isolated_settings(
            directory, tiny_model_dir, worker={"max_in_flight": 8},
            premium_config={"emergency_only": False, "openai": {"endpoint": premium.base_urls()["openai"]}},
            providers={"spare": sim_provider(spare)}, fallback_chain=["openai", "spare", "local"])
        change = asyncio.run(change_flags(settings, "no_premium", "on", who="tester", note="set before any worker"))
        env = {"OPENAI_API_KEY": "sk-sim-degradation", "LLMROUTER_ADMIN_KEY": ADMIN_KEY}
        worker = start_worker(path, settings, directory / "worker.log", env=env)
        try:
            yield Setup(settings, path, directory, worker, sims, premium, spare,
                        changes=[(change.entity, change.kind)])
        finally:
            worker.stop()
            print(worker.log_tail(15))


def shows(view: dict, target: str, action: str) -> bool:
    """Whether the worker's /admin/flags/ view shows ``target`` as ``action`` left it."""
    if target.startswith("override:"):
        override = view["overrides"].get(target.split(":", 1)[1])
        return override is None if action == "clear" else (override or {}).get("action") == action
    return view["flags"][target]["on"] == (action == "on")


async def until_view(worker: WorkerProcess, done: Callable[[dict], bool], timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while not done(view := worker.get_json("/admin/flags/")[1]):
        assert time.monotonic() < deadline, f"the worker never showed the change: {view}"
        await asyncio.sleep(0.05)
    return view


async def ask(settings: Settings, prompts: list[str]) -> list[dict]:
    """Send one request per prompt and return their results, in order."""
    async with RouterClient(settings) as client:
        ids = [await client.send({"prompt": prompt, "max_tokens": 4}) for prompt in prompts]
        collected = await client.wait_for(ids, timeout_s=30)
    return [collected.results[rid][0].record for rid in ids]


def fresh(n: int, label: str) -> list[str]:
    """Prompts nobody asked before (no cache hit)."""
    return [f"{label} {i} {uuid.uuid4()}" for i in range(n)]


def first_attempt(record: dict) -> tuple[str, str, str]:
    attempt = record["attempts"][0]
    return attempt["provider"], attempt["outcome"], attempt["error_code"]


def post(worker: WorkerProcess, body: dict, key: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"X-Admin-Key": key} if key is not None else {})}
    request = urllib.request.Request(f"{worker.base_url}/admin/flags/", data=json.dumps(body).encode(),
                                     headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


async def test_a_worker_started_after_no_premium_was_set_skips_premium_from_its_first_request(setup: Setup):
    """The first requests go to spare, openai skipped as degraded_no_premium and never called; once the flag
    is cleared, traffic returns to openai."""
    view = setup.worker.get_json("/admin/flags/")[1]
    assert view["flags"]["no_premium"]["note"] == "set before any worker"
    assert any("no_premium is on" in line for line in setup.worker.health()["degraded"])
    records = await ask(setup.settings, fresh(3, "first"))
    assert [r["provider"] for r in records] == ["spare"] * 3
    assert {first_attempt(r) for r in records} == {("openai", "skipped", "degraded_no_premium")}
    assert "set by tester at" in records[0]["attempts"][0]["error"]
    assert setup.calls(setup.premium) == 0

    await setup.change("no_premium", "off")
    records = await ask(setup.settings, fresh(2, "back"))
    assert [r["provider"] for r in records] == ["openai"] * 2
    assert setup.calls(setup.premium) == 2


async def test_a_disabled_provider_is_skipped_saying_who_when_and_why_and_a_forced_one_goes_first(setup: Setup):
    """disable openai: skipped as provider_disabled, not called; force spare: spare first, openai not called;
    cleared: openai again."""
    before = setup.calls(setup.premium)
    await setup.change("override:openai", "disable", note="maintenance")
    records = await ask(setup.settings, fresh(2, "disabled"))
    assert [r["provider"] for r in records] == ["spare"] * 2
    assert {first_attempt(r) for r in records} == {("openai", "skipped", "provider_disabled")}
    error = records[0]["attempts"][0]["error"]
    assert error.startswith("disabled by tester at ") and error.endswith("Z: maintenance")
    assert setup.calls(setup.premium) == before

    await setup.change("override:openai", "clear")
    await setup.change("override:spare", "force")
    records = await ask(setup.settings, fresh(2, "forced"))
    assert [(r["provider"], len(r["attempts"])) for r in records] == [("spare", 1)] * 2
    assert "forced first: spare" in records[0]["route_reason"]
    assert setup.calls(setup.premium) == before

    await setup.change("override:spare", "clear")
    records = await ask(setup.settings, fresh(1, "unforced"))
    assert records[0]["provider"] == "openai"


async def test_local_only_leaves_every_request_to_the_local_model(setup: Setup):
    """Offline operation: both simulators see no call; each cloud provider is skipped as degraded_local_only."""
    premium, spare = setup.calls(setup.premium), setup.calls(setup.spare)
    await setup.change("local_only", "on", note="offline")
    records = await ask(setup.settings, fresh(2, "offline"))
    assert [r["provider"] for r in records] == ["local"] * 2
    skipped = {(a["provider"], a["error_code"]) for a in records[0]["attempts"] if a["outcome"] == "skipped"}
    assert {("openai", "degraded_local_only"), ("spare", "degraded_local_only")} <= skipped
    assert (setup.calls(setup.premium), setup.calls(setup.spare)) == (premium, spare)
    await setup.change("local_only", "off")


async def test_cache_only_answers_a_hit_and_rejects_a_miss_without_calling_anyone(setup: Setup):
    """A prompt answered before is served from the cache; a new one is rejected as degraded_cache_only."""
    (cached,) = fresh(1, "cache me")
    assert (await ask(setup.settings, [cached]))[0]["status"] == "ok"
    premium, spare = setup.calls(setup.premium), setup.calls(setup.spare)
    await setup.change("cache_only", "on", note="providers unreachable")
    hit, miss = await ask(setup.settings, [cached, *fresh(1, "miss")])
    assert (hit["status"], hit["route"]) == ("ok", "cache")
    assert (miss["status"], miss["error_code"], miss["attempts"]) == ("rejected", "degraded_cache_only", [])
    assert "cache_only is on (set by tester" in miss["error_message"]
    assert (setup.calls(setup.premium), setup.calls(setup.spare)) == (premium, spare)
    await setup.change("cache_only", "off")


async def test_the_admin_view_changes_a_flag_only_with_the_admin_key(setup: Setup):
    """No key or a wrong one: 401 and nothing changes; the right key: the change is in force when the POST
    answers, and the GET shows it."""
    body = {"flag": "no_premium", "on": True, "note": "from the admin view", "who": "alice"}
    for key in (None, "wrong-key"):
        status, reply = post(setup.worker, body, key)
        assert status == 401 and "X-Admin-Key" in reply["error"] and ADMIN_KEY not in json.dumps(reply)
    assert setup.worker.get_json("/admin/flags/")[1]["flags"]["no_premium"] == {"on": False}

    status, reply = post(setup.worker, body, ADMIN_KEY)
    assert (status, reply["changed"], reply["applied_here"]) == (200, True, True)
    setup.changes.append(("flag:no_premium", "flag_set"))
    assert setup.worker.get_json("/admin/flags/")[1]["flags"]["no_premium"]["who"] == "alice"
    records = await ask(setup.settings, fresh(1, "admin"))
    assert first_attempt(records[0]) == ("openai", "skipped", "degraded_no_premium")

    assert post(setup.worker, {"override": "openai", "action": "clear"}, ADMIN_KEY)[1]["changed"] is False
    status, reply = post(setup.worker, {"flag": "no_premium", "on": False}, ADMIN_KEY)
    assert (status, reply["flags"]["no_premium"]) == (200, {"on": False})
    setup.changes.append(("flag:no_premium", "flag_cleared"))


async def test_a_worker_that_joins_knows_the_flags_and_one_without_a_key_takes_no_change(setup: Setup):
    """It read llm.router.flags whole before it was ready; with no admin key configured it refuses every POST
    with 403 and says how to set one; a change made while both run reaches both."""
    await setup.change("override:spare", "disable", note="before the second worker")
    settings, path = sibling_settings(setup.settings, setup.path, setup.directory / "second")
    second = await asyncio.to_thread(start_worker, path, settings, setup.directory / "second" / "worker.log",
                                     env={"OPENAI_API_KEY": "sk-sim-degradation", "LLMROUTER_ADMIN_KEY": ""})
    try:
        assert second.get_json("/admin/flags/")[1]["overrides"]["spare"]["note"] == "before the second worker"
        status, reply = post(second, {"flag": "cache_only", "on": True}, ADMIN_KEY)
        assert status == 403 and "LLMROUTER_ADMIN_KEY" in reply["error"]
        assert second.get_json("/admin/flags/")[1]["flags"]["cache_only"] == {"on": False}
        await setup.change("override:spare", "clear")
        await until_view(second, lambda view: "spare" not in view["overrides"])
    finally:
        await asyncio.to_thread(second.stop)


def test_the_table_commands_print_a_workers_breakers_limits_and_its_ledger_or_the_groups(setup: Setup, capsys,
                                                                                         monkeypatch):
    """`llmrouter breakers|limits|ledger` read the worker's views; `ledger --all` reads the changelog: openai's
    account counts every call the premium simulator got. `ledger` sends the admin key of its environment (the
    view names users): without one it fails and says what the worker wants."""
    url = setup.worker.base_url
    monkeypatch.delenv("LLMROUTER_ADMIN_KEY", raising=False)
    monkeypatch.delenv("LLMROUTER_SECRETS_FILE", raising=False)
    assert tablescmd.ledger_command(argparse.Namespace(url=url, json=False, all=False), setup.settings) == 1
    assert "answered 401" in (err := capsys.readouterr().err) and "X-Admin-Key" in err
    monkeypatch.setenv("LLMROUTER_ADMIN_KEY", ADMIN_KEY)
    for command, heading in ((tablescmd.breakers_command, "PROVIDER  HERE"),
                             (tablescmd.limits_command, "rate limits off"),
                             (tablescmd.ledger_command, "the partitions it owns")):
        assert command(argparse.Namespace(url=url, json=False, all=False), setup.settings) == 0
        assert heading in capsys.readouterr().out
    assert tablescmd.ledger_command(argparse.Namespace(url=None, json=True, all=True), setup.settings) == 0
    totals = json.loads(capsys.readouterr().out)["totals"]
    (openai,) = [t for name, t in totals.items() if name.startswith("provider:openai:")]
    assert openai["calls"] == setup.calls(setup.premium) > 0
    assert tablescmd.breakers_command(argparse.Namespace(url="http://127.0.0.1:9", json=False), setup.settings) == 1
    assert "no worker answered" in capsys.readouterr().err


async def test_each_change_is_exactly_one_event_on_llm_events(setup: Setup):
    """Whoever made the change (the CLI or the admin view) published it once; a clear of nothing published none."""
    entities = {entity for entity, _ in setup.changes}
    seen = await read_topic_to_end(setup.settings.topic(EVENTS), setup.settings.kafka.partitions, want=entities,
                                   timeout_s=10)
    codec = Codec()
    events = [codec.decode("Event", m.value) for entity in entities for m in seen.get(entity, [])]
    assert sorted((e["entity"], e["kind"]) for e in events) == sorted(setup.changes)
    by_cli = [e for e in events if e["data"]["via"].startswith("llmrouter cli on ")]
    by_view = [e for e in events if e["data"]["via"].startswith("admin view of ")]
    assert len(by_cli) + len(by_view) == len(events) and len(by_view) == 2
    assert {e["data"]["who"] for e in by_cli} == {"tester"}
    assert [e["data"]["who"].split()[0] for e in by_view] == ["alice", "admin"]  # the second POST named nobody
