"""The provider simulator's HTTP server: OpenAI, Hugging Face and Anthropic on one port.

Routes (see docs/simulator.md): ``POST /v1/chat/completions``,
``POST /models/{model}``, ``POST /v1/messages`` generate; ``GET /v1/models``
and ``GET /status/{model}`` are health checks; ``/_sim/...`` is the control
API (stats, reset, profile, script) and needs no key.

A generation request goes: key check (401 in the vendor's format), body
check (400), context check (prompt words over ``context_tokens`` ->
``context_too_long``), then :class:`OutcomePicker`; then the server waits
the sampled latency (``hang_s`` for ``timeout``) and answers as the outcome
says. Waits end early when the simulator stops: a hung request has its
connection closed, so :meth:`Simulator.stop` returns promptly.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import random
import signal
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from llmrouter.errors import ConfigError
from llmrouter.simulator.formats import (
    MALFORMED_BODY, ParsedRequest, ReplyContext, WireReply, error_reply, hf_status_body, models_body, ok_body, parse_request,
    stream_plan, truncated_body,
)
from llmrouter.simulator.profile import (
    FLAVORS, KEY_MASK, OUTCOMES, Decision, OutcomePicker, SimProfile, generate_words, reply_plan, sample_latency_s,
)

__all__ = ["Simulator", "progress_line", "run_simulator"]

_STREAM_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
_ID_PREFIX = {"openai": "chatcmpl-sim-", "huggingface": "hf-sim-", "anthropic": "msg_sim_"}
_SHORT_PAUSE_S = 0.05  # below this a wait is a plain sleep; longer waits end when the simulator stops
ARRIVALS_KEPT = 100_000
_MAX_BODY_BYTES = 32 * 1024 * 1024  # long prompts for context tests; aiohttp's default is 1 MiB


class _Stats:
    """Counters of the control API.

    Connections are counted per TCP connection on the server side: a weak
    set holds the transport of every connection that carried a provider
    request (aiohttp's protocol objects take no weak references), so a
    closed connection drops out by itself. Control API traffic is not counted.
    """

    def __init__(self) -> None:
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self.reset()

    def reset(self) -> None:
        """Zero the counters; connections still open are not counted again as opened."""
        self.requests: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.connections_opened = 0
        self.arrivals: deque[float] = deque(maxlen=ARRIVALS_KEPT)  # time.time() of each generation request

    def saw_request(self, kind: str, transport: Any) -> None:
        """Count a provider request of ``kind`` and, the first time, the TCP connection (transport) carrying it."""
        self.requests[kind] += 1
        if kind != "health":
            self.arrivals.append(time.time())
        if transport is not None and transport not in self._seen:
            self._seen.add(transport)
            self.connections_opened += 1

    def snapshot(self, *, scripts_pending: int) -> dict[str, Any]:
        """The stats as the control API returns them."""
        return {
            "requests": {kind: self.requests[kind] for kind in (*FLAVORS, "health")},
            "outcomes": {outcome: self.outcomes[outcome] for outcome in OUTCOMES},
            "connections_opened": self.connections_opened,
            "connections_open": sum(1 for transport in self._seen if not transport.is_closing()),
            "scripts_pending": scripts_pending,
        }


class Simulator:
    """A simulated cloud provider speaking three vendors' wire formats on one port.

    ``await start(host, port)`` serves it (port 0 picks a free port, see
    :attr:`port`) and returns the root URL; ``await stop()`` ends it,
    closing hung requests. The profile, scripts and stats can be changed
    in-process (:meth:`update_profile`, :meth:`script`, :meth:`reset`) as
    well as over the control API.
    """

    def __init__(self, profile: SimProfile | None = None, *, rng: random.Random | None = None) -> None:
        self._profile = profile if profile is not None else SimProfile()
        self._own_rng = rng is None
        self._rng = rng if rng is not None else random.Random(self._profile.seed)
        self._picker = OutcomePicker(self._rng)
        self._stats = _Stats()
        self._clock_zero = time.monotonic()
        self._reply_numbers = itertools.count(1)
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._host = ""
        self._port = 0
        self.app = self._build_app()

    # -- in-process control ---------------------------------------------------------------------------------

    @property
    def profile(self) -> SimProfile:
        return self._profile

    def update_profile(self, values: Mapping[str, Any]) -> SimProfile:
        """Apply a partial profile update (ConfigError on unknown keys or bad values); reseeds on a new seed."""
        updated = self._profile.with_updates(values)
        if updated.seed != self._profile.seed and self._own_rng:
            self._rng.seed(updated.seed)
        self._profile = updated
        return updated

    def script(self, outcomes: list[str], flavor: str | None = None) -> int:
        """Make the next requests (of ``flavor``, or any) take ``outcomes`` in order; returns the queue length."""
        return self._picker.add_script(outcomes, flavor)

    def reset(self) -> None:
        """Zero the stats, clear scripts, reseed and restart the burst clock; the profile stays."""
        self._stats.reset()
        self._picker.clear()
        if self._own_rng:
            self._rng.seed(self._profile.seed)
        self._clock_zero = time.monotonic()

    def arrivals(self) -> list[float]:
        """When each generation request arrived (``time.time()``, the last 100,000): what a provider's own rate
        limiter would count."""
        return list(self._stats.arrivals)

    def stats(self) -> dict[str, Any]:
        """Requests by flavor, outcomes, connections opened and open, scripted outcomes left."""
        return self._stats.snapshot(scripts_pending=len(self._picker.pending()))

    # -- serving ---------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (0 until started)."""
        return self._port

    @property
    def base_url(self) -> str:
        """The root URL, ``http://host:port`` (Hugging Face and Anthropic base; OpenAI adds ``/v1``)."""
        return f"http://{self._host}:{self._port}"

    def base_urls(self) -> dict[str, str]:
        """The base_url to give llm-router for each flavor."""
        return {"openai": f"{self.base_url}/v1", "huggingface": self.base_url, "anthropic": self.base_url}

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` and return :attr:`base_url`; OSError if the port is taken."""
        if self._runner is not None:
            raise RuntimeError("The simulator is already running.")
        self._stopping.clear()
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._host, self._port = host, runner.addresses[0][1]
        self._clock_zero = time.monotonic()
        return self.base_url

    async def stop(self) -> None:
        """Stop serving: hung and streaming requests have their connections closed first."""
        self._stopping.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/models/{model:.+}", self._huggingface)
        app.router.add_post("/v1/messages", self._anthropic)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/status/{model:.+}", self._hf_status)
        app.router.add_get("/_sim/stats", self._get_stats)
        app.router.add_post("/_sim/reset", self._reset)
        app.router.add_get("/_sim/profile", self._get_profile)
        app.router.add_put("/_sim/profile", self._put_profile)
        app.router.add_post("/_sim/script", self._post_script)
        return app

    # -- provider routes -------------------------------------------------------------------------------------

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "openai")

    async def _huggingface(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "huggingface", path_model=request.match_info["model"])

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "anthropic")

    async def _models(self, request: web.Request) -> web.Response:
        self._stats.saw_request("health", request.transport)
        flavor = "anthropic" if "x-api-key" in request.headers else "openai"
        if not self._authorized(request, flavor, self._profile):
            return _response(error_reply(flavor, "auth_error"))
        return web.Response(body=models_body(), content_type="application/json")

    async def _hf_status(self, request: web.Request) -> web.Response:
        self._stats.saw_request("health", request.transport)
        if not self._authorized(request, "huggingface", self._profile):
            return _response(error_reply("huggingface", "auth_error"))
        return web.Response(body=hf_status_body(), content_type="application/json")

    async def _generate(self, request: web.Request, flavor: str, *, path_model: str = "") -> web.StreamResponse:
        """Check key and body, draw the outcome, wait the latency (or hang), then answer as the outcome says."""
        profile = self._profile  # a PUT meanwhile applies to later requests
        self._stats.saw_request(flavor, request.transport)
        if not self._authorized(request, flavor, profile):
            return await self._answer_error(flavor, "auth_error", profile)
        try:
            parsed = parse_request(flavor, json.loads(await request.read()), path_model=path_model)
        except ValueError as exc:  # not JSON, not UTF-8, or a RequestProblem
            return await self._answer_error(flavor, "bad_request", profile, message=f"Bad request: {exc}",
                                            param=getattr(exc, "param", None))
        if parsed.prompt_tokens > profile.context_tokens:
            decision = Decision("context_too_long", profile.retry_after_s, "context")
        else:
            decision = self._picker.choose(profile, flavor, time.monotonic() - self._clock_zero)
        self._stats.outcomes[decision.outcome] += 1
        wait_s = profile.hang_s if decision.outcome == "timeout" else sample_latency_s(profile, self._rng)
        if not await self._pause(wait_s):
            return _cut(request)
        return await self._answer(request, flavor, parsed, decision, profile)

    async def _answer(self, request: web.Request, flavor: str, parsed: ParsedRequest, decision: Decision,
                      profile: SimProfile) -> web.StreamResponse:
        """Send the reply of ``decision``; ``timeout`` has already hung and answers like ``ok``."""
        outcome = "ok" if decision.outcome == "timeout" else decision.outcome
        if outcome not in ("ok", "malformed", "truncated") and not (parsed.stream and outcome == "stream_error"):
            return _response(error_reply(
                flavor, outcome, model=parsed.model, retry_after_s=decision.retry_after_s,
                prompt_tokens=parsed.prompt_tokens, context_tokens=profile.context_tokens,
                max_tokens=parsed.max_tokens))
        count, finish = reply_plan(profile, parsed.max_tokens)
        ctx = ReplyContext(
            reply_id=f"{_ID_PREFIX[flavor]}{next(self._reply_numbers)}", created=int(time.time()), model=parsed.model,
            prompt_tokens=parsed.prompt_tokens, words=tuple(generate_words(parsed.prompt, profile.seed, count)),
            finish=finish, include_usage=parsed.include_usage)
        if parsed.stream:
            return await self._stream(request, flavor, ctx, outcome, profile.token_delay_ms / 1000.0)
        if outcome == "malformed":
            return web.Response(body=MALFORMED_BODY, content_type="application/json")
        if outcome == "truncated":
            return await _send_truncated(request, ok_body(flavor, ctx))
        return web.Response(body=ok_body(flavor, ctx), content_type="application/json")

    async def _answer_error(self, flavor: str, outcome: str, profile: SimProfile, *, message: str | None = None,
                            param: str | None = None) -> web.StreamResponse:
        """An error decided before the outcome draw (bad key or body), after the usual latency."""
        self._stats.outcomes[outcome] += 1
        await self._pause(sample_latency_s(profile, self._rng))
        return _response(error_reply(flavor, outcome, message=message, param=param))

    async def _stream(self, request: web.Request, flavor: str, ctx: ReplyContext, outcome: str,
                      delay_s: float) -> web.StreamResponse:
        events, cut = stream_plan(flavor, ctx, outcome)
        response = web.StreamResponse(headers=_STREAM_HEADERS)
        try:
            await response.prepare(request)
            for index, event in enumerate(events):
                if index and not await self._pause(delay_s):
                    return _cut(request, response)
                await response.write(event)
            if cut:
                return _cut(request, response)
            await response.write_eof()
        except ConnectionError:  # the client went away mid-stream
            pass
        return response

    def _authorized(self, request: web.Request, flavor: str, profile: SimProfile) -> bool:
        if profile.api_key is None:
            return True
        if flavor == "anthropic":
            given = request.headers.get("x-api-key", "")
        else:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            given = given.strip() if scheme.lower() == "bearer" else ""
        return hmac.compare_digest(given.encode(), profile.api_key.encode())

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False (at once) if the simulator stops meanwhile."""
        if seconds < _SHORT_PAUSE_S:
            if seconds > 0:
                await asyncio.sleep(seconds)
            return not self._stopping.is_set()
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    # -- control API -----------------------------------------------------------------------------------------

    async def _get_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response(self.stats())

    async def _get_profile(self, request: web.Request) -> web.Response:
        return web.json_response(self._profile.as_dict())

    async def _put_profile(self, request: web.Request) -> web.Response:
        try:
            values = await _json_object(request)
            if values.get("api_key") == KEY_MASK:  # a profile read back from GET keeps its key
                del values["api_key"]
            profile = self.update_profile(values)
        except ConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(profile.as_dict())

    async def _post_script(self, request: web.Request) -> web.Response:
        try:
            body = await _json_object(request)
            unknown = sorted(set(body) - {"outcomes", "flavor"})
            if unknown:
                raise ConfigError(f"Unknown script key(s) {', '.join(map(repr, unknown))}; send 'outcomes' and 'flavor'.")
            if not isinstance(body.get("outcomes"), list):
                raise ConfigError("A script needs 'outcomes': a list of outcome names.")
            pending = self.script(body["outcomes"], body.get("flavor"))
        except ConfigError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"pending": pending, "script": self._picker.pending()})


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.read())
    except ValueError as exc:
        raise ConfigError(f"The request body is not JSON ({exc}).") from exc
    if not isinstance(body, dict):
        raise ConfigError("The request body must be a JSON object.")
    return body


def _response(reply: WireReply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body, headers=reply.headers)


def _cut(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection without finishing the reply (aiohttp then skips writing it)."""
    if request.transport is not None:
        request.transport.close()
    return response if response is not None else web.Response()


async def _send_truncated(request: web.Request, full: bytes) -> web.StreamResponse:
    """Announce ``len(full)`` bytes, send about half, close the connection."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(full)
    try:
        await response.prepare(request)
        await response.write(truncated_body(full))
    except ConnectionError:
        pass
    return _cut(request, response)


def progress_line(stats: Mapping[str, Any]) -> str:
    """One line summing up ``stats``: requests by kind, non-zero outcomes, connections."""
    requests = " ".join(f"{kind}={n}" for kind, n in stats["requests"].items())
    outcomes = " ".join(f"{name}={n}" for name, n in stats["outcomes"].items() if n) or "none"
    return (f"requests: {requests} | outcomes: {outcomes} | connections: open={stats['connections_open']} "
            f"opened={stats['connections_opened']}")


def run_simulator(host: str, port: int, profile: SimProfile, *, echo: Callable[[str], None] = print,
                  progress_every_s: float = 5.0) -> int:
    """Serve until SIGINT/SIGTERM, printing the base URLs and a progress line when the stats change."""
    return asyncio.run(_serve(host, port, profile, echo, progress_every_s))


async def _serve(host: str, port: int, profile: SimProfile, echo: Callable[[str], None],
                 progress_every_s: float) -> int:
    simulator = Simulator(profile)
    await simulator.start(host, port)
    urls = simulator.base_urls()
    echo(f"llm-router provider simulator listening on {simulator.base_url}")
    echo(f"  OpenAI base_url:       {urls['openai']}")
    echo(f"  Hugging Face base_url: {urls['huggingface']}")
    echo(f"  Anthropic base_url:    {urls['anthropic']}")
    echo(f"  control API:           {simulator.base_url}/_sim/stats | /_sim/profile | /_sim/script | /_sim/reset")
    echo(f"  profile: {profile!r}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    last = ""
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), progress_every_s)
            except TimeoutError:
                pass
            line = progress_line(simulator.stats())
            if line != last:
                echo(line)
                last = line
    finally:
        await simulator.stop()
    echo("simulator stopped")
    return 0
