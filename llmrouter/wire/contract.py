"""The request and result records, and the rules a request must meet.

Pure: no Kafka, no Faust, no clock of its own (time comes in as arguments).

Two kinds of bad request are told apart:

* *invalid* — the value decodes but is not an LLMRequest (no request_id, no
  prompt, a field of the wrong type): :class:`InvalidRequest`, which sends the
  original bytes to the DLQ (and, when a request_id is known, an ``error``
  result so nobody waits for ever);
* *not servable as asked* — a valid request whose parameters are over a limit
  or name an unknown provider: a ``rejected`` result with a clear code, via
  :func:`check_size` and :func:`check_reply_to` (intake) and
  :func:`check_dispatch` (answer stage).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmrouter.core.outcomes import Refusal
from llmrouter.errors import InvalidRequest
from llmrouter.providers.base import Prompt

PRIORITIES = ("critical", "high", "normal", "low")
CACHE_POLICIES = ("use", "bypass", "refresh")
STATUSES = ("ok", "error", "rejected", "timeout")
MAX_REQUEST_ID_LEN = 200
MAX_TOPIC_NAME_CHARS = 249  # Kafka's own limit on a topic name


@dataclass(frozen=True, kw_only=True)
class Request:
    """A validated LLMRequest plus what intake learnt about it."""

    request_id: str
    prompt: str | None = None
    messages: tuple[tuple[str, str], ...] = ()
    max_tokens: int = 256
    temperature: float = 0.0
    task_type: str = "general"
    user_id: str | None = None
    priority: str = "normal"
    deadline_ms: int | None = None
    timeout_ms: int | None = None
    stream: bool = False
    cache_policy: str = "use"
    providers: tuple[str, ...] | None = None
    reply_to: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created_at_ms: int | None = None
    seed: int | None = None
    received_at_ms: int = 0  # set by intake

    def to_prompt(self) -> Prompt:
        return Prompt(
            text=self.prompt or "",
            messages=self.messages,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            seed=self.seed,
        )

    @property
    def started_at_ms(self) -> int:
        """When the clock for latency and timeouts starts: the producer's time if given."""
        return self.created_at_ms if self.created_at_ms is not None else self.received_at_ms

    def deadline_at_ms(self, default_timeout_s: float) -> int:
        """The absolute time by which the request must be answered."""
        if self.deadline_ms is not None:
            return self.deadline_ms
        timeout_ms = self.timeout_ms if self.timeout_ms is not None else int(default_timeout_s * 1000)
        return self.started_at_ms + timeout_ms


def parse_request(raw: dict[str, Any], *, priority: str, received_at_ms: int) -> Request:
    """Check a decoded LLMRequest and build a :class:`Request`; raise :class:`InvalidRequest`.

    ``priority`` is the one of the topic the request came from: the topic
    decides the queue, whatever the field says.
    """
    request_id = raw.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip():
        raise InvalidRequest("request_id is missing or empty; it is the idempotency key and is required")
    if len(request_id) > MAX_REQUEST_ID_LEN:
        raise InvalidRequest(f"request_id is {len(request_id)} characters long; at most {MAX_REQUEST_ID_LEN}")
    if not _is_utf8(request_id):
        raise InvalidRequest("request_id is not valid Unicode text (a lone surrogate?); it keys every result")
    prompt = _optional(raw, "prompt", str)
    messages = _messages(raw.get("messages"))
    if not prompt and not messages:
        raise InvalidRequest("the request has neither a prompt nor chat messages")
    max_tokens = _typed(raw, "max_tokens", int, 256)
    if max_tokens < 1:
        raise InvalidRequest(f"max_tokens must be at least 1, not {max_tokens}")
    temperature = float(_typed(raw, "temperature", (int, float), 0.0))
    if not 0.0 <= temperature <= 2.0:
        raise InvalidRequest(f"temperature must be between 0 and 2, not {temperature}")
    cache_policy = _typed(raw, "cache_policy", str, "use")
    if cache_policy not in CACHE_POLICIES:
        raise InvalidRequest(f"cache_policy must be one of {', '.join(CACHE_POLICIES)}, not {cache_policy!r}")
    providers = raw.get("providers")
    if providers is not None and (not isinstance(providers, list) or not all(isinstance(p, str) for p in providers)):
        raise InvalidRequest("providers must be a list of provider names or null")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidRequest("metadata must be a map of strings to strings")
    seed = _optional(raw, "seed", int)
    if seed is not None and not 0 <= seed < 2**63:
        raise InvalidRequest(f"seed must be between 0 and 2**63 - 1, not {seed}")
    return Request(
        request_id=request_id,
        prompt=prompt,
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        task_type=_typed(raw, "task_type", str, "general"),
        user_id=_optional(raw, "user_id", str),
        priority=priority,
        deadline_ms=_optional(raw, "deadline_ms", int),
        timeout_ms=_optional(raw, "timeout_ms", int),
        stream=_typed(raw, "stream", bool, False),
        cache_policy=cache_policy,
        providers=tuple(providers) if providers is not None else None,
        reply_to=_optional(raw, "reply_to", str),
        metadata=dict(metadata),
        created_at_ms=_optional(raw, "created_at_ms", int),
        seed=seed,
        received_at_ms=received_at_ms,
    )


