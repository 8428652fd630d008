"""Metrics, health and the dashboard of a real worker under load.

One worker serves simple tasks with the tiny local model and complex ones
with two simulated OpenAI-compatible providers: ``flaky`` (a third of its
calls fail with a 500, slow enough to be caught in flight) before ``steady``.
``llmrouter loadtest`` runs as a child process with repeated prompts (cache
hits), all four priorities and garbage beside it (dead letters), while the
test scrapes ``/metrics`` and reads the scrapes with prometheus_client's own
text parser. A third provider has no API key: ``/health/`` must say it is
down and why. The dashboard test opens ``/dashboard/`` in Debian's headless
Chromium (driven by selenium through Debian's chromedriver) under a little
load, waits on the page's own state until every chart has points, compares its
alerts panel with ``/alerts/`` read by the test, and saves a screenshot; seen
through a proxy that breaks one of its fetches, the page shows the failure.
Without Chromium the browser tests skip, and fail under CI (``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmrouter.wire.client import RouterClient
from llmrouter.simulator import SimProfile
from llmrouter.testing.worker_process import WorkerProcess
from tests.conftest import SimulatorThread, isolated_settings, sim_provider, start_worker
from tests.required import missing

pytestmark = pytest.mark.kafka

PRICES = {"price_input_per_1k_usd": 0.5, "price_output_per_1k_usd": 1.5}
SECTION_7_1 = ("request_duration_seconds", "request_total", "active_connections", "cache_hits_total",
               "llm_tokens_used", "provider_errors_total", "memory_usage_bytes", "cpu_usage_percent")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "var" / "screenshots" / "dashboard.png"


@dataclass
class Observed:
    worker: WorkerProcess
    settings_path: Path


@pytest.fixture(scope="module")
def observed(kafka_and_redis, tiny_model_dir, tmp_path_factory) -> Iterator[Observed]:
    directory = tmp_path_factory.mktemp("observability")
    flaky = SimProfile(latency_ms=150, token_delay_ms=0, error_rate=0.3, fault_weights={"server_error": 1.0}, seed=3)
    steady = SimProfile(latency_ms=100, token_delay_ms=0)
    with SimulatorThread(flaky, steady) as sims:
        providers = {
            "flaky": sim_provider(sims.sims[0], retry_attempts=0, rate_limit="6000/minute", **PRICES),
            "steady": sim_provider(sims.sims[1], **PRICES),
            "keyless": {**sim_provider(sims.sims[1]), "api_key_env": "OBSERVABILITY_TEST_KEY_NOT_SET"},
        }
        # The local model waits up to 150 ms for a batch of 4 to fill, so its calls are caught in flight by a
        # scrape every 0.2 s as flaky's are (unbatched, the tiny model answers in a few ms and a load can pass
        # between two scrapes).
        local = {"batch_size": 4, "batching": "throughput", "max_batch_wait_ms": 150}
        settings, path = isolated_settings(directory, tiny_model_dir, providers=providers,
                                           fallback_chain=["local", "flaky", "steady", "keyless"],
                                           rate_limits={"enabled": True}, local_config=local)
        worker = start_worker(path, settings, directory / "worker.log")
        try:
            yield Observed(worker, path)
        finally:
            worker.stop()


def start_loadtest(observed: Observed, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMROUTER")}
    return subprocess.Popen([sys.executable, "-m", "llmrouter", "--settings", str(observed.settings_path),
                             "loadtest", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(worker: WorkerProcess) -> Scrape:
    """Every sample of ``/metrics``, read by prometheus_client's parser: (name, sorted labels) -> value."""
    text = worker.get_text("/metrics")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Scrape, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def label_values(samples: Scrape, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls), v in samples.items() if n == name and label in dict(ls)}


GROWING = (("request_duration_seconds", "_count"), ("request_total", ""), ("cache_hits_total", ""),
           ("llm_tokens_used", "_total"), ("provider_errors_total", ""), ("dlq_total", ""),
           ("provider_cost_usd_total", ""))


def growth(before: Scrape, after: Scrape) -> dict[str, float]:
    """How much each counter of a load grew between two scrapes."""
    return {name: total(after, f"llmrouter_{name}{suffix}") - total(before, f"llmrouter_{name}{suffix}")
            for name, suffix in GROWING}


def counted_and_sampled(before: Scrape, now: Scrape) -> bool:
    """The load is in ``now``: every counter grew, all 150 results are counted, and the process gauges were
    sampled again since ``before`` (once a second)."""
    grew = growth(before, now)
    memory = "llmrouter_memory_usage_bytes"
    return (all(value > 0 for value in grew.values()) and grew["request_total"] >= 150
            and grew["request_duration_seconds"] >= 150 and total(now, memory) != total(before, memory))


