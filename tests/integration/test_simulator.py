"""The provider simulator served for real on a free port, driven with aiohttp.

No broker needed. Latencies are 0-5 ms, so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from llmrouter.simulator import SimProfile, Simulator
from llmrouter.simulator.profile import generate_words

FLAVORS = ("openai", "huggingface", "anthropic")
_TIMEOUT = aiohttp.ClientTimeout(total=10)
_FAST = {"latency_ms": 1, "token_delay_ms": 0}


@asynccontextmanager
async def serving(**profile: Any) -> AsyncIterator[tuple[Simulator, aiohttp.ClientSession]]:
    """A simulator on a free port with the given profile keys (fast by default), and a client session."""
    simulator = Simulator(SimProfile.from_mapping({**_FAST, **profile}))
    await simulator.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as http:
            yield simulator, http
    finally:
        await simulator.stop()


def call(sim: Simulator, flavor: str, prompt: str = "hello there", *, max_tokens: int = 5, stream: bool = False,
         key: str | None = None) -> tuple[str, dict[str, Any], dict[str, str]]:
    """URL, JSON body and headers of a generation request in ``flavor``'s format, as llm-router sends them."""
    headers = {}
    if flavor == "openai":
        body: dict[str, Any] = {"model": "gpt-sim", "messages": [{"role": "user", "content": prompt}],
                                "max_tokens": max_tokens, "temperature": 0, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        url = f"{sim.base_urls()['openai']}/chat/completions"
    elif flavor == "huggingface":
        body = {"inputs": prompt, "parameters": {"max_new_tokens": max_tokens, "do_sample": False,
                                                 "return_full_text": False, "details": True}, "stream": stream}
        url = f"{sim.base_urls()['huggingface']}/models/org/model-7b"
    else:
        body = {"model": "claude-sim", "max_tokens": max_tokens, "messages": [{"role": "user", "content": prompt}],
                "temperature": 0, "stream": stream}
        url = f"{sim.base_urls()['anthropic']}/v1/messages"
        headers["anthropic-version"] = "2023-06-01"
    if key is not None:
        headers.update({"x-api-key": key} if flavor == "anthropic" else {"Authorization": f"Bearer {key}"})
    return url, body, headers


async def post(http: aiohttp.ClientSession, sim: Simulator, flavor: str, prompt: str = "hello there", **kw: Any,
               ) -> tuple[int, Any, aiohttp.ClientResponse]:
    """Send one non-streamed request; return status, parsed JSON body and the response."""
    url, body, headers = call(sim, flavor, prompt, **kw)
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, json.loads(await response.read()), response


async def stream_lines(http: aiohttp.ClientSession, sim: Simulator, flavor: str, **kw: Any) -> list[str]:
    """Send one streamed request and return its non-blank SSE lines."""
    url, body, headers = call(sim, flavor, stream=True, **kw)
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        return [line.decode().rstrip("\n") async for line in response.content if line.strip()]


def data_of(lines: list[str]) -> list[Any]:
    """The parsed JSON of every ``data:`` line (``[DONE]`` kept as the string)."""
    out = []
    for line in lines:
        if line.startswith("data: "):
            text = line[len("data: "):]
            out.append(text if text == "[DONE]" else json.loads(text))
    return out


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# -- success ------------------------------------------------------------------------------------------------


async def test_openai_reply_has_the_chat_completion_shape() -> None:
    """A chat completion carries max_tokens deterministic words, usage in words and finish_reason length."""
    async with serving() as (sim, http):
        status, body, _ = await post(http, sim, "openai", "one two three", max_tokens=4)
    assert status == 200 and body["object"] == "chat.completion" and body["model"] == "gpt-sim"
    assert body["choices"][0]["message"] == {"role": "assistant",
                                             "content": " ".join(generate_words("one two three", 0, 4))}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_huggingface_reply_has_the_text_generation_shape() -> None:
    """A text-generation reply is a one-item list with generated_text and details."""
    async with serving(reply_words=2) as (sim, http):
        status, body, _ = await post(http, sim, "huggingface", max_tokens=8)
    assert status == 200
    assert body == [{"generated_text": " ".join(generate_words("hello there", 0, 2)),
                     "details": {"finish_reason": "eos_token", "generated_tokens": 2, "seed": None, "prefill": []}}]


async def test_anthropic_reply_has_the_messages_shape() -> None:
    """A message reply has a text block, stop_reason and input/output token usage."""
    async with serving(reply_words=3) as (sim, http):
        status, body, _ = await post(http, sim, "anthropic", "a b c d e", max_tokens=10)
    assert status == 200 and body["type"] == "message" and body["role"] == "assistant"
    assert body["content"] == [{"type": "text", "text": " ".join(generate_words("a b c d e", 0, 3))}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("end_turn", None)
    assert body["usage"] == {"input_tokens": 5, "output_tokens": 3}


async def test_openai_stream_sends_chunks_usage_and_done() -> None:
    """The stream's deltas rebuild the reply text; a usage chunk and data: [DONE] end it."""
    async with serving() as (sim, http):
        lines = await stream_lines(http, sim, "openai", max_tokens=6)
    chunks = data_of(lines)
    assert chunks[-1] == "[DONE]"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-2])
    assert content == " ".join(generate_words("hello there", 0, 6))
    assert chunks[-3]["choices"][0]["finish_reason"] == "length"
    assert chunks[-2]["choices"] == [] and chunks[-2]["usage"]["completion_tokens"] == 6


