"""The three vendors' wire formats, as pure functions over plain values.

Requests are read into a :class:`ParsedRequest` (or refused with
:class:`RequestProblem`, which the server answers as that vendor's 400).
Replies are built as exact bytes: a JSON body, the SSE events of a stream
(each ``bytes`` is one whole event, blank line included), and the status,
headers and body of each fault outcome. Nothing here does I/O or reads the
clock; ids and timestamps come in through :class:`ReplyContext`.

Flavors: ``openai`` (chat completions), ``huggingface`` (Inference API text
generation, TGI stream events) and ``anthropic`` (messages).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from llmrouter.errors import RequestProblem
from llmrouter.simulator.profile import VOCABULARY, prompt_tokens

__all__ = [
    "DEFAULT_MAX_TOKENS", "MALFORMED_BODY", "MODEL_IDS", "ParsedRequest", "ReplyContext", "RequestProblem",
    "WireReply", "error_reply", "hf_status_body", "models_body", "ok_body", "parse_request", "stream_events",
    "stream_plan", "truncated_body",
]

DEFAULT_MAX_TOKENS = 16
"""Reply length when an OpenAI or Hugging Face request names no maximum."""

MODEL_IDS = ("llmrouter-sim",)
"""What the model-list routes announce; generation accepts any model name."""

MALFORMED_BODY = b"<html><body><h1>200 OK</h1><p>upstream said: {\"choices\": [</p></body></html>"
"""The body of a non-streamed ``malformed`` reply: a 200 that is not JSON."""

_MALFORMED_DATA = b'data: {"choices": [{"delta": {"content": "oops"\n\n'
_JSON = {"Content-Type": "application/json"}
_FINISH = {
    "openai": {"stop": "stop", "length": "length"},
    "huggingface": {"stop": "eos_token", "length": "length"},
    "anthropic": {"stop": "end_turn", "length": "max_tokens"},
}


@dataclass(frozen=True, kw_only=True)
class ParsedRequest:
    """What the simulator needs from a generation request of any flavor."""

    model: str
    prompt: str  # every message content, joined by newlines; seeds the reply text
    prompt_tokens: int
    max_tokens: int
    stream: bool = False
    include_usage: bool = False


@dataclass(frozen=True, kw_only=True)
class ReplyContext:
    """Everything a reply body is built from."""

    reply_id: str
    created: int  # unix seconds
    model: str
    prompt_tokens: int
    words: tuple[str, ...]
    finish: str  # stop | length
    include_usage: bool = False

    @property
    def text(self) -> str:
        return " ".join(self.words)

    def pieces(self) -> list[str]:
        """The words as stream deltas: each after the first keeps its leading space."""
        return [word if i == 0 else f" {word}" for i, word in enumerate(self.words)]


@dataclass(frozen=True)
class WireReply:
    """A whole HTTP answer: status, headers and body bytes."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=lambda: dict(_JSON))


# -- requests -----------------------------------------------------------------------------------------------


def parse_request(flavor: str, body: Any, *, path_model: str = "") -> ParsedRequest:
    """Read a generation request of ``flavor``; raise RequestProblem when the vendor would refuse it."""
    if not isinstance(body, dict):
        raise RequestProblem("The request body must be a JSON object.")
    if flavor == "huggingface":
        return _parse_huggingface(body, path_model)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestProblem("'messages' must be a non-empty list of messages.", param="messages")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise RequestProblem("'model' must name a model.", param="model")
    contents = [_content_text(message) for message in messages]
    if flavor == "anthropic":
        contents = [_system_text(body.get("system")), *contents]
        max_tokens = _max_tokens(body, "max_tokens", required=True)
    else:
        key = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        max_tokens = _max_tokens(body, key, required=False)
    stream = _flag(body, "stream")
    options = body.get("stream_options") or {}
    include_usage = flavor == "openai" and stream and isinstance(options, dict) and options.get("include_usage") is True
    prompt = "\n".join(text for text in contents if text)
    return ParsedRequest(model=model, prompt=prompt, prompt_tokens=prompt_tokens(contents), max_tokens=max_tokens,
                         stream=stream, include_usage=include_usage)


