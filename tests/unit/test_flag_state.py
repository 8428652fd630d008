"""The degradation flags and overrides as records on llm.router.flags, and the changes an operator asks for."""

from __future__ import annotations

import json

import pytest

from llmrouter.core.flag_state import FlagState, Mark, utc_iso
from llmrouter.errors import ConfigError

ALICE = Mark("alice@ops", 1_777_636_800_000, "openai bills doubled")  # 2026-05-01T12:00:00Z


def written(state: FlagState, target: str, action: str, mark: Mark = ALICE) -> FlagState:
    """The state after the change is written to the topic and read back."""
    change = state.change(target, action, mark=mark)
    assert change is not None
    return state.applied(change.key.encode(), change.value)


def test_a_flag_is_on_while_its_record_exists_and_a_tombstone_clears_it():
    """Setting writes who, when and why; off writes a tombstone, which turns it off."""
    state = written(FlagState(), "no_premium", "on")
    assert state.on("no_premium") == ALICE
    assert state.on("cache_only") is None
    assert written(state, "no_premium", "off").on("no_premium") is None


def test_an_override_record_says_its_action_and_clear_removes_it():
    """override:<provider> holds disable or force with its mark; clear is the tombstone."""
    state = written(FlagState(), "override:together", "disable")
    override = state.overrides["together"]
    assert (override.action, override.mark) == ("disable", ALICE)
    state = written(state, "override:together", "force")
    assert state.overrides["together"].action == "force"
    assert "together" not in written(state, "override:together", "clear").overrides


def test_clearing_what_is_not_set_writes_nothing_and_sends_no_event():
    """Each change is one event: a clear that changes nothing is no change at all."""
    assert FlagState().change("cache_only", "off", mark=ALICE) is None
    assert FlagState().change("override:together", "clear", mark=ALICE) is None


def test_each_change_carries_one_audit_event_naming_who_when_and_why():
    """The event's entity is the flag or the override; its data has who, at_ms and the note."""
    change = FlagState().change("local_only", "on", mark=ALICE)
    assert (change.entity, change.kind) == ("flag:local_only", "flag_set")
    assert change.data == {"who": "alice@ops", "at_ms": str(ALICE.at_ms), "note": "openai bills doubled"}
    assert change.summary == "local_only on, set by alice@ops at 2026-05-01T12:00:00Z: openai bills doubled"
    disabled = FlagState().change("override:hf", "disable", mark=ALICE)
    assert (disabled.entity, disabled.kind, json.loads(disabled.value)["action"]) == (
        "override:hf", "provider_disabled", "disable")
    cleared = written(FlagState(), "override:hf", "force").change("override:hf", "clear", mark=ALICE)
    assert (cleared.kind, cleared.value, cleared.data["was"]) == ("override_cleared", None, "force")


def test_an_unknown_flag_a_bad_provider_name_or_action_is_refused_with_what_is_allowed():
    """Nothing is written for a typo: the error lists the flags or the actions."""
    with pytest.raises(ConfigError, match="local_only, no_premium, cache_only"):
        FlagState().change("premium_off", "on", mark=ALICE)
    with pytest.raises(ConfigError, match="not a provider name"):
        FlagState().change("override:Bad Name", "disable", mark=ALICE)
    with pytest.raises(ConfigError, match="on, off"):
        FlagState().change("no_premium", "disable", mark=ALICE)
    with pytest.raises(ConfigError, match="disable, force, clear"):
        FlagState().change("override:hf", "on", mark=ALICE)
    with pytest.raises(ConfigError, match="who"):
        FlagState().change("no_premium", "on", mark=Mark("  ", 0))


@pytest.mark.parametrize("key, value, problem", [
    (None, b"{}", "needs a key"),
    (b"turbo", b'{"who": "a", "at_ms": 1}', "not a flag"),
    (b"no_premium", b"not json", "not JSON"),
    (b"no_premium", b"[1]", "JSON object"),
    (b"no_premium", b'{"at_ms": 1}', "who set it"),
    (b"no_premium", b'{"who": "a", "at_ms": "soon"}', "when it was set"),
    (b"override:hf", b'{"who": "a", "at_ms": 1, "action": "reboot"}', "action 'reboot'"),
])
def test_a_record_that_cannot_be_read_is_refused_and_the_state_stays_as_it_was(key, value, problem):
    """A bad record produced by other means is refused with its reason, never applied."""
    state = written(FlagState(), "no_premium", "on")
    with pytest.raises(ConfigError, match=problem):
        state.applied(key, value)
    assert state.on("no_premium") == ALICE


def test_the_view_lists_every_flag_on_or_off_and_every_override():
    """What /admin/flags/ and `llmrouter flags list` show."""
    state = written(written(FlagState(), "cache_only", "on"), "override:hf", "disable")
    view = state.to_view()
    assert view["flags"]["no_premium"] == {"on": False}
    assert view["flags"]["cache_only"] == {"on": True, "who": "alice@ops", "at_ms": ALICE.at_ms,
                                           "note": "openai bills doubled", "at": "2026-05-01T12:00:00Z"}
    assert view["overrides"]["hf"]["action"] == "disable"
    assert state.notes() == ["flag cache_only is on (set by alice@ops at 2026-05-01T12:00:00Z: openai bills doubled)",
                             "provider hf is disabled by alice@ops at 2026-05-01T12:00:00Z: openai bills doubled"]


def test_times_are_written_in_utc_whatever_the_machine():
    """utc_iso reads the same on every machine."""
    assert utc_iso(0) == "1970-01-01T00:00:00Z"
