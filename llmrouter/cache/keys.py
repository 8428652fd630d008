"""Cache keys (F032): what may change an answer is in the key, nothing else is.

A key reads ``llm:v{version}:{scope}:{digest}``:

* ``version`` is ``cache.namespace_version``; raising it orphans every entry
  at once (they then expire by their TTL), without touching Redis or RocksDB.
* ``scope`` is whose answers these are: ``t.<tenant>.u.<user_id>`` when both
  are set (``metadata["tenant"]`` and ``user_id``), ``u.<user_id>`` for a
  user with no tenant, ``t.<tenant>`` for a tenant's requests with no user,
  else ``anon``; or ``shared`` for every request when
  ``cache.shared_namespace`` is on. So the same ``user_id`` in two tenants is
  two scopes, and every scope of a tenant starts with ``t.<tenant>:`` or
  ``t.<tenant>.u.`` (:func:`clear_prefixes`). Both ids are percent-encoded,
  ``.`` included (only ``A-Z a-z 0-9 _ - ~`` stay as they are), so no id
  holds a separator: tenant ``a.u`` with user ``b`` is ``t.a%2Eu.u.b`` and
  tenant ``a`` with user ``u.b`` is ``t.a.u.u%2Eb``; a ``user_id`` holding
  ``:``, ``*`` or ``%`` can neither forge another scope nor widen a
  ``clear`` by prefix, and a user id is never read as a tenant or as ``anon``.
* ``digest`` is the full SHA-256 (64 hex digits) of a canonical JSON array
  of: the scope, ``task_type``, the prompt and each message's role and content
  (normalised and templated by :mod:`llmrouter.cache.normalise`: whitespace
  inside a text is kept, indentation changes the key), the
  ``providers`` allow-list (which models may answer; sorted and without
  repeats, because the fallback chain, not the list, decides the order), and
  the generation parameters ``max_tokens``, ``temperature`` and ``seed``.
  JSON arrays and quoted strings leave no doubt where one field ends, so
  ``("ab", "c")`` and ``("a", "bc")`` never share a digest. An 8-hex digest
  (the specification's) collides after tens of thousands of entries; 256 bits
  do not, and a wrong cached answer is worse than a miss.

Keys of an older layout are never read again: issue 19 changed the scope of
a user in a tenant and the whitespace kept, and ``_ENCODING`` (in the digest)
with them, so entries stored before the upgrade are orphaned and expire by
their TTL.

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

__all__ = ["cache_key", "scope_of", "tenant_scope", "key_prefix", "clear_prefixes", "KEY_ROOT", "SHARED_SCOPE",
           "ANON_SCOPE"]

KEY_ROOT = "llm"
SHARED_SCOPE = "shared"
ANON_SCOPE = "anon"
_ENCODING = "llmrouter-cache-key/2"  # in the digest; change it whenever the payload below changes
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
    """The scope of a user within its tenant, a user with no tenant, a tenant's requests, else ``anon``."""
    if tenant and user_id:
        return f"t.{_escape(tenant)}.u.{_escape(user_id)}"
    if user_id:
        return "u." + _escape(user_id)
    if tenant:
        return "t." + _escape(tenant)
    return ANON_SCOPE


def clear_prefixes(version: int, *, tenant: str | None = None, user_id: str | None = None) -> tuple[str, ...]:
    """The key prefixes of one tenant's entries, its users' included (``clear --tenant``), or of one user's
    (``clear --user``, with ``tenant`` when the user belongs to one)."""
    if user_id or not tenant:
        return (key_prefix(version, tenant_scope(user_id=user_id, tenant=tenant)),)
    own = tenant_scope(tenant=tenant)
    return key_prefix(version, own), f"{key_prefix(version)}{own}.u."


def key_prefix(version: int, scope: str | None = None) -> str:
    """``llm:v{version}:`` (every key of a version) or ``llm:v{version}:{scope}:`` (one tenant's)."""
    if version < 1:
        raise ValueError(f"the namespace version must be at least 1, not {version}")
    return f"{KEY_ROOT}:v{version}:" if scope is None else f"{KEY_ROOT}:v{version}:{scope}:"


def _escape(identity: str) -> str:
    """Percent-encoded, ``.`` too: the scope's separators (``.``, ``:``) never come from an id."""
    return quote(identity.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")