async def test_huggingface_stream_ends_with_generated_text() -> None:
    """Token events end with one carrying generated_text and details, and no [DONE] line."""
    async with serving() as (sim, http):
        events = data_of(await stream_lines(http, sim, "huggingface", max_tokens=3))
    assert len(events) == 3 and all(isinstance(e, dict) for e in events)
    assert events[-1]["generated_text"] == " ".join(generate_words("hello there", 0, 3))
    assert events[-1]["details"]["generated_tokens"] == 3


async def test_anthropic_stream_sends_named_events() -> None:
    """The stream runs message_start to message_stop with text deltas and the output tokens."""
    async with serving() as (sim, http):
        lines = await stream_lines(http, sim, "anthropic", max_tokens=2)
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert names == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_delta",
                     "content_block_stop", "message_delta", "message_stop"]
    events = data_of(lines)
    assert events[0]["message"]["usage"]["input_tokens"] == 2
    assert events[-2]["delta"]["stop_reason"] == "max_tokens" and events[-2]["usage"]["output_tokens"] == 2


async def test_health_routes_answer_in_vendor_shapes() -> None:
    """GET /v1/models lists models for OpenAI and Anthropic; GET /status/{model} says Loaded."""
    async with serving() as (sim, http):
        async with http.get(f"{sim.base_urls()['openai']}/models") as response:
            models = await response.json()
        async with http.get(f"{sim.base_url}/status/org/model-7b") as response:
            status = await response.json()
        stats = sim.stats()
    assert models["object"] == "list" and models["has_more"] is False
    assert models["data"][0]["object"] == "model" and models["data"][0]["type"] == "model"
    assert status == {"loaded": True, "state": "Loaded", "compute_type": "cpu",
                      "framework": "text-generation-inference"}
    assert stats["requests"]["health"] == 2


# -- faults -------------------------------------------------------------------------------------------------

