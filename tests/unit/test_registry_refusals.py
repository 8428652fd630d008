"""A record on llm.providers never gets our keys (issue 19, item 1), a premium-kind
provider is never priced at $0 (item 2), and a cloud provider's estimate of a CJK
prompt is not below its token count (item 9): through interfaces main already had
(the registry's ``apply``, ``load_settings``, a cloud provider's ``count_tokens``),
so each of these failed on main for what it checks, not for a missing name.
"""

from __future__ import annotations

import json

import pytest

from llmrouter.config.settings import load_settings
from llmrouter.errors import ConfigError
from llmrouter.localmodel.tiny_tokenizer import build_tiny_tokenizer
from llmrouter.providers.cloud import build_cloud_provider
from llmrouter.providers.spec import ProviderSpec
from tests.unit.registry_harness import drain, running

KEYS = {"OPENAI_API_KEY": "sk-ours", "LLMROUTER_ADMIN_KEY": "admin-ours", "PROXY_KEY": "pk"}
HOSTILE = [
    ("openai", {"name": "openai", "kind": "openai", "endpoint": "http://127.0.0.1:8/v1", "models": ["gpt-4o-mini"],
                "health_check_url": "http://127.0.0.1:8/steal", "price_input_per_1k_usd": 1,
                "price_output_per_1k_usd": 1}, "defined in the settings file"),
    ("admin-leak", {"name": "admin-leak", "kind": "openai_compatible", "endpoint": "http://127.0.0.1:8/v1",
                    "api_key_env": "LLMROUTER_ADMIN_KEY", "models": ["m"]}, "llm-router's own variables"),
    ("their-openai", {"name": "their-openai", "kind": "openai", "endpoint": "http://127.0.0.1:8/v1",
                      "models": ["m"], "price_input_per_1k_usd": 1, "price_output_per_1k_usd": 1},
     "api_key_env OPENAI_API_KEY is not in registry.registered_key_envs"),
    ("elsewhere", {"name": "elsewhere", "kind": "openai_compatible", "endpoint": "http://127.0.0.1:8/v1",
                   "api_key_env": "PROXY_KEY", "models": ["m"]}, "is not in registry.registered_endpoints"),
    ("metadata", {"name": "metadata", "kind": "openai_compatible", "endpoint": "http://169.254.169.254/v1",
                  "api_key_env": "", "models": ["m"]}, "link-local"),
    ("free-gpt", {"name": "free-gpt", "kind": "openai", "api_key_env": "", "models": ["m"]}, "above 0"),
]


@pytest.fixture
async def registry():
    async with running({}, KEYS) as registry:
        yield registry


@pytest.mark.parametrize("name, record, reason", HOSTILE, ids=[h[0] for h in HOSTILE])
async def test_a_hostile_registration_is_refused_and_the_settings_provider_stays(registry, name, record, reason):
    """Keyed openai, the admin key, the kind's usual key, an unlisted endpoint, the metadata address, a $0
    openai: nothing installed or replaced; the event and /providers/'s rejected list say why."""
    before = dict(registry.specs)
    await registry.apply(name.encode(), json.dumps(record).encode(), 11)
    assert registry.specs == before and registry.specs["openai"].base_url == "https://api.openai.com/v1"
    ((entity, kind, data),) = drain(registry)
    assert (entity, kind) == (f"provider:{name}", "provider_refused") and reason in data["reason"]
    (rejected,) = registry.rejected_records()
    assert rejected["name"] == name and reason in rejected["reason"] and rejected["offset"] == 11


async def test_a_tombstone_for_a_settings_provider_is_refused(registry):
    """A null value keyed together would have removed the settings provider."""
    await registry.apply(b"together", None, 3)
    assert "together" in registry.names()
    assert [kind for _, kind, _ in drain(registry)] == ["provider_refused"]


@pytest.mark.parametrize("env, reason", [
    ({"LLMROUTER__REGISTRY__REGISTERED_KEY_ENVS": "[LLMROUTER_ADMIN_KEY]"}, "llm-router's own variables"),
    ({"LLMROUTER__REGISTRY__REGISTERED_ENDPOINTS": "[api.openai.com]"}, "not an http(s) URL prefix"),
    ({"LLMROUTER__REGISTRY__SIGNING_KEY_ENV": "REG", "LLMROUTER__REGISTRY__REGISTERED_KEY_ENVS": "[REG]"},
     "cannot also be"),
    ({"LLMROUTER__PREMIUM_CONFIG__OPENAI__PRICE_OUTPUT_PER_1K_USD": "0"}, "premium_config.openai"),
])
def test_settings_that_would_hand_out_a_key_or_leave_a_premium_provider_uncapped_are_refused(env, reason):
    with pytest.raises(ConfigError, match="invalid settings") as refused:
        load_settings(env=env)
    assert reason in str(refused.value)


def test_a_zero_priced_openai_kind_provider_in_the_settings_is_refused_at_load(tmp_path):
    """gpt-proxy of kind openai at $0: the premium budget could never cap it."""
    path = tmp_path / "settings.yaml"
    path.write_text("providers:\n  gpt-proxy: {kind: openai, endpoint: 'https://proxy.example.com/v1', "
                    "models: [m]}\n")
    with pytest.raises(ConfigError, match="premium-kind provider .openai. needs price"):
        load_settings(path, env={})


@pytest.mark.parametrize("prompt", ["请用三句话解释一下路由器如何选择提供商。", "한국어로 짧게 대답해 주세요."])
def test_a_cloud_providers_estimate_of_a_cjk_prompt_is_at_least_its_token_count(prompt):
    """The tiny model's tokenizer (byte-level BPE, English vocabulary) spends a token per CJK byte: the worst
    any real vocabulary does. A cloud provider has no tokenizer offline; its estimate must not be lower."""
    spec = ProviderSpec(name="gpt-proxy", kind="openai", models=("m",), price_input_per_1k_usd=1,
                        price_output_per_1k_usd=1)
    tokens = len(build_tiny_tokenizer(512).encode(prompt).ids)
    assert build_cloud_provider(spec, "k").count_tokens(prompt) >= tokens
