"""Cache keys: what may change an answer changes the key, nothing else does, and tenants stay apart."""

from __future__ import annotations

import re

import pytest

from llmrouter.cache.keys import cache_key, key_prefix, scope_of, tenant_scope
from llmrouter.cache.normalise import Templates
from llmrouter.wire.contract import Request, parse_request

NO_TEMPLATES = Templates()


def request(**fields):
    return parse_request({"request_id": "r-1", "prompt": "What is Kafka?", **fields}, priority="normal",
                         received_at_ms=1_000)


def key(req=None, *, version=1, templates=NO_TEMPLATES, shared=False, **fields):
    return cache_key(req or request(**fields), version=version, templates=templates, shared_namespace=shared)


def test_a_key_is_version_scope_and_a_full_sha256():
    """llm:v{version}:{scope}:{64 hex digits}."""
    assert re.fullmatch(r"llm:v1:anon:[0-9a-f]{64}", key())
    assert re.fullmatch(r"llm:v7:u\.alice:[0-9a-f]{64}", key(version=7, user_id="alice"))


@pytest.mark.parametrize("change", [
    {"task_type": "summarisation"},
    {"prompt": "What is Redis?"},
    {"prompt": "what is kafka?"},
    {"messages": [{"role": "user", "content": "What is Kafka?"}]},
    {"providers": ["together"]},
    {"max_tokens": 64},
    {"temperature": 0.7},
    {"seed": 42},
    {"user_id": "alice"},
    {"metadata": {"tenant": "acme"}},
], ids=lambda change: next(iter(change)))
def test_every_field_that_can_change_the_answer_changes_the_key(change):
    """Task type, content (case kept), messages, allow-list, generation parameters and tenant are all in the key."""
    assert key(**change) != key()


@pytest.mark.parametrize("change", [
    {"request_id": "r-2"},
    {"deadline_ms": 99_999},
    {"timeout_ms": 5_000},
    {"reply_to": "llm.replies.a"},
    {"created_at_ms": 12_345},
    {"stream": True},
    {"cache_policy": "refresh"},
    {"metadata": {"trace": "abc", "source": "batch"}},
], ids=lambda change: next(iter(change)))
def test_fields_that_cannot_change_the_answer_leave_the_key_alone(change):
    """request_id, deadline, timeout, reply_to, created_at, stream, cache_policy and other metadata are not in it."""
    assert key(**change) == key()


def test_priority_and_arrival_time_leave_the_key_alone():
    """The topic's priority and intake's clock are not in the key."""
    raw = {"request_id": "r", "prompt": "p"}
    critical = parse_request(raw, priority="critical", received_at_ms=1)
    low = parse_request(raw, priority="low", received_at_ms=999_999)
    assert key(critical) == key(low)


def test_differences_normalisation_removes_leave_the_key_alone():
    """Surrounding space, line endings and Unicode composition, in the prompt and in messages; whitespace inside
    a text is kept (indentation can be meaning: tests/unit/test_cache_isolation.py)."""
    assert key(prompt="  What is Kafka?\r\n\t") == key()
    assert key(prompt="What   is Kafka?") != key()
    assert key(prompt="Cafe\u0301") == key(prompt="Caf\u00e9")
    assert (key(messages=[{"role": "user", "content": "hi\r\nthere"}], prompt=None)
            == key(messages=[{"role": "user", "content": " hi\nthere\n"}], prompt=None))


def test_the_order_and_repeats_of_the_allow_list_do_not_matter_but_its_presence_does():
    """The chain decides the order; an empty allow-list is not the same as none."""
    assert key(providers=["together", "local"]) == key(providers=["local", "together", "local"])
    assert key(providers=[]) != key()


def test_negative_zero_temperature_is_zero():
    """-0.0 passes validation and must not split the cache."""
    assert key(temperature=-0.0) == key(temperature=0.0) == key(temperature=0)


