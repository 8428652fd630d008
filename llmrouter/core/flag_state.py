"""Degradation flags and manual provider overrides (F023, F055): the state and its records. Pure.

What an operator can switch, and what each means to the answer stage
(:mod:`llmrouter.core.degrade` applies them to a chain):

* ``local_only`` — only the local model may answer (offline operation);
* ``no_premium`` — the premium providers (openai, anthropic) and any
  ``emergency_only`` one are never called;
* ``cache_only`` — no provider is called: a cache hit is answered as always,
  a miss is refused;
* ``disable <provider>`` — that provider is skipped;
* ``force <provider>`` — that provider goes first in every chain that has it.

They live on the compacted topic ``llm.router.flags``, one record per key:
the flag's name (``no_premium``) or ``override:<provider>``. A value is a
JSON object saying who set it, when and why (an override also says which
action); a null value (a tombstone) clears it. A flag is on exactly while its
record exists, so there is no ``"on": false`` to disagree with a tombstone.

:meth:`FlagState.applied` folds one record into the state and refuses one it
cannot read with a :class:`~llmrouter.errors.ConfigError` naming the reason;
:meth:`FlagState.change` turns what an operator asks into the record to write
and the audit event that goes with it, or None when nothing would change.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from llmrouter.core.names import is_provider_name
from llmrouter.errors import ConfigError

FLAGS = ("local_only", "no_premium", "cache_only")
ACTIONS = ("disable", "force")  # what an override does; "clear" is the tombstone
OVERRIDE_PREFIX = "override:"
MAX_NOTE_CHARS = 500
MAX_WHO_CHARS = 200


def utc_iso(at_ms: int) -> str:
    """``2026-05-01T12:00:00Z``: when, in words an operator reads on any machine."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at_ms / 1000))


@dataclass(frozen=True)
class Mark:
    """Who set a flag or an override, when (ms since the epoch) and why."""

    who: str
    at_ms: int
    note: str = ""

    def says(self) -> str:
        """``alice at 2026-05-01T12:00:00Z: openai bills doubled``; the note only when there is one."""
        text = f"{self.who} at {utc_iso(self.at_ms)}"
        return f"{text}: {self.note}" if self.note else text

    def to_record(self) -> dict[str, Any]:
        return {"who": self.who, "at_ms": self.at_ms, "note": self.note}


@dataclass(frozen=True)
class Override:
    """A manual override of one provider: ``disable`` or ``force``."""

    provider: str
    action: str
    mark: Mark


@dataclass(frozen=True)
class Change:
    """One change an operator asked for: the record for ``llm.router.flags`` (``value`` None clears the key)
    and the audit event for ``llm.events`` (entity, kind, data)."""

    key: str
    value: bytes | None
    entity: str
    kind: str
    data: dict[str, str]
    summary: str  # one line for the operator who asked


