"""The providers' sections: the local model (F011), the cloud APIs (F012-F014), the §5.2 limits, the registry.

Parts of :class:`~llmrouter.config.settings.Settings`, which turns them into
:class:`~llmrouter.providers.spec.ProviderSpec` records.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from llmrouter.core.endpoints import EndpointPrefix

from llmrouter.config.types import MoneyText, RateText, Section, SizeText


_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The vendors' own APIs: where a registered provider may send a key the settings let it take (and nowhere else
# unless registry.registered_endpoints says so).
_VENDOR_APIS = ("https://api-inference.huggingface.co", "https://api.together.xyz/v1", "https://api.openai.com/v1",
                "https://api.anthropic.com")


class LocalConfig(Section):
    """Specification F011."""

    enabled: bool = True
    model_path: Path = Path("./models/tinyllama-1.1b-onnx")
    max_memory: SizeText = "1.5GB"
    inference_threads: int = Field(4, ge=1)
    quantization: Literal["int8", "none"] = "int8"
    batch_size: int = Field(1, ge=1, le=64, description="most requests decoded together in one batch (F040)")
    batching: Literal["latency", "balanced", "throughput"] = Field(
        "balanced", description="latency: never wait for a batch to fill; balanced: wait briefly when requests "
                                "arrive fast enough; throughput: wait up to max_batch_wait_ms for a full batch")
    max_batch_wait_ms: float | None = Field(None, ge=0, description="None = the mode's default (0, 50, 200 ms)")
    max_queue: int = Field(32, ge=0, description="requests waiting for a busy model at most; more go on to the "
                                                 "next provider (code overloaded)")


class CloudConfig(Section):
    api_key_env: str | None = Field(None, description="variable holding the key; None = the kind's usual one")
    endpoint: str | None = None
    rate_limit: RateText = "60/minute"
    models: list[str] = []
    timeout: float = Field(30, gt=0)
    retry_attempts: int = Field(3, ge=0)
    context_tokens: int = Field(0, ge=0, description="0 = the kind's usual context window")
    price_input_per_1k_usd: float = Field(0.0, ge=0)
    price_output_per_1k_usd: float = Field(0.0, ge=0)


class HuggingFaceConfig(CloudConfig):
    """Specification F012."""


class TogetherConfig(CloudConfig):
    """Specification F013. ``cost_per_token`` prices input and output alike unless
    the per-1k prices are set."""

    priority: Literal["low", "normal", "high"] = "normal"
    cost_per_token: float = Field(0.0, ge=0)


class PremiumVendorConfig(CloudConfig):
    """One premium API (OpenAI or Anthropic) under F014."""


class PremiumConfig(Section):
    """Specification F014: OpenAI and Anthropic, used only when the rest of the chain cannot answer."""

    usage_limit: MoneyText = "$10/month"
    emergency_only: bool = True
    # priced as in default_settings.yaml: a premium provider at $0 would never be capped (and is refused)
    openai: PremiumVendorConfig = PremiumVendorConfig(price_input_per_1k_usd=0.00015, price_output_per_1k_usd=0.0006)
    anthropic: PremiumVendorConfig = PremiumVendorConfig(price_input_per_1k_usd=0.0008, price_output_per_1k_usd=0.004)


class ProviderLimits(Section):
    """One row of the specification's LLM_CONFIG table (§5.2)."""

    max_concurrent: int = Field(ge=1)
    timeout: float = Field(gt=0, description="seconds")
    rate_limit: str | None = None
    memory_limit: str | None = None


class RegistrySettings(Section):
    """The provider registry (F001, F051, F052)."""

    health_check_interval_s: float = Field(30.0, gt=0, description="seconds between health checks per provider")
    catch_up_timeout_s: float = Field(10.0, gt=0, description="how long a starting worker reads llm.providers")
    stats_window: int = Field(100, ge=1, description="recent calls behind the latency and error-rate figures")
    report_interval_s: float = Field(0.1, gt=0, le=10, description="how often each worker tells the providers' "
                                     "owners what its calls showed (llmrouter/dispatch/fleet.py)")
    registered_key_envs: list[str] = Field([], description="variables a provider registered on llm.providers may "
                                           "take its key from; empty: registered providers get no key")
    registered_endpoints: list[str] = Field(list(_VENDOR_APIS), description="URL prefixes where a registered "
                                            "provider with a key may be (llmrouter/core/endpoints.py)")
    signing_key_env: str | None = Field(None, description="variable holding the registry key; set: every "
                                        "llm.providers record must carry a valid HMAC signature")

    @field_validator("registered_key_envs")
    @classmethod
    def _key_envs(cls, names: list[str]) -> list[str]:
        for name in names:
            if not _ENV.match(name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if name.upper().startswith("LLMROUTER_"):
                raise ValueError(f"{name} is one of llm-router's own variables (the admin key, the secrets file, "
                                 f"the registry key); a registered provider never gets it")
        return names

    @field_validator("registered_endpoints")
    @classmethod
    def _endpoints(cls, urls: list[str]) -> list[str]:
        for url in urls:
            EndpointPrefix.parse(url)  # ValueError names the entry
        return urls

    @field_validator("signing_key_env")
    @classmethod
    def _signing_key_env(cls, name: str | None) -> str | None:
        if name is not None and not _ENV.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        return name

    @model_validator(mode="after")
    def _signing_key_is_no_provider_key(self) -> RegistrySettings:
        if self.signing_key_env and self.signing_key_env in self.registered_key_envs:
            raise ValueError(f"{self.signing_key_env} holds the registry key (signing_key_env); it cannot also be "
                             f"a registered provider's key (registered_key_envs)")
        return self


