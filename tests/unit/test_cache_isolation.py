"""Issue 19, item 8: whose answers a request may read (tenant and user), what whitespace keeps apart,
which answers count as deterministic, what a hit says about itself, and what a refresh may do."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from llmrouter.cache.entry import CachedAnswer
from llmrouter.cache.hot import HotKeys
from llmrouter.cache.keys import cache_key, clear_prefixes, scope_of
from llmrouter.cache.l1 import L1Cache
from llmrouter.cache.normalise import Templates, normalise
from llmrouter.cache.policy import SEEDED_KINDS, disabled_providers, may_store, refresh_request
from llmrouter.cache.tiers import CacheTiers, Hit
from llmrouter.cache.warm import CacheWarmer
from llmrouter.commands.cache import clear_prefix_list
from llmrouter.core.flag_state import FlagState, Mark, Override
from llmrouter.providers.base import Prompt
from llmrouter.providers.cloud import CLOUD_CLASSES, build_cloud_provider
from llmrouter.providers.spec import KINDS, ProviderSpec
from llmrouter.wire.contract import parse_request

NOW_MS = 1_700_000_000_000
NO_TEMPLATES = Templates()


def request(**fields):
    return parse_request({"request_id": "r-1", "prompt": "What is Kafka?", **fields}, priority="normal",
                         received_at_ms=1_000)


def key(**fields) -> str:
    return cache_key(request(**fields), version=1, templates=NO_TEMPLATES, shared_namespace=False)


def scope(tenant: str | None, user: str | None) -> str:
    fields = {"metadata": {"tenant": tenant}} if tenant is not None else {}
    if user is not None:
        fields["user_id"] = user
    return scope_of(request(**fields), shared_namespace=False)


# -- scope: tenant and user ------------------------------------------------------------------------------


def test_the_same_user_id_in_two_tenants_reads_two_caches():
    """Tenant A's user "42" and tenant B's user "42" never share a key; a user with no tenant is a third."""
    a, b = key(user_id="42", metadata={"tenant": "A"}), key(user_id="42", metadata={"tenant": "B"})
    assert a != b and key(user_id="42") not in (a, b)
    assert scope("A", "42") == "t.A.u.42" and scope(None, "42") == "u.42" and scope("A", None) == "t.A"


@pytest.mark.parametrize("one, other", [
    (("a.u", "b"), ("a", "u.b")),     # the separator moved from the tenant into the user id
    (("a.u.b", None), ("a", "b")),    # a tenant that spells a tenant and a user
    ((None, "t.a"), ("a", None)),     # a user id that spells a tenant scope
    (("a", "b:c"), ("a", "b")),       # ':' would end the scope early
], ids=["moved-dot", "tenant-spells-user", "user-spells-tenant", "colon"])
def test_no_tenant_and_user_pair_can_spell_another_pair(one, other):
    """Both ids are escaped ('.' and ':' included): separators in an id are never read as separators."""
    assert scope(*one) != scope(*other)


IDS = st.one_of(st.none(), st.text(min_size=1, max_size=6, alphabet="ab.u:t%-_"))


@hsettings(max_examples=500, deadline=None)
@given(first=st.tuples(IDS, IDS), second=st.tuples(IDS, IDS))
def test_scopes_are_equal_exactly_when_tenant_and_user_are(first, second):
    """Over ids built from the separators themselves: one scope per (tenant, user) pair, and a tenant's
    clear prefixes cover the keys of that tenant (its users' too) and of no other tenant."""
    assert (scope(*first) == scope(*second)) == (first == second)
    tenant, _ = first
    if tenant is not None:
        other_key = f"llm:v1:{scope(*second)}:{'0' * 64}"
        covered = any(other_key.startswith(p) for p in clear_prefixes(1, tenant=tenant))
        assert covered == (second[0] == tenant)


def test_clear_by_tenant_names_the_tenant_and_its_users():
    """`cache clear --version 1 --tenant T` clears T's own scope and every t.T.u.* scope, not tenant TT's."""
    prefixes = clear_prefix_list(argparse.Namespace(all=False, prefix=None, version=1, tenant="T", user=None))
    assert prefixes == ["llm:v1:t.T:", "llm:v1:t.T.u."]
    for k, covered in ((key(metadata={"tenant": "T"}), True), (key(user_id="42", metadata={"tenant": "T"}), True),
                       (key(user_id="42", metadata={"tenant": "TT"}), False), (key(user_id="42"), False)):
        assert any(k.startswith(p) for p in prefixes) == covered, k
    one_user = clear_prefix_list(argparse.Namespace(all=False, prefix=None, version=1, tenant="T", user="42"))
    assert one_user == ["llm:v1:t.T.u.42:"]


# -- whitespace ------------------------------------------------------------------------------------------


def test_indentation_and_inner_whitespace_change_the_key():
    """Code and YAML differ by indentation alone: they must not share an answer."""
    flat, nested = "a:\nb: 1\n", "a:\n  b: 1\n"
    assert key(prompt=flat) != key(prompt=nested)
    assert key(prompt="x =  1") != key(prompt="x = 1")
    assert (key(messages=[{"role": "user", "content": "def f():\n\treturn 1"}], prompt=None)
            != key(messages=[{"role": "user", "content": "def f():\n    return 1"}], prompt=None))


def test_only_the_ends_and_line_endings_are_normalised():
    """Surrounding whitespace goes, CRLF and CR become LF, NFC; everything inside is kept."""
    assert normalise("  a:\r\n  b: 1\r\n") == "a:\n  b: 1"
    assert normalise("x\ry") == "x\ny"
    assert key(prompt="  a:\r\n  b: 1\n") == key(prompt="a:\n  b: 1")


# -- determinism by what the answering provider honours --------------------------------------------------


SAMPLED_SEEDED = {"temperature": 0.8, "seed": 7}


def test_a_sampled_seeded_answer_is_stored_only_from_a_provider_that_sends_the_seed():
    """The anthropic client sends no seed: its sampled answer is not deterministic; an openai-kind one is."""
    seeded = request(**SAMPLED_SEEDED)
    assert not may_store(seeded, kind="anthropic", cache_nondeterministic=False)
    assert may_store(seeded, kind="openai", cache_nondeterministic=False)
    assert not may_store(seeded, kind=None, cache_nondeterministic=False)  # unknown provider: not known to
    assert may_store(request(), kind="anthropic", cache_nondeterministic=False)  # temperature 0 is greedy
    assert may_store(seeded, kind="anthropic", cache_nondeterministic=True)  # the operator opted in


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "local"])
def test_the_seeded_kinds_are_the_clients_that_send_a_seed(kind):
    """SEEDED_KINDS is read off the clients themselves: each cloud client's request body carries the seed
    exactly when its kind is listed (the local model seeds its sampler, llmrouter/localmodel/engine.py)."""
    spec = ProviderSpec(name="p", kind=kind, models=("m",), endpoint="http://127.0.0.1:1/v1", api_key_env="")
    client = build_cloud_provider(spec, None)
    prompt = Prompt(text="hi", temperature=0.8, seed=7)
    body = client._body(*(("hi",) if "text" in inspect.signature(client._body).parameters else ()), prompt,
                        stream=False)
    sent = "seed" in body or "seed" in body.get("parameters", {})
    assert sent == (kind in SEEDED_KINDS)
    assert "local" in SEEDED_KINDS and set(CLOUD_CLASSES) | {"local"} == set(KINDS)


