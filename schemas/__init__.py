"""The Avro schemas of the external contract (``*.avsc`` beside this file).

``load(name)`` returns the parsed schema of a record (``"LLMRequest"`` …);
``SCHEMA_NAMES`` lists them all.
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
