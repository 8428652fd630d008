"""Serving one request: the dispatch check, the route, the dispatch on the router's clock and the record it ends in."""

from __future__ import annotations

from typing import Any

from llmrouter.core.flag_state import FlagState, Mark
from llmrouter.core.routing import RoutingRules
from llmrouter.dispatch.dispatcher import Dispatcher
from llmrouter.dispatch.attempts import ChainEntry, Dispatched
from llmrouter.dispatch.serving import Serving
from llmrouter.errors import ProviderUnavailable
from llmrouter.observability.finish import Finisher
from llmrouter.observability.metrics import Metrics
from llmrouter.wire.contract import Request
from tests.unit.test_dispatch import Recording, Scripted

NOW_S = 1_000.0  # the router's clock, stopped


class Providers:
    """The registry's edge: the chain, no figures, every outcome observed."""

    def __init__(self, providers: dict[str, Any]) -> None:
        self.entries = {name: ChainEntry(p) for name, p in providers.items()}
        self.observed: list[Dispatched] = []

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def chain(self) -> list[str]:
        return list(self.entries)

    def emergency(self) -> set[str]:
        return set()

    def premium(self) -> set[str]:
        return set()

    def figures(self) -> dict:
        return {}

    def observe(self, outcome: Dispatched) -> None:
        self.observed.append(outcome)


def serving(providers: Providers, flags: FlagState = FlagState()) -> Serving:
    dispatcher = Dispatcher(providers.entries, clock=lambda: NOW_S)
    return Serving(dispatcher=dispatcher, providers=providers, flags=type("F", (), {"current": flags})(),
                   finish=Finisher(Metrics()), stream=None, rules=RoutingRules(), default_timeout_s=30)


def request(**fields: Any) -> Request:
    return Request(request_id="r1", prompt="hi", received_at_ms=int(NOW_S * 1000) - 10, **fields)


async def test_an_answer_becomes_an_ok_record_with_its_provider_and_route():
    """local answers: an ok record on route local, the outcome observed by the registry, no dead letter."""
    providers = Providers({"local": Scripted("local")})
    served = await serving(providers).serve(request(), before_call=lambda: None, spend=None)
    assert (served.record["status"], served.record["provider"], served.record["route"]) == ("ok", "local", "local")
    assert served.dead_letter is None and len(providers.observed) == 1


async def test_the_request_s_deadline_reaches_the_provider_on_the_router_s_clock():
    """deadline_ms on the request is the absolute time the provider's prompt carries, on the same clock."""
    recording = Recording("local")
    await serving(Providers({"local": recording})).serve(request(deadline_ms=int(NOW_S * 1000) + 2_000),
                                                         before_call=lambda: None, spend=None)
    assert recording.prompts[0].deadline.left_s() == 2.0


async def test_a_deadline_already_passed_is_a_timeout_refusal_before_any_call():
    """The router's clock is past the deadline: timeout, deadline_exceeded, no provider called."""
    local = Scripted("local")
    served = await serving(Providers({"local": local})).serve(request(deadline_ms=int(NOW_S * 1000) - 1),
                                                              before_call=lambda: None, spend=None)
    assert (served.record["status"], served.record["error_code"], local.calls) == ("timeout", "deadline_exceeded", 0)


async def test_cache_only_refuses_with_the_degraded_code_and_calls_nothing():
    """The cache_only flag: rejected degraded_cache_only, no dead letter (a deliberate refusal)."""
    local = Scripted("local")
    flags = FlagState(flags={"cache_only": Mark("bob", 0, "")})
    served = await serving(Providers({"local": local}), flags).serve(request(), before_call=lambda: None, spend=None)
    assert (served.record["status"], served.record["error_code"]) == ("rejected", "degraded_cache_only")
    assert served.dead_letter is None and local.calls == 0


async def test_an_exhausted_chain_is_an_error_kept_for_a_replay():
    """Every provider failed: an error record and a dead letter with the attempts' count."""
    providers = Providers({"local": Scripted("local", error=ProviderUnavailable("down"))})
    served = await serving(providers).serve(request(), before_call=lambda: None, spend=None)
    assert served.record["status"] == "error" and served.dead_letter is not None
    assert served.dead_letter.attempts == 1
