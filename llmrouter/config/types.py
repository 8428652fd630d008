"""The building blocks of every settings section: the frozen, closed base model and the written-value types.

A rate (``"50/hour"``), a memory size (``"1.5GB"``) and a money limit
(``"$10/month"``) are written as text in the settings file and checked where
they are declared, once, by the annotated types below; the sections keep the
text (what the operator wrote, shown back in views and messages) and code at
the settings edge turns it into plain numbers (:func:`parse_rate`,
:func:`~llmrouter.localmodel.config.parse_size`) before handing it to
:mod:`llmrouter.core`, which never parses text.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from llmrouter.localmodel.config import parse_size

__all__ = ["Section", "RateText", "SizeText", "MoneyText", "parse_rate"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(second|minute|hour|day)\s*$")
_MONEY = re.compile(r"^\s*\$(\d+(?:\.\d+)?)\s*/\s*(day|month)\s*$")
_PERIOD_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


class Section(BaseModel):
    """A settings section: unknown keys are refused (a typo is an error, not a silent default), values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_rate(text: str) -> tuple[float, float]:
    """``"50/hour"`` -> (50 requests, 3600 seconds)."""
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a rate; write it like '50/hour' or '1000/minute'")
    return float(match.group(1)), float(_PERIOD_S[match.group(2)])


def _rate(value: str) -> str:
    parse_rate(value)
    return value


def _size(value: str) -> str:
    parse_size(value)
    return value


def _money(value: str) -> str:
    if not _MONEY.match(value):
        raise ValueError(f"{value!r} is not a usage limit; write it like '$10/month'")
    return value


RateText = Annotated[str, AfterValidator(_rate)]  # "1000/minute": a count per second, minute, hour or day
SizeText = Annotated[str, AfterValidator(_size)]  # "1.5GB": bytes, in B, KB, MB, GB, KiB, MiB or GiB
MoneyText = Annotated[str, AfterValidator(_money)]  # "$10/month": dollars per day or month
