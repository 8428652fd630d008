"""Bytes on the wire <-> plain dicts, per the external contract.

Values are Avro *single-object encoded* (Avro spec: marker ``C3 01``, the
8-byte CRC-64-AVRO fingerprint of the writer schema's parsing canonical form
in little-endian order, then the binary body; byte for byte what Apache Avro
Java's ``BinaryMessageEncoder`` writes) or JSON objects. Requests may come in
either form; what the router writes is Avro unless the settings say JSON.

A reader resolves the writer schema by fingerprint in a :class:`SchemaStore`
and reads it into the current (reader) schema, so a message written with an
older schema version is still read after a field with a default was added.

The legacy header: llm-router 0.1.0 and older wrote the fingerprint
byte-reversed (``C3 01 77 48 f6 53 …`` for LLMRequest instead of the spec's
``C3 01 70 fa 91 f5 …``). Writers now always write the spec's order. For one
release (the first that writes the spec's order) readers still accept the
reversed header, so messages already in topics stay readable: each one is
counted in :attr:`Codec.legacy_headers` (and passed to ``on_legacy_header``,
for a metric), and the first one per schema is logged as a warning. The
release after that refuses it as an unknown fingerprint.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import fastavro
import structlog
from fastavro.schema import fingerprint, to_parsing_canonical_form

from llmrouter import schemas
from llmrouter.errors import UndecodableRequest

log = structlog.get_logger("llmrouter.codec")

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
LEGACY_WRITERS = "llm-router 0.1.0 and older"
MAX_JSON_DEPTH = 8  # levels of objects and arrays below the record; an LLMRequest has 2 (messages[i].role)
_INT_RANGES = {"int": (-2**31, 2**31 - 1), "long": (-2**63, 2**63 - 1)}


def schema_fingerprint(parsed: dict[str, Any]) -> bytes:
    """The 8 fingerprint bytes of the single-object header, in wire order.

    That is the CRC-64-AVRO of the parsing canonical form, little-endian.
    fastavro's hex is already those bytes in that order (as the ``avro``
    library's ``Schema.fingerprint`` returns them): it is taken as it is,
    never read as a big-endian number.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def describe_fingerprint(fp: bytes) -> str:
    """``fp`` (the 8 bytes after ``C3 01``) so an operator can hold it against a JVM producer's schema.

    Names the bytes as they are on the wire and the 64-bit CRC-64-AVRO value,
    in hex and in decimal as Avro Java's
    ``SchemaNormalization.parsingFingerprint64(schema)`` returns it (a signed
    ``long``), e.g. ``header bytes 70 fa 91 f5 53 f6 48 77 = CRC-64-AVRO
    0x7748f653f591fa70 (parsingFingerprint64 8595390729299294832)``.
    """
    value = int.from_bytes(fp, "little")
    signed = int.from_bytes(fp, "little", signed=True)
    return f"header bytes {fp.hex(' ')} = CRC-64-AVRO 0x{value:016x} (parsingFingerprint64 {signed})"


class SchemaStore:
    """Known writer schemas by fingerprint, and the reader schema per record name."""

    def __init__(self) -> None:
        self._writers: dict[bytes, dict[str, Any]] = {}
        self._readers: dict[str, dict[str, Any]] = {}
        self._reader_fingerprints: dict[str, bytes] = {}

    @classmethod
    def default(cls) -> SchemaStore:
        """A store holding every schema in ``schemas/`` as reader and writer, and their earlier versions as writers."""
        store = cls()
        for old in schemas.history():
            store.add_writer(old)
        for name in schemas.SCHEMA_NAMES:
            store.set_reader(schemas.raw(name))
        return store

    def add_writer(self, schema: dict[str, Any]) -> bytes:
        """Remember a schema messages may have been written with; returns its fingerprint."""
        fp = schema_fingerprint(fastavro.parse_schema(schema, _write_hint=False))
        # Parsed once, with fastavro's hint: a schema without it is parsed again on every read and write.
        self._writers[fp] = fastavro.parse_schema(schema)
        return fp

    def set_reader(self, schema: dict[str, Any]) -> None:
        """Make ``schema`` the current version of its record (also a known writer)."""
        fp = self.add_writer(schema)
        parsed = self._writers[fp]
        name = parsed["name"].rsplit(".", 1)[-1]
        self._readers[name] = parsed
        self._reader_fingerprints[name] = fp

    def reader(self, name: str) -> dict[str, Any]:
        return self._readers[name]

    def writer(self, fp: bytes) -> dict[str, Any] | None:
        """The writer schema whose fingerprint is ``fp`` (wire order), or ``None``."""
        return self._writers.get(fp)

    def legacy_writer(self, fp: bytes) -> dict[str, Any] | None:
        """The writer schema whose fingerprint is ``fp`` byte-reversed (the legacy header), or ``None``."""
        return self._writers.get(fp[::-1])

    def fingerprint_of(self, name: str) -> bytes:
        return self._reader_fingerprints[name]


