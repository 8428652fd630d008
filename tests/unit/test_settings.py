"""Settings: the shipped defaults, file and environment overrides, secrets, validation."""

from __future__ import annotations

import pytest

from llmrouter.errors import ConfigError
from llmrouter.config.settings import load_settings, parse_rate


def test_the_defaults_mirror_the_specification():
    """F011-F015 and the §5.2 tables are there with the specification's values."""
    s = load_settings(env={})
    assert s.local_config.inference_threads == 4 and s.local_config.quantization == "int8"
    assert s.huggingface_config.rate_limit == "50/hour" and s.together_config.cost_per_token == 0.0002
    assert s.premium_config.usage_limit == "$10/month" and s.premium_config.emergency_only
    assert s.fallback_chain == ["local", "huggingface", "together", "premium"]
    assert s.chain() == ["local", "huggingface", "together", "openai", "anthropic"]
    assert (s.limits_for("local").max_concurrent, s.limits_for("together").timeout) == (1, 15)
    assert s.cache_config.ttl_default == 3600
    local = s.local_config
    assert (local.batch_size, local.batching, local.max_batch_wait_ms, local.max_queue) == (1, "balanced", None, 32)


def test_a_settings_file_and_the_environment_override_the_defaults(tmp_path):
    """File over defaults, LLMROUTER__SECTION__KEY over the file."""
    path = tmp_path / "s.yaml"
    path.write_text("kafka:\n  topic_prefix: 'staging.'\nworker:\n  web_port: 7000\n")
    s = load_settings(path, env={"LLMROUTER__WORKER__WEB_PORT": "7001"})
    assert s.topic("llm.results") == "staging.llm.results" and s.worker.web_port == 7001


def test_the_settings_define_every_provider_of_the_specification():
    """F012-F014 become provider specs: keys by variable name only, §5.2 limits, prices per 1k tokens."""
    specs = load_settings(env={}).provider_specs()
    assert list(specs) == ["local", "huggingface", "together", "openai", "anthropic"]
    hf, together, openai = specs["huggingface"], specs["together"], specs["openai"]
    assert (hf.key_env, hf.rate_limit, hf.retry_attempts, hf.max_concurrent) == ("HF_TOKEN", "50/hour", 3, 5)
    assert hf.models == ("google/flan-t5-large", "microsoft/DialoGPT-large")
    assert (together.timeout_s, together.price_input_per_1k_usd) == (15, 0.2)  # §5.2 timeout; F013 cost_per_token
    assert openai.emergency_only and specs["anthropic"].key_env == "ANTHROPIC_API_KEY"
    assert not hasattr(hf, "api_key")  # a spec names the variable, never holds the key


def test_premium_in_the_chain_stands_for_openai_then_anthropic():
    """F015's 'Premium APIs' is spelt out; extra providers from the file may join the chain."""
    s = load_settings(env={
        "LLMROUTER__PROVIDERS":
            "{my-vllm: {kind: openai_compatible, endpoint: 'http://gpu:8000/v1', api_key_env: '', models: [m]}}",
        "LLMROUTER__FALLBACK_CHAIN": "[my-vllm, local, premium]"})
    assert s.chain() == ["my-vllm", "local", "openai", "anthropic"]
    assert s.provider_specs()["my-vllm"].key_env is None


def test_an_invalid_extra_provider_is_refused_with_its_reason():
    """A provider under providers: is checked like a registration."""
    with pytest.raises(ConfigError, match="needs an endpoint"):
        load_settings(env={"LLMROUTER__PROVIDERS": "{mine: {kind: openai_compatible}}"})


