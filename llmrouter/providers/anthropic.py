"""Anthropic messages (kind ``anthropic``).

``POST {base}/v1/messages`` with ``x-api-key: KEY`` and
``anthropic-version: 2023-06-01``. System-role messages go into ``system``
(joined by blank lines); every other message is a ``user`` turn unless its
role is ``assistant``. Streams are named events (``message_start``,
``content_block_delta``, ``message_delta``, ``message_stop``, ``ping``,
``error``); ``message_stop`` is the terminator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from llmrouter.providers.base import Generation, Prompt, StreamDelta
from llmrouter.providers.http import HttpProvider, VendorError, expect_count, expect_str
from llmrouter.providers.sse import SseEvent

__all__ = ["AnthropicProvider", "ANTHROPIC_VERSION"]

ANTHROPIC_VERSION = "2023-06-01"
_PATH = "/v1/messages"
_STATUS_OF_TYPE = {
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
    "request_too_large": 413, "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529,
}


class AnthropicProvider(HttpProvider):
    """Claude models through the messages API."""

    async def generate(self, prompt: Prompt) -> Generation:
        """One message; text is the reply's text blocks joined; usage as reported."""
        payload = await self._post_json(_PATH, self._body(prompt, stream=False))
        with self._reading("the message"):
            text = "".join(expect_str(block["text"]) for block in payload["content"] if block["type"] == "text")
            usage = payload["usage"]
            return Generation(text=text, model=expect_str(payload.get("model") or self.spec.model),
                              prompt_tokens=expect_count(usage["input_tokens"]),
                              completion_tokens=expect_count(usage["output_tokens"]),
                              finish_reason=_finish(payload.get("stop_reason")))

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        """Text deltas in order, then the final :class:`Generation` (usage from message_start/message_delta)."""
        parts: list[str] = []
        model, finish, prompt_tokens, completion_tokens = self.spec.model, "stop", 0, 0
        events = self._post_sse(_PATH, self._body(prompt, stream=True), is_last=_is_stop)
        async with aclosing(events):
            async for event in events:
                if event.event == "ping" or _is_stop(event):
                    continue
                data = self._event_json(event)
                if event.event == "error" or (isinstance(data, dict) and data.get("type") == "error"):
                    raise self._stream_error(data)
                with self._reading(f"a {event.event} event"):
                    if event.event == "message_start":
                        message = data["message"]
                        model = expect_str(message.get("model") or model)
                        prompt_tokens = expect_count(message["usage"]["input_tokens"])
                    elif event.event == "content_block_delta" and data["delta"].get("type") == "text_delta":
                        delta = expect_str(data["delta"]["text"])
                        parts.append(delta)
                        yield StreamDelta(delta=delta)
                    elif event.event == "message_delta":
                        finish = _finish(data["delta"].get("stop_reason"))
                        completion_tokens = expect_count(data.get("usage", {}).get("output_tokens", len(parts)))
        yield StreamDelta(delta="", final=Generation(text="".join(parts), model=model, prompt_tokens=prompt_tokens,
                                                     completion_tokens=completion_tokens, finish_reason=finish))

    def _auth_headers(self) -> dict[str, str]:
        """``x-api-key`` (when there is a key) and the API version."""
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._api_key:
            headers["x-api-key"] = self._api_key
        return headers

    def _default_health_url(self) -> str:
        """``GET {base}/v1/models``."""
        return self.spec.base_url + "/v1/models"

    def _read_error(self, status: int | None, payload: Any) -> VendorError:
        """``{"type": "error", "error": {"type", "message"}}``; "prompt is too long" is context too long."""
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, dict):
            return VendorError(status=status or 500, message=str(payload))
        kind, message = str(error.get("type") or ""), str(error.get("message") or "")
        status = status or _STATUS_OF_TYPE.get(kind, 500)
        return VendorError(status=status, message=f"{kind}: {message}" if kind else message,
                           context_too_long=status in (400, 413) and "prompt is too long" in message.lower())

    def _body(self, prompt: Prompt, *, stream: bool) -> dict[str, Any]:
        turns = [("user", prompt.text)] if prompt.text else list(prompt.messages)
        system = "\n\n".join(content for role, content in turns if role == "system")
        messages = [{"role": "assistant" if role == "assistant" else "user", "content": content}
                    for role, content in turns if role != "system"]
        body: dict[str, Any] = {"model": self.spec.model, "max_tokens": prompt.max_tokens, "messages": messages,
                                "temperature": prompt.temperature, "stream": stream}
        if system:
            body["system"] = system
        return body


def _is_stop(event: SseEvent) -> bool:
    return event.event == "message_stop"


def _finish(reason: Any) -> str:
    """``max_tokens`` is ``length``; ``end_turn``, ``stop_sequence`` and the rest are ``stop``."""
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"stop_reason {reason!r} is not a string")
    return "length" if reason == "max_tokens" else "stop"
