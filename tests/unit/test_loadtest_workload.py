"""The load test's workload: seeded, with the asked priority mix and shares, and a fresh request_id each time."""

from __future__ import annotations

from collections import Counter

import pytest

from llmrouter.wire.contract import Request
from llmrouter.errors import ConfigError
from llmrouter.loadtest.workload import (COMPLEX_TASK_TYPE, SIMPLE_TASK_TYPE, Workload, WorkloadSpec,
                                         parse_priority_mix, request_id, seq_of)
from llmrouter.core.routing import is_simple_task


def draw(spec: WorkloadSpec, n: int, run_id: str = "lt1") -> list:
    workload = Workload(spec, run_id)
    return [workload.next() for _ in range(n)]


def test_the_priority_mix_is_parsed_with_weights_and_bare_names():
    """``critical=1,high=2,normal=6,low=1``; a name without a weight weighs 1."""
    assert parse_priority_mix("critical=1,high=2,normal=6,low=1") == {"critical": 1, "high": 2, "normal": 6, "low": 1}
    assert parse_priority_mix("normal") == {"normal": 1.0}
    assert parse_priority_mix(" high=0.5 , low ") == {"high": 0.5, "low": 1.0}


@pytest.mark.parametrize("text, words", [
    ("urgent=1", "'urgent' is not a priority"),
    ("high=1,high=2", "names high twice"),
    ("high=lots", "must be a number"),
])
def test_a_bad_priority_mix_is_refused(text, words):
    """An unknown priority, one named twice, or a weight that is not a number: refused with the reason."""
    with pytest.raises(ConfigError, match=words):
        parse_priority_mix(text)


def test_priorities_follow_their_weights():
    """Over many requests each priority comes up in proportion to its weight."""
    counts = Counter(r.priority for r in draw(WorkloadSpec(priorities={"critical": 1, "high": 2, "normal": 6,
                                                                       "low": 1}), 20_000))
    for priority, share in {"critical": 0.1, "high": 0.2, "normal": 0.6, "low": 0.1}.items():
        assert abs(counts[priority] / 20_000 - share) < 0.015, counts


def test_the_same_seed_gives_the_same_requests_and_another_seed_others():
    """A run can be repeated: the sequence depends only on the spec, its seed and the run id."""
    spec = WorkloadSpec(priorities={"high": 1, "low": 1}, repeat_share=0.5, complex_share=0.3, stream_share=0.2)
    assert draw(spec, 200) == draw(spec, 200)
    other = WorkloadSpec(priorities={"high": 1, "low": 1}, repeat_share=0.5, complex_share=0.3, stream_share=0.2,
                         seed=2)
    assert [r.fields for r in draw(spec, 200)] != [r.fields for r in draw(other, 200)]


def test_every_request_has_a_fresh_request_id_even_when_its_prompt_repeats():
    """A repeat is a new request with known content, never a redelivery of an earlier request_id."""
    requests = draw(WorkloadSpec(repeat_share=1.0, pool_size=3), 300)
    assert len({r.request_id for r in requests}) == 300
    assert len({r.fields["prompt"] for r in requests}) == 3


def test_the_repeat_share_sets_how_many_prompts_come_from_the_pool():
    """About repeat_share of the requests reuse a pooled prompt; every other prompt is seen once."""
    requests = draw(WorkloadSpec(repeat_share=0.8, pool_size=10), 10_000)
    repeated = [r for r in requests if r.repeated]
    assert abs(len(repeated) / 10_000 - 0.8) < 0.02
    assert len({r.fields["prompt"] for r in repeated}) == 10
    once = [r.fields["prompt"] for r in requests if not r.repeated]
    assert len(set(once)) == len(once)
    assert not set(once) & {r.fields["prompt"] for r in repeated}


def test_repeats_are_cacheable_and_keep_what_goes_into_a_cache_key():
    """Temperature 0, one user, and a pooled prompt always with the same task type and max tokens."""
    requests = draw(WorkloadSpec(repeat_share=1.0, pool_size=4, complex_share=0.5), 400)
    assert {r.fields["temperature"] for r in requests} == {0.0}
    assert len({r.fields["user_id"] for r in requests}) == 1
    by_prompt = {(r.fields["prompt"], r.fields["task_type"], r.fields["max_tokens"]) for r in requests}
    assert len(by_prompt) == 4


def test_complex_requests_go_to_the_cloud_first_and_simple_ones_to_the_local_model():
    """The complex share is about right, and the router's own rule sees each kind as meant."""
    requests = draw(WorkloadSpec(complex_share=0.3), 5_000)
    complex_ = [r for r in requests if r.fields["task_type"] == COMPLEX_TASK_TYPE]
    assert abs(len(complex_) / 5_000 - 0.3) < 0.02
    assert {r.fields["task_type"] for r in requests} == {COMPLEX_TASK_TYPE, SIMPLE_TASK_TYPE}
    for r in (complex_[0], next(r for r in requests if r.fields["task_type"] == SIMPLE_TASK_TYPE)):
        request = Request(**{k: v for k, v in r.fields.items() if k != "providers"})
        assert is_simple_task(request) == (r.fields["task_type"] == SIMPLE_TASK_TYPE)


def test_the_stream_share_and_the_allow_list_are_carried():
    """About stream_share of the requests stream; an allow-list goes on every request, and none when not asked."""
    requests = draw(WorkloadSpec(stream_share=0.25, providers=("sim",)), 4_000)
    assert abs(sum(r.fields["stream"] for r in requests) / 4_000 - 0.25) < 0.02
    assert {tuple(r.fields["providers"]) for r in requests} == {("sim",)}
    assert "providers" not in draw(WorkloadSpec(), 1)[0].fields


def test_a_request_id_gives_back_its_sequence_number_only_for_its_own_run():
    """Answers are matched by request_id: another run's id (even one with a longer run id) is not ours."""
    assert seq_of("lt1", request_id("lt1", 42)) == 42
    assert seq_of("lt1", request_id("lt12", 42)) is None
    assert seq_of("lt1", "lt1-x") is None
    assert seq_of("lt1", "other") is None


@pytest.mark.parametrize("fields, words", [
    ({"repeat_share": 1.5}, "--repeat-share must be between 0 and 1"),
    ({"stream_share": -0.1}, "--stream-share must be between 0 and 1"),
    ({"priorities": {"normal": 0}}, "at least one must be more than 0"),
    ({"pool_size": 0}, "--pool-size must be at least 1"),
    ({"max_tokens": 0}, "--max-tokens must be at least 1"),
])
def test_a_bad_spec_is_refused(fields, words):
    """Shares outside 0..1, no positive priority weight, an empty pool or no tokens: refused, the flag named."""
    with pytest.raises(ConfigError, match=words):
        WorkloadSpec(**fields)
