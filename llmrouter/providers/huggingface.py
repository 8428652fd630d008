"""The Hugging Face Inference API, text generation (kind ``huggingface``).

``POST {base}/models/{model}`` with ``Authorization: Bearer KEY``. Chat
messages are flattened with :meth:`Prompt.as_text`. A temperature of 0 is
sent as ``do_sample: false`` (the API refuses ``temperature: 0``). The API
returns no prompt-token count: prompt tokens are estimated with
:meth:`count_tokens`. A stream has no ``[DONE]`` line; it ends with the
event whose ``generated_text`` is set. A 503 "model is loading" reply's
``estimated_time`` is read as a retry-after.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

from llmrouter.providers.base import Generation, Prompt, StreamDelta
from llmrouter.providers.http import HttpProvider, VendorError, expect_count, expect_str
from llmrouter.providers.sse import SseEvent

__all__ = ["HuggingFaceProvider"]

_CONTEXT = re.compile(r"must be <= \d+|too long|maximum context|context length", re.IGNORECASE)
_STATUS_OF_TYPE = {"validation": 422, "overloaded": 503, "generation": 500, "incomplete_generation": 500}


class HuggingFaceProvider(HttpProvider):
    """Text generation on the Hugging Face Inference API or a TGI server."""

    async def generate(self, prompt: Prompt) -> Generation:
        """One generation; completion tokens and finish reason from ``details``."""
        text = prompt.as_text()
        payload = await self._post_json(self._model_path(), self._body(text, prompt, stream=False))
        with self._reading("the text generation reply"):
            answer = payload[0] if isinstance(payload, list) else payload
            details = answer["details"]
            return Generation(text=expect_str(answer["generated_text"]), model=self.spec.model,
                              prompt_tokens=self.count_tokens(text),
                              completion_tokens=expect_count(details["generated_tokens"]),
                              finish_reason=_finish(details.get("finish_reason")))

    async def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        """Token texts in order (special tokens skipped), then the final :class:`Generation`."""
        text = prompt.as_text()
        parts: list[str] = []
        events = self._post_sse(self._model_path(), self._body(text, prompt, stream=True), is_last=_is_last)
        async with aclosing(events):
            async for event in events:
                data = self._event_json(event)
                if isinstance(data, dict) and "error" in data:
                    raise self._stream_error(data)
                with self._reading("a text generation event"):
                    token = data["token"]
                    if not token.get("special") and token.get("text"):
                        parts.append(expect_str(token["text"]))
                        yield StreamDelta(delta=token["text"])
                    if data.get("generated_text") is not None:
                        details = data.get("details") or {}
                        final = Generation(text=expect_str(data["generated_text"]), model=self.spec.model,
                                           prompt_tokens=self.count_tokens(text),
                                           completion_tokens=expect_count(details.get("generated_tokens",
                                                                                      len(parts))),
                                           finish_reason=_finish(details.get("finish_reason")))
                        yield StreamDelta(delta="", final=final)
                        return

    def _default_health_url(self) -> str:
        """``GET {base}/status/{model}``."""
        return f"{self.spec.base_url}/status/{quote(self.spec.model, safe='/')}"

    def _read_error(self, status: int | None, payload: Any) -> VendorError:
        """``{"error": MESSAGE, "error_type"?, "estimated_time"?}``; a 422 over the token limit is context too long."""
        if not isinstance(payload, dict):
            return VendorError(status=status or 500, message=str(payload))
        error = payload.get("error", payload)
        message = "; ".join(map(str, error)) if isinstance(error, list) else str(error)
        kind = str(payload.get("error_type") or "")
        if status is None:
            status = 503 if "loading" in message.lower() else _STATUS_OF_TYPE.get(kind, 500)
        estimated = payload.get("estimated_time")
        return VendorError(
            status=status,
            message=f"{message} (estimated_time {estimated} s)" if estimated is not None else message,
            context_too_long=status in (400, 413, 422) and bool(_CONTEXT.search(message)),
            retry_after_s=float(estimated) if isinstance(estimated, (int, float)) and estimated >= 0 else None,
        )

    def _model_path(self) -> str:
        return f"/models/{quote(self.spec.model, safe='/')}"

    def _body(self, text: str, prompt: Prompt, *, stream: bool) -> dict[str, Any]:
        parameters: dict[str, Any] = {"max_new_tokens": prompt.max_tokens, "return_full_text": False,
                                      "details": True}
        if prompt.temperature > 0:
            parameters.update(temperature=prompt.temperature, do_sample=True)
        else:
            parameters["do_sample"] = False
        if prompt.seed is not None:
            parameters["seed"] = prompt.seed
        return {"inputs": text, "parameters": parameters, "stream": stream}


def _is_last(event: SseEvent) -> bool:
    """The event that ends a stream: ``generated_text`` set (an unreadable event is not it)."""
    try:
        data = json.loads(event.data)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("generated_text") is not None


def _finish(reason: Any) -> str:
    """``length`` is ``length``; ``eos_token`` and ``stop_sequence`` are ``stop``."""
    if reason is not None and not isinstance(reason, str):
        raise TypeError(f"finish_reason {reason!r} is not a string")
    return "length" if reason == "length" else "stop"