class Codec:
    """Encodes the router's records and decodes what upstream sends.

    ``legacy_headers`` counts, per writer schema name, the values read with
    the legacy byte-reversed header; ``on_legacy_header(schema_name)`` is
    called for each one as well (e.g. to increment a Prometheus counter).
    """

    def __init__(self, store: SchemaStore | None = None, *, output: str = "avro",
                 on_legacy_header: Callable[[str], Any] | None = None) -> None:
        if output not in ("avro", "json"):
            raise ValueError(f"output encoding must be 'avro' or 'json', not {output!r}")
        self.store = store or SchemaStore.default()
        self.output = output
        self.legacy_headers: Counter[str] = Counter()
        self._on_legacy_header = on_legacy_header

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        """``record`` as record ``name`` in the configured output encoding."""
        if self.output == "json":
            return encode_json(record)
        return self.encode_avro(name, record)

    def encode_avro(self, name: str, record: dict[str, Any]) -> bytes:
        """``record`` in Avro single-object encoding with the current schema of ``name``."""
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(self.store.fingerprint_of(name))
        fastavro.schemaless_writer(buf, self.store.reader(name), record)
        return buf.getvalue()

    def decode(self, name: str, data: bytes) -> dict[str, Any]:
        """Read ``data`` (Avro single-object or a JSON object) as record ``name``.

        Raises :class:`UndecodableRequest` with the reason when it is neither.
        Field validation beyond the encoding is the caller's business.
        """
        if data is None or len(data) == 0:
            raise UndecodableRequest("empty message value: expected Avro single-object encoding or a JSON object")
        if data[:2] == MAGIC:
            return self._decode_avro(name, data)
        if data.lstrip()[:1] == b"{":
            return _decode_json(data)
        raise UndecodableRequest(
            f"value is neither Avro single-object encoding (starts {data[:2].hex()!r}, want 'c301') nor a JSON object"
        )

    def misfit(self, name: str, record: dict[str, Any]) -> str | None:
        """Why ``record`` (decoded from JSON) is not something the Avro form of record ``name`` could carry, or None.

        A JSON value may hold what Avro cannot: a lone surrogate (``"\\ud800"``), which no UTF-8 encoder
        takes (every key built from the field, a ledger's or the cache's, and every record that echoes it
        would raise, after the provider was paid); an integer past its field's 32 or 64 bits, or one no
        double can hold; nesting deeper than any field has. What Avro decoding returns never misfits.
        """
        problem = _text_problem(record)
        if problem is not None:
            return problem
        for field in self.store.reader(name)["fields"]:
            value = record.get(field["name"])
            if isinstance(value, int) and not isinstance(value, bool):
                problem = _number_problem(field["name"], value, _branches(field["type"]))
                if problem is not None:
                    return problem
        return None

    def _decode_avro(self, name: str, data: bytes) -> dict[str, Any]:
        if len(data) < HEADER_LEN:
            raise UndecodableRequest(f"Avro single-object header truncated: {len(data)} bytes, need at least {HEADER_LEN}")
        fp = data[2:HEADER_LEN]
        writer = self.store.writer(fp) or self._legacy_writer(fp)
        if writer is None:
            raise UndecodableRequest(
                f"unknown Avro schema fingerprint: {describe_fingerprint(fp)}; the writer schema is not registered"
            )
        reader = self.store.reader(name)
        try:  # the same schema on both sides needs no resolution (most messages)
            record = fastavro.schemaless_reader(io.BytesIO(data[HEADER_LEN:]), writer,
                                                None if writer is reader else reader)
        except Exception as exc:  # fastavro raises many types for a corrupt body (EOFError, IndexError, ...)
            raise UndecodableRequest(f"Avro body does not match its schema: {_name(exc)}") from exc
        return record

    def _legacy_writer(self, fp: bytes) -> dict[str, Any] | None:
        """The writer schema of a legacy (byte-reversed) header, counted and, once per schema, logged."""
        writer = self.store.legacy_writer(fp)
        if writer is None:
            return None
        name = writer["name"].rsplit(".", 1)[-1]
        self.legacy_headers[name] += 1
        if self.legacy_headers[name] == 1:
            log.warning("avro_legacy_header", schema=name, written_by=LEGACY_WRITERS,
                        header=describe_fingerprint(fp), spec_header=describe_fingerprint(fp[::-1]),
                        accepted="this release only (logged once per schema, counted in legacy_headers)")
        if self._on_legacy_header is not None:
            self._on_legacy_header(name)
        return writer


