"""OpenAI chat completions, also spoken by Together and OpenAI-compatible servers
(kinds ``openai``, ``together``, ``openai_compatible``).

``POST {base}/chat/completions`` with ``Authorization: Bearer KEY`` (no
header when there is no key). A text prompt goes as one user message.
Streams ask for ``stream_options.include_usage``; a server that sends no
usage chunk gets its usage estimated: one completion token per content
delta, prompt tokens by :meth:`count_tokens`. The stream's terminator is
``data: [DONE]``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from llmrouter.providers.base import Generation, Prompt, StreamDelta
from llmrouter.providers.http import HttpProvider, VendorError, expect_count, expect_str
from llmrouter.providers.sse import SseEvent

__all__ = ["OpenAIChatProvider"]

_PATH = "/chat/completions"
_CONTEXT_MARKERS = ("maximum context length", "context_length_exceeded", "too many tokens")
_STATUS_OF_TYPE = {  # for an error chunk inside a stream
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
    "rate_limit_exceeded": 429, "requests": 429, "tokens": 429, "server_error": 500, "overloaded": 503,
}


class OpenAIChatProvider(HttpProvider):
    """A chat-completions API: OpenAI, Together, vLLM, llama.cpp server and the like."""

    async def generate(self, prompt: Prompt) -> Generation:
        """One chat completion; usage and finish reason as the server reports them."""
        payload = await self._post_json(_PATH, self._body(prompt, stream=False))
        with self._reading("the chat completion"):
            choice = payload["choices"][0]
            usage = payload["usage"]
            return Generation(
                text=expect_str(choice["message"]["content"]),
                model=expect_str(payload.get("model") or self.spec.model),
                prompt_tokens=expect_count(usage["prompt_tokens"]),
                completion_tokens=expect_count(usage["completion_tokens"]),
                finish_reason=_finish(choice.get("finish_reason")),
            )

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        """Content deltas in order, then a final delta carrying the :class:`Generation`."""
        parts: list[str] = []
        finish, model, usage = "stop", self.spec.model, None
        events = self._post_sse(_PATH, self._body(prompt, stream=True), is_last=_is_done)
        async with aclosing(events):
            async for event in events:
                if _is_done(event):
                    break
                chunk = self._event_json(event)
                if isinstance(chunk, dict) and "error" in chunk:
                    raise self._stream_error(chunk)
                with self._reading("a chat completion chunk"):
                    model = expect_str(chunk.get("model") or model)
                    usage = chunk.get("usage") or usage
                    for choice in chunk["choices"]:
                        content = choice.get("delta", {}).get("content")
                        if content:
                            parts.append(expect_str(content))
                            yield StreamDelta(delta=content)
                        if choice.get("finish_reason"):
                            finish = _finish(choice["finish_reason"])
        with self._reading("the stream's usage chunk"):
            prompt_tokens = expect_count(usage["prompt_tokens"]) if usage else self.count_tokens(_prompt_text(prompt))
            completion_tokens = expect_count(usage["completion_tokens"]) if usage else len(parts)
        yield StreamDelta(delta="", final=Generation(text="".join(parts), model=model, prompt_tokens=prompt_tokens,
                                                     completion_tokens=completion_tokens, finish_reason=finish))

    def _default_health_url(self) -> str:
        """``GET {base}/models``."""
        return self.spec.base_url + "/models"

    def _read_error(self, status: int | None, payload: Any) -> VendorError:
        """``{"error": {"message", "type", "code"}}``; ``context_length_exceeded`` is context too long."""
        error = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(error, str):
            error = {"message": error}
        if not isinstance(error, dict):
            return VendorError(status=status or 500, message=str(payload))
        message = str(error.get("message") or error.get("type") or "")
        kind = str(error.get("type") or "")
        markers = f"{error.get('code')} {message}".lower()
        return VendorError(
            status=status or _STATUS_OF_TYPE.get(kind, 500),
            message=f"{kind}: {message}" if kind else message,
            context_too_long=(status or 400) in (400, 413, 422) and any(m in markers for m in _CONTEXT_MARKERS),
        )

    def _body(self, prompt: Prompt, *, stream: bool) -> dict[str, Any]:
        messages = [{"role": role, "content": content} for role, content in prompt.messages] \
            if not prompt.text else [{"role": "user", "content": prompt.text}]
        body: dict[str, Any] = {"model": self.spec.model, "messages": messages, "max_tokens": prompt.max_tokens,
                                "temperature": prompt.temperature, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if prompt.seed is not None:
            body["seed"] = prompt.seed
        return body


def _is_done(event: SseEvent) -> bool:
    return event.data.strip() == "[DONE]"


def _finish(reason: Any) -> str:
    """OpenAI's ``length`` is ``length``; ``stop``, ``content_filter``, ``tool_calls`` are ``stop``."""
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"finish_reason {reason!r} is not a string")
    return "length" if reason == "length" else "stop"


def _prompt_text(prompt: Prompt) -> str:
    return prompt.text or "\n".join(content for _role, content in prompt.messages)
