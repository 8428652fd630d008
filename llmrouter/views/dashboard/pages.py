"""The dashboard's web views on the worker.

* ``/dashboard/`` — the page (``static/index.html``);
* ``/dashboard/static/{name}`` — its script and style;
* ``/dashboard/vendor/{name}`` — the chart library, from the npm install (:mod:`.assets`);
* ``/dashboard/data/`` — the history's points (``?since=T``: only those after
  ``T``, what a polling page asks for), the breakers now, spend and budgets,
  whether the chart library is installed, and where the alerts are
  (``alerts_url``; null when the worker's windows are off and it has none).
"""

from __future__ import annotations

import time
from typing import Any

from faust.web import Request, Response, View

from llmrouter.core.ledger_totals import cost_hints, ledger_totals
from llmrouter.views.dashboard.assets import charts_installed, static_file, vendor_file
from llmrouter.views.dashboard.history import DashboardHistory, registry_samples
from llmrouter.observability.state import breaker_states
from llmrouter.router import Router

ALERTS_URL = "/alerts/"  # the alerting stage's view (llmrouter/views/alerts.py): declared only with windows on


def register(router: Router) -> DashboardHistory:
    """Start the history with the app and declare the views; returns the history."""
    app = router.app
    history = app.add_dependency(DashboardHistory(
        samples=lambda: registry_samples(router.metrics.registry), breakers=lambda: breaker_states(router),
        loop=app.loop, beacon=app.beacon))

    def file_response(web: View, found: tuple[bytes, str] | None, name: str) -> Response:
        if found is None:
            return web.json({"error": f"no dashboard file {name!r}"}, status=404)
        content, content_type = found
        return web.bytes(content, content_type=content_type, headers={"Cache-Control": "no-cache"})

    @app.page("/dashboard/")
    class Dashboard(View):
        async def get(self, request: Request) -> Response:
            return file_response(self, static_file("index.html"), "index.html")

    @app.page("/dashboard/static/{name}")
    class Static(View):
        async def get(self, request: Request, name: str) -> Response:
            return file_response(self, static_file(name), name)

    @app.page("/dashboard/vendor/{name}")
    class Vendor(View):
        async def get(self, request: Request, name: str) -> Response:
            return file_response(self, vendor_file(name), name)

    @app.page("/dashboard/data/")
    class Data(View):
        async def get(self, request: Request) -> Response:
            try:
                since = float(request.query.get("since", "-inf"))
            except ValueError:
                return self.json({"error": "since must be a number (a point's t)"}, status=400)
            return self.json(dashboard_data(router, history, since=since))

    return history


def dashboard_data(router: Router, history: DashboardHistory, *, since: float) -> dict[str, Any]:
    points = [p for p in history.points if p["t"] > since]
    spend = router.ledger.accounts()
    totals = ledger_totals(spend)
    latest = history.points[-1] if history.points else None
    return {
        "worker": router.providers.worker_id, "now_s": round(time.time(), 3), "interval_s": history.interval_s,
        "charts_installed": charts_installed(), "points": points, "breakers": breaker_states(router),
        "alerts_url": ALERTS_URL if router.settings.windows.enabled else None,
        "spend": {"usd_since_start": latest["spend_usd"] if latest else 0.0,
                  "by_provider_usd": {name: round(stats.cost_usd, 6) for name, stats in router.providers.stats.items()},
                  "budgets": {name: total for name, total in totals.items() if name.startswith("budget:")},
                  "hints": cost_hints(totals)},
    }