EXPECTED_ERRORS: dict[tuple[str, str], tuple[int, Callable[[Any], bool]]] = {
    ("openai", "server_error"): (500, lambda b: b["error"]["type"] == "server_error"),
    ("openai", "overloaded"): (503, lambda b: "currently overloaded" in b["error"]["message"]),
    ("openai", "rate_limited"): (429, lambda b: b["error"]["code"] == "rate_limit_exceeded"),
    ("openai", "auth_error"): (401, lambda b: b["error"]["code"] == "invalid_api_key"),
    ("openai", "bad_request"): (400, lambda b: b["error"]["type"] == "invalid_request_error"),
    ("openai", "context_too_long"): (400, lambda b: b["error"]["code"] == "context_length_exceeded"),
    ("huggingface", "server_error"): (500, lambda b: isinstance(b["error"], str)),
    ("huggingface", "overloaded"): (503, lambda b: b == {"error": "Model org/model-7b is currently loading",
                                                         "estimated_time": 1.5}),
    ("huggingface", "rate_limited"): (429, lambda b: isinstance(b["error"], str)),
    ("huggingface", "auth_error"): (401, lambda b: b == {"error": "Invalid credentials in Authorization header"}),
    ("huggingface", "bad_request"): (400, lambda b: isinstance(b["error"], str)),
    ("huggingface", "context_too_long"): (422, lambda b: b["error_type"] == "validation"
                                          and "must be <= 4096. Given: 2 `inputs` tokens" in b["error"]),
    ("anthropic", "server_error"): (500, lambda b: b["error"]["type"] == "api_error"),
    ("anthropic", "overloaded"): (529, lambda b: b["error"]["type"] == "overloaded_error"),
    ("anthropic", "rate_limited"): (429, lambda b: b["error"]["type"] == "rate_limit_error"),
    ("anthropic", "auth_error"): (401, lambda b: b["error"]["type"] == "authentication_error"),
    ("anthropic", "bad_request"): (400, lambda b: b["error"]["type"] == "invalid_request_error"),
    ("anthropic", "context_too_long"): (400, lambda b: b["error"]["message"]
                                        == "prompt is too long: 2 tokens > 4096 maximum"),
}


@pytest.mark.parametrize("flavor, outcome", sorted(EXPECTED_ERRORS))
async def test_each_error_outcome_has_the_vendor_status_and_body(flavor: str, outcome: str) -> None:
    """A scripted error outcome answers with the vendor's status and error body; 429 has Retry-After."""
    status_wanted, body_ok = EXPECTED_ERRORS[(flavor, outcome)]
    async with serving(retry_after_s=1.5) as (sim, http):
        sim.script([outcome])
        status, body, response = await post(http, sim, flavor)
        stats = sim.stats()
    assert status == status_wanted and body_ok(body), body
    if flavor != "openai":
        assert isinstance(body, dict) and (flavor != "anthropic" or body["type"] == "error")
    if outcome == "rate_limited":
        assert response.headers["Retry-After"] == "2"
    assert stats["outcomes"][outcome] == 1


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_malformed_reply_is_a_200_that_is_not_json(flavor: str) -> None:
    """malformed answers 200 with a body that does not parse as JSON."""
    async with serving() as (sim, http):
        sim.script(["malformed"])
        url, body, headers = call(sim, flavor)
        async with http.post(url, json=body, headers=headers) as response:
            raw = await response.read()
    assert response.status == 200
    with pytest.raises(ValueError):
        json.loads(raw)


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_malformed_stream_has_one_data_line_that_is_not_json(flavor: str) -> None:
    """A malformed stream is otherwise complete but holds one data line that does not parse."""
    async with serving() as (sim, http):
        sim.script(["malformed"])
        lines = await stream_lines(http, sim, flavor, max_tokens=4)
    bad = []
    for line in lines:
        if line.startswith("data: ") and line != "data: [DONE]":
            try:
                json.loads(line[len("data: "):])
            except ValueError:
                bad.append(line)
    assert len(bad) == 1
    assert lines[-1] in ("data: [DONE]", 'data: {"type": "message_stop"}') or '"generated_text": "' in lines[-1]


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_truncated_reply_is_cut_short_of_its_content_length(flavor: str) -> None:
    """truncated announces a Content-Length, sends part of the JSON and closes: the client sees a payload error."""
    async with serving() as (sim, http):
        sim.script(["truncated"])
        url, body, headers = call(sim, flavor)
        async with http.post(url, json=body, headers=headers) as response:
            assert response.status == 200 and response.content_length is not None
            with pytest.raises(aiohttp.ClientPayloadError):
                await response.read()


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_truncated_stream_stops_without_its_terminator(flavor: str) -> None:
    """A truncated stream sends a few events and the connection closes before the terminator."""
    async with serving() as (sim, http):
        sim.script(["truncated"])
        url, body, headers = call(sim, flavor, stream=True, max_tokens=10)
        received: list[str] = []
        async with http.post(url, json=body, headers=headers) as response:
            with pytest.raises(aiohttp.ClientPayloadError):
                async for line in response.content:
                    received.append(line.decode())
    events = data_of([line.rstrip("\n") for line in received])
    assert events, "some events arrive before the cut"
    assert "[DONE]" not in events and all(e.get("generated_text") is None for e in events if "index" in e)
    assert all(e.get("type") != "message_stop" for e in events)


