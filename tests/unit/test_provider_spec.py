"""Provider configs (F051): what a registration may say, and how a bad one is refused."""

from __future__ import annotations

import pytest

from llmrouter.wire.codec import Codec
from llmrouter.errors import ConfigError
from llmrouter.providers.spec import ProviderSpec, spec_from_record


def test_a_minimal_registration_gets_the_kinds_defaults():
    """Endpoint, key variable and context window default per kind."""
    spec = spec_from_record({"name": "together-b", "kind": "together", "models": ["m"]})
    assert spec.base_url == "https://api.together.xyz/v1" and spec.key_env == "TOGETHER_API_KEY"
    assert spec.context_window == 8192 and spec.model == "m" and spec.source == "topic"


def test_an_openai_compatible_server_needs_an_endpoint_and_may_need_no_key():
    """api_key_env '' means no key; the base URL loses its trailing slash."""
    spec = spec_from_record({"name": "vllm", "kind": "openai_compatible", "endpoint": "http://gpu:8000/v1/",
                             "models": ["m"],
                             "api_key_env": ""})
    assert spec.key_env is None and spec.base_url == "http://gpu:8000/v1"


def test_every_problem_of_a_bad_registration_is_named_in_one_sentence():
    """Name, kind, endpoint, numbers and lists are all checked; the message lists each problem."""
    with pytest.raises(ConfigError) as caught:
        spec_from_record({"name": "Bad Name!", "kind": "gemini", "endpoint": "ftp://x", "timeout_s": 0,
                          "max_concurrent": 0, "models": [""], "rate_limit": "fast", "colour": "blue"})
    with pytest.raises(ConfigError, match="needs at least one model"):
        spec_from_record({"name": "vllm", "kind": "openai_compatible", "endpoint": "http://gpu:8000/v1"})
    message = str(caught.value)
    for part in ("name 'Bad Name!'", "kind 'gemini'", "endpoint 'ftp://x'", "timeout_s", "max_concurrent",
                 "models", "rate_limit 'fast'", "unknown field(s) ['colour']"):
        assert part in message


def test_a_key_pasted_into_api_key_env_is_refused_without_being_repeated():
    """The refusal never quotes the value, which may be a secret."""
    with pytest.raises(ConfigError) as caught:
        spec_from_record({"name": "oops", "kind": "openai", "api_key_env": "sk-proj-123 456"})
    assert "api_key_env" in str(caught.value) and "sk-proj" not in str(caught.value)


def test_the_local_kind_cannot_be_registered_at_run_time():
    """The local model is set up in the settings file, where its memory limit is checked."""
    with pytest.raises(ConfigError, match="local_config"):
        spec_from_record({"name": "local2", "kind": "local"})


def test_a_spec_round_trips_through_the_avro_schema():
    """to_record() is a valid ProviderConfig; decoding it gives the same spec back."""
    spec = ProviderSpec(name="anthropic-eu", kind="anthropic", models=("claude-x",), price_input_per_1k_usd=0.8,
                        price_output_per_1k_usd=4.0, emergency_only=True, context_tokens=100_000)
    codec = Codec()
    decoded = codec.decode("ProviderConfig", codec.encode_avro("ProviderConfig", spec.to_record()))
    assert spec_from_record(decoded) == spec


def test_cost_is_priced_per_1k_input_and_output_tokens():
    """estimate_cost_usd = (in * price_in + out * price_out) / 1000."""
    spec = ProviderSpec(name="p", kind="openai", price_input_per_1k_usd=0.15, price_output_per_1k_usd=0.6)
    assert spec.estimate_cost_usd(2000, 500) == pytest.approx(0.6)
