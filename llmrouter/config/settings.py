"""Settings: one YAML file whose sections mirror the specification.

Loaded once (:func:`load_settings`) and passed to whatever needs them; nothing
reads settings from module globals. Order of precedence, lowest first:

1. ``default_settings.yaml`` shipped with the package;
2. the file named by ``--settings`` or ``$LLMROUTER_SETTINGS``, merged over it;
3. environment overrides ``LLMROUTER__SECTION__KEY=value`` (double underscores
   separate levels; values are parsed as YAML scalars);
Secrets are not settings: API keys come only from the environment or a file
outside the repository (:mod:`llmrouter.config.secrets`). A provider section names the
variable that holds its key (``api_key_env``; by default ``HF_TOKEN``,
``TOGETHER_API_KEY``, ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``).

The providers (F001, F051) are the F011-F014 sections plus any under
``providers:`` (e.g. an OpenAI-compatible server of your own); each becomes a
:class:`ProviderSpec`. ``premium`` in the fallback chain stands for the two
premium providers, ``openai`` then ``anthropic``.

Validation happens at start; an invalid file is refused with every problem
listed, each with its dotted path.

The sections live by topic beside this module (:mod:`.platform`, :mod:`.providers`,
:mod:`.cache`, :mod:`.guards`, and :mod:`llmrouter.alerting.config` for windows and
alerts), on the base model and value types of :mod:`.types`; their names are
importable from here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, model_validator

from llmrouter.alerting.config import AlertsSettings, WindowsSettings
from llmrouter.config.cache import CacheConfig, CacheSettings, CacheTemplate
from llmrouter.config.guards import (BackpressureSettings, BreakerSettings, QuotaSettings, RateLimitSettings,
                                     RoutingSettings)
from llmrouter.config.platform import (REBALANCE_TIMEOUT_S, KafkaSettings, LimitsSettings, RedisSettings,
                                       TablesSettings, TopicRetention, TracingSettings, WorkerSettings)
from llmrouter.config.providers import (CloudConfig, HuggingFaceConfig, LocalConfig, PremiumConfig,
                                        PremiumVendorConfig, ProviderLimits, RegistrySettings, TogetherConfig)
from llmrouter.config.types import Section, parse_rate
from llmrouter.errors import ConfigError
from llmrouter.localmodel.config import parse_size
from llmrouter.providers.spec import PREMIUM_KINDS, ProviderSpec, premium_price_problem, spec_from_record

__all__ = [
    "Settings", "load_settings", "parse_rate", "BUILTIN_PROVIDERS", "PREMIUM", "REBALANCE_TIMEOUT_S",
    "AlertsSettings", "WindowsSettings", "CacheConfig", "CacheSettings", "CacheTemplate", "BackpressureSettings",
    "BreakerSettings", "QuotaSettings", "RateLimitSettings", "RoutingSettings", "KafkaSettings", "LimitsSettings",
    "RedisSettings", "TablesSettings", "TopicRetention", "TracingSettings", "WorkerSettings", "CloudConfig",
    "HuggingFaceConfig", "LocalConfig", "PremiumConfig", "PremiumVendorConfig", "ProviderLimits",
    "RegistrySettings", "TogetherConfig",
]

BUILTIN_PROVIDERS = ("local", "huggingface", "together", "openai", "anthropic")
PREMIUM = "premium"  # in fallback_chain: the premium providers, in this order


class Settings(Section):
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    worker: WorkerSettings = WorkerSettings()
    limits: LimitsSettings = LimitsSettings()
    local_config: LocalConfig = LocalConfig()
    huggingface_config: HuggingFaceConfig = HuggingFaceConfig()
    together_config: TogetherConfig = TogetherConfig()
    premium_config: PremiumConfig = PremiumConfig()
    providers: dict[str, dict[str, Any]] = Field({}, description="more providers by name (ProviderConfig fields)")
    fallback_chain: list[str] = ["local", "huggingface", "together", PREMIUM]
    llm_config: dict[str, ProviderLimits] = {}
    cache_config: CacheConfig = CacheConfig()
    cache: CacheSettings = CacheSettings()
    registry: RegistrySettings = RegistrySettings()
    tables: TablesSettings = TablesSettings()
    breaker: BreakerSettings = BreakerSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    routing: RoutingSettings = RoutingSettings()
    backpressure: BackpressureSettings = BackpressureSettings()
    quotas: QuotaSettings = QuotaSettings()
    tracing: TracingSettings = TracingSettings()
    windows: WindowsSettings = WindowsSettings()  # F025: per-minute aggregates (llmrouter/alerting/config.py)
    alerts: AlertsSettings = AlertsSettings()  # F025, spec §7.2: the rules over them

    @model_validator(mode="after")
    def _chain(self) -> Settings:
        clash = sorted(set(self.providers) & set(BUILTIN_PROVIDERS + (PREMIUM,)))
        if clash:
            raise ValueError(f"providers: {clash} are built in; configure them in their own sections")
        for name, fields in self.providers.items():
            try:
                spec_from_record({**fields, "name": name}, source="settings")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        for kind in PREMIUM_KINDS:
            vendor = getattr(self.premium_config, kind)
            problem = premium_price_problem(kind, vendor.price_input_per_1k_usd, vendor.price_output_per_1k_usd)
            if problem:
                raise ValueError(f"premium_config.{kind}: {problem}")
        known = list(BUILTIN_PROVIDERS) + list(self.providers) + [PREMIUM]
        unknown = [name for name in self.fallback_chain if name not in known]
        if unknown:
            raise ValueError(f"fallback_chain names unknown providers {unknown}; known: {known}")
        strangers = sorted({name for group in self.routing.equivalent for name in group} - set(known) - {PREMIUM})
        if strangers:
            raise ValueError(f"routing.equivalent names unknown providers {strangers}; known: {known}")
        chain = self.chain()
        if len(set(chain)) != len(chain):
            raise ValueError(f"fallback_chain lists a provider twice: {self.fallback_chain}")
        return self

    def chain(self) -> list[str]:
        """The fallback chain with ``premium`` spelt out as its providers."""
        out: list[str] = []
        for name in self.fallback_chain:
            out += list(PREMIUM_KINDS) if name == PREMIUM else [name]
        return out

    def provider_specs(self) -> dict[str, ProviderSpec]:
        """Every provider the settings file defines, by name."""
        specs = {"local": self._local_spec(),
                 "huggingface": self._cloud_spec("huggingface", self.huggingface_config),
                 "together": self._cloud_spec("together", self.together_config)}
        for kind in PREMIUM_KINDS:
            specs[kind] = self._cloud_spec(kind, getattr(self.premium_config, kind),
                                           emergency_only=self.premium_config.emergency_only)
        for name, fields in self.providers.items():
            specs[name] = spec_from_record({**fields, "name": name}, source="settings")
        return specs

    def _local_spec(self) -> ProviderSpec:
        limits = self.limits_for("local")
        return ProviderSpec(name="local", kind="local", models=(self.local_config.model_path.name,),
                            timeout_s=limits.timeout, max_concurrent=limits.max_concurrent, retry_attempts=0,
                            enabled=self.local_config.enabled)

    def _cloud_spec(self, name: str, config: CloudConfig, *, emergency_only: bool = False) -> ProviderSpec:
        row = self.llm_config.get(name) or (self.llm_config.get(PREMIUM) if name in PREMIUM_KINDS else None)
        price_in, price_out = config.price_input_per_1k_usd, config.price_output_per_1k_usd
        if isinstance(config, TogetherConfig) and not (price_in or price_out):
            price_in = price_out = config.cost_per_token * 1000.0
        return ProviderSpec(
            name=name, kind=name, endpoint=config.endpoint, api_key_env=config.api_key_env,
            models=tuple(config.models), rate_limit=(row.rate_limit if row and row.rate_limit else config.rate_limit),
            timeout_s=row.timeout if row else config.timeout, max_concurrent=row.max_concurrent if row else 4,
            retry_attempts=config.retry_attempts, context_tokens=config.context_tokens,
            price_input_per_1k_usd=price_in, price_output_per_1k_usd=price_out, emergency_only=emergency_only)

    def limits_for(self, provider: str) -> ProviderLimits:
        """The §5.2 row for ``provider``, or a conservative default."""
        row = self.llm_config.get(provider)
        if row is None and provider in PREMIUM_KINDS:
            row = self.llm_config.get(PREMIUM)
        return row or ProviderLimits(max_concurrent=4, timeout=30)

    def cache_l1_bytes(self) -> int:
        """The in-process cache's bound in bytes (``cache_config.max_size``)."""
        return parse_size(self.cache_config.max_size)

    def topic(self, name: str) -> str:
        """A contract topic name with the configured prefix."""
        return f"{self.kafka.topic_prefix}{name}"

    def reply_to_patterns(self) -> tuple[str, ...]:
        """The topics a request's reply_to may name, with the topic prefix."""
        return tuple(self.topic(pattern) for pattern in self.worker.reply_to_topics)

    def inert(self) -> list[str]:
        """Settings that are read and validated but not acted on yet (a later stage makes them real)."""
        names = ["together_config.priority"]
        for provider, row in sorted(self.llm_config.items()):
            names += [f"llm_config.{provider}.memory_limit"] if row.memory_limit else []
        return names


def load_settings(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Read, merge and validate the settings; raise :class:`ConfigError` listing every problem."""
    env = os.environ if env is None else env
    data = yaml.safe_load(resources.files("llmrouter.config").joinpath("default_settings.yaml").read_text()) or {}
    path = path or env.get("LLMROUTER_SETTINGS")
    if path:
        try:
            override = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"settings file {path} is not valid YAML: {exc}") from exc
        if not isinstance(override, dict):
            raise ConfigError(f"settings file {path} must hold a mapping of sections, not {type(override).__name__}")
        data = _merge(data, override)
    data = _merge(data, _env_overrides(env))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid settings ({exc.error_count()} problem(s)): {problems}") from None


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith("LLMROUTER__"):
            continue
        path = [part.lower() for part in name[len("LLMROUTER__"):].split("__") if part]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw else raw
    return out
