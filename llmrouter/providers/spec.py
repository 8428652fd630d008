"""A provider's configuration: the in-memory form of a ``ProviderConfig``
record (F051), whether it came from the settings file or from the compacted
``llm.providers`` topic.

Pure: no I/O. :func:`spec_from_record` checks a decoded record and refuses it
with every problem in one sentence (:class:`ConfigError`); a refused
registration is never applied.

Secrets are never part of a spec: ``api_key_env`` names the environment
variable (or secrets-file entry) that holds the key.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from llmrouter.core.names import PROVIDER_NAME as _NAME
from llmrouter.errors import ConfigError

KINDS = ("local", "huggingface", "together", "openai", "anthropic", "openai_compatible")
CLOUD_KINDS = KINDS[1:]
PREMIUM_KINDS = ("openai", "anthropic")

DEFAULT_ENDPOINTS = {
    "huggingface": "https://api-inference.huggingface.co",
    "together": "https://api.together.xyz/v1",
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
DEFAULT_KEY_ENV = {
    "huggingface": "HF_TOKEN",
    "together": "TOGETHER_API_KEY",
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
}
DEFAULT_CONTEXT_TOKENS = {
    "local": 2048,
    "huggingface": 2048,
    "together": 8192,
    "openai": 128_000,
    "anthropic": 200_000,
    "openai_compatible": 4096,
}
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RATE = re.compile(r"^\s*\d+(\.\d+)?\s*/\s*(second|minute|hour|day)\s*$")


@dataclass(frozen=True, kw_only=True)
class ProviderSpec:
    """Everything the router knows about one provider before it calls it.

    Units are in the names: seconds, US dollars per 1000 tokens.
    """

    name: str
    kind: str
    endpoint: str | None = None  # base URL; None = the vendor's public API
    api_key_env: str | None = None  # None = the kind's usual variable; "" = no key needed
    models: tuple[str, ...] = ()  # the first one is used unless a request names another
    rate_limit: str | None = None  # "1000/minute"; enforced by the token-bucket stage
    timeout_s: float = 30.0
    max_concurrent: int = 4  # bulkhead size and HTTP pool size
    retry_attempts: int = 3  # extra tries of this provider for a retriable error
    health_check_url: str | None = None
    capabilities: tuple[str, ...] = ()  # free tags, e.g. "chat", "code"
    context_tokens: int = 0  # 0 = the kind's usual context window
    price_input_per_1k_usd: float = 0.0
    price_output_per_1k_usd: float = 0.0
    emergency_only: bool = False  # only after every other provider of the chain
    enabled: bool = True
    source: str = field(default="settings", compare=False)  # settings | topic

    @property
    def base_url(self) -> str:
        """The endpoint, or the vendor's public API when none is set."""
        url = self.endpoint or DEFAULT_ENDPOINTS.get(self.kind, "")
        return url.rstrip("/")

    @property
    def key_env(self) -> str | None:
        """The variable that holds the API key, or None when the provider needs none."""
        if self.api_key_env is not None:
            return self.api_key_env or None
        return DEFAULT_KEY_ENV.get(self.kind)

    @property
    def context_window(self) -> int:
        return self.context_tokens or DEFAULT_CONTEXT_TOKENS[self.kind]

    @property
    def model(self) -> str:
        """The model asked for by default."""
        return self.models[0] if self.models else ""

    def estimate_cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_input_per_1k_usd + completion_tokens * self.price_output_per_1k_usd) / 1000.0

    def to_record(self) -> dict[str, Any]:
        """The ``ProviderConfig`` record (schemas/ProviderConfig.avsc)."""
        record = asdict(self)
        record.pop("source")
        record["models"] = list(self.models)
        record["capabilities"] = list(self.capabilities)
        return record


