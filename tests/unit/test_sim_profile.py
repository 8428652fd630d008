"""The simulator's pure parts: profile, outcome choice, latency, reply text, wire formats, CLI flags."""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

import pytest

from llmrouter.errors import ConfigError
from llmrouter.commands.simulate import add_simulate_parser
from llmrouter.simulator import SimProfile
from llmrouter.commands.simulate import profile_from_args
from llmrouter.simulator.formats import (
    DEFAULT_MAX_TOKENS, MALFORMED_BODY, ReplyContext, RequestProblem, error_reply, ok_body, parse_request,
    stream_events, stream_plan, truncated_body,
)
from llmrouter.simulator.profile import (
    FAULTS, VOCABULARY, OutcomePicker, burst_seconds_left, count_words, generate_words, prompt_tokens, reply_plan,
    sample_latency_s,
)

# -- profile ------------------------------------------------------------------------------------------------


def test_defaults_match_the_contract() -> None:
    """A bare profile has the documented defaults, with units in the names."""
    profile = SimProfile()
    assert profile.as_dict() == {
        "latency_ms": 20.0, "latency_sigma": 0.0, "token_delay_ms": 2.0, "error_rate": 0.0,
        "fault_weights": {"server_error": 1.0, "overloaded": 1.0, "rate_limited": 1.0}, "retry_after_s": 1.0,
        "hang_s": 60.0, "burst_every_s": 0.0, "burst_length_s": 0.0, "context_tokens": 4096, "reply_words": 0,
        "api_key": None, "seed": 0,
    }


def test_profile_is_keyword_only_and_immutable() -> None:
    """Positional arguments are refused, and neither fields nor fault_weights can be changed in place."""
    with pytest.raises(TypeError):
        SimProfile(5.0)  # type: ignore[misc]
    profile = SimProfile()
    with pytest.raises(AttributeError):
        profile.latency_ms = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        profile.fault_weights["timeout"] = 1.0  # type: ignore[index]


def test_with_updates_returns_a_changed_copy() -> None:
    """with_updates applies known keys to a copy, coercing whole numbers, and leaves the original alone."""
    profile = SimProfile()
    updated = profile.with_updates({"latency_ms": 5, "error_rate": 0.5, "context_tokens": 100.0})
    assert (updated.latency_ms, updated.error_rate, updated.context_tokens) == (5.0, 0.5, 100)
    assert isinstance(updated.context_tokens, int)
    assert profile.latency_ms == 20.0


def test_with_updates_refuses_unknown_keys_naming_them() -> None:
    """An unknown key is refused with a sentence that names it and lists the known keys."""
    with pytest.raises(ConfigError, match=r"Unknown profile key\(s\) 'latency'; the known keys are .*latency_ms"):
        SimProfile().with_updates({"latency": 3})


@pytest.mark.parametrize("values, phrase", [
    ({"latency_ms": -1}, "'latency_ms' must be at least 0"),
    ({"latency_ms": "fast"}, "'latency_ms' must be a finite number"),
    ({"hang_s": float("inf")}, "'hang_s' must be a finite number"),
    ({"error_rate": 1.5}, "'error_rate' must be between 0 and 1"),
    ({"error_rate": True}, "'error_rate' must be a finite number"),
    ({"context_tokens": 0}, "'context_tokens' must be at least 1"),
    ({"reply_words": 2.5}, "'reply_words' must be a whole number"),
    ({"api_key": ""}, "'api_key' must be a non-empty string"),
    ({"fault_weights": {"ok": 1}}, "names 'ok', which is not a fault"),
    ({"fault_weights": {"timeout": -1}}, "'fault_weights.timeout' must be at least 0"),
    ({"error_rate": 0.1, "fault_weights": {"timeout": 0}}, "must give some fault a weight above 0"),
    ({"burst_every_s": 2, "burst_length_s": 3}, "'burst_length_s' \\(3\\) must not exceed 'burst_every_s' \\(2\\)"),
])
def test_bad_values_are_refused_with_a_sentence(values: dict, phrase: str) -> None:
    """Each bad value raises ConfigError whose message names the key and what it must be."""
    with pytest.raises(ConfigError, match=phrase):
        SimProfile.from_mapping(values)


def test_as_dict_hides_the_api_key_unless_revealed() -> None:
    """The profile shown by the control API masks the key; the repr does too."""
    profile = SimProfile(api_key="sk-secret")
    assert profile.as_dict()["api_key"] == "***"
    assert profile.as_dict(reveal_key=True)["api_key"] == "sk-secret"
    assert "sk-secret" not in repr(profile)


# -- outcome choice -----------------------------------------------------------------------------------------


