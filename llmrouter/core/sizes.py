"""How many bytes a Kafka record takes against the producer's limit, and how much of a copy fits. Pure.

The router's producer refuses a record whose estimate is over its
``max_request_size`` (``kafka.max_record_bytes``, handed to faust as
``producer_max_request_size``): aiokafka counts the key, the value and every
header with their varint lengths, plus a fixed margin for the record and its
batch. :func:`record_bytes` is that same arithmetic, so a size check here
agrees with the producer to the byte (``tests/unit/test_sizes.py`` holds it
against aiokafka's own ``estimate_size_in_bytes``).

The margin (:data:`RECORD_OVERHEAD_BYTES`, 82 bytes) is the record batch
header (61 bytes) plus the most a record's own fields can take besides its
key, value and headers (21 bytes: attributes, offset and timestamp deltas,
the length). It is an upper bound: the broker, which measures the batch
against ``message.max.bytes`` (1,048,588 by default), never sees more than
this for a record sent alone, and a record over the producer's 16 kB batch
size always goes alone. So any record that passes ``record_bytes(...) <=
max_record_bytes`` with ``max_record_bytes <= message.max.bytes`` is taken
by the broker too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

BATCH_HEADER_BYTES = 61  # aiokafka DefaultRecordBatchBuilder.HEADER_STRUCT.size
MAX_RECORD_FIELDS_BYTES = 21  # aiokafka DefaultRecordBatchBuilder.MAX_RECORD_OVERHEAD
RECORD_OVERHEAD_BYTES = BATCH_HEADER_BYTES + MAX_RECORD_FIELDS_BYTES
BROKER_MESSAGE_MAX_BYTES = 1_048_588  # Kafka's default message.max.bytes (broker and topics)

Headers = Iterable[tuple[str, bytes | None]]


def varint_bytes(value: int) -> int:
    """Bytes of ``value`` as a zigzag varint (Kafka's record fields)."""
    zigzag = (value << 1) ^ (value >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def _field_bytes(data: bytes | None) -> int:
    return 1 if data is None else varint_bytes(len(data)) + len(data)


def record_bytes(key: bytes | None, value: bytes | None, headers: Headers = ()) -> int:
    """The producer's estimate of a record: key, value and headers with their lengths, plus the margin."""
    headers = list(headers)
    size = _field_bytes(key) + _field_bytes(value) + varint_bytes(len(headers))
    for name, data in headers:
        size += _field_bytes(name.encode("utf-8")) + _field_bytes(data)
    return RECORD_OVERHEAD_BYTES + size


def over_by(key: bytes | None, value: bytes | None, headers: Headers, *, limit: int) -> int:
    """How many bytes the record is over ``limit`` (0 or less: it fits)."""
    return record_bytes(key, value, headers) - limit


def cut_to_fit(kept: int, overflow: int, *, growth: float = 1.0) -> int:
    """How many bytes of a copy of ``kept`` bytes to keep when the record holding it is ``overflow`` bytes
    over its limit. ``growth``: encoded bytes per byte of the copy (1 for Avro bytes; 1 to 6 for a JSON
    string of latin-1, as measured); at 1 the cut always fits, above it the caller measures again."""
    if overflow <= 0:
        return kept
    return max(0, kept - math.ceil(overflow / max(growth, 1.0)))
