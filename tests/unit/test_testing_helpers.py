"""The helpers the tests and bench/ share (llmrouter/testing/): a free port, the settings merge, a worker's env."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from llmrouter.testing.ports import free_port
from llmrouter.testing.settings_file import merge_sections, write_worker_settings
from llmrouter.testing.worker_process import isolated_env


def test_a_free_port_can_be_bound_at_once():
    """The port returned is free: a server may listen on it."""
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
    assert 1024 <= port <= 65535


def test_sections_merge_one_level_deep_and_other_values_replace():
    """A mapping updates its section key by key; a list or scalar replaces; the inputs are left as they were."""
    base = {"kafka": {"bootstrap_servers": "b:9092", "topic_prefix": "t."}, "fallback_chain": ["local"]}
    merged = merge_sections(base, {"kafka": {"partitions": 2}, "fallback_chain": ["together"], "redis": {"url": "u"}})
    assert merged == {"kafka": {"bootstrap_servers": "b:9092", "topic_prefix": "t.", "partitions": 2},
                      "fallback_chain": ["together"], "redis": {"url": "u"}}
    assert base["kafka"] == {"bootstrap_servers": "b:9092", "topic_prefix": "t."}


def test_a_worker_of_its_own_needs_a_prefix_and_an_app_id(tmp_path: Path):
    """Without them two workers would share topics or a consumer group: refused in a sentence, nothing written."""
    with pytest.raises(ValueError, match="needs a topic prefix and an app id of its own"):
        write_worker_settings(tmp_path, topic_prefix="", app_id="llmrouter-test-x")
    assert not (tmp_path / "settings.yaml").exists()


def test_a_workers_environment_carries_only_the_keys_it_is_given(tmp_path: Path):
    """A developer's own API keys and LLMROUTER variables are dropped; the given keys and the settings file added."""
    base = {"PATH": "/bin", "OPENAI_API_KEY": "mine", "LLMROUTER__WORKER__WEB_PORT": "1", "LLMROUTER_SECRETS_FILE": "s"}
    env = isolated_env(tmp_path / "settings.yaml", {"TOGETHER_API_KEY": "given"}, base=base)
    assert env == {"PATH": "/bin", "TOGETHER_API_KEY": "given", "LLMROUTER_SETTINGS": str(tmp_path / "settings.yaml")}