@pytest.mark.parametrize("flavor, last", [
    ("openai", lambda e: e["error"]["type"] == "server_error"),
    ("huggingface", lambda e: "error" in e and "error_type" in e),
    ("anthropic", lambda e: e == {"type": "error", "error": {"type": "overloaded_error",
                                                            "message": "Overloaded (simulated)"}}),
])
async def test_stream_error_ends_the_stream_with_the_vendor_error_event(flavor: str, last: Callable) -> None:
    """stream_error sends some tokens and then the vendor's mid-stream error event."""
    async with serving() as (sim, http):
        sim.script(["stream_error"])
        lines = await stream_lines(http, sim, flavor, max_tokens=5)
    assert last(data_of(lines)[-1])
    if flavor == "anthropic":
        assert lines[-2] == "event: error"


async def test_timeout_sends_nothing_for_hang_s() -> None:
    """timeout holds the request for hang_s: a client with a shorter timeout gives up."""
    async with serving(hang_s=30) as (sim, http):
        sim.script(["timeout"])
        url, body, headers = call(sim, "openai")
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await http.post(url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=0.2))
        assert time.monotonic() - started < 5


async def test_timeout_answers_normally_after_hang_s() -> None:
    """A client that waits longer than hang_s gets the ordinary reply."""
    async with serving(hang_s=0.1) as (sim, http):
        sim.script(["timeout"])
        started = time.monotonic()
        status, _, _ = await post(http, sim, "huggingface")
    assert status == 200 and time.monotonic() - started >= 0.1


async def test_stop_is_prompt_with_a_hung_request() -> None:
    """Stopping the simulator closes a request hung for 60 s at once; its client sees a disconnect."""
    async with serving(hang_s=60) as (sim, http):
        sim.script(["timeout"])
        url, body, headers = call(sim, "anthropic")
        hung = asyncio.create_task(http.post(url, json=body, headers=headers))
        await wait_until(lambda: sim.stats()["outcomes"]["timeout"] == 1)
        started = time.monotonic()
        await sim.stop()
        assert time.monotonic() - started < 1.0
        with pytest.raises(aiohttp.ClientConnectionError):
            await hung


# -- auth, context, bursts, scripts --------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_a_simulator_with_a_key_wants_it_in_the_vendor_header(flavor: str) -> None:
    """No key or a wrong key gets 401 in the vendor format; the right key in the vendor's header gets 200."""
    async with serving(api_key="sk-sim-123") as (sim, http):
        assert (await post(http, sim, flavor))[0] == 401
        assert (await post(http, sim, flavor, key="sk-wrong"))[0] == 401
        status, body, _ = await post(http, sim, flavor, key="sk-sim-123")
        assert status == 200, body
        assert "sk-sim-123" not in json.dumps((await post(http, sim, flavor, key="sk-wrong"))[1])


async def test_anthropic_ignores_a_bearer_key_and_health_checks_need_the_key() -> None:
    """Anthropic reads only x-api-key; /v1/models and /status accept the key in either vendor header."""
    async with serving(api_key="k") as (sim, http):
        url, body, headers = call(sim, "anthropic")
        async with http.post(url, json=body, headers={"Authorization": "Bearer k"}) as response:
            assert response.status == 401
        async with http.get(f"{sim.base_url}/v1/models") as response:
            assert response.status == 401 and "error" in await response.json()
        async with http.get(f"{sim.base_url}/v1/models", headers={"x-api-key": "k"}) as response:
            assert response.status == 200
        async with http.get(f"{sim.base_url}/status/m", headers={"Authorization": "Bearer k"}) as response:
            assert response.status == 200