# -- a hit's reason --------------------------------------------------------------------------------------


def answer(*, provider: str = "sim", stored_at_ms: int = NOW_MS, request_id: str = "someone-elses-id"):
    return CachedAnswer(text="t", provider=provider, model="m", finish_reason="stop", prompt_tokens=1,
                        completion_tokens=1, cost_usd=0.0, stored_at_ms=stored_at_ms,
                        expires_at_ms=stored_at_ms + 60_000, request_id=request_id)


def test_a_hit_says_its_level_and_age_and_no_other_request_id():
    """route_reason of a hit: the level and how old the entry is; the request that paid stays private."""
    reason = Hit("l2", answer(stored_at_ms=NOW_MS - 12_300)).route_reason(NOW_MS)
    assert reason == "cache hit (l2, stored 12.3 s ago)"
    semantic = Hit("l1", answer(), similarity=0.91234).route_reason(NOW_MS)
    assert semantic == "cache hit (l1, stored 0.0 s ago), a paraphrase (similarity 0.912)"
    assert "someone-elses-id" not in reason + semantic


# -- a disabled provider's answers -----------------------------------------------------------------------


def test_the_providers_an_override_disables():
    """`override disable X` disables X; `force` disables nothing."""
    mark = Mark("ops", NOW_MS)
    state = FlagState(overrides={"x": Override("x", "disable", mark), "y": Override("y", "force", mark)})
    assert disabled_providers(state) == frozenset({"x"})