def test_scripted_outcomes_come_first_and_in_order() -> None:
    """A script overrides bursts and error_rate, and is taken in the order it was posted."""
    picker = OutcomePicker(random.Random(1))
    profile = SimProfile(error_rate=1.0, burst_every_s=10, burst_length_s=5)
    picker.add_script(["timeout", "ok"])
    assert [picker.choose(profile, "openai", 0.0).outcome for _ in range(3)] == ["timeout", "ok", "rate_limited"]


def test_a_flavored_script_waits_for_its_flavor() -> None:
    """A script for anthropic is skipped by openai requests; an any-flavor entry behind it is taken by openai."""
    picker = OutcomePicker(random.Random(1))
    profile = SimProfile()
    picker.add_script(["server_error"], flavor="anthropic")
    picker.add_script(["malformed"])
    assert picker.choose(profile, "openai", 0.0).outcome == "malformed"
    assert picker.choose(profile, "openai", 0.0).outcome == "ok"
    assert picker.choose(profile, "anthropic", 0.0).outcome == "server_error"
    assert picker.pending() == []


def test_bad_scripts_are_refused_whole() -> None:
    """Unknown outcomes or flavors raise ConfigError and queue nothing."""
    picker = OutcomePicker(random.Random(1))
    with pytest.raises(ConfigError, match="'explode' are unknown"):
        picker.add_script(["ok", "explode"])
    with pytest.raises(ConfigError, match="'cohere' is not one of"):
        picker.add_script(["ok"], flavor="cohere")
    with pytest.raises(ConfigError, match="list of outcome names"):
        picker.add_script("ok")
    assert picker.pending() == []


def test_burst_window_gives_429_with_the_seconds_left() -> None:
    """Inside the first burst_length_s of each window requests get rate_limited with the time left."""
    picker = OutcomePicker(random.Random(1))
    profile = SimProfile(burst_every_s=10, burst_length_s=4, retry_after_s=1)
    inside = picker.choose(profile, "openai", 21.5)
    assert (inside.outcome, inside.retry_after_s, inside.source) == ("rate_limited", 2.5, "burst")
    assert picker.choose(profile, "openai", 24.0).outcome == "ok"
    assert picker.choose(profile, "openai", 29.9).outcome == "ok"


def test_bursts_are_off_unless_both_burst_keys_are_set() -> None:
    """burst_every_s 0 or burst_length_s 0 means no burst at any time."""
    assert burst_seconds_left(SimProfile(burst_every_s=10), 1.0) == 0.0
    assert burst_seconds_left(SimProfile(burst_length_s=5), 1.0) == 0.0


def test_error_rate_draws_faults_by_weight() -> None:
    """About error_rate of the requests take a fault, split by fault_weights; zero weights never come up."""
    picker = OutcomePicker(random.Random(7))
    profile = SimProfile(error_rate=0.5, fault_weights={"timeout": 3, "malformed": 1, "server_error": 0})
    outcomes = [picker.choose(profile, "huggingface", 0.0).outcome for _ in range(4000)]
    assert set(outcomes) == {"ok", "timeout", "malformed"}
    assert 0.45 < outcomes.count("ok") / 4000 < 0.55
    assert 2.4 < outcomes.count("timeout") / outcomes.count("malformed") < 3.7


def test_the_same_seed_repeats_the_same_outcomes() -> None:
    """Two pickers with equally seeded generators choose the same sequence."""
    profile = SimProfile(error_rate=0.3, fault_weights={fault: 1 for fault in FAULTS})
    first, second = OutcomePicker(random.Random(3)), OutcomePicker(random.Random(3))
    assert [first.choose(profile, "openai", 0).outcome for _ in range(50)] == \
           [second.choose(profile, "openai", 0).outcome for _ in range(50)]


# -- latency and text ---------------------------------------------------------------------------------------


def test_latency_is_the_median_when_sigma_is_zero() -> None:
    """With latency_sigma 0 every sample is latency_ms, in seconds."""
    assert sample_latency_s(SimProfile(latency_ms=250), random.Random(0)) == 0.25
    assert sample_latency_s(SimProfile(latency_ms=0, latency_sigma=1), random.Random(0)) == 0.0


def test_latency_is_lognormal_around_the_median() -> None:
    """With sigma above 0 samples spread out, their median near latency_ms."""
    rng = random.Random(11)
    samples = [sample_latency_s(SimProfile(latency_ms=100, latency_sigma=0.5), rng) for _ in range(3000)]
    assert 0.09 < statistics.median(samples) < 0.11
    assert min(samples) < 0.06 and max(samples) > 0.2


