"""The HTTP plumbing every cloud provider shares.

:class:`HttpProvider` owns one ``aiohttp.ClientSession`` per provider,
created by :meth:`~HttpProvider.start` and closed by
:meth:`~HttpProvider.stop`, over a keep-alive connection pool of
``spec.max_concurrent`` connections. Vendor modules (``openai_chat``,
``huggingface``, ``anthropic``) only build request bodies and read replies;
every failure is turned into the error tree here, in one place:

=========================================  ===========================
what happened                              raised
=========================================  ===========================
HTTP status >= 400                         ``error_for_status`` (429 keeps
                                           ``Retry-After``), or
                                           :class:`ContextTooLong` when the
                                           vendor's body says so
an error event inside a stream             the same, from the status the
                                           vendor's error type stands for
connection refused / reset / disconnected  :class:`ProviderUnavailable`
no answer within ``spec.timeout_s``        :class:`ProviderTimeout`
body not JSON, JSON of the wrong shape,    :class:`MalformedReply`
stream cut before its terminator
=========================================  ===========================

Timeouts: a plain call must finish within ``spec.timeout_s`` in total; a
stream must connect, and then receive some bytes at least every
``spec.timeout_s`` (a long answer may stream for longer in total).

Error messages name the provider, its kind and the HTTP status, quote at
most :data:`QUOTE_CHARS` characters of the vendor's message, and never
contain the API key (it is redacted should a vendor echo it).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp

from llmrouter.errors import (ContextTooLong, MalformedReply, ProviderError, ProviderTimeout, ProviderUnavailable,
                              error_for_status)
from llmrouter.providers.base import Capabilities, Health, LLMProvider
from llmrouter.providers.spec import ProviderSpec
from llmrouter.providers.sse import SseEvent, SseParser, parse_retry_after

__all__ = ["HttpProvider", "VendorError", "QUOTE_CHARS", "KEEPALIVE_S", "expect_count", "expect_str"]

QUOTE_CHARS = 200  # at most this much of a vendor's message goes into an error
KEEPALIVE_S = 30.0  # how long an idle pooled connection is kept open
_REDACTED = "[redacted]"


@dataclass(frozen=True, kw_only=True)
class VendorError:
    """What a vendor's error body says, as read by a provider's :meth:`HttpProvider._read_error`.

    ``status`` is the HTTP status to map (for an error event inside a
    stream: the status the vendor's error type stands for).
    """

    status: int
    message: str
    context_too_long: bool = False
    retry_after_s: float | None = None  # from the body (e.g. Hugging Face's estimated_time)


class HttpProvider(LLMProvider):
    """A provider reached over HTTP: session, pool, error mapping, health, capabilities, cost.

    Subclasses implement ``generate`` and ``stream`` with :meth:`_post_json`
    and :meth:`_post_sse`, and the hooks :meth:`_auth_headers`,
    :meth:`_default_health_url` and :meth:`_read_error`.
    """

    def __init__(self, spec: ProviderSpec, api_key: str | None) -> None:
        self.spec = spec
        self.name = spec.name
        self._api_key = api_key or None
        self._session: aiohttp.ClientSession | None = None
        self._connector: aiohttp.TCPConnector | None = None
        self._connections_opened = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the session and its pool (``max_concurrent`` keep-alive connections)."""
        if self._session is not None:
            return
        self._connector = aiohttp.TCPConnector(limit=self.spec.max_concurrent, keepalive_timeout=KEEPALIVE_S,
                                               enable_cleanup_closed=True)
        tracing = aiohttp.TraceConfig()
        tracing.on_connection_create_end.append(self._count_connection)
        self._session = aiohttp.ClientSession(connector=self._connector, trace_configs=[tracing],
                                              timeout=aiohttp.ClientTimeout(total=self.spec.timeout_s))

    async def stop(self) -> None:
        """Close the session and every pooled connection."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self._connector = None

    async def _count_connection(self, _session: aiohttp.ClientSession, _ctx: SimpleNamespace, _params: Any) -> None:
        self._connections_opened += 1

    # -- LLMProvider -------------------------------------------------------------------------

    async def health_check(self) -> Health:
        """GET the health URL (``spec.health_check_url`` or the vendor's model list); never raises.

        Healthy when it answers 2xx within ``timeout_s``; the detail names the
        status or the error; ``latency_s`` is the time the check took.
        """
        url = self.spec.health_check_url or self._default_health_url()
        started = time.monotonic()
        try:
            async with self._exchange("GET", url, None) as response:
                await response.read()
                status = response.status
        except ProviderError as exc:
            return Health(healthy=False, detail=f"{exc.code}: {exc}", latency_s=time.monotonic() - started)
        return Health(healthy=True, detail=f"{self.name}: HTTP {status} from {url}",
                      latency_s=time.monotonic() - started)

    def get_capabilities(self) -> Capabilities:
        """The spec's models, context window and tags; cloud providers stream and are not local."""
        return Capabilities(models=self.spec.models, context_tokens=self.spec.context_window, streaming=True,
                            tags=self.spec.capabilities)

    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """US dollars at the spec's prices per 1000 input and output tokens."""
        return self.spec.estimate_cost_usd(prompt_tokens, completion_tokens)

    def pool_stats(self) -> dict[str, int]:
        """The connection pool now: ``open`` (= ``in_use`` + ``idle``), ``limit``, and ``opened`` since start."""
        connector = self._connector
        in_use = idle = 0
        if connector is not None and not connector.closed:
            # aiohttp has no public count of pooled connections; these are its bookkeeping sets
            in_use = len(getattr(connector, "_acquired", ()))
            idle = sum(len(conns) for conns in getattr(connector, "_conns", {}).values())
        return {"open": in_use + idle, "in_use": in_use, "idle": idle, "limit": self.spec.max_concurrent,
                "opened": self._connections_opened}

    # -- hooks for the vendor modules --------------------------------------------------------

    def _auth_headers(self) -> dict[str, str]:
        """Headers that carry the key (none when there is no key)."""
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    def _default_health_url(self) -> str:
        """The vendor's cheapest authenticated GET."""
        return self.spec.base_url

    def _read_error(self, status: int | None, payload: Any) -> VendorError:
        """Read a vendor error body (JSON, or the raw text); ``status`` is None inside a stream."""
        return VendorError(status=status or 500, message=payload if isinstance(payload, str) else json.dumps(payload))

    # -- requests ----------------------------------------------------------------------------

    async def _post_json(self, path_or_url: str, body: Mapping[str, Any],
                         headers: Mapping[str, str] | None = None) -> Any:
        """POST ``body`` as JSON and return the decoded JSON reply (any failure mapped)."""
        async with self._exchange("POST", self._url(path_or_url), body, headers) as response:
            raw = await response.read()
        return self._decode(raw, f"HTTP {response.status} reply")

    async def _post_sse(self, path_or_url: str, body: Mapping[str, Any], *, is_last: Callable[[SseEvent], bool],
                        headers: Mapping[str, str] | None = None) -> AsyncGenerator[SseEvent, None]:
        """POST ``body`` and yield the server-sent events of the reply up to the one ``is_last`` accepts.

        The rest of the body is read (so the connection can be reused)
        before that last event is yielded. A body that ends before such an
        event raises :class:`MalformedReply`.
        """
        parser = SseParser()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.spec.timeout_s, sock_read=self.spec.timeout_s)
        async with self._exchange("POST", self._url(path_or_url), body, headers, timeout=timeout) as response:
            async for chunk in response.content.iter_any():
                for event in parser.feed(chunk):
                    if is_last(event):
                        with suppress(aiohttp.ClientError, TimeoutError):  # the answer is complete already
                            await response.content.read()
                        yield event
                        return
                    yield event
            raise self._malformed("the stream ended before its terminator"
                                  + (" (in the middle of an event)" if parser.pending else ""))

    def _event_json(self, event: SseEvent) -> Any:
        """The JSON in an event's data; :class:`MalformedReply` when it is not JSON."""
        return self._decode(event.data.encode(), f"stream event {event.event!r}")

    def _stream_error(self, payload: Any) -> ProviderError:
        """The error for an error event inside a stream, read with the vendor's hook."""
        vendor = self._read_error(None, payload)
        return self._mapped(vendor, f"error event in the stream (as HTTP {vendor.status})", vendor.retry_after_s)

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn a reply of the wrong shape (missing keys, wrong types) into :class:`MalformedReply`."""
        try:
            yield
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            raise self._malformed(f"{what} has an unexpected shape ({type(exc).__name__}: {_quote(str(exc))})") from exc

    # -- the one mapping place ---------------------------------------------------------------

    @asynccontextmanager
    async def _exchange(self, method: str, url: str, body: Mapping[str, Any] | None,
                        headers: Mapping[str, str] | None = None, *,
                        timeout: aiohttp.ClientTimeout | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request; yield the response when its status is < 400; map every failure."""
        if self._session is None:
            raise ProviderUnavailable(f"{self._label()}: not started; call start() first", provider=self.name)
        all_headers = {**self._auth_headers(), **(headers or {})}
        options: dict[str, Any] = {"headers": all_headers, "allow_redirects": False}  # a key never follows one
        if body is not None:
            options["json"] = body
        if timeout is not None:
            options["timeout"] = timeout
        try:
            async with self._session.request(method, url, **options) as response:
                if response.status >= 400:
                    raise await self._status_error(response)
                if response.status >= 300:  # aiohttp would send x-api-key to wherever it points
                    raise self._malformed(f"HTTP {response.status} redirect to "
                                          f"{_quote(response.headers.get('Location', '?'))!r}, not followed")
                yield response
        except ProviderError:
            raise
        except TimeoutError as exc:
            raise ProviderTimeout(self._redact(f"{self._label()}: no answer within {self.spec.timeout_s} s"),
                                  provider=self.name) from exc
        except aiohttp.ClientPayloadError as exc:
            raise self._malformed(f"the connection closed before the reply was complete ({_quote(str(exc))})") from exc
        except aiohttp.ClientError as exc:  # refused, reset, disconnected, invalid URL
            raise ProviderUnavailable(self._redact(f"{self._label()}: {type(exc).__name__}: {_quote(str(exc))}"),
                                      provider=self.name) from exc

    async def _status_error(self, response: aiohttp.ClientResponse) -> ProviderError:
        raw = await response.read()
        text = raw.decode("utf-8", errors="replace")
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        try:
            vendor = self._read_error(response.status, payload)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            vendor = VendorError(status=response.status, message=text)
        header = parse_retry_after(response.headers.get("Retry-After"), time.time())
        return self._mapped(vendor, f"HTTP {response.status}", header if header is not None else vendor.retry_after_s)

    def _mapped(self, vendor: VendorError, where: str, retry_after_s: float | None) -> ProviderError:
        message = self._redact(f"{self._label()}: {where}: {_quote(vendor.message)}")
        if vendor.context_too_long:
            return ContextTooLong(message, provider=self.name)
        return error_for_status(vendor.status, message, provider=self.name, retry_after_s=retry_after_s)

    def _decode(self, raw: bytes, what: str) -> Any:
        try:
            return json.loads(raw)
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            body = raw.decode("utf-8", errors="replace")
            raise self._malformed(f"{what} is not JSON: {_quote(body)!r}") from exc

    def _malformed(self, detail: str) -> MalformedReply:
        return MalformedReply(self._redact(f"{self._label()}: {detail}"), provider=self.name)

    # -- small helpers -----------------------------------------------------------------------

    def _label(self) -> str:
        return f"{self.name} ({self.spec.kind})"

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return self.spec.base_url + path_or_url

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, _REDACTED) if self._api_key else text


def _quote(text: str) -> str:
    """``text`` on one line, at most :data:`QUOTE_CHARS` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= QUOTE_CHARS else flat[:QUOTE_CHARS - 1] + "…"


def expect_str(value: Any) -> str:
    """``value`` when it is a string; TypeError otherwise (read as a malformed reply)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def expect_count(value: Any) -> int:
    """``value`` when it is a non-negative integer; TypeError otherwise (read as a malformed reply)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"expected a token count, got {value!r}")
    return value