@dataclass(frozen=True, kw_only=True)
class FieldCaps:
    """The caps of the request fields that are echoed into a result, a stored answer or a table key
    (``limits.max_*``): each in characters, or in entries for the lists and maps."""

    task_type_chars: int = 64
    providers: int = 16
    provider_name_chars: int = 63
    user_id_chars: int = 256
    metadata_entries: int = 32
    metadata_key_chars: int = 64
    metadata_value_chars: int = 1024
    metadata_chars: int = 8192


def check_fields(request: Request, caps: FieldCaps) -> Refusal | None:
    """The first echoed field of ``request`` over its cap, or None; the refusal names the field, the cap
    and the setting that holds it."""
    for name, size, cap, unit, setting in _measures(request, caps):
        if size > cap:
            return Refusal(status="rejected", code="field_too_large",
                           message=f"{name} is {size} {unit}; the limit is {cap} (limits.max_{setting})")
    return None


def _measures(request: Request, caps: FieldCaps) -> Iterator[tuple[str, int, int, str, str]]:
    """(field, size, cap, unit, setting) of each capped field of ``request``, in the order they are checked
    (counts before the entries they count, so a huge map is refused without walking it)."""
    chars = "characters"
    yield "task_type", len(request.task_type), caps.task_type_chars, chars, "task_type_chars"
    if request.user_id is not None:
        yield "user_id", len(request.user_id), caps.user_id_chars, chars, "user_id_chars"
    if request.providers is not None:
        yield "providers", len(request.providers), caps.providers, "names", "providers"
        for i, name in enumerate(request.providers):
            yield f"providers[{i}]", len(name), caps.provider_name_chars, chars, "provider_name_chars"
    metadata = request.metadata
    yield "metadata", len(metadata), caps.metadata_entries, "entries", "metadata_entries"
    for key, value in metadata.items():
        yield f"a metadata key ({key[:40]!r})", len(key), caps.metadata_key_chars, chars, "metadata_key_chars"
        yield f"metadata[{key[:40]!r}]", len(value), caps.metadata_value_chars, chars, "metadata_value_chars"
    total = sum(len(key) + len(value) for key, value in metadata.items())
    yield "metadata (keys and values together)", total, caps.metadata_chars, chars, "metadata_chars"


def check_size(request: Request, *, max_prompt_chars: int, max_tokens: int,
               caps: FieldCaps | None = None) -> Refusal | None:
    """The first size limit ``request`` is over, or None (checked at intake, before forwarding)."""
    if caps is not None and (refusal := check_fields(request, caps)) is not None:
        return refusal
    prompt_chars = len(request.prompt or "") + sum(len(content) for _, content in request.messages)
    if prompt_chars > max_prompt_chars:
        return Refusal(status="rejected", code="prompt_too_long",
                       message=f"prompt is {prompt_chars} characters; the limit is {max_prompt_chars}")
    if request.max_tokens > max_tokens:
        return Refusal(status="rejected", code="max_tokens_too_large",
                       message=f"max_tokens {request.max_tokens} is over the limit of {max_tokens}")
    return None