def test_field_boundaries_are_unambiguous():
    """Moving text from one field or message to the next changes the key."""
    one = [{"role": "user", "content": "ab"}, {"role": "user", "content": "c"}]
    two = [{"role": "user", "content": "a"}, {"role": "user", "content": "bc"}]
    assert key(prompt=None, messages=one) != key(prompt=None, messages=two)
    assert key(prompt=None, messages=[{"role": "use", "content": "rx"}]) != key(
        prompt=None, messages=[{"role": "user", "content": "x"}])
    assert key(task_type="a", prompt="b c") != key(task_type="a b", prompt="c")


def test_templates_let_prompts_that_differ_only_in_a_volatile_part_share_a_key():
    """A timestamp line configured as volatile no longer splits the cache; without the template it does."""
    templates = Templates([("now", r"Now: \S+")])
    morning, evening = request(prompt="Now: 08:00 Summarise."), request(prompt="Now: 20:00 Summarise.")
    assert key(morning, templates=templates) == key(evening, templates=templates)
    assert key(morning) != key(evening)


def test_each_tenant_has_its_own_scope_and_each_user_one_within_it():
    """tenant and user_id, else user_id, else metadata.tenant, else anon; a user and a tenant of the same name
    are different scopes."""
    assert scope_of(request(user_id="alice", metadata={"tenant": "acme"}), shared_namespace=False) == "t.acme.u.alice"
    assert scope_of(request(user_id="alice"), shared_namespace=False) == "u.alice"
    assert scope_of(request(metadata={"tenant": "acme"}), shared_namespace=False) == "t.acme"
    assert scope_of(request(), shared_namespace=False) == "anon"
    assert key(user_id="x") != key(metadata={"tenant": "x"})
    assert key(user_id="alice") != key(user_id="bob")


@pytest.mark.parametrize("forger, victim", [
    ("alice:x", "alice"),            # ':' would end the scope early
    ("anon", None),                  # the anonymous scope
    ("a%3Ab", "a:b"),                # the escape itself
    ("*", "alice"),                  # a glob in SCAN MATCH
], ids=["colon", "anon", "percent", "glob"])
def test_a_user_id_cannot_forge_another_scope_or_widen_a_prefix(forger, victim):
    """Ids are percent-encoded: no key of one tenant starts with another tenant's prefix."""
    forged = key(user_id=forger)
    victim_scope = tenant_scope(user_id=victim)
    assert not forged.startswith(key_prefix(1, victim_scope))
    assert scope_of(request(user_id=forger), shared_namespace=False) != victim_scope
    assert forged.count(":") == 3


def test_a_shared_namespace_puts_every_tenant_in_one_scope():
    """shared_namespace: alice and bob read each other's answers, nothing else changes."""
    assert key(user_id="alice", shared=True) == key(user_id="bob", shared=True) == key(shared=True)
    assert key(shared=True).startswith("llm:v1:shared:")
    assert key(shared=True) != key()  # the anonymous scope is not the shared one


def test_the_namespace_version_changes_every_key():
    """Raising the version orphans the old entries."""
    assert key(version=2) != key(version=1) and key(version=2).startswith(key_prefix(2))
    with pytest.raises(ValueError, match="at least 1"):
        key_prefix(0)


def test_text_that_is_not_valid_unicode_still_gets_a_key():
    """A lone surrogate (JSON allows it) in a prompt or a user id must not crash intake."""
    assert key(prompt="broken \ud800 text", user_id="u\udc00") != key(prompt="broken text")


def test_no_collision_among_100k_distinct_prompts_where_an_8_hex_digest_collides():
    """A full SHA-256 keeps 100k near-identical prompts apart; the specification's 8-hex digest does not."""
    keys = {key(Request(request_id="r", prompt=f"q{i}")) for i in range(100_000)}
    assert len(keys) == 100_000
    assert len({k[-64:][:8] for k in keys}) < 100_000  # 2 collide here (the birthday bound expects about 1.2)
