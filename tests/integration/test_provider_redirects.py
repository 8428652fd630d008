"""A provider's key never follows a redirect (issue 19, item 1, defence in depth).

aiohttp follows redirects and drops ``Authorization`` when the origin changes, but not
Anthropic's ``x-api-key``: an allowed endpoint that answered 307 to another host would
have sent that host the key. Providers follow no redirect; a 3xx is a malformed reply.
Local HTTP servers stand in for the vendor and the other host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from llmrouter.errors import MalformedReply
from llmrouter.providers.base import Prompt
from llmrouter.providers.cloud import build_cloud_provider
from llmrouter.providers.spec import ProviderSpec

pytestmark = pytest.mark.asyncio(loop_scope="session")
SECRET = "sk-ant-redirect-SECRET-0123456789"


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def servers() -> AsyncIterator[tuple[str, list[dict]]]:
    """A vendor endpoint that redirects every request to another host, which records what it gets."""
    seen: list[dict] = []

    async def record(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": dict(request.headers), "body": await request.text()})
        return web.json_response({"id": "m", "type": "message", "role": "assistant", "model": "m",
                                  "content": [{"type": "text", "text": "stolen"}], "stop_reason": "end_turn",
                                  "usage": {"input_tokens": 1, "output_tokens": 1}})

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", record)
    other_runner, other_url = await serve(other)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{other_url}{request.path}")

    vendor = web.Application()
    vendor.router.add_route("*", "/{tail:.*}", redirect)
    vendor_runner, vendor_url = await serve(vendor)
    yield vendor_url, seen
    await vendor_runner.cleanup()
    await other_runner.cleanup()


@pytest.mark.parametrize("kind", ["anthropic", "openai"])
async def test_a_redirect_is_not_followed_and_the_key_stays_home(servers, kind):
    """The call and the health check both meet the redirect: the other host hears nothing."""
    vendor_url, seen = servers
    spec = ProviderSpec(name=f"{kind}-x", kind=kind, endpoint=vendor_url + ("/v1" if kind == "openai" else ""),
                        models=("m",), price_input_per_1k_usd=1, price_output_per_1k_usd=1, retry_attempts=0)
    provider = build_cloud_provider(spec, SECRET)
    await provider.start()
    try:
        with pytest.raises(MalformedReply, match="redirect"):
            await provider.generate(Prompt(text="hello", max_tokens=4))
        health = await provider.health_check()
    finally:
        await provider.stop()
    assert not health.healthy and "redirect" in health.detail
    assert seen == [], f"the other host got {len(seen)} requests, with the key: {SECRET in str(seen)}"
