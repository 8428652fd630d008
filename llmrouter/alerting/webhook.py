"""Alerts POSTed to an HTTP endpoint (``alerts.webhook_url``), as well as sent to llm.alerts.

Off the owner's path: :meth:`AlertWebhook.post` only queues the record; a
task POSTs each one as JSON (the ``Alert`` record's fields) with a timeout,
tries a failed one three times with a growing pause, then drops it with a log
line. llm.alerts stays the record of truth: a webhook is a convenience for a
pager or a chat room, and a slow one must never hold the windows up. A full
queue (the endpoint down for long) drops the oldest first.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import mode
import structlog

log = structlog.get_logger("llmrouter.alerts")
ATTEMPTS = 3
QUEUE_MAX = 1000


class AlertWebhook(mode.Service):
    def __init__(self, url: str, *, timeout_s: float, worker: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._url, self._timeout_s, self._worker = url, timeout_s, worker
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_MAX)
        self._session: aiohttp.ClientSession | None = None
        self.posted = self.dropped = 0

    async def on_start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s))

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    def post(self, record: dict[str, Any]) -> None:
        """Queue one alert record for the endpoint."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            log.warning("alert_webhook_queue_full", dropped_oldest=True)
        self._queue.put_nowait(record)

    @mode.Service.task
    async def _deliver(self) -> None:
        while not self.should_stop:
            record = await self._queue.get()
            await self._post(record)

    async def _post(self, record: dict[str, Any]) -> None:
        body = {**record, "worker": self._worker}
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._session.post(self._url, json=body) as reply:
                    if reply.status < 300:
                        self.posted += 1
                        return
                    error = f"HTTP {reply.status}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                error = repr(exc)
            log.warning("alert_webhook_failed", url=self._url, attempt=attempt, error=error,
                        rule=record.get("rule"), subject=record.get("subject"))
            await asyncio.sleep(0.5 * attempt)
        self.dropped += 1