def test_every_problem_is_listed_with_its_path(tmp_path):
    """An invalid file is refused with each problem and where it is."""
    path = tmp_path / "bad.yaml"
    path.write_text("worker:\n  web_port: 0\n  colour: blue\nlocal_config:\n  max_memory: lots\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env={})
    message = str(caught.value)
    assert "worker.web_port" in message and "worker.colour" in message and "local_config.max_memory" in message


@pytest.mark.parametrize("chain, problem", [(["local", "bogus"], "unknown providers"),
                                            (["local", "local"], "twice")])
def test_the_fallback_chain_names_known_providers_once(tmp_path, chain, problem):
    """fallback_chain may only name known providers, each once."""
    with pytest.raises(ConfigError, match=problem):
        load_settings(env={"LLMROUTER__FALLBACK_CHAIN": str(chain)})


def test_a_missing_or_broken_file_is_a_config_error(tmp_path):
    """Unreadable or non-mapping YAML gives a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", env={})
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_settings(tmp_path / "list.yaml", env={})


def test_rates_are_parsed_into_count_and_period():
    """'50/hour' -> (50, 3600); nonsense is refused with an example."""
    assert parse_rate("50/hour") == (50.0, 3600.0) and parse_rate("1000/minute") == (1000.0, 60.0)
    with pytest.raises(ValueError, match="1000/minute"):
        parse_rate("fast")


def test_settings_read_but_not_enforced_yet_are_named():
    """The worker warns at start about each setting no stage acts on yet; rate limits and budgets are enforced."""
    inert = set(load_settings(env={}).inert())
    assert {"together_config.priority", "llm_config.local.memory_limit"} <= inert
    assert not {"huggingface_config.rate_limit", "premium_config.usage_limit"} & inert
    assert not any(name.startswith(("worker.", "kafka.", "limits.", "tables.", "cache")) for name in inert)


def test_the_revoke_grace_and_write_timeout_must_fit_inside_a_rebalance():
    """A drain longer than half the rebalance timeout would get the worker thrown out of its group."""
    with pytest.raises(ConfigError, match="revoke_grace_s \\+ producer_timeout_s must be at most 30"):
        load_settings(env={"LLMROUTER__WORKER__REVOKE_GRACE_S": "25"})


def test_the_cache_section_has_safe_defaults_and_reuses_cache_config():
    """cache: on, per-tenant, deterministic only, no templates; the L1 bound is cache_config.max_size."""
    s = load_settings(env={})
    assert s.cache.enabled and s.cache.namespace_version == 1 and not s.cache.shared_namespace
    assert not s.cache.cache_nondeterministic and s.cache.templates == [] and len(s.cache.compiled_templates()) == 0
    assert (s.cache.l1_enabled, s.cache.l2_enabled, s.cache.l3_enabled) == (True, True, True)
    assert s.cache_l1_bytes() == 256 * 1024 * 1024
    assert load_settings(env={"LLMROUTER__CACHE_CONFIG__MAX_SIZE": "64MiB"}).cache_l1_bytes() == 64 * 1024 * 1024


def test_cache_templates_are_compiled_from_the_file(tmp_path):
    """A list of {name, pattern} becomes Templates that strip what they match."""
    path = tmp_path / "s.yaml"
    path.write_text("cache:\n  templates:\n    - {name: now, pattern: 'Now: \\S+'}\n")
    templates = load_settings(path, env={}).cache.compiled_templates()
    assert templates.apply("Now: 10:00 hello") == "<now> hello"


@pytest.mark.parametrize("override, problem", [
    ({"LLMROUTER__CACHE__TEMPLATES": "[{name: when, pattern: '(unclosed'}]"},
     "cache.templates.*'when'.*not a valid regular expression"),
    ({"LLMROUTER__CACHE__TEMPLATES": "[{name: when, pattern: '.*'}]"}, "matches the empty string"),
    ({"LLMROUTER__CACHE_CONFIG__MAX_SIZE": "lots"}, "cache_config.max_size.*not a memory size"),
    ({"LLMROUTER__CACHE__NAMESPACE_VERSION": "0"}, "cache.namespace_version"),
    ({"LLMROUTER__CACHE__REDIS_TIMEOUT_S": "0"}, "cache.redis_timeout_s"),
], ids=["bad-regex", "empty-match", "max-size", "version", "timeout"])
def test_a_bad_cache_setting_is_refused_at_load_with_its_path(override, problem):
    """An invalid template or size stops the worker at start, not at the first request."""
    with pytest.raises(ConfigError, match=problem):
        load_settings(env=override)


def test_backpressure_is_on_and_quotas_are_off_by_default():
    """The shipped file pauses low, normal, high in turn under pressure and limits no user."""
    s = load_settings(env={})
    assert s.backpressure.enabled and s.backpressure.to_config().pausable == ("low", "normal", "high")
    assert s.quotas.per_user is None and s.quotas.overrides == {} and s.quotas.critical_bypass


@pytest.mark.parametrize("override, problem", [
    ({"LLMROUTER__BACKPRESSURE__RESUME_WAITING": "1"}, "less than pause_waiting"),
    ({"LLMROUTER__BACKPRESSURE__DEEPEST": "critical"}, "backpressure.deepest"),
    ({"LLMROUTER__QUOTAS__PER_USER": "100 a minute"}, "quotas.per_user"),
])
def test_a_bad_backpressure_or_quota_setting_is_refused_at_load(override, problem):
    """Each problem is named with its path, in a sentence."""
    with pytest.raises(ConfigError, match=problem):
        load_settings(env=override)


@pytest.mark.parametrize("override, problem", [
    ({"LLMROUTER__TOGETHER_CONFIG__RATE_LIMIT": "lots"}, "together_config.rate_limit.*not a rate"),
    ({"LLMROUTER__LOCAL_CONFIG__MAX_MEMORY": "big"}, "local_config.max_memory.*not a memory size"),
    ({"LLMROUTER__PREMIUM_CONFIG__USAGE_LIMIT": "ten dollars"}, "premium_config.usage_limit.*not a usage limit"),
    ({"LLMROUTER__QUOTAS__OVERRIDES": "{batch: 5 an hour}"}, "quotas.overrides.batch.*not a rate"),
])
def test_written_rates_sizes_and_money_are_checked_by_one_type_each(override, problem):
    """Every rate, size and money field uses the one annotated type of llmrouter/config/types.py: the same
    sentence wherever the field stands, with its dotted path."""
    with pytest.raises(ConfigError, match=problem):
        load_settings(env=override)


def test_the_quota_section_hands_core_numbers():
    """QuotaSettings.to_config parses each written rate into a core Rate: count, period in seconds, the text."""
    config = load_settings(env={"LLMROUTER__QUOTAS__PER_USER": "100/minute",
                                "LLMROUTER__QUOTAS__OVERRIDES": "{ops: null, batch: 5/hour}"}).quotas.to_config()
    assert (config.per_user.count, config.per_user.period_s, str(config.per_user)) == (100.0, 60.0, "100/minute")
    assert config.overrides["batch"].period_s == 3600.0 and config.overrides["ops"] is None


def test_every_section_name_other_code_imports_is_still_importable_from_settings():
    """The sections moved to modules by topic; llmrouter.config.settings still names them all."""
    from llmrouter.config import settings
    for name in settings.__all__:
        assert hasattr(settings, name), name