@pytest.mark.parametrize("flavor, status", [("openai", 400), ("huggingface", 422), ("anthropic", 400)])
async def test_a_prompt_over_the_context_gets_context_too_long_before_any_script(flavor: str, status: int) -> None:
    """More prompt words than context_tokens is refused in the vendor's words; the script waits untouched."""
    async with serving(context_tokens=5) as (sim, http):
        sim.script(["server_error"])
        got, body, _ = await post(http, sim, flavor, "one two three four five six")
        stats = sim.stats()
        assert (await post(http, sim, flavor, "one two three four five"))[0] == 500
    assert got == status
    assert "6" in json.dumps(body) and "5" in json.dumps(body)
    assert stats["outcomes"]["context_too_long"] == 1 and stats["scripts_pending"] == 1


async def test_requests_inside_a_burst_get_429_with_the_seconds_left() -> None:
    """Right after start, inside a 5 s burst of every 60 s, requests get 429 with Retry-After up to 5."""
    async with serving(burst_every_s=60, burst_length_s=5) as (sim, http):
        for flavor in FLAVORS:
            status, _, response = await post(http, sim, flavor)
            assert status == 429 and 4 <= int(response.headers["Retry-After"]) <= 5
        stats = sim.stats()
    assert stats["outcomes"]["rate_limited"] == 3


async def test_scripts_per_flavor_over_the_control_api() -> None:
    """POST /_sim/script with a flavor affects only that flavor's requests, in order."""
    async with serving() as (sim, http):
        async with http.post(f"{sim.base_url}/_sim/script",
                             json={"outcomes": ["overloaded", "rate_limited"], "flavor": "huggingface"}) as response:
            assert response.status == 200 and (await response.json())["pending"] == 2
        assert (await post(http, sim, "openai"))[0] == 200
        assert (await post(http, sim, "anthropic"))[0] == 200
        assert [(await post(http, sim, "huggingface"))[0] for _ in range(3)] == [503, 429, 200]


async def test_bad_scripts_are_refused_over_the_control_api() -> None:
    """Unknown outcomes, flavors or keys in a script get 400 with a sentence and queue nothing."""
    async with serving() as (sim, http):
        for script in ({"outcomes": ["boom"]}, {"outcomes": ["ok"], "flavor": "cohere"}, {"outcome": ["ok"]}):
            async with http.post(f"{sim.base_url}/_sim/script", json=script) as response:
                assert response.status == 400 and (await response.json())["error"].endswith(".")
        assert sim.stats()["scripts_pending"] == 0


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_bodies_the_vendor_would_refuse_get_400(flavor: str) -> None:
    """A body that is not JSON gets the vendor's 400 and counts as bad_request."""
    async with serving() as (sim, http):
        url, _, headers = call(sim, flavor)
        async with http.post(url, data=b"{not json", headers={**headers, "Content-Type": "application/json"}) as r:
            assert r.status == 400
            body = await r.json()
        assert sim.stats()["outcomes"]["bad_request"] == 1
    assert "error" in (body if isinstance(body, dict) else {})


# -- profile, stats, connections ---------------------------------------------------------------------------


async def test_profile_is_read_and_partly_updated_over_the_control_api() -> None:
    """PUT /_sim/profile changes the keys sent, refuses unknown keys and bad values, and masks the key.

    A profile read back with GET can be PUT again without losing the key.
    """
    async with serving(api_key="secret") as (sim, http):
        async with http.put(f"{sim.base_url}/_sim/profile", json={"reply_words": 2, "error_rate": 0.5}) as response:
            assert response.status == 200
        async with http.get(f"{sim.base_url}/_sim/profile") as response:
            profile = await response.json()
        assert (profile["reply_words"], profile["error_rate"], profile["latency_ms"]) == (2, 0.5, 1.0)
        assert profile["api_key"] == "***"
        for update in ({"nope": 1}, {"error_rate": 2}, [1]):
            async with http.put(f"{sim.base_url}/_sim/profile", json=update) as response:
                assert response.status == 400
                assert (await response.json())["error"].endswith(".")
        assert sim.profile.reply_words == 2 and sim.profile.error_rate == 0.5
        async with http.put(f"{sim.base_url}/_sim/profile", json={**profile, "error_rate": 0}) as response:
            assert response.status == 200
        assert sim.profile.api_key == "secret" and sim.profile.error_rate == 0


