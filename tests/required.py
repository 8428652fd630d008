"""What a test needs from the machine, and what becomes of the test when it is missing.

Locally a missing tool (Chromium, ``redis-server``, ``promtool``) skips the
test, with the reason; under CI (``CI=true``, what CI services set) it fails
instead, because there infra/bootstrap.sh has installed every one of them and
a skip would let a broken check pass unseen.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


def missing(reason: str) -> NoReturn:
    """Skip (the test, or the module when called at import) with ``reason``; fail instead under CI."""
    if under_ci():
        pytest.fail(f"{reason} (CI=true: a check that cannot run fails rather than skips)", pytrace=False)
    pytest.skip(reason, allow_module_level=True)
