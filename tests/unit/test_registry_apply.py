"""The registry applies llm.providers records: register, update, remove, refuse.

No broker here: records are handed to ``apply`` as the topic reader would;
cloud providers are built for real (an aiohttp session, no call is made).
"""

from __future__ import annotations

import json

import pytest

from llmrouter.wire.codec import Codec
from tests.unit.registry_harness import drain, running

VLLM = {"name": "vllm", "kind": "openai_compatible", "endpoint": "http://127.0.0.1:9/v1", "api_key_env": "",
        "models": ["llama"]}


@pytest.fixture
async def registry():
    env = {"LLMROUTER__REGISTRY__REGISTERED_KEY_ENVS": "[MY_KEY]",  # MY_KEY may go to 127.0.0.1:9
           "LLMROUTER__REGISTRY__REGISTERED_ENDPOINTS": "['http://127.0.0.1:9/v1']"}
    async with running(env, {"TOGETHER_API_KEY": "tk", "MY_KEY": "mk"}) as registry:
        yield registry


async def test_settings_providers_are_available_only_with_their_key(registry):
    """Together has its key; the others say which variable to set; local is disabled."""
    status = registry.status()
    assert status["together"] == {"available": True}
    assert status["huggingface"] == {"available": False, "reason": "not configured: no API key (set HF_TOKEN)"}
    assert status["local"]["reason"] == "disabled in its configuration"


async def test_a_registration_joins_the_chain_before_the_emergency_providers(registry):
    """A JSON or Avro ProviderConfig keyed by its name is applied; it follows the configured chain;
    the premium providers stay emergency-only."""
    await registry.apply(b"vllm", json.dumps(VLLM).encode(), 7)
    assert registry.status()["vllm"] == {"available": True}
    assert registry.chain() == ["local", "huggingface", "together", "openai", "anthropic", "vllm"]
    assert registry.emergency() == {"openai", "anthropic"}
    assert drain(registry) == [("provider:vllm", "provider_registered",
                                 {"offset": "7", "worker": "w1", "kind": "openai_compatible",
                                  "endpoint": "http://127.0.0.1:9/v1", "available": "true"})]


async def test_registering_a_name_again_updates_it_and_a_null_value_removes_it(registry):
    """Update: new spec in place (event provider_updated). Tombstone: gone from the chain."""
    codec = Codec()
    await registry.apply(b"vllm", codec.encode_avro("ProviderConfig", {**VLLM, "models": ["a"]}), 1)
    await registry.apply(b"vllm", codec.encode_avro("ProviderConfig", {**VLLM, "models": ["b"],
                                                                       "api_key_env": "MY_KEY"}), 2)
    assert registry.specs["vllm"].models == ("b",) and registry.status()["vllm"]["available"]
    await registry.apply(b"vllm", None, 3)
    assert "vllm" not in registry.chain() and "vllm" not in registry.names()
    assert [kind for _, kind, _ in drain(registry)] == ["provider_registered", "provider_updated",
                                                         "provider_removed"]


@pytest.mark.parametrize("key, value, reason", [
    (b"vllm", b"\x00garbage", "nor a JSON object"),
    (b"other", json.dumps(VLLM).encode(), "differs from its key"),
    (None, json.dumps(VLLM).encode(), "needs its provider name as the key"),
    (b"vllm", json.dumps({**VLLM, "timeout_s": -1}).encode(), "timeout_s must be a positive number"),
    (b"local", json.dumps({"name": "local", "kind": "local"}).encode(), "local_config"),
])
async def test_a_bad_record_is_refused_with_its_reason_and_never_applied(registry, key, value, reason):
    """Undecodable, misnamed, unkeyed, invalid or local: an event provider_refused, nothing changes."""
    before = registry.chain()
    await registry.apply(key, value, 5)
    ((entity, kind, data),) = drain(registry)
    assert kind == "provider_refused" and reason in data["reason"] and data["offset"] == "5"
    assert registry.chain() == before


async def test_records_replayed_at_start_up_are_applied_without_drain(registry):
    """Reading the topic to its end at start restores state; it is not a change, so no event."""
    registry.live = False
    await registry.apply(b"vllm", json.dumps(VLLM).encode(), 0)
    assert "vllm" in registry.names() and drain(registry) == []