def check_reply_to(reply_to: str | None, *, allowed: Sequence[str], exists: bool) -> Refusal | None:
    """Why ``reply_to`` may not receive the result, or None.

    ``allowed`` are topic names or shell-style patterns (``llm.replies.*``);
    ``exists`` says whether the topic is in the cluster's metadata.
    """
    if reply_to is None:
        return None
    if len(reply_to) > MAX_TOPIC_NAME_CHARS:  # refused before it is echoed or looked up
        return Refusal(status="rejected", code="reply_to_not_allowed",
                       message=f"reply_to is {len(reply_to)} characters; a Kafka topic name is at most "
                               f"{MAX_TOPIC_NAME_CHARS}")
    if not any(fnmatch.fnmatchcase(reply_to, pattern) for pattern in allowed):
        return Refusal(status="rejected", code="reply_to_not_allowed",
                       message=f"reply_to {reply_to!r} is not an allowed result topic; allowed: {list(allowed)}")
    if not exists:
        return Refusal(status="rejected", code="reply_to_unknown",
                       message=f"reply_to topic {reply_to!r} does not exist; create it before naming it")
    return None


def check_dispatch(
    request: Request, *, known_providers: tuple[str, ...], now_ms: int, default_timeout_s: float,
) -> Refusal | None:
    """Why ``request`` cannot be dispatched now, or None (checked by the answer stage)."""
    if request.providers is not None:
        unknown = [name for name in request.providers if name not in known_providers]
        if unknown:
            return Refusal(status="rejected", code="unknown_provider",
                           message=f"unknown provider(s) {unknown}; known: {list(known_providers)}")
    if request.deadline_at_ms(default_timeout_s) <= now_ms:
        return Refusal(status="timeout", code="deadline_exceeded",
                       message="the request's deadline had passed before it was dispatched")
    return None


def result_record(
    request: Request, *, status: str, now_ms: int, dispatched_at_ms: int | None = None, **fields: Any,
) -> dict[str, Any]:
    """An LLMResult (as a dict for the codec) for ``request``."""
    return _record(request.request_id, request.priority, status=status, started_at_ms=request.started_at_ms,
                   now_ms=now_ms, dispatched_at_ms=dispatched_at_ms, **fields)


def unparsed_result_record(request_id: str, *, priority: str, received_at_ms: int, now_ms: int, error_code: str,
                           error_message: str) -> dict[str, Any]:
    """The ``error`` LLMResult of a message that named a request_id but is no valid request (dead-lettered):
    timed from when the router received it, as nothing else it says can be trusted."""
    return _record(request_id, priority, status="error", started_at_ms=received_at_ms, now_ms=now_ms,
                   error_code=error_code, error_message=error_message)


def _record(request_id: str, priority: str, *, status: str, started_at_ms: int, now_ms: int,
            dispatched_at_ms: int | None = None, **fields: Any) -> dict[str, Any]:
    assert status in STATUSES, status
    record: dict[str, Any] = {
        "request_id": request_id,
        "status": status,
        "priority": priority,
        "total_latency_ms": float(max(0, now_ms - started_at_ms)),
        "queue_latency_ms": float(max(0, (dispatched_at_ms or now_ms) - started_at_ms)),
        "completed_at_ms": now_ms,
    }
    record.update(fields)
    return record


def refusal_record(request: Request, refusal: Refusal, *, now_ms: int) -> dict[str, Any]:
    return result_record(request, status=refusal.status, now_ms=now_ms,
                         error_code=refusal.code, error_message=refusal.message)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _typed(raw: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = raw.get(name)
    if value is None:
        return default
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise InvalidRequest(f"{name} must be {_kind_name(kinds)}, not {type(value).__name__} {value!r:.40}")
    return value


def _optional(raw: dict[str, Any], name: str, kind: type) -> Any:
    return _typed(raw, name, kind, None)


def _kind_name(kinds: tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _messages(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest("messages must be a list of {role, content} objects")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise InvalidRequest(f"messages[{i}] must be an object with string fields role and content")
        out.append((message["role"], message["content"]))
    return tuple(out)
