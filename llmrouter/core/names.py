"""The rule for a provider's name, in one place. Pure.

A provider name is 1-63 lower-case letters, digits, ``_``, ``-`` or ``.``,
starting with a letter or a digit. It is a key of the compacted
``llm.providers`` topic, part of a flags record's key
(``override:<provider>``, :mod:`llmrouter.core.flag_state`) and a metric
label, so the same rule holds everywhere: :mod:`llmrouter.providers.spec`
checks a provider config with it, the flags check an override's target.
"""

from __future__ import annotations

import re
from typing import Any

PROVIDER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def is_provider_name(name: Any) -> bool:
    """Whether ``name`` may name a provider: 1-63 lower-case letters, digits, '_', '-' or '.'."""
    return isinstance(name, str) and bool(PROVIDER_NAME.match(name))
