"""The Router record: what :func:`llmrouter.app.build_router` wires together, as one value.

The views, the gauges and the health checks are handed a :class:`Router` and
read the parts they show. The record lives apart from ``app.py``, which
imports the views to register them, so that a view can name the type without
importing the module that imports it. Its field types are imported for type
checkers only (the annotations are never evaluated), so importing this
module loads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import faust

    from llmrouter.cache.service import ResponseCache
    from llmrouter.config.settings import Settings
    from llmrouter.core.quota import UserQuotas
    from llmrouter.dispatch.breakers import LocalBreakers
    from llmrouter.dispatch.budgets import Ledger
    from llmrouter.dispatch.flags import FlagsService
    from llmrouter.dispatch.fleet import SharedProviderState
    from llmrouter.dispatch.limits import RateLimits
    from llmrouter.observability.metrics import Metrics
    from llmrouter.registry import ProviderRegistry
    from llmrouter.runtime.backpressure import Backpressure
    from llmrouter.runtime.inflight import InFlight
    from llmrouter.runtime.stall_watch import StallWatch
    from llmrouter.tables import Tables
    from llmrouter.topics import Topics


@dataclass(frozen=True)
class Router:
    """One running router's parts: the faust app, its settings, topics and tables, and the services."""

    app: faust.App
    settings: Settings
    topics: Topics
    tables: Tables
    providers: ProviderRegistry
    metrics: Metrics
    in_flight: InFlight
    stall_watch: StallWatch
    cache: ResponseCache
    breakers: LocalBreakers
    limits: RateLimits
    shared: SharedProviderState
    ledger: Ledger
    flags: FlagsService
    backpressure: Backpressure | None = None
    quotas: UserQuotas | None = None
    admin_key: str | None = None  # LLMROUTER_ADMIN_KEY (a secret): /admin/flags/ changes, /ledger/, /requests/{id}/