async def test_an_answer_of_a_disabled_provider_is_a_miss_in_every_level():
    """A lookup told which answers are usable serves none of a disabled provider's, and keeps the entry."""
    l1 = L1Cache(1 << 20, clock=lambda: NOW_MS)
    tiers = CacheTiers(l1=l1, l2=None, l3=None, publish=None, compress=False, now_ms=lambda: NOW_MS)
    tiers.store("llm:v1:anon:k", answer(provider="x"))
    assert await tiers.lookup("llm:v1:anon:k", usable=lambda a: a.provider != "x") is None
    hit = await tiers.lookup("llm:v1:anon:k", usable=lambda a: a.provider != "y")
    assert hit is not None and hit.answer.provider == "x"
    assert tiers.stats()["misses"] == 1


# -- refresh ahead ---------------------------------------------------------------------------------------


def test_a_refresh_asks_only_the_provider_that_answered_and_streams_nothing():
    """The refresh copy: low priority, no deadline, policy refresh, not streamed, allow-list = the answerer."""
    hot = request(stream=True, providers=["a", "b"], deadline_ms=5, priority="critical")
    ask = refresh_request(hot, "b")
    assert (ask.stream, ask.providers, ask.cache_policy, ask.priority, ask.deadline_ms) == (
        False, ("b",), "refresh", "low", None)
    assert (ask.prompt, ask.temperature, ask.max_tokens, ask.request_id) == (
        hot.prompt, hot.temperature, hot.max_tokens, hot.request_id)


async def test_the_warmer_hands_the_answering_provider_to_the_refresh(tmp_path: Path):
    """A refresh is asked with the provider the entry records; an entry that records none is not refreshed."""
    l1 = L1Cache(1 << 20, clock=lambda: NOW_MS)
    tiers = CacheTiers(l1=l1, l2=None, l3=None, publish=None, compress=False, now_ms=lambda: NOW_MS)
    tiers.store("llm:v1:anon:together", answer(provider="together"))
    tiers.store("llm:v1:anon:nobody", answer(provider=""))
    hot = HotKeys(10, half_life_s=600, clock=lambda: 0.0)
    for k in ("llm:v1:anon:together", "llm:v1:anon:nobody"):
        hot.touch(k, k.encode())
    asked: list[tuple[bytes, str]] = []

    async def refresh(raw: bytes, provider: str) -> bool:
        asked.append((raw, provider))
        return True

    warmer = CacheWarmer(hot=hot, tiers=tiers, l3=None, top_k=10, interval_s=30, refresh_ahead_ms=120_000,
                         now_ms=lambda: NOW_MS, refresh=refresh)
    await warmer.warm_once()
    assert asked == [(b"llm:v1:anon:together", "together")]
    assert (warmer.stats()["refreshed"], warmer.stats()["warmed"]) == (1, 2)