def encode_json(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _decode_json(data: bytes) -> dict[str, Any]:
    """Every way ``json.loads`` can refuse a value is an :class:`UndecodableRequest`: not UTF-8, not JSON
    (both ValueErrors), an integer over Python's 4,300 digits (a plain ValueError), nesting deeper than the
    interpreter's recursion limit (RecursionError), a value too large to hold (MemoryError)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError, MemoryError) as exc:
        raise UndecodableRequest(f"invalid JSON: {_name(exc)}") from exc
    if not isinstance(value, dict):
        raise UndecodableRequest(f"JSON value is a {type(value).__name__}, not an object")
    return value


def _name(exc: BaseException) -> str:
    """``exc`` for a reason: its type and message, the message cut short and safe to encode as UTF-8."""
    text = str(exc)[:300].encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def is_avro(data: bytes) -> bool:
    """Whether ``data`` starts like Avro single-object encoding (else the codec reads it as JSON)."""
    return data[:2] == MAGIC


def _text_problem(record: dict[str, Any]) -> str | None:
    """The first string (value or key) in ``record`` that is not valid Unicode, or nesting past
    :data:`MAX_JSON_DEPTH`; walked without recursion, whatever the depth."""
    pending: list[tuple[Any, str, int]] = [(record, "", 0)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            if not _is_text(value):
                return (f"{path} is not valid Unicode text: it holds a lone surrogate (as JSON's \\ud800 escape "
                        f"writes it), which no UTF-8 record or key can carry")
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"{path} is nested more than {MAX_JSON_DEPTH} levels deep; no field of the record is"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in reversed(list(items)):
                if isinstance(key, str) and not _is_text(key):
                    return f"a key of {path or 'the record'} is not valid Unicode text (a lone surrogate)"
                where = f"{path}[{key}]" if isinstance(key, int) else f"{path}.{_shown(key)}" if path else _shown(key)
                pending.append((item, where, depth + 1))
    return None


def _is_text(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(key: str) -> str:
    return key if len(key) <= 40 else key[:40] + "..."


def _branches(avro_type: Any) -> set[str]:
    """The primitive type names a field's schema allows (a union's branches, or the type itself)."""
    types = avro_type if isinstance(avro_type, list) else [avro_type]
    return {t for t in types if isinstance(t, str)}


def _number_problem(name: str, value: int, types: set[str]) -> str | None:
    for kind in ("int", "long"):
        if kind in types:
            low, high = _INT_RANGES[kind]
            if low <= value <= high:
                return None
            return f"{name} is out of range: an Avro {kind} holds {low} to {high}, not {_digits(value)}"
    if types & {"double", "float"}:
        try:
            float(value)
        except OverflowError:
            return f"{name} is too large for a number (a double): {_digits(value)}"
    return None


def _digits(value: int) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"an integer of {len(text.lstrip('-'))} digits"
