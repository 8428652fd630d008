"""The outcome records: what the router decided about a request, before it is written. Pure.

:class:`Refusal` is a valid request the router will not serve as asked (over a
size limit, an unknown provider, a degradation flag, a quota): it goes out as
a result with its ``status`` (``rejected`` or ``timeout``) and ``code``, and is
never dead-lettered. The checks that make one live where their rule lives
(:mod:`llmrouter.wire.contract`, :mod:`llmrouter.core.degrade`, the agents);
:func:`llmrouter.wire.contract.refusal_record` turns one into an LLMResult.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Refusal:
    """Why a valid request is not served: goes out as a result with this status and code."""

    status: str
    code: str
    message: str