def scrape_until(worker: WorkerProcess, condition: Callable[[Scrape], bool], *, timeout_s: float) -> Scrape:
    """Scrape ``/metrics`` until ``condition`` holds of a scrape and return that one, or the last one after
    ``timeout_s`` (the caller's assertions then say what is missing)."""
    deadline = time.monotonic() + timeout_s
    while not condition(samples := scrape(worker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return samples


def send_garbage(observed: Observed, count: int) -> None:
    async def send() -> None:
        async with RouterClient(observed.worker.settings) as client:
            for i in range(count):
                await client.send_raw(b"\x00\x01 not a request", priority="low", key=f"g{i}".encode())
    asyncio.run(send())


def test_every_metric_of_section_7_1_moves_under_a_mixed_load_with_its_labels(observed):
    """Two scrapes around a load of cache hits, local and cloud answers and failures: each §7.1 counter and
    histogram grew, with path (cache level / local / cloud), priority, status and provider labels; the gauges
    changed (calls in flight caught on the local model and a cloud provider during the load); breaker, bucket,
    lag, dead letters and cost are there too, and no label holds a request or user id."""
    worker = observed.worker
    before = scrape(worker)
    load = start_loadtest(observed, "--rate", "30", "--count", "150", "--complex-share", "0.5",
                          "--repeat-share", "0.4", "--pool-size", "8", "--max-tokens", "8",
                          "--priorities", "critical=1,high=1,normal=2,low=1", "--drain-s", "30")
    send_garbage(observed, 3)
    during: list[Scrape] = []
    while load.poll() is None:
        during.append(scrape(worker))
        time.sleep(0.2)
    output = load.communicate()[0]
    assert load.returncode == 0, output
    after = scrape_until(worker, lambda now: counted_and_sampled(before, now), timeout_s=15)

    grew = growth(before, after)
    assert all(value > 0 for value in grew.values()), grew
    assert grew["request_total"] >= 150 and grew["request_duration_seconds"] >= 150
    assert {"l1", "local", "cloud"} <= label_values(after, "llmrouter_request_total", "path")
    assert {"l1", "local", "cloud"} <= label_values(after, "llmrouter_request_duration_seconds_count", "path")
    assert label_values(after, "llmrouter_request_total", "priority") == {"critical", "high", "normal", "low"}
    assert {"local", "flaky", "steady"} <= label_values(after, "llmrouter_request_total", "provider")
    assert "ok" in label_values(after, "llmrouter_request_total", "status")
    assert total(after, "llmrouter_provider_errors_total", provider="flaky") > 0
    assert {"local", "flaky", "steady"} <= label_values(after, "llmrouter_llm_tokens_used_total", "provider")

    in_flight = {p: max(total(s, "llmrouter_active_connections", provider=p) for s in during)
                 for p in ("local", "flaky", "steady")}
    assert in_flight["local"] > 0 and in_flight["flaky"] + in_flight["steady"] > 0, in_flight
    assert max(total(s, "llmrouter_cpu_usage_percent") for s in during) > 0
    assert total(after, "llmrouter_memory_usage_bytes") > 0
    assert total(after, "llmrouter_memory_usage_bytes") != total(before, "llmrouter_memory_usage_bytes")

    assert {"flaky", "steady", "local"} <= label_values(after, "llmrouter_breaker_state", "provider")
    assert total(after, "llmrouter_rate_limit_tokens", provider="flaky") > 0
    assert label_values(after, "llmrouter_consumer_lag", "priority") == {"critical", "high", "normal", "low"}
    assert label_values(after, "llmrouter_consumer_lag", "stage") == {"requests", "accepted"}
    allowed = {"priority", "status", "path", "provider", "level", "kind", "code", "outcome", "scope", "stage",
               "le", "schema"}
    assert {label for (_n, ls) in after for label, _v in ls} <= allowed


def test_the_consumer_lag_comes_back_to_zero_once_the_load_is_answered(observed):
    """Every request answered and committed: nothing behind on any priority topic."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        lag = total(scrape(observed.worker), "llmrouter_consumer_lag")
        if lag == 0:
            break
        time.sleep(0.5)
    assert lag == 0


def test_health_reports_each_dependency_with_its_status_and_what_it_rests_on(observed):
    """Kafka with its assignment and lag, Redis, every provider with its health check and breaker, and the
    local model with its queue; the provider without a key is down and says why, the rest are ok."""
    health = observed.worker.health()
    assert health["live"] and health["ready"]
    deps = health["dependencies"]
    kafka = deps["kafka"]
    assert kafka["status"] == "ok" and kafka["assigned_partitions"] == len(kafka["assignment"]) > 0
    assert set(kafka["lag"]) == {"requests", "accepted"} and set(kafka["lag"]["accepted"]) == {
        "critical", "high", "normal", "low"}
    assert deps["redis"]["status"] == "ok" and deps["redis"]["url_host"] == "127.0.0.1:6379"
    providers = deps["providers"]
    assert providers["keyless"]["status"] == "down" and "no API key" in providers["keyless"]["note"]
    assert providers["steady"]["status"] == "ok" and providers["steady"]["health_check"]["healthy"] is True
    assert providers["flaky"]["breaker"]["here"] in ("closed", "half_open", "open")
    local = deps["local_model"]
    assert local["status"] == "ok" and local["health_check"]["healthy"] is True
    assert {"queued", "running", "max_queue"} <= set(local["queue"])


def test_the_dashboard_fills_its_charts_in_a_real_browser_and_a_screenshot_is_saved(observed, tmp_path):
    """Headless Chromium opens /dashboard/ while a little load runs; the page's own state says every chart has
    points (throughput, cache hit rate, latency of cache, local and cloud, spend, breakers) and its latest point
    shows the load, uPlot drew a canvas in each, the alerts panel names exactly the alerts the worker's /alerts/
    has firing, as the test reads /alerts/ itself (the load's cache hit rate is under the rule's 70 %, so some may
    be; none firing must read "none"), the page reads the firing ones from each shape /alerts/ may answer, and
    the screenshot is written."""
    driver = headless_chromium(tmp_path)
    load = start_loadtest(observed, "--rate", "10", "--count", "150", "--complex-share", "0.5",
                          "--repeat-share", "0.5", "--pool-size", "4", "--max-tokens", "4", "--drain-s", "10")
    try:
        driver.get(f"{observed.worker.base_url}/dashboard/")
        wait_until(driver, FILLED, timeout_s=60)
        state = driver.execute_script("return window.dashboard;")
        canvases = driver.execute_script("return document.querySelectorAll('.chart canvas').length;")
        firing, panel = panel_agrees_with_alerts(driver, observed.worker, timeout_s=30)
        shapes = driver.execute_script(ALERT_SHAPES)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
        load.terminate()
        load.communicate(timeout=30)
    print(f"dashboard screenshot: {SCREENSHOT}; firing: {firing or 'none'}")
    assert state["chartsAvailable"] and state["error"] is None and canvases == 7
    assert all(count >= 3 for count in state["filled"].values()), state["filled"]
    assert not panel.failed and panel.named == firing and (panel.text == "none") == (not firing), panel
    assert shapes == [["high_latency"], ["high_latency"], ["high_latency", "error_rate"]]
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("broken, answer", [("/alerts/", 500), ("/alerts/", None), ("/dashboard/data/", 503)],
                         ids=["alerts-500", "alerts-connection-dropped", "data-503"])
def test_the_dashboard_shows_a_failed_fetch_as_an_error_never_as_none(observed, tmp_path, broken, answer):
    """Seen through a proxy that breaks one of the page's fetches (answers an error status, or drops the
    connection unanswered) and forwards the rest to the worker: the header turns red naming what failed, and the
    alerts panel, whose contents are then unknown, is marked failed and says why instead of "none"."""
    driver = headless_chromium(tmp_path)
    try:
        with BreakingProxy(observed.worker.base_url, broken=broken, answer=answer) as proxy:
            driver.get(f"{proxy.url}/dashboard/")
            wait_until(driver, "return document.getElementById('alerts-panel').classList.contains('failed');",
                       timeout_s=30, what="mark its alerts panel failed")
            panel = read_panel(driver)
            status = driver.find_element("id", "status")
            header, header_class = status.text, status.get_attribute("class")
            state = driver.execute_script("return window.dashboard;")
    finally:
        driver.quit()
    why = f"{broken} answered {answer}" if answer else f"could not reach {broken}"
    assert panel.failed and not panel.text.startswith("none") and panel.named == [], panel
    assert why in panel.text and why in header and "error" in header_class.split(), (panel, header)
    assert (state["error"] is None) == (broken == "/alerts/"), state["error"]
    assert (state["alerts"]["error"] is not None) and state["alerts"]["firing"] == []


@dataclass(frozen=True)
class Panel:
    """The alerts panel as a reader sees it: its text, the alert each entry names, and whether it is marked failed."""
    text: str
    named: list[str]
    failed: bool


ALERT_NAME = re.compile(r"\S+( \([^)]*\))?")  # an entry starts with the rule, then its subject in brackets


def read_panel(driver) -> Panel:
    text, entries, failed = driver.execute_script(
        "const box = document.getElementById('alerts');"
        "return [box.innerText.trim(), [...box.querySelectorAll('.alert')].map((e) => e.innerText.trim()),"
        "        document.getElementById('alerts-panel').classList.contains('failed')];")
    return Panel(text, [ALERT_NAME.match(entry).group(0) for entry in entries], failed)


def firing_names(body: dict) -> list[str]:
    """The firing alerts of a /alerts/ answer as the panel names them: the rule, then its subject in brackets."""
    return [f"{alert['rule']} ({alert['subject']})" if alert.get("subject") else alert["rule"]
            for alert in body["firing"]]


def panel_agrees_with_alerts(driver, worker: WorkerProcess, *, timeout_s: float) -> tuple[list[str], Panel]:
    """Until the panel names the alerts that the worker's /alerts/, fetched here, has firing: the panel read
    before and after the fetch, so that it did not move in between (alerts may change state under load); fail,
    with both, if they never agree."""
    deadline = time.monotonic() + timeout_s
    while True:
        before = read_panel(driver)
        status, body = worker.get_json("/alerts/")
        assert status == 200, (status, body)
        firing, after = firing_names(body), read_panel(driver)
        if before == after and not after.failed and after.named == firing:
            return firing, after
        if time.monotonic() > deadline:
            raise AssertionError(f"the alerts panel never named what /alerts/ has firing: {firing} vs {after}")
        time.sleep(0.25)


class BreakingProxy:
    """The worker's web server seen through a proxy that breaks one path: it answers that path with the status
    ``answer`` (or, with None, closes the connection without an answer) and forwards every other request to the
    worker unchanged."""

    def __init__(self, target: str, *, broken: str, answer: int | None) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                proxy.forward(self)

            def log_message(self, *args: object) -> None:
                pass

        self.target, self.broken, self.answer = target, broken, answer
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        if urllib.parse.urlsplit(handler.path).path == self.broken:
            if self.answer is None:
                handler.close_connection = True
                handler.connection.shutdown(socket.SHUT_RDWR)
                return
            status, body, content_type = self.answer, b'{"error": "broken by the test"}', "application/json"
        else:
            try:
                with urllib.request.urlopen(self.target + handler.path, timeout=10) as reply:
                    status, body, content_type = reply.status, reply.read(), reply.headers["Content-Type"]
            except urllib.error.HTTPError as exc:
                status, body, content_type = exc.code, exc.read(), exc.headers["Content-Type"]
        handler.send_response(status)
        handler.send_header("Content-Type", content_type or "application/octet-stream")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def __enter__(self) -> BreakingProxy:
        threading.Thread(target=self.server.serve_forever, name="breaking-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


ALERT_SHAPES = """
const firing = {rule: "high_latency", state: "firing", value: 6.1, threshold: 5, window_s: 120};
const resolved = {rule: "cache_hit_rate", state: "resolved"};
return [[firing, resolved], {firing: [firing]}, {alerts: [firing, resolved, {rule: "error_rate"}]}]
  .map((body) => firingAlerts(body).map((alert) => alert.rule));
"""

FILLED = """
const d = window.dashboard;
if (!d) return false;
const want = ["throughput", "cache_hit_rate", "latency_cache", "latency_local", "latency_cloud", "spend", "breakers"];
const latest = d.points[d.points.length - 1];
return want.every((name) => (d.filled[name] || 0) >= 3) && latest.throughput_per_s > 0;
"""


def headless_chromium(profile_dir: Path):
    """Debian's chromium through Debian's chromedriver (the same build, so their versions always agree), with
    the flags this closed network needs; selenium is told both paths, so its manager never downloads one."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        missing("Debian's chromium and chromium-driver are not installed (infra/bootstrap.sh installs them "
                "with apt; it could not here)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1900", f"--user-data-dir={profile_dir / 'chromium'}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))


def wait_until(driver, script: str, *, timeout_s: float, what: str = "fill") -> None:
    """Until ``script`` returns true in the page; fail with the page's state if it never does."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout_s, poll_frequency=0.25).until(lambda d: d.execute_script(script))
    except Exception as exc:
        state = driver.execute_script("return window.dashboard && {filled: window.dashboard.filled, "
                                      "error: window.dashboard.error, polls: window.dashboard.polls};")
        raise AssertionError(f"the dashboard did not {what} within {timeout_s}s: {state}") from exc
