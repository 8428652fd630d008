"""The provider name rule (llmrouter.core.names), shared by provider configs and flag overrides."""

from __future__ import annotations

import pytest

from llmrouter.core.flag_state import check_key
from llmrouter.core.names import is_provider_name
from llmrouter.errors import ConfigError
from llmrouter.providers.spec import spec_from_record


@pytest.mark.parametrize("name", ["openai", "local", "vllm-1", "eu.west_2", "0", "a" * 63])
def test_lower_case_letters_digits_and_dot_dash_underscore_name_a_provider(name):
    """1-63 characters of a-z, 0-9, '_', '-', '.', starting with a letter or a digit."""
    assert is_provider_name(name)


@pytest.mark.parametrize("name", ["", "OpenAI", "-x", ".x", "a b", "a/b", "a" * 64, None, 7])
def test_anything_else_does_not_name_a_provider(name):
    """Upper case, a leading '-' or '.', spaces, slashes, 64 characters or a non-string are refused."""
    assert not is_provider_name(name)


@pytest.mark.parametrize("name", ["vllm-1", "Bad Name"])
def test_a_provider_config_and_a_flag_override_follow_the_same_rule(name):
    """A name a provider config may carry is one an override may target, and the other way round."""
    try:
        spec_from_record({"name": name, "kind": "openai", "models": ["gpt-4o-mini"], "price_input_per_1k_usd": 0.1,
                          "price_output_per_1k_usd": 0.1}, source="topic")
        config_ok = True
    except ConfigError:
        config_ok = False
    try:
        check_key(f"override:{name}")
        override_ok = True
    except ConfigError:
        override_ok = False
    assert config_ok == override_ok == is_provider_name(name)