@dataclass(frozen=True)
class FlagState:
    """The flags that are on and the overrides in force, each with its :class:`Mark`."""

    flags: Mapping[str, Mark] = field(default_factory=dict)
    overrides: Mapping[str, Override] = field(default_factory=dict)

    def on(self, flag: str) -> Mark | None:
        """The mark of ``flag`` while it is on, else None."""
        return self.flags.get(flag)

    def applied(self, key: bytes | None, value: bytes | None) -> FlagState:
        """The state after one ``llm.router.flags`` record; :class:`ConfigError` for a record it cannot read
        (the state a caller holds stays as it was)."""
        name = _decode_key(key)
        if name.startswith(OVERRIDE_PREFIX):
            provider = name[len(OVERRIDE_PREFIX):]
            overrides = dict(self.overrides)
            if value is None:
                overrides.pop(provider, None)
            else:
                fields = _decode_value(name, value)
                action = fields.get("action")
                if action not in ACTIONS:
                    raise ConfigError(f"record {name!r}: action {action!r} is not one of {', '.join(ACTIONS)}")
                overrides[provider] = Override(provider, action, _mark(name, fields))
            return replace(self, overrides=overrides)
        flags = dict(self.flags)
        if value is None:
            flags.pop(name, None)
        else:
            flags[name] = _mark(name, _decode_value(name, value))
        return replace(self, flags=flags)

    def change(self, target: str, action: str, *, mark: Mark) -> Change | None:
        """What to write so that ``target`` (a flag, or ``override:<provider>``) ends as ``action`` asks:
        ``on``/``off`` for a flag, ``disable``/``force``/``clear`` for an override. None when clearing
        something that is not set (nothing changes, so nothing is written and no event is sent).
        Setting what is set already writes it again: who, when and why are the new ones."""
        name = check_key(target)
        override = name.startswith(OVERRIDE_PREFIX)
        allowed = (*ACTIONS, "clear") if override else ("on", "off")
        if action not in allowed:
            raise ConfigError(f"{name}: the action is one of {', '.join(allowed)}, not {action!r}")
        mark = _checked_mark(mark)
        data = {"who": mark.who, "at_ms": str(mark.at_ms), "note": mark.note}
        if override:
            provider = name[len(OVERRIDE_PREFIX):]
            before = self.overrides.get(provider)
            if action == "clear":
                if before is None:
                    return None
                return Change(name, None, name, "override_cleared", {**data, "was": before.action},
                              f"override of {provider} cleared (it was {before.action}d by {before.mark.says()})")
            value = json.dumps({**mark.to_record(), "action": action}).encode()
            verb = "disabled" if action == "disable" else "forced first"
            return Change(name, value, name, f"provider_{action}d", data, f"{provider} {verb} by {mark.says()}")
        entity = f"flag:{name}"
        if action == "off":
            before_mark = self.flags.get(name)
            if before_mark is None:
                return None
            return Change(name, None, entity, "flag_cleared", data,
                          f"{name} off (it was set by {before_mark.says()})")
        return Change(name, json.dumps(mark.to_record()).encode(), entity, "flag_set", data,
                      f"{name} on, set by {mark.says()}")

    def to_view(self) -> dict[str, Any]:
        """For ``/admin/flags/`` and ``llmrouter flags list``: every flag (on or off) and every override."""
        return {
            "flags": {name: ({"on": True, **self.flags[name].to_record(), "at": utc_iso(self.flags[name].at_ms)}
                             if name in self.flags else {"on": False}) for name in FLAGS},
            "overrides": {provider: {"action": o.action, **o.mark.to_record(), "at": utc_iso(o.mark.at_ms)}
                          for provider, o in sorted(self.overrides.items())},
        }

    def notes(self) -> list[str]:
        """One line per flag on and per override, for ``/health/``'s degraded list."""
        lines = [f"flag {name} is on (set by {mark.says()})" for name, mark in sorted(self.flags.items())]
        lines += [f"provider {o.provider} is {o.action}d by {o.mark.says()}"
                  for o in sorted(self.overrides.values(), key=lambda o: o.provider)]
        return lines


def check_key(name: str) -> str:
    """``name`` if it is a flag or ``override:<provider name>``; else :class:`ConfigError` saying what is."""
    if name in FLAGS:
        return name
    if name.startswith(OVERRIDE_PREFIX):
        provider = name[len(OVERRIDE_PREFIX):]
        if is_provider_name(provider):
            return name
        raise ConfigError(f"{provider!r} is not a provider name (1-63 lower-case letters, digits, '_', '-' or '.')")
    raise ConfigError(f"{name!r} is not a flag; the flags are {', '.join(FLAGS)}")


def _decode_key(key: bytes | None) -> str:
    if not key:
        raise ConfigError("a flags record needs a key: a flag name or override:<provider>")
    return check_key(key.decode("utf-8", "replace"))


def _decode_value(name: str, value: bytes) -> dict[str, Any]:
    try:
        fields = json.loads(value)
    except ValueError as exc:
        raise ConfigError(f"record {name!r} is not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise ConfigError(f"record {name!r} must be a JSON object, not {type(fields).__name__}")
    return fields


def _mark(name: str, fields: dict[str, Any]) -> Mark:
    who, at_ms, note = fields.get("who"), fields.get("at_ms"), fields.get("note", "")
    if not isinstance(who, str) or not who:
        raise ConfigError(f"record {name!r} must say who set it (a non-empty string 'who')")
    if isinstance(at_ms, bool) or not isinstance(at_ms, int) or at_ms < 0:
        raise ConfigError(f"record {name!r} must say when it was set ('at_ms', ms since the epoch)")
    if not isinstance(note, str):
        raise ConfigError(f"record {name!r}: 'note' must be a string")
    return Mark(who, at_ms, note)


def _checked_mark(mark: Mark) -> Mark:
    if not mark.who.strip():
        raise ConfigError("say who makes the change (a name, e.g. alice@host)")
    if len(mark.who) > MAX_WHO_CHARS or len(mark.note) > MAX_NOTE_CHARS:
        raise ConfigError(f"'who' is at most {MAX_WHO_CHARS} characters and a note at most {MAX_NOTE_CHARS}")
    return Mark(mark.who.strip(), mark.at_ms, mark.note.strip())