def test_reply_words_are_deterministic_per_prompt_and_seed() -> None:
    """The same prompt and seed give the same words from the vocabulary; another seed or prompt differ."""
    words = generate_words("tell me a story", 0, 20)
    assert words == generate_words("tell me a story", 0, 20)
    assert set(words) <= set(VOCABULARY) and len(words) == 20
    assert words != generate_words("tell me a story", 1, 20)
    assert words != generate_words("tell me a poem", 0, 20)


def test_tokens_are_whitespace_words() -> None:
    """One word is one token; a prompt counts at least one token."""
    assert count_words("  one two\nthree\t") == 3
    assert prompt_tokens(["a b", "c"]) == 3
    assert prompt_tokens([""]) == 1


def test_reply_length_runs_to_max_tokens_unless_reply_words_is_smaller() -> None:
    """reply_words below max_tokens ends with stop; otherwise max_tokens words end with length."""
    assert reply_plan(SimProfile(), 8) == (8, "length")
    assert reply_plan(SimProfile(reply_words=3), 8) == (3, "stop")
    assert reply_plan(SimProfile(reply_words=30), 8) == (8, "length")


# -- wire formats -------------------------------------------------------------------------------------------


def _ctx(words: tuple[str, ...] = ("the", "router", "sends"), **extra: object) -> ReplyContext:
    values: dict = {"reply_id": "r-1", "created": 1700000000, "model": "m", "prompt_tokens": 4, "words": words,
                    "finish": "stop"}
    values.update(extra)
    return ReplyContext(**values)


def _data(event: bytes) -> dict:
    line = next(line for line in event.decode().splitlines() if line.startswith("data: "))
    return json.loads(line[len("data: "):])


