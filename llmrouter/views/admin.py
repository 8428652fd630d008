"""``/admin/flags/`` on every worker: the degradation flags and overrides, to read and to change.

* ``GET`` — the flags and overrides this worker obeys, with who set each,
  when and why. Anyone may read it, as every other view.
* ``POST`` — change one, on every worker, with a JSON body::

      {"flag": "no_premium", "on": true, "note": "openai bills doubled", "who": "alice"}
      {"override": "together", "action": "disable" | "force" | "clear", "note": "...", "who": "alice"}

  Only with the admin key in the ``X-Admin-Key`` header: 401 without it or
  with another one. The key is a secret like the API keys
  (:mod:`llmrouter.config.secrets`): ``LLMROUTER_ADMIN_KEY`` in the worker's
  environment or in the file named by ``LLMROUTER_SECRETS_FILE``, never in
  the settings. A worker with no key refuses every POST (403) and says how to
  set one: a worker nobody configured must not take orders from anyone who
  reaches its port. The key is compared in constant time
  (``hmac.compare_digest``), and neither it nor what a caller sent is logged
  or echoed.

The change goes through :func:`llmrouter.dispatch.flags.write_change` (the record on
``llm.router.flags``, then one event on ``llm.events``), and the answer comes
once this worker has read the record back: a GET right after shows it. The
other workers follow within about a second.
"""

from __future__ import annotations

import hmac
from typing import Any

import faust
import structlog
from faust.web import Request, Response, View

from llmrouter.config.secrets import ADMIN_KEY_ENV, ADMIN_KEY_HEADER
from llmrouter.core.flag_state import OVERRIDE_PREFIX, Mark
from llmrouter.errors import ConfigError
from llmrouter.dispatch.flags import FlagsService, write_change
from llmrouter.runtime.clock import wall_ms
from llmrouter.runtime.publisher import Publisher

log = structlog.get_logger("llmrouter.admin")

KEY_HEADER = ADMIN_KEY_HEADER
READ_BACK_TIMEOUT_S = 5.0
NO_KEY = (f"no admin key is configured on this worker: set {ADMIN_KEY_ENV} in its environment (or in the secrets "
          f"file named by LLMROUTER_SECRETS_FILE) and restart it, then send the key in the {KEY_HEADER} header")
BAD_KEY = f"a valid admin key is needed in the {KEY_HEADER} header"


def key_refusal(configured: str | None, given: str | None) -> tuple[int, str] | None:
    """Why a POST carrying ``given`` is refused by a worker whose key is ``configured``: (403, how to configure a
    key) when it has none, (401, ...) when ``given`` is missing or another; None when it may go on."""
    if not configured:
        return 403, NO_KEY
    if given is None or not hmac.compare_digest(given.encode(), configured.encode()):
        return 401, BAD_KEY
    return None


def requested_change(body: Any, *, default_who: str) -> tuple[str, str, Mark]:
    """(target, action, mark) from a POST body; :class:`ConfigError` saying what a body must hold."""
    if not isinstance(body, dict):
        raise ConfigError("the body must be a JSON object with 'flag' and 'on', or 'override' and 'action'")
    who, note = body.get("who") or default_who, body.get("note") or ""
    if not isinstance(who, str) or not isinstance(note, str):
        raise ConfigError("'who' and 'note' must be strings")
    mark = Mark(who, wall_ms(), note)
    if "flag" in body:
        if not isinstance(body.get("on"), bool):
            raise ConfigError("a flag change needs 'on': true or false")
        return str(body["flag"]), "on" if body["on"] else "off", mark
    if "override" in body:
        return f"{OVERRIDE_PREFIX}{body['override']}", str(body.get("action")), mark
    raise ConfigError("the body must name a 'flag' (with 'on') or an 'override' (with 'action')")


def register(app: faust.App, flags: FlagsService, publisher: Publisher, *, topic: str, admin_key: str | None,
             worker_id: str) -> None:
    """Declare ``/admin/flags/``; ``topic`` is llm.router.flags with its prefix."""

    async def send_record(key: str, value: bytes | None) -> Any:
        return await app.producer.send_and_wait(topic, key.encode(), value, None, None, None)

    @app.page("/admin/flags/")
    class AdminFlags(View):
        async def get(self, request: Request) -> Response:
            return self.json({"worker": worker_id, **flags.current.to_view()})

        async def post(self, request: Request) -> Response:
            refusal = key_refusal(admin_key, request.headers.get(KEY_HEADER))
            if refusal is not None:
                status, reason = refusal
                log.warning("admin_refused", status=status, remote=getattr(request, "remote", None))
                return self.json({"error": reason}, status=status)
            try:
                body = await request.json()
                target, action, mark = requested_change(body, default_who=f"admin key holder via {worker_id}")
                change = flags.current.change(target, action, mark=mark)
            except ValueError:
                return self.json({"error": "the body is not JSON"}, status=400)
            except ConfigError as exc:
                return self.json({"error": str(exc)}, status=400)
            if change is None:
                return self.json({"changed": False, "summary": f"{target} is not set: nothing to {action}",
                                  **flags.current.to_view()})
            written = await write_change(change, via=f"admin view of {worker_id}", send_record=send_record,
                                         send_event=publisher.event)
            applied = await flags.wait_applied(written.offset, timeout_s=READ_BACK_TIMEOUT_S)
            log.info("admin_change", key=change.key, kind=change.kind, who=mark.who)
            return self.json({"changed": True, "summary": change.summary, "applied_here": applied,
                              **flags.current.to_view()})