def spec_from_record(record: Any, *, source: str = "topic") -> ProviderSpec:
    """Check a decoded ``ProviderConfig`` and build the spec; raise :class:`ConfigError` naming every problem."""
    if not isinstance(record, dict):
        raise ConfigError(f"a provider config must be an object, not {type(record).__name__}")
    problems: list[str] = []
    known = set(ProviderSpec.__dataclass_fields__) - {"source"}
    extra = sorted(set(record) - known)
    if extra:
        problems.append(f"unknown field(s) {extra}")
    name, kind = record.get("name"), record.get("kind")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(f"name {name!r} must be 1-63 lower-case letters, digits, '_', '-' or '.'")
    if kind not in KINDS:
        problems.append(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    elif kind == "local" and source == "topic":
        problems.append("kind 'local' is configured in the settings file (local_config), not registered at run time")
    endpoint = record.get("endpoint")
    if endpoint is not None and not _is_http_url(endpoint):
        problems.append(f"endpoint {endpoint!r} is not an http(s) URL")
    if kind in CLOUD_KINDS and not record.get("models"):
        problems.append(f"a {kind} provider needs at least one model (the first is asked for by default)")
    if kind == "openai_compatible" and not endpoint:
        problems.append("an openai_compatible provider needs an endpoint (its base URL, e.g. http://host:8000/v1)")
    health = record.get("health_check_url")
    if health is not None and not _is_http_url(health):
        problems.append(f"health_check_url {health!r} is not an http(s) URL")
    key_env = record.get("api_key_env")
    if key_env not in (None, "") and not (isinstance(key_env, str) and _ENV.match(key_env)):
        # never echo the value: a key pasted here by mistake must not reach a message
        problems.append("api_key_env must name an environment variable such as OPENAI_API_KEY "
                        "(the key itself never goes here; the value given is not shown)")
    price_problem = premium_price_problem(kind, record.get("price_input_per_1k_usd", 0.0),
                                          record.get("price_output_per_1k_usd", 0.0))
    if price_problem:
        problems.append(price_problem)
    rate = record.get("rate_limit")
    if rate is not None and not (isinstance(rate, str) and _RATE.match(rate)):
        problems.append(f"rate_limit {rate!r} must look like '1000/minute'")
    for key, positive in (("timeout_s", True), ("price_input_per_1k_usd", False), ("price_output_per_1k_usd", False)):
        value = record.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
            problems.append(f"{key} must be a {'positive' if positive else 'non-negative'} number, not {value!r}")
    for key, low in (("max_concurrent", 1), ("retry_attempts", 0), ("context_tokens", 0)):
        value = record.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            problems.append(f"{key} must be an integer of at least {low}, not {value!r}")
    for key in ("models", "capabilities"):
        value = record.get(key, [])
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            problems.append(f"{key} must be a list of non-empty strings")
    for key in ("emergency_only", "enabled"):
        if not isinstance(record.get(key, False), bool):
            problems.append(f"{key} must be true or false")
    if problems:
        label = name if isinstance(name, str) else "?"
        raise ConfigError(f"provider config {label!r} refused: " + "; ".join(problems))
    fields = {k: v for k, v in record.items() if k in known and v is not None}
    fields["models"] = tuple(fields.get("models", ()))
    fields["capabilities"] = tuple(fields.get("capabilities", ()))
    if "api_key_env" in record and record["api_key_env"] is None:
        fields.pop("api_key_env", None)
    return ProviderSpec(**fields, source=source)


def premium_price_problem(kind: Any, price_input: Any, price_output: Any) -> str | None:
    """Why a premium-kind provider's prices are refused, or None: the premium budget caps a provider by its
    estimated and real cost, so an openai or anthropic provider priced at $0 would never be capped."""
    if kind not in PREMIUM_KINDS:
        return None
    prices = (price_input, price_output)
    if all(isinstance(p, (int, float)) and not isinstance(p, bool) and p > 0 for p in prices):
        return None
    return (f"a premium-kind provider ({kind}) needs price_input_per_1k_usd and price_output_per_1k_usd above 0 (the premium "
            f"budget caps it by its cost; at $0 it would never be capped), not {price_input!r} and {price_output!r}")


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = urlparse(value)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)