def _parse_huggingface(body: dict[str, Any], model: str) -> ParsedRequest:
    inputs = body.get("inputs")
    if not isinstance(inputs, str):
        raise RequestProblem("Failed to deserialize the JSON body: `inputs` must be a string.", param="inputs")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise RequestProblem("Failed to deserialize the JSON body: `parameters` must be an object.", param="parameters")
    max_tokens = _max_tokens(parameters, "max_new_tokens", required=False)
    return ParsedRequest(model=model, prompt=inputs, prompt_tokens=prompt_tokens([inputs]), max_tokens=max_tokens,
                         stream=_flag(body, "stream"))


def _content_text(message: Any) -> str:
    if not isinstance(message, dict):
        raise RequestProblem("Each message must be an object with 'role' and 'content'.", param="messages")
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise RequestProblem("Each message's 'content' must be a string or a list of content parts.", param="messages")


def _system_text(system: Any) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    if isinstance(system, list):
        return " ".join(part.get("text", "") for part in system if isinstance(part, dict))
    raise RequestProblem("system: Input should be a string or a list of text blocks.", param="system")


def _max_tokens(body: dict[str, Any], key: str, *, required: bool) -> int:
    value = body.get(key)
    if value is None:
        if required:
            raise RequestProblem(f"{key}: Field required", param=key)
        return DEFAULT_MAX_TOKENS
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestProblem(f"'{key}' must be a whole number of at least 1, not {value!r}.", param=key)
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise RequestProblem(f"'{key}' must be true or false.", param=key)
    return value


# -- successful replies --------------------------------------------------------------------------------------


def ok_body(flavor: str, ctx: ReplyContext) -> bytes:
    """The JSON body of a successful, non-streamed reply."""
    finish = _FINISH[flavor][ctx.finish]
    completion = len(ctx.words)
    if flavor == "openai":
        reply: Any = {
            "id": ctx.reply_id, "object": "chat.completion", "created": ctx.created, "model": ctx.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": ctx.text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": ctx.prompt_tokens, "completion_tokens": completion,
                      "total_tokens": ctx.prompt_tokens + completion},
        }
    elif flavor == "huggingface":
        reply = [{"generated_text": ctx.text,
                  "details": {"finish_reason": finish, "generated_tokens": completion, "seed": None, "prefill": []}}]
    else:
        reply = {
            "id": ctx.reply_id, "type": "message", "role": "assistant", "model": ctx.model,
            "content": [{"type": "text", "text": ctx.text}], "stop_reason": finish, "stop_sequence": None,
            "usage": {"input_tokens": ctx.prompt_tokens, "output_tokens": completion},
        }
    return _dumps(reply)


