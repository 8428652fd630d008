"""Who may change the flags through a worker's /admin/flags/, and what a POST body must hold."""

from __future__ import annotations

import pytest

from llmrouter.views.admin import ADMIN_KEY_ENV, KEY_HEADER, key_refusal, requested_change
from llmrouter.errors import ConfigError


def test_a_worker_with_no_admin_key_refuses_every_change_and_says_how_to_configure_one():
    """403, naming the variable and the secrets file: nobody configured it, so nobody may change anything."""
    status, reason = key_refusal(None, "anything")
    assert status == 403
    assert ADMIN_KEY_ENV in reason and "LLMROUTER_SECRETS_FILE" in reason and KEY_HEADER in reason
    assert key_refusal("", None)[0] == 403


def test_a_missing_or_wrong_key_is_refused_with_401_and_the_key_is_never_echoed():
    """401 without the header or with another key; the reason names the header, not a key."""
    for given in (None, "", "wrong", "s3cret-but-longer"):
        status, reason = key_refusal("s3cret", given)
        assert status == 401 and "s3cret" not in reason and KEY_HEADER in reason


def test_the_right_key_lets_the_change_through():
    """The configured key, byte for byte (non-ASCII too)."""
    assert key_refusal("s3cret", "s3cret") is None
    assert key_refusal("clé-ü", "clé-ü") is None


def test_a_flag_body_turns_on_or_off_and_an_override_body_names_its_action():
    """{"flag", "on"} and {"override", "action"}; who defaults to the key holder, the note to nothing."""
    target, action, mark = requested_change({"flag": "no_premium", "on": True, "note": "bills"}, default_who="key")
    assert (target, action, mark.who, mark.note) == ("no_premium", "on", "key", "bills")
    assert requested_change({"flag": "cache_only", "on": False}, default_who="k")[:2] == ("cache_only", "off")
    target, action, mark = requested_change({"override": "together", "action": "disable", "who": "alice"},
                                            default_who="key")
    assert (target, action, mark.who) == ("override:together", "disable", "alice")


@pytest.mark.parametrize("body, problem", [
    ([1, 2], "JSON object"),
    ({"flag": "no_premium"}, "'on': true or false"),
    ({"flag": "no_premium", "on": "yes"}, "'on': true or false"),
    ({"note": "x"}, "must name a 'flag'"),
    ({"flag": "no_premium", "on": True, "who": 7}, "must be strings"),
])
def test_a_body_that_says_no_clear_change_is_refused_with_what_it_must_hold(body, problem):
    """Refused before anything is written."""
    with pytest.raises(ConfigError, match=problem):
        requested_change(body, default_who="key")
