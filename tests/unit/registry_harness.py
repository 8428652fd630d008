"""A provider registry without Kafka, as its on_start leaves it before it reads llm.providers: the
settings' providers installed, live. For the registry's unit tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from llmrouter.config.secrets import Secrets
from llmrouter.config.settings import load_settings
from llmrouter.observability.metrics import Metrics
from llmrouter.registry import ProviderRegistry


def registry_for(env: dict[str, str], secrets: dict[str, str]) -> ProviderRegistry:
    """A registry of the default settings with ``env`` over them (the local model off) and these keys."""
    settings = load_settings(env={"LLMROUTER__LOCAL_CONFIG__ENABLED": "false", **env})
    return ProviderRegistry(settings, Secrets.load(secrets), Metrics(), providers_topic="llm.providers",
                            worker_id="w1")


async def start(registry: ProviderRegistry) -> None:
    for spec in registry._settings.provider_specs().values():
        await registry._install(spec)  # what on_start does before it reads the topic
    registry.live = True


async def stop(registry: ProviderRegistry) -> None:
    for entry in registry.entries.values():
        if hasattr(entry.provider, "stop"):
            await entry.provider.stop()


@contextlib.asynccontextmanager
async def running(env: dict[str, str], secrets: dict[str, str]) -> AsyncIterator[ProviderRegistry]:
    """:func:`registry_for`, started, and stopped after."""
    registry = registry_for(env, secrets)
    await start(registry)
    try:
        yield registry
    finally:
        await stop(registry)


def drain(registry: ProviderRegistry) -> list[tuple[str, str, dict]]:
    """The events the registry queued for llm.events since the last drain: (entity, kind, data)."""
    out = []
    while not registry.events.empty():
        out.append(registry.events.get_nowait())
    return out
