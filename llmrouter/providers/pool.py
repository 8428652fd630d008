"""The providers a worker can use, built from the settings, started and stopped
with the worker.

A chain entry that cannot take traffic is kept as :class:`Unavailable` with
the reason (no API key, model files missing, model over ``max_memory``): the
dispatcher skips it and writes the reason into the result's attempts, and
``/health`` shows it. Nothing here crashes the worker.
"""

from __future__ import annotations

from collections.abc import Mapping

import mode
import structlog

from llmrouter.bulkhead import PriorityBulkhead
from llmrouter.dispatch import Unavailable
from llmrouter.errors import ModelLoadError
from llmrouter.localmodel.config import LocalModelConfig, parse_size
from llmrouter.providers.base import LLMProvider
from llmrouter.settings import Settings

log = structlog.get_logger("llmrouter.providers")

CLOUD_KEYS = {
    "huggingface": ("huggingface_config", ("api_key",), "HF_TOKEN"),
    "together": ("together_config", ("api_key",), "TOGETHER_API_KEY"),
    "premium": ("premium_config", ("openai_key", "claude_key"), "OPENAI_API_KEY or ANTHROPIC_API_KEY"),
}


class ProviderPool(mode.Service):
    """Owns every provider instance of a worker."""

    def __init__(self, settings: Settings, **kwargs) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self.providers: dict[str, LLMProvider | Unavailable] = {}

    def timeouts_s(self) -> Mapping[str, float]:
        return {name: self._settings.limits_for(name).timeout for name in self._settings.fallback_chain}

    def bulkheads(self) -> Mapping[str, PriorityBulkhead]:
        """Per provider, ``max_concurrent`` calls at once (times ``batch_size`` for the local
        model, whose batching front needs that many callers to fill a batch)."""
        capacity = {name: self._settings.limits_for(name).max_concurrent for name in self._settings.fallback_chain}
        if "local" in capacity:
            capacity["local"] *= self._settings.local_config.batch_size
        return {name: PriorityBulkhead(n) for name, n in capacity.items()}

    async def on_start(self) -> None:
        for name in self._settings.fallback_chain:
            self.providers[name] = await self._start(name)

    async def on_stop(self) -> None:
        for provider in self.providers.values():
            if isinstance(provider, LLMProvider):
                await provider.stop()

    def status(self) -> dict[str, dict[str, str | bool]]:
        """Per provider: can it take traffic, and if not, why — for /health."""
        return {
            name: {"available": False, "reason": p.reason} if isinstance(p, Unavailable) else {"available": True}
            for name, p in self.providers.items()
        }

    async def _start(self, name: str) -> LLMProvider | Unavailable:
        if name == "local":
            return await self._start_local()
        section, keys, env = CLOUD_KEYS[name]
        config = getattr(self._settings, section)
        if not any(getattr(config, key) for key in keys):
            return Unavailable(f"not configured: no API key (set {env})")
        return Unavailable(f"the {name} client is not part of this version of llm-router")

    async def _start_local(self) -> LLMProvider | Unavailable:
        local = self._settings.local_config
        if not local.enabled:
            return Unavailable("disabled in local_config")
        if not local.model_path.is_dir():
            return Unavailable(
                f"no model at {local.model_path}: export one (see README) or run `llmrouter model build-tiny DIR`")
        from llmrouter.providers.local import LocalProvider  # onnxruntime is heavy; import when used

        limits = self._settings.limits_for("local")
        provider = LocalProvider(LocalModelConfig(
            model_path=local.model_path, max_memory_bytes=parse_size(local.max_memory),
            inference_threads=local.inference_threads, quantization=local.quantization,
            batch_size=local.batch_size, max_concurrent=limits.max_concurrent, timeout_s=limits.timeout,
        ))
        try:
            await provider.start()
        except ModelLoadError as exc:
            log.error("local_model_refused", reason=str(exc))
            return Unavailable(f"model not loaded: {exc}")
        return provider
