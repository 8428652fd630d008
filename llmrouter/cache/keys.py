"""Cache keys (F032): what may change an answer is in the key, nothing else is.

A key reads ``llm:v{version}:{scope}:{digest}``:

* ``version`` is ``cache.namespace_version``; raising it orphans every entry
  at once (they then expire by their TTL), without touching Redis or RocksDB.
* ``scope`` is whose answers these are: ``u.<user_id>``, else
  ``t.<metadata["tenant"]>``, else ``anon``; or ``shared`` for every request
  when ``cache.shared_namespace`` is on. The id is percent-encoded (only
  ``A-Z a-z 0-9 _ . - ~`` stay as they are), so a ``user_id`` holding ``:``,
  ``*`` or ``%`` can neither forge another tenant's scope nor widen a
  ``clear`` by prefix (:func:`key_prefix`), and a user id is never read as a
  tenant field or as ``anon``.
* ``digest`` is the full SHA-256 (64 hex digits) of a canonical JSON array
  of: the scope, ``task_type``, the prompt and each message's role and content
  (normalised and templated by :mod:`llmrouter.cache.normalise`), the
  ``providers`` allow-list (which models may answer; sorted and without
  repeats, because the fallback chain, not the list, decides the order), and
  the generation parameters ``max_tokens``, ``temperature`` and ``seed``.
  JSON arrays and quoted strings leave no doubt where one field ends, so
  ``("ab", "c")`` and ``("a", "bc")`` never share a digest. An 8-hex digest
  (the specification's) collides after tens of thousands of entries; 256 bits
  do not, and a wrong cached answer is worse than a miss.

Not in the key, because they do not change the answer: ``request_id``,
``priority``, ``deadline_ms``, ``timeout_ms``, ``reply_to``,
``created_at_ms``, ``received_at_ms``, ``stream``, ``cache_policy`` and every
``metadata`` entry but ``tenant``.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

from llmrouter.cache.normalise import Templates, normalise
from llmrouter.wire.contract import Request

__all__ = ["cache_key", "scope_of", "tenant_scope", "key_prefix", "KEY_ROOT", "SHARED_SCOPE", "ANON_SCOPE"]

KEY_ROOT = "llm"
SHARED_SCOPE = "shared"
ANON_SCOPE = "anon"
_ENCODING = "llmrouter-cache-key/1"  # in the digest; change it whenever the payload below changes
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False)


def cache_key(request: Request, *, version: int, templates: Templates, shared_namespace: bool) -> str:
    """The cache key of ``request``: ``llm:v{version}:{scope}:{sha256 hex}``."""
    scope = scope_of(request, shared_namespace=shared_namespace)
    payload = [
        _ENCODING,
        scope,
        request.task_type,
        templates.apply(normalise(request.prompt or "")),
        [[role, templates.apply(normalise(content))] for role, content in request.messages],
        sorted(set(request.providers)) if request.providers is not None else None,
        request.max_tokens,
        request.temperature + 0.0,  # -0.0 becomes 0.0
        request.seed,
    ]
    encoded = _JSON.encode(payload).encode("utf-8", "surrogatepass")
    return f"{key_prefix(version, scope)}{hashlib.sha256(encoded).hexdigest()}"


def scope_of(request: Request, *, shared_namespace: bool) -> str:
    """Whose cache ``request`` reads and writes (see the module docstring)."""
    if shared_namespace:
        return SHARED_SCOPE
    return tenant_scope(user_id=request.user_id, tenant=request.metadata.get("tenant"))


def tenant_scope(*, user_id: str | None = None, tenant: str | None = None) -> str:
    """The scope of a user (first) or a tenant field, else ``anon``; for ``clear`` by tenant too."""
    if user_id:
        return "u." + _escape(user_id)
    if tenant:
        return "t." + _escape(tenant)
    return ANON_SCOPE


def key_prefix(version: int, scope: str | None = None) -> str:
    """``llm:v{version}:`` (every key of a version) or ``llm:v{version}:{scope}:`` (one tenant's)."""
    if version < 1:
        raise ValueError(f"the namespace version must be at least 1, not {version}")
    return f"{KEY_ROOT}:v{version}:" if scope is None else f"{KEY_ROOT}:v{version}:{scope}:"


def _escape(identity: str) -> str:
    return quote(identity.encode("utf-8", "surrogatepass"), safe="")
