"""Signed registrations: an HMAC-SHA256 over a ``llm.providers`` record, made by
``llmrouter providers register`` and checked by every worker. Pure.

The signature travels in the Kafka header ``llmrouter-signature`` (the value
stays a plain ``ProviderConfig``, so the record's schema, and every record
already on the topic, is unchanged; headers survive compaction). The header
holds ``v1=`` and 64 hex digits: HMAC-SHA256, keyed by the registry key,
over the canonical bytes

    b"llm.providers/v1\\x00" + key + b"\\x00" + (b"V" + value | b"T")

where ``key`` is the record's key (the provider name) and ``value`` the
record's value bytes exactly as produced (Avro single-object encoding from
the CLI; JSON works the same); ``T`` marks a null value, so a deregistration
is signed too and cannot be forged either. Binding the key stops a signed
record being replayed under another name.

The registry key is named by ``registry.signing_key_env`` in the settings
(the variable itself is in the environment of the CLI and of every worker,
or in the secrets file). With no such setting, records need no signature
and are read as before. With it, a worker refuses every record without a
valid signature, and every record at all if its own environment lacks the
key (it fails closed). A signed record can still be produced again later
(a replay): signing says who wrote a record, not when.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

SIGNATURE_HEADER = "llmrouter-signature"
VERSION = "v1"
MIN_KEY_CHARS = 16

Headers = Iterable[tuple[str, bytes | None]]


def canonical_bytes(key: bytes, value: bytes | None) -> bytes:
    """What is signed: the record's key and value, unambiguously joined."""
    return b"llm.providers/v1\x00" + key + b"\x00" + (b"T" if value is None else b"V" + value)


def sign(secret: str, key: bytes, value: bytes | None) -> bytes:
    """The header value for a record: ``v1=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.encode(), canonical_bytes(key, value), hashlib.sha256).hexdigest()
    return f"{VERSION}={digest}".encode()


def signature_problem(secret: str | None, key: bytes, value: bytes | None, headers: Headers) -> str | None:
    """Why a record's signature is refused, or None when it is valid. ``secret`` None: the worker lacks the key."""
    if secret is None:
        return ("registry.signing_key_env is set but this worker has no registry key in its environment; "
                "every registration is refused until it has one")
    given = [value for name, value in headers if name == SIGNATURE_HEADER]
    if not given:
        return f"unsigned: registrations must carry a {SIGNATURE_HEADER} header (llmrouter providers register signs)"
    if len(given) > 1:
        return f"more than one {SIGNATURE_HEADER} header"
    if given[0] is None or not hmac.compare_digest(given[0], sign(secret, key, value)):
        return f"bad signature: the {SIGNATURE_HEADER} header does not match the record and the registry key"
    return None


def key_problem(secret: str | None) -> str | None:
    """Why a registry key is unusable, or None."""
    if secret is not None and len(secret) < MIN_KEY_CHARS:
        return f"the registry key must be at least {MIN_KEY_CHARS} characters"
    return None
