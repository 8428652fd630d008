"""A settings file for a worker of its own: the one writer the tests (tests/conftest.py) and bench/ share.

Each worker gets a topic prefix, an app id (its consumer group and faust's
internal topics), a data dir and a web port of its own, so workers started
side by side never see each other's messages; the caller's sections are
merged over that, the file is written to ``<directory>/settings.yaml``, loaded
(no environment overrides) and the worker's topics are created.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from llmrouter.config.settings import Settings, load_settings
from llmrouter.runtime.kafka_admin import ensure_topics
from llmrouter.testing.ports import free_port

__all__ = ["BOOTSTRAP", "REDIS_URL", "merge_sections", "write_worker_settings"]

BOOTSTRAP = "127.0.0.1:9092"  # the broker and Redis `llmrouter infra up` starts
REDIS_URL = "redis://127.0.0.1:6379/0"


def merge_sections(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged over ``base`` one level deep: a mapping updates its section, anything else replaces it."""
    merged = {section: dict(values) if isinstance(values, Mapping) else values for section, values in base.items()}
    for section, values in over.items():
        if isinstance(values, Mapping) and isinstance(merged.get(section), dict):
            merged[section].update(values)
        else:
            merged[section] = dict(values) if isinstance(values, Mapping) else values
    return merged


def write_worker_settings(directory: Path, *, topic_prefix: str, app_id: str,
                          sections: Mapping[str, Any] | None = None, bootstrap: str = BOOTSTRAP,
                          redis_url: str = REDIS_URL) -> tuple[Settings, Path]:
    """Settings of a worker of its own, ``sections`` merged over them; written to ``directory``, topics created."""
    if not topic_prefix or not app_id:
        raise ValueError("a worker of its own needs a topic prefix and an app id of its own; "
                         f"got topic_prefix={topic_prefix!r}, app_id={app_id!r}")
    own = {
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": topic_prefix},
        "redis": {"url": redis_url},
        "worker": {"app_id": app_id, "datadir": str(directory / "worker"), "web_port": free_port()},
        # the providers' own limits (Hugging Face: 50/hour) would send most calls elsewhere; the tests and
        # benchmarks of the rate limits turn them on with limits of their own
        "rate_limits": {"enabled": False},
    }
    path = directory / "settings.yaml"
    path.write_text(yaml.safe_dump(merge_sections(own, sections or {})))
    settings = load_settings(path, env={})
    asyncio.run(ensure_topics(settings))
    return settings, path