def truncated_body(full: bytes) -> bytes:
    """The part of ``full`` a ``truncated`` reply sends before the connection closes."""
    return full[: max(1, len(full) // 2)]


def stream_events(flavor: str, ctx: ReplyContext) -> list[bytes]:
    """The SSE events of a complete successful stream, terminator included."""
    if flavor == "openai":
        return _openai_events(ctx)
    if flavor == "huggingface":
        return _huggingface_events(ctx)
    return _anthropic_events(ctx)


def stream_plan(flavor: str, ctx: ReplyContext, outcome: str) -> tuple[list[bytes], bool]:
    """The events a streamed ``outcome`` sends, and whether the connection is then cut.

    ``ok`` sends the whole stream; ``malformed`` slips a non-JSON data line in
    after the first token and then completes; ``truncated`` sends at most
    three tokens, never the terminator, and cuts; ``stream_error`` sends up
    to two tokens and then the vendor's mid-stream error event.
    """
    events = stream_events(flavor, ctx)
    head = 3 if flavor == "anthropic" else 0  # message_start, content_block_start, ping
    tokens = len(ctx.words)
    if outcome == "malformed":
        at = head + min(1, tokens - 1)
        bad = (b"event: content_block_delta\n" + _MALFORMED_DATA) if flavor == "anthropic" else _MALFORMED_DATA
        return [*events[:at], bad, *events[at:]], False
    if outcome == "truncated":
        return events[: min(head + 3, len(events) - 1)], True
    if outcome == "stream_error":
        return [*events[: head + min(2, tokens - 1)], _stream_error_event(flavor)], False
    return events, False


def _openai_events(ctx: ReplyContext) -> list[bytes]:
    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        data = {"id": ctx.reply_id, "object": "chat.completion.chunk", "created": ctx.created, "model": ctx.model,
                "choices": choices, **extra}
        if ctx.include_usage:
            data.setdefault("usage", None)
        return _sse(data)

    pieces = ctx.pieces()
    events = []
    for i, piece in enumerate(pieces):
        delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
        finish = _FINISH["openai"][ctx.finish] if i == len(pieces) - 1 else None
        events.append(chunk([{"index": 0, "delta": delta, "finish_reason": finish}]))
    if ctx.include_usage:
        completion = len(ctx.words)
        events.append(chunk([], usage={"prompt_tokens": ctx.prompt_tokens, "completion_tokens": completion,
                                       "total_tokens": ctx.prompt_tokens + completion}))
    events.append(b"data: [DONE]\n\n")
    return events


def _huggingface_events(ctx: ReplyContext) -> list[bytes]:
    pieces = ctx.pieces()
    events = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        token = {"id": _token_id(ctx.words[i]), "text": piece, "logprob": -0.25, "special": False}
        details = ({"finish_reason": _FINISH["huggingface"][ctx.finish], "generated_tokens": len(pieces), "seed": None}
                   if last else None)
        events.append(_sse({"index": i, "token": token, "generated_text": ctx.text if last else None,
                            "details": details}))
    return events


def _anthropic_events(ctx: ReplyContext) -> list[bytes]:
    message = {"id": ctx.reply_id, "type": "message", "role": "assistant", "model": ctx.model, "content": [],
               "stop_reason": None, "stop_sequence": None,
               "usage": {"input_tokens": ctx.prompt_tokens, "output_tokens": 1}}
    events = [
        _sse({"type": "message_start", "message": message}, event="message_start"),
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
             event="content_block_start"),
        _sse({"type": "ping"}, event="ping"),
    ]
    for piece in ctx.pieces():
        events.append(_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                           event="content_block_delta"))
    events += [
        _sse({"type": "content_block_stop", "index": 0}, event="content_block_stop"),
        _sse({"type": "message_delta", "delta": {"stop_reason": _FINISH["anthropic"][ctx.finish], "stop_sequence": None},
              "usage": {"output_tokens": len(ctx.words)}}, event="message_delta"),
        _sse({"type": "message_stop"}, event="message_stop"),
    ]
    return events


def _stream_error_event(flavor: str) -> bytes:
    if flavor == "openai":
        return _sse({"error": {"message": "The server had an error while processing your request. (simulated)",
                               "type": "server_error", "param": None, "code": None}})
    if flavor == "huggingface":
        return _sse({"error": "Request failed during generation: Server error: overloaded (simulated)",
                     "error_type": "generation"})
    return _sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded (simulated)"}},
                event="error")


# -- fault replies -------------------------------------------------------------------------------------------


def error_reply(flavor: str, outcome: str, *, model: str = "", retry_after_s: float = 1.0, prompt_tokens: int = 0,
                context_tokens: int = 0, max_tokens: int = 0, message: str | None = None,
                param: str | None = None) -> WireReply:
    """The vendor's status, headers and body for an error ``outcome``.

    Outcomes: server_error, overloaded (also stream_error when not
    streaming), rate_limited, auth_error, bad_request, context_too_long.
    ``message`` replaces the stock text of a bad_request.
    """
    if outcome == "stream_error":
        outcome = "overloaded"
    builder = {"openai": _openai_error, "huggingface": _huggingface_error, "anthropic": _anthropic_error}[flavor]
    status, body = builder(outcome, model=model, retry_after_s=retry_after_s, prompt_tokens=prompt_tokens,
                           context_tokens=context_tokens, max_tokens=max_tokens, message=message, param=param)
    headers = dict(_JSON)
    if outcome == "rate_limited":
        headers["retry-after" if flavor == "anthropic" else "Retry-After"] = str(math.ceil(retry_after_s))
    return WireReply(status, _dumps(body), headers)


