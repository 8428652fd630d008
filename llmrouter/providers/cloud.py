"""Build the client of a cloud provider from its spec.

==================================================  ===========================
``spec.kind``                                       class
==================================================  ===========================
``openai``, ``together``, ``openai_compatible``     :class:`OpenAIChatProvider`
``huggingface``                                     :class:`HuggingFaceProvider`
``anthropic``                                       :class:`AnthropicProvider`
==================================================  ===========================

The client is not started: the owner calls ``start()`` and ``stop()``.
"""

from __future__ import annotations

from llmrouter.errors import ConfigError
from llmrouter.providers.anthropic import AnthropicProvider
from llmrouter.providers.base import LLMProvider
from llmrouter.providers.http import HttpProvider
from llmrouter.providers.huggingface import HuggingFaceProvider
from llmrouter.providers.openai_chat import OpenAIChatProvider
from llmrouter.providers.spec import ProviderSpec

__all__ = ["CLOUD_CLASSES", "build_cloud_provider"]

CLOUD_CLASSES: dict[str, type[HttpProvider]] = {
    "openai": OpenAIChatProvider,
    "together": OpenAIChatProvider,
    "openai_compatible": OpenAIChatProvider,
    "huggingface": HuggingFaceProvider,
    "anthropic": AnthropicProvider,
}


def build_cloud_provider(spec: ProviderSpec, api_key: str | None) -> LLMProvider:
    """The client for ``spec`` holding ``api_key`` (None: send no key); ConfigError for a kind that is not cloud."""
    cls = CLOUD_CLASSES.get(spec.kind)
    if cls is None:
        raise ConfigError(f"provider {spec.name!r}: kind {spec.kind!r} is not a cloud kind "
                          f"(one of {', '.join(CLOUD_CLASSES)})")
    if spec.kind == "huggingface" and not spec.model:
        raise ConfigError(f"provider {spec.name!r}: a huggingface provider needs a model (its URL names it)")
    return cls(spec, api_key)
