"""The Avro schemas of the external contract (``*.avsc`` beside this file).

``raw(name)`` returns the current schema of a record (``"LLMRequest"`` …);
``SCHEMA_NAMES`` lists them all. ``history()`` returns the earlier versions
(``history/<Name>.<n>.avsc``, each as it was released): readers keep them as
known writer schemas, so a message an older producer or worker wrote is
still read (Avro schema resolution fills the added fields' defaults).

This folder is installed as ``llmrouter.schemas`` (``package-dir`` in
pyproject.toml maps it into the llmrouter namespace, ``package-data`` ships the
``.avsc`` files): import it as ``llmrouter.schemas``; there is no
``llmrouter/schemas/`` folder.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_NAMES = ("LLMRequest", "LLMResult", "StreamChunk", "DeadLetter", "Alert", "Event", "ProviderConfig")


@cache
def raw(name: str) -> dict[str, Any]:
    """The schema ``name`` as written in its ``.avsc`` file."""
    if name not in SCHEMA_NAMES:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    text = resources.files(__name__).joinpath(f"{name}.avsc").read_text(encoding="utf-8")
    return json.loads(text)


@cache
def history() -> tuple[dict[str, Any], ...]:
    """Every earlier version of every schema, oldest first per record."""
    folder = resources.files(__name__).joinpath("history")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".avsc"))
    return tuple(json.loads(folder.joinpath(name).read_text(encoding="utf-8")) for name in names)
