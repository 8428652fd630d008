"""A cached answer and its bytes, the same in every level (L1 memory, L2 Redis, L3 RocksDB).

Layout of :meth:`CachedAnswer.to_bytes` (all integers little-endian)::

    byte 0      format version (1)
    byte 1      flags: bit 0 set = the body is zlib-compressed
    body        stored_at_ms i64, expires_at_ms i64, cost_usd f64,
                prompt_tokens u32, completion_tokens u32,
                then the UTF-8 lengths of provider u16, model u16, finish_reason u16, text u32,
                request_id u16, then those five strings, back to back

The body is compressed only when asked (``cache_config.compression``), when it
is longer than :data:`COMPRESS_ABOVE_BYTES` (below that zlib's own header eats
the gain), and when the result is really smaller. A reader needs nothing but
the bytes: the flag says whether to inflate.

Times are wall-clock milliseconds since the epoch, because entries travel
between workers (Redis, the changelog); a monotonic clock means nothing on
another machine. :meth:`CachedAnswer.from_bytes` raises ``ValueError`` saying
what is wrong with anything it cannot read whole (an unknown version or
flag, a truncated or oversized body, trailing bytes, broken zlib data), so a
corrupt entry is a miss, never a garbled answer.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = ["CachedAnswer", "FORMAT_VERSION", "COMPRESS_ABOVE_BYTES", "MAX_BODY_BYTES"]

FORMAT_VERSION = 1
COMPRESS_ABOVE_BYTES = 256
MAX_BODY_BYTES = 16 * 1024 * 1024  # an inflated body larger than this is refused (a zlib bomb, not an answer)
_FLAG_ZLIB = 0x01
_HEAD = struct.Struct("<qqdIIHHHIH")


@dataclass(frozen=True, slots=True, kw_only=True)
class CachedAnswer:
    text: str
    provider: str
    model: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    stored_at_ms: int
    expires_at_ms: int
    request_id: str = ""  # the request this answer was paid for: a copy of that request is a redelivery, not a hit

    def expired(self, now_ms: int) -> bool:
        """True from ``expires_at_ms`` on."""
        return now_ms >= self.expires_at_ms

    def remaining_ms(self, now_ms: int) -> int:
        """Time to live left (0 once expired): the TTL to give a copy promoted to another level."""
        return max(0, self.expires_at_ms - now_ms)

    def to_bytes(self, *, compress: bool) -> bytes:
        """The layout of the module docstring; ``ValueError`` if a field does not fit it."""
        strings = [field.encode("utf-8", "surrogatepass")
                   for field in (self.provider, self.model, self.finish_reason, self.text, self.request_id)]
        try:
            head = _HEAD.pack(self.stored_at_ms, self.expires_at_ms, self.cost_usd, self.prompt_tokens,
                              self.completion_tokens, *(len(s) for s in strings))
        except struct.error as exc:
            raise ValueError(f"a field of this answer does not fit the cache layout: {exc}") from None
        body = head + b"".join(strings)
        if compress and len(body) > COMPRESS_ABOVE_BYTES:
            packed = zlib.compress(body)
            if len(packed) < len(body):
                return bytes((FORMAT_VERSION, _FLAG_ZLIB)) + packed
        return bytes((FORMAT_VERSION, 0)) + body

    @classmethod
    def from_bytes(cls, data: bytes) -> CachedAnswer:
        """Read what :meth:`to_bytes` wrote; ``ValueError`` with the reason otherwise."""
        if len(data) < 2:
            raise ValueError(f"a cached answer is at least 2 bytes (version, flags); got {len(data)}")
        version, flags = data[0], data[1]
        if version != FORMAT_VERSION:
            raise ValueError(f"cached answer format version {version} is unknown; this reader knows {FORMAT_VERSION}")
        if flags & ~_FLAG_ZLIB:
            raise ValueError(f"cached answer flags 0x{flags:02x} hold unknown bits")
        body = _inflate(data[2:]) if flags & _FLAG_ZLIB else data[2:]
        if len(body) < _HEAD.size:
            raise ValueError(f"cached answer body is {len(body)} bytes, shorter than its {_HEAD.size}-byte header")
        stored, expires, cost, prompt_tokens, completion_tokens, *lengths = _HEAD.unpack_from(body)
        if _HEAD.size + sum(lengths) != len(body):
            raise ValueError(f"cached answer body is {len(body)} bytes; its header announces "
                             f"{_HEAD.size + sum(lengths)}")
        strings, offset = [], _HEAD.size
        for length in lengths:
            try:
                strings.append(body[offset:offset + length].decode("utf-8", "surrogatepass"))
            except UnicodeDecodeError as exc:
                raise ValueError(f"cached answer holds text that is not UTF-8: {exc}") from None
            offset += length
        provider, model, finish_reason, text, request_id = strings
        return cls(text=text, provider=provider, model=model, finish_reason=finish_reason,
                   prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost,
                   stored_at_ms=stored, expires_at_ms=expires, request_id=request_id)


def _inflate(packed: bytes) -> bytes:
    inflater = zlib.decompressobj()
    try:
        body = inflater.decompress(packed, MAX_BODY_BYTES)
    except zlib.error as exc:
        raise ValueError(f"cached answer body is not valid zlib data: {exc}") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"cached answer body inflates to more than {MAX_BODY_BYTES} bytes")
    if not inflater.eof:
        raise ValueError("cached answer body is truncated zlib data")
    if inflater.unused_data:
        raise ValueError(f"cached answer has {len(inflater.unused_data)} bytes after its zlib body")
    return body
