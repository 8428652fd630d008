"""API keys: read from the environment, or from a YAML file outside the
repository named by ``LLMROUTER_SECRETS_FILE``; never from the settings file.

A :class:`Secrets` hands a key out by the name of its variable (a provider's
``api_key_env``) and never shows one: its ``repr`` lists no values, and
nothing in llm-router logs, publishes or serves a key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from llmrouter.errors import ConfigError

SECRETS_FILE_ENV = "LLMROUTER_SECRETS_FILE"
ADMIN_KEY_ENV = "LLMROUTER_ADMIN_KEY"  # the operators' key: admin views and changes (llmrouter.views.admin)
ADMIN_KEY_HEADER = "X-Admin-Key"  # where a caller sends it


class Secrets:
    """Keys by variable name; the environment wins over the secrets file."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = {name: str(value) for name, value in values.items() if value not in (None, "")}

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None) -> Secrets:
        env = os.environ if env is None else env
        values: dict[str, str] = {}
        path = env.get(SECRETS_FILE_ENV)
        if path:
            try:
                loaded = yaml.safe_load(Path(path).read_text()) or {}
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"cannot read secrets file {path}: {type(exc).__name__}") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"secrets file {path} must hold a mapping of VARIABLE: key")
            values.update({str(k): str(v) for k, v in loaded.items()})
        values.update(env)
        return cls(values)

    def get(self, name: str | None) -> str | None:
        """The key held by variable ``name``, or None (also for a None name)."""
        return self._values.get(name) if name else None

    def __repr__(self) -> str:
        return "Secrets(values hidden)"
