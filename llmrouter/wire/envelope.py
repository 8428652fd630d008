"""Where a request came from, carried from intake to the answer stage.

Intake forwards the upstream value bytes unchanged (nothing is re-encoded
between the stages), keyed by request_id, with the upstream headers followed
by ours: the source coordinates, the upstream key, when intake received it
and intake's trace context. From those the answer stage rebuilds the :class:`Origin`, so a
dead letter written there keeps exactly what upstream sent (bytes, key,
headers, topic, partition, offset) and can be replayed to its source topic.
Upstream headers with our names are dropped at intake. Pure: no Kafka here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SOURCE = "llmrouter-source"  # "<topic>:<partition>:<offset>" (Kafka topic names hold no ':')
KEY = "llmrouter-key"  # the upstream key, absent when it was null
RECEIVED = "llmrouter-received-ms"
# intake's span, the answer stage's parent (llmrouter.observability.tracing): upstream's own traceparent is left as it came
TRACE_PREFIX = "llmrouter-"
TRACE = frozenset({f"{TRACE_PREFIX}traceparent", f"{TRACE_PREFIX}tracestate"})
OURS = frozenset({SOURCE, KEY, RECEIVED}) | TRACE

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, kw_only=True)
class Origin:
    """An upstream message as it arrived."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    received_at_ms: int = 0

    def forward_headers(self) -> list[tuple[str, bytes | None]]:
        """The headers of the forwarded copy: upstream's own (a null value stays null), then ours."""
        ours = [(SOURCE, f"{self.topic}:{self.partition}:{self.offset}".encode()),
                (RECEIVED, str(self.received_at_ms).encode())]
        if self.key is not None:
            ours.append((KEY, self.key))
        return [(k, v) for k, v in self.headers if k not in OURS] + ours


def normalize_headers(headers: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> Headers:
    """Kafka headers as a tuple of (str, bytes or None), whatever form the client gave them in."""
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return tuple((str(k), v if v is None or isinstance(v, bytes) else str(v).encode()) for k, v in items)


def origin_of_forwarded(value: bytes, headers: Headers) -> Origin:
    """Rebuild the origin of a message forwarded by intake; ValueError if our headers are missing."""
    found = {k: v for k, v in headers if k in OURS}
    try:
        topic, partition, offset = (found[SOURCE] or b"").decode().rsplit(":", 2)
        received = int(found[RECEIVED] or b"0")
        return Origin(topic=topic, partition=int(partition), offset=int(offset), key=found.get(KEY), value=value,
                      headers=tuple((k, v) for k, v in headers if k not in OURS), received_at_ms=received)
    except (KeyError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"a forwarded request lacks intake's headers {sorted(OURS - TRACE)}: {exc!r}") from exc