def _openai_error(outcome: str, *, retry_after_s: float, prompt_tokens: int, context_tokens: int,
                  message: str | None, param: str | None, **_: Any) -> tuple[int, Any]:
    status, kind, code, text = {
        "server_error": (500, "server_error", None,
                         "The server had an error while processing your request. Sorry about that! (simulated)"),
        "overloaded": (503, "server_error", "overloaded",
                       "The engine is currently overloaded, please try again later. (simulated)"),
        "rate_limited": (429, "requests", "rate_limit_exceeded",
                         f"Rate limit reached for requests. Please try again in {retry_after_s:g}s. (simulated)"),
        "auth_error": (401, "invalid_request_error", "invalid_api_key",
                       "Incorrect API key provided. You can find your API key in your account settings."),
        "bad_request": (400, "invalid_request_error", None, message or "Invalid request (simulated)."),
        "context_too_long": (400, "invalid_request_error", "context_length_exceeded",
                             f"This model's maximum context length is {context_tokens} tokens. However, your "
                             f"messages resulted in {prompt_tokens} tokens. Please reduce the length of the messages."),
    }[outcome]
    if outcome == "context_too_long":
        param = "messages"
    return status, {"error": {"message": text, "type": kind, "param": param, "code": code}}


def _huggingface_error(outcome: str, *, model: str, retry_after_s: float, prompt_tokens: int, context_tokens: int,
                       max_tokens: int, message: str | None, **_: Any) -> tuple[int, Any]:
    if outcome == "overloaded":
        return 503, {"error": f"Model {model} is currently loading", "estimated_time": float(retry_after_s)}
    if outcome == "context_too_long":
        return 422, {"error": f"Input validation error: `inputs` tokens + `max_new_tokens` must be <= {context_tokens}. "
                              f"Given: {prompt_tokens} `inputs` tokens and {max_tokens} `max_new_tokens`",
                     "error_type": "validation"}
    status, text = {
        "server_error": (500, "Internal Server Error (simulated)"),
        "rate_limited": (429, "Rate limit reached. Please retry later. (simulated)"),
        "auth_error": (401, "Invalid credentials in Authorization header"),
        "bad_request": (400, message or "Bad request (simulated)"),
    }[outcome]
    return status, {"error": text}


def _anthropic_error(outcome: str, *, prompt_tokens: int, context_tokens: int, message: str | None,
                     **_: Any) -> tuple[int, Any]:
    status, kind, text = {
        "server_error": (500, "api_error", "Internal server error (simulated)"),
        "overloaded": (529, "overloaded_error", "Overloaded (simulated)"),
        "rate_limited": (429, "rate_limit_error", "Number of requests has exceeded your rate limit. (simulated)"),
        "auth_error": (401, "authentication_error", "invalid x-api-key"),
        "bad_request": (400, "invalid_request_error", message or "Invalid request (simulated)."),
        "context_too_long": (400, "invalid_request_error",
                             f"prompt is too long: {prompt_tokens} tokens > {context_tokens} maximum"),
    }[outcome]
    return status, {"type": "error", "error": {"type": kind, "message": text}}


# -- health ---------------------------------------------------------------------------------------------------


def models_body() -> bytes:
    """``GET /v1/models``: OpenAI's list shape with Anthropic's ``type`` and ``has_more`` too."""
    data = [{"id": model, "object": "model", "type": "model", "created": 0, "owned_by": "llmrouter-sim"}
            for model in MODEL_IDS]
    return _dumps({"object": "list", "data": data, "has_more": False})


def hf_status_body() -> bytes:
    """``GET /status/{model}``: a loaded text-generation-inference model."""
    return _dumps({"loaded": True, "state": "Loaded", "compute_type": "cpu",
                   "framework": "text-generation-inference"})


def _sse(data: Any, *, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data)}\n\n".encode()


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def _token_id(word: str) -> int:
    return 1000 + VOCABULARY.index(word) if word in VOCABULARY else 0