async def test_stats_count_requests_and_outcomes_and_reset_keeps_the_profile() -> None:
    """Stats count requests per flavor and outcomes; POST /_sim/reset zeroes them and clears scripts only."""
    async with serving(reply_words=1) as (sim, http):
        sim.script(["server_error"], flavor="anthropic")
        for flavor in ("openai", "openai", "anthropic", "huggingface"):
            await post(http, sim, flavor)
        sim.script(["ok", "ok"])
        async with http.get(f"{sim.base_url}/_sim/stats") as response:
            stats = await response.json()
        assert stats["requests"] == {"openai": 2, "huggingface": 1, "anthropic": 1, "health": 0}
        assert (stats["outcomes"]["ok"], stats["outcomes"]["server_error"], stats["scripts_pending"]) == (3, 1, 2)
        async with http.post(f"{sim.base_url}/_sim/reset") as response:
            zeroed = await response.json()
    assert sum(zeroed["requests"].values()) == sum(zeroed["outcomes"].values()) == 0
    assert zeroed["scripts_pending"] == 0 and sim.profile.reply_words == 1


async def test_one_keep_alive_session_is_one_connection() -> None:
    """Ten sequential requests over one keep-alive session count one connection opened, and it stays open."""
    async with serving() as (sim, http):
        for _ in range(10):
            assert (await post(http, sim, "openai"))[0] == 200
        stats = sim.stats()
    assert (stats["connections_opened"], stats["connections_open"]) == (1, 1)
    assert stats["requests"]["openai"] == 10


async def test_force_close_opens_a_connection_per_request() -> None:
    """With force_close each of ten requests opens its own connection, and all of them end up closed."""
    async with serving() as (sim, _):
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT) as http:
            for _ in range(10):
                assert (await post(http, sim, "huggingface"))[0] == 200
        await wait_until(lambda: sim.stats()["connections_open"] == 0)
        assert sim.stats()["connections_opened"] == 10


async def test_bound_port_and_base_urls() -> None:
    """Port 0 binds a free port, exposed as port; base URLs follow each vendor's convention."""
    async with serving() as (sim, _):
        assert sim.port > 0 and sim.base_url == f"http://127.0.0.1:{sim.port}"
        assert sim.base_urls() == {"openai": f"{sim.base_url}/v1", "huggingface": sim.base_url,
                                   "anthropic": sim.base_url}


async def test_run_simulator_prints_base_urls_and_stops_on_sigint() -> None:
    """The blocking entrypoint prints each flavor's base URL, serves, reports progress and exits 0 on SIGINT."""
    code = ("from llmrouter.simulator import SimProfile, run_simulator; import sys; "
            "sys.exit(run_simulator('127.0.0.1', 0, SimProfile(latency_ms=0), progress_every_s=0.05))")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=os.getcwd())
    assert proc.stdout is not None
    lines = [(await asyncio.wait_for(proc.stdout.readline(), 20)).decode() for _ in range(4)]
    try:
        openai_url = lines[1].split()[-1]
        assert lines[0].startswith("llm-router provider simulator listening on http://127.0.0.1:")
        assert openai_url.endswith("/v1") and lines[2].split()[-1] == lines[3].split()[-1] == openai_url[:-3]
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as http:
            async with http.get(f"{openai_url}/models") as response:
                assert response.status == 200
        while b"health=1" not in await asyncio.wait_for(proc.stdout.readline(), 10):
            pass
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0 and out.decode().rstrip().endswith("simulator stopped")