def test_requests_are_read_per_flavor() -> None:
    """Model, prompt words, max tokens and stream flags come from each vendor's own fields."""
    openai = parse_request("openai", {"model": "gpt", "messages": [{"role": "user", "content": "a b c"}],
                                      "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}})
    assert (openai.model, openai.prompt_tokens, openai.max_tokens, openai.stream, openai.include_usage) == \
           ("gpt", 3, 5, True, True)
    hf = parse_request("huggingface", {"inputs": "x y", "parameters": {"max_new_tokens": 7}}, path_model="org/m")
    assert (hf.model, hf.prompt_tokens, hf.max_tokens, hf.stream) == ("org/m", 2, 7, False)
    anthropic = parse_request("anthropic", {"model": "claude", "max_tokens": 9, "system": "be brief",
                                            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert (anthropic.prompt_tokens, anthropic.max_tokens, anthropic.prompt) == (3, 9, "be brief\nhi")
    assert parse_request("huggingface", {"inputs": "x"}).max_tokens == DEFAULT_MAX_TOKENS


@pytest.mark.parametrize("flavor, body, phrase", [
    ("openai", [], "must be a JSON object"),
    ("openai", {"model": "m", "messages": []}, "'messages' must be a non-empty list"),
    ("openai", {"messages": [{"role": "user", "content": "x"}]}, "'model' must name a model"),
    ("openai", {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "at least 1"),
    ("anthropic", {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field required"),
    ("huggingface", {"inputs": 3}, "`inputs` must be a string"),
    ("huggingface", {"inputs": "x", "stream": "yes"}, "'stream' must be true or false"),
])
def test_requests_the_vendor_would_refuse_raise_request_problem(flavor: str, body: object, phrase: str) -> None:
    """Bodies missing required fields or with wrong types are refused with a message saying which."""
    with pytest.raises(RequestProblem, match=phrase):
        parse_request(flavor, body)


def test_ok_bodies_follow_each_vendor() -> None:
    """Success bodies carry the text, usage and the vendor's own finish reason."""
    openai = json.loads(ok_body("openai", _ctx()))
    assert openai["choices"][0]["message"] == {"role": "assistant", "content": "the router sends"}
    assert openai["choices"][0]["finish_reason"] == "stop"
    assert openai["usage"] == {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    hf = json.loads(ok_body("huggingface", _ctx(finish="length")))
    assert hf == [{"generated_text": "the router sends", "details": {
        "finish_reason": "length", "generated_tokens": 3, "seed": None, "prefill": []}}]
    anthropic = json.loads(ok_body("anthropic", _ctx()))
    assert anthropic["content"] == [{"type": "text", "text": "the router sends"}]
    assert (anthropic["stop_reason"], anthropic["usage"]) == ("end_turn", {"input_tokens": 4, "output_tokens": 3})


def test_openai_stream_ends_with_usage_then_done() -> None:
    """Deltas rebuild the text, the last content chunk has finish_reason, then a usage chunk and [DONE]."""
    events = stream_events("openai", _ctx(include_usage=True))
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [_data(event) for event in events[:-1]]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1]) == "the router sends"
    assert [c["choices"][0]["finish_reason"] for c in chunks[:-1]] == [None, None, "stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


def test_huggingface_stream_ends_with_the_generated_text_event() -> None:
    """Only the last event has generated_text and details; there is no [DONE]."""
    events = [_data(event) for event in stream_events("huggingface", _ctx())]
    assert [e["generated_text"] for e in events] == [None, None, "the router sends"]
    assert events[-1]["details"] == {"finish_reason": "eos_token", "generated_tokens": 3, "seed": None}
    assert "".join(e["token"]["text"] for e in events) == "the router sends"


def test_anthropic_stream_has_the_named_events_in_order() -> None:
    """message_start .. message_stop, each event line naming the data's type."""
    events = stream_events("anthropic", _ctx())
    names = [event.decode().split("\n")[0].removeprefix("event: ") for event in events]
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * 3,
                     "content_block_stop", "message_delta", "message_stop"]
    assert all(_data(event)["type"] == name for event, name in zip(events, names))
    assert _data(events[-2])["usage"] == {"output_tokens": 3}


@pytest.mark.parametrize("flavor", ["openai", "huggingface", "anthropic"])
def test_truncated_streams_never_send_the_terminator(flavor: str) -> None:
    """A truncated stream is a strict prefix of the whole stream and is cut, even for a one-word reply."""
    for words in (("one",), ("a", "b", "c", "d", "e", "f")):
        whole = stream_events(flavor, _ctx(words))
        sent, cut = stream_plan(flavor, _ctx(words), "truncated")
        assert cut and sent == whole[:len(sent)] and len(sent) < len(whole)


@pytest.mark.parametrize("flavor", ["openai", "huggingface", "anthropic"])
def test_malformed_streams_hold_one_line_that_is_not_json(flavor: str) -> None:
    """The malformed stream is the whole stream plus one data line that does not parse."""
    sent, cut = stream_plan(flavor, _ctx(("one",)), "malformed")
    bad = [event for event in sent if event not in stream_events(flavor, _ctx(("one",)))]
    assert not cut and len(bad) == 1 and len(sent) == len(stream_events(flavor, _ctx(("one",)))) + 1
    with pytest.raises(ValueError):
        _data(bad[0])


def test_error_replies_carry_vendor_status_and_retry_after() -> None:
    """Overload is 503/529 per vendor; 429s round Retry-After up to whole seconds."""
    assert error_reply("anthropic", "overloaded").status == 529
    hf = error_reply("huggingface", "overloaded", model="org/m", retry_after_s=2.5)
    assert (hf.status, json.loads(hf.body)) == (503, {"error": "Model org/m is currently loading", "estimated_time": 2.5})
    assert error_reply("openai", "rate_limited", retry_after_s=2.1).headers["Retry-After"] == "3"
    assert error_reply("anthropic", "rate_limited", retry_after_s=1).headers["retry-after"] == "1"


def test_malformed_and_truncated_bodies_do_not_parse() -> None:
    """The malformed body and a truncated success body are both invalid JSON."""
    for body in (MALFORMED_BODY, truncated_body(ok_body("openai", _ctx()))):
        with pytest.raises(ValueError):
            json.loads(body)


# -- the simulate subcommand --------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulate_parser(parser.add_subparsers())
    return parser.parse_args(["simulate", *argv])


def test_simulate_flags_override_the_profile_file(tmp_path: Path) -> None:
    """The profile file is read first, flags given on the command line win, the key comes from the env."""
    path = tmp_path / "profile.yaml"
    path.write_text("latency_ms: 50\nerror_rate: 0.2\nfault_weights: {timeout: 1}\n")
    args = _parse(["--profile", str(path), "--error-rate", "0.4", "--port", "0", "--api-key-env", "SIM_KEY"])
    profile = profile_from_args(args, env={"SIM_KEY": "k-123"})
    assert (profile.latency_ms, profile.error_rate, dict(profile.fault_weights)) == (50.0, 0.4, {"timeout": 1.0})
    assert profile.api_key == "k-123" and args.port == 0 and callable(args.func)


def test_simulate_refuses_a_missing_key_variable_and_bad_files(tmp_path: Path) -> None:
    """An unset --api-key-env variable and a profile file with unknown keys are ConfigErrors."""
    with pytest.raises(ConfigError, match="'NOPE', but that environment variable is not set"):
        profile_from_args(_parse(["--api-key-env", "NOPE"]), env={})
    path = tmp_path / "p.json"
    path.write_text('{"latencyms": 3}')
    with pytest.raises(ConfigError, match="Unknown profile key"):
        profile_from_args(_parse(["--profile", str(path)]), env={})
