"""API keys: from the environment or a secrets file, by variable name, never shown."""

from __future__ import annotations

import pytest

from llmrouter.errors import ConfigError
from llmrouter.config.secrets import Secrets


def test_a_key_is_found_by_its_variable_and_never_shown():
    """get() by name; repr() reveals nothing; an empty variable counts as unset."""
    secrets = Secrets.load({"HF_TOKEN": "hf_secret_value", "EMPTY": ""})
    assert secrets.get("HF_TOKEN") == "hf_secret_value"
    assert secrets.get("EMPTY") is None and secrets.get(None) is None and secrets.get("ABSENT") is None
    assert "hf_secret_value" not in repr(secrets)


def test_keys_can_come_from_a_file_outside_the_repository_and_the_environment_wins(tmp_path):
    """LLMROUTER_SECRETS_FILE names a YAML of VARIABLE: key; the environment overrides it."""
    path = tmp_path / "secrets.yaml"
    path.write_text("TOGETHER_API_KEY: from-file\nOPENAI_API_KEY: from-file\n")
    secrets = Secrets.load({"LLMROUTER_SECRETS_FILE": str(path), "OPENAI_API_KEY": "from-env"})
    assert (secrets.get("TOGETHER_API_KEY"), secrets.get("OPENAI_API_KEY")) == ("from-file", "from-env")


def test_an_unreadable_secrets_file_is_a_config_error_that_quotes_no_content(tmp_path):
    """A broken file is named, its content is not."""
    path = tmp_path / "secrets.yaml"
    path.write_text("sk-live-abc: [unclosed\n")
    with pytest.raises(ConfigError) as caught:
        Secrets.load({"LLMROUTER_SECRETS_FILE": str(path)})
    assert str(path) in str(caught.value) and "sk-live-abc" not in str(caught.value)
