"""Which requests may read and write the cache: cache_policy, determinism and the operator's opt-in."""

from __future__ import annotations

import pytest

from llmrouter.cache.policy import REASONS, CacheDecision, decide, is_deterministic
from llmrouter.wire.contract import Request, parse_request


def request(**fields):
    return parse_request({"request_id": "r", "prompt": "p", **fields}, priority="normal", received_at_ms=0)


SAMPLED = {"temperature": 0.8}
SEEDED = {"temperature": 0.8, "seed": 7}


@pytest.mark.parametrize("fields, opt_in, expected", [
    ({}, False, CacheDecision(read=True, write=True, reason="use")),
    (SEEDED, False, CacheDecision(read=True, write=True, reason="use")),
    (SAMPLED, False, CacheDecision(read=False, write=False, reason="nondeterministic")),
    (SAMPLED, True, CacheDecision(read=True, write=True, reason="use_nondeterministic")),
    ({"cache_policy": "refresh"}, False, CacheDecision(read=False, write=True, reason="refresh")),
    ({"cache_policy": "refresh", **SAMPLED}, False, CacheDecision(read=False, write=False, reason="nondeterministic")),
    ({"cache_policy": "refresh", **SAMPLED}, True, CacheDecision(read=False, write=True, reason="refresh")),
    ({"cache_policy": "bypass"}, False, CacheDecision(read=False, write=False, reason="bypass")),
    ({"cache_policy": "bypass", **SAMPLED}, True, CacheDecision(read=False, write=False, reason="bypass")),
], ids=["use", "use-seeded", "use-sampled", "use-sampled-opt-in", "refresh", "refresh-sampled",
        "refresh-sampled-opt-in", "bypass", "bypass-opt-in"])
def test_the_policy_table(fields, opt_in, expected):
    """use reads and writes, refresh only writes, bypass neither; sampled requests only with the opt-in."""
    assert decide(request(**fields), cache_nondeterministic=opt_in) == expected


def test_deterministic_means_temperature_zero_or_a_seed():
    """A seed makes a sampled request repeatable; temperature 0 is greedy."""
    assert is_deterministic(request()) and is_deterministic(request(**SEEDED))
    assert not is_deterministic(request(**SAMPLED))


def test_a_disabled_cache_is_neither_read_nor_written():
    """cache.enabled false wins over every policy."""
    assert decide(request(), cache_nondeterministic=True, enabled=False) == CacheDecision(False, False, "disabled")


def test_every_reason_is_one_of_the_stable_labels():
    """Reasons go to metrics as labels: the set is fixed."""
    seen = {decide(request(cache_policy=policy, **fields), cache_nondeterministic=opt_in, enabled=enabled).reason
            for policy in ("use", "refresh", "bypass") for fields in ({}, SAMPLED)
            for opt_in in (False, True) for enabled in (False, True)}
    assert seen == set(REASONS)


def test_an_unknown_policy_is_a_programming_error():
    """parse_request admits only use, bypass, refresh; anything else built by hand is refused."""
    with pytest.raises(ValueError, match="unknown cache_policy"):
        decide(Request(request_id="r", prompt="p", cache_policy="sometimes"), cache_nondeterministic=False)
