"""What the provider simulator does, decided without I/O.

Everything here is pure: no sockets, no event loop, time passed in as
``now_s`` and randomness as an injected :class:`random.Random`, so the
decisions are tested in plain synchronous tests.

* :class:`SimProfile` -- the immutable, validated behaviour of the simulator
  (latency, fault rates, bursts, context window, key, seed).
* :class:`OutcomePicker` -- which outcome a request takes: a scripted
  outcome first, then a 429 burst window, then ``error_rate`` with
  ``fault_weights``.
* :func:`sample_latency_s`, :func:`reply_plan`, :func:`generate_words`,
  :func:`count_words` -- latency, reply length and the deterministic text.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

from llmrouter.errors import ConfigError

__all__ = [
    "FAULTS", "FLAVORS", "KEY_MASK", "OUTCOMES", "Decision", "OutcomePicker", "SimProfile",
    "count_words", "generate_words", "prompt_tokens", "reply_plan", "sample_latency_s",
]

FLAVORS = ("openai", "huggingface", "anthropic")
"""The wire formats the simulator speaks."""

FAULTS = (
    "server_error", "overloaded", "rate_limited", "timeout", "auth_error", "bad_request",
    "context_too_long", "malformed", "truncated", "stream_error",
)
"""Every outcome other than ``ok``."""

OUTCOMES = ("ok", *FAULTS)

KEY_MASK = "***"
"""How :meth:`SimProfile.as_dict` shows a set api_key."""

_DEFAULT_FAULT_WEIGHTS = {"server_error": 1.0, "overloaded": 1.0, "rate_limited": 1.0}
_NON_NEGATIVE_FLOATS = (
    "latency_ms", "latency_sigma", "token_delay_ms", "retry_after_s", "hang_s", "burst_every_s", "burst_length_s",
)


@dataclass(frozen=True, kw_only=True, repr=False)
class SimProfile:
    """How the simulated provider behaves; immutable, checked on creation.

    Units are in the names. ``latency_ms`` is the median wait before the
    first byte (lognormal with shape ``latency_sigma``; 0 means always the
    median). ``error_rate`` is the chance that a request takes a fault drawn
    from ``fault_weights``. Bursts are on when both ``burst_every_s`` and
    ``burst_length_s`` are above 0. ``reply_words`` 0 means replies run to
    ``max_tokens``. ``api_key`` None accepts any key or none.
    """

    latency_ms: float = 20.0
    latency_sigma: float = 0.0
    token_delay_ms: float = 2.0
    error_rate: float = 0.0
    fault_weights: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_FAULT_WEIGHTS), hash=False)
    retry_after_s: float = 1.0
    hang_s: float = 60.0
    burst_every_s: float = 0.0
    burst_length_s: float = 0.0
    context_tokens: int = 4096
    reply_words: int = 0
    api_key: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _NON_NEGATIVE_FLOATS:
            self._set(name, _number(name, getattr(self, name), minimum=0.0))
        self._set("error_rate", _number("error_rate", self.error_rate, minimum=0.0, maximum=1.0))
        self._set("context_tokens", _integer("context_tokens", self.context_tokens, minimum=1))
        self._set("reply_words", _integer("reply_words", self.reply_words, minimum=0))
        self._set("seed", _integer("seed", self.seed, minimum=None))
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key):
            raise ConfigError("Profile key 'api_key' must be a non-empty string or null.")
        self._set("fault_weights", _fault_weights(self.fault_weights, self.error_rate))
        if self.burst_every_s > 0 and self.burst_length_s > self.burst_every_s:
            raise ConfigError(
                f"Profile key 'burst_length_s' ({self.burst_length_s:g}) must not exceed "
                f"'burst_every_s' ({self.burst_every_s:g}).")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SimProfile:
        """The default profile with ``values`` applied (see :meth:`with_updates`)."""
        return cls().with_updates(values)

    def with_updates(self, values: Mapping[str, Any]) -> SimProfile:
        """A copy with ``values`` applied; unknown keys or bad values raise ConfigError."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"A profile update must be a mapping of keys to values, not {type(values).__name__}.")
        known = {f.name for f in fields(self)}
        unknown = sorted(str(key) for key in values if key not in known)
        if unknown:
            raise ConfigError(
                f"Unknown profile key(s) {', '.join(map(repr, unknown))}; the known keys are {', '.join(sorted(known))}.")
        return replace(self, **dict(values))

    def as_dict(self, *, reveal_key: bool = False) -> dict[str, Any]:
        """The profile as JSON-ready values; a set api_key shows as :data:`KEY_MASK` unless revealed."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["fault_weights"] = dict(self.fault_weights)
        if self.api_key is not None and not reveal_key:
            data["api_key"] = KEY_MASK
        return data

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items())
        return f"SimProfile({shown})"


def _number(name: str, value: Any, *, minimum: float, maximum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"Profile key {name!r} must be a finite number, not {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum:g} and {maximum:g}" if maximum is not None else f"at least {minimum:g}"
        raise ConfigError(f"Profile key {name!r} must be {bounds}, not {value!r}.")
    return float(value)


def _integer(name: str, value: Any, *, minimum: int | None) -> int:
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise ConfigError(f"Profile key {name!r} must be a whole number, not {value!r}.")
    if minimum is not None and value < minimum:
        raise ConfigError(f"Profile key {name!r} must be at least {minimum}, not {value!r}.")
    return int(value)


def _fault_weights(value: Any, error_rate: float) -> Mapping[str, float]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"Profile key 'fault_weights' must map fault outcomes to weights, not {value!r}.")
    weights: dict[str, float] = {}
    for outcome, weight in value.items():
        if outcome not in FAULTS:
            raise ConfigError(
                f"Profile key 'fault_weights' names {outcome!r}, which is not a fault; "
                f"the faults are {', '.join(FAULTS)}.")
        weights[outcome] = _number(f"fault_weights.{outcome}", weight, minimum=0.0)
    if error_rate > 0 and sum(weights.values()) <= 0:
        raise ConfigError("Profile key 'fault_weights' must give some fault a weight above 0 when error_rate is above 0.")
    return MappingProxyType(weights)


@dataclass(frozen=True)
class Decision:
    """The outcome a request takes; ``retry_after_s`` is what a 429 announces."""

    outcome: str
    retry_after_s: float
    source: str  # script | burst | random | context


class OutcomePicker:
    """Chooses each request's outcome: script queue, then burst window, then chance.

    Scripts are one queue in the order they were posted; a request takes the
    first entry whose flavor is its own or unset. Randomness comes from the
    injected ``rng`` only, so a seeded picker repeats itself.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._script: deque[tuple[str | None, str]] = deque()

    def add_script(self, outcomes: Iterable[str], flavor: str | None = None) -> int:
        """Queue ``outcomes`` for the next requests of ``flavor`` (None: any); returns the queue length."""
        if flavor is not None and flavor not in FLAVORS:
            raise ConfigError(f"Script flavor {flavor!r} is not one of {', '.join(FLAVORS)} (or null for any).")
        if isinstance(outcomes, str):
            raise ConfigError("Script outcomes must be a list of outcome names, not a single string.")
        entries = list(outcomes)
        bad = [o for o in entries if o not in OUTCOMES]
        if bad:
            raise ConfigError(f"Script outcome(s) {', '.join(map(repr, bad))} are unknown; the outcomes are {', '.join(OUTCOMES)}.")
        self._script.extend((flavor, outcome) for outcome in entries)
        return len(self._script)

    def pending(self) -> list[dict[str, str | None]]:
        """The scripted outcomes not yet taken, in order."""
        return [{"flavor": flavor, "outcome": outcome} for flavor, outcome in self._script]

    def clear(self) -> None:
        """Forget every scripted outcome."""
        self._script.clear()

    def choose(self, profile: SimProfile, flavor: str, now_s: float) -> Decision:
        """The outcome of a request of ``flavor`` arriving ``now_s`` seconds after the simulator started."""
        for index, (wanted, outcome) in enumerate(self._script):
            if wanted is None or wanted == flavor:
                del self._script[index]
                return Decision(outcome, profile.retry_after_s, "script")
        left_s = burst_seconds_left(profile, now_s)
        if left_s > 0:
            return Decision("rate_limited", left_s, "burst")
        if profile.error_rate > 0 and self._rng.random() < profile.error_rate:
            names = [name for name, weight in profile.fault_weights.items() if weight > 0]
            weights = [profile.fault_weights[name] for name in names]
            return Decision(self._rng.choices(names, weights)[0], profile.retry_after_s, "random")
        return Decision("ok", profile.retry_after_s, "random")


def burst_seconds_left(profile: SimProfile, now_s: float) -> float:
    """Seconds left in the current 429 burst at ``now_s``, or 0 outside a burst."""
    if profile.burst_every_s <= 0 or profile.burst_length_s <= 0:
        return 0.0
    into_window_s = now_s % profile.burst_every_s
    return max(0.0, profile.burst_length_s - into_window_s)


def sample_latency_s(profile: SimProfile, rng: random.Random) -> float:
    """Seconds to wait before the first byte: lognormal around the median, fixed when sigma is 0."""
    median_s = profile.latency_ms / 1000.0
    if median_s <= 0 or profile.latency_sigma == 0:
        return median_s
    return rng.lognormvariate(math.log(median_s), profile.latency_sigma)


VOCABULARY = (
    "the", "router", "sends", "each", "request", "to", "a", "provider", "that", "answers", "with", "tokens",
    "quickly", "and", "cheaply", "while", "kafka", "keeps", "every", "record", "in", "order", "so", "workers",
    "share", "load", "model", "replies", "stream", "back", "over", "time",
)
"""The words simulated replies are made of; one word is one token."""


def generate_words(prompt: str, seed: int, count: int) -> list[str]:
    """``count`` words from :data:`VOCABULARY`, the same for the same prompt and seed."""
    rng = random.Random(f"{seed}\x00{prompt}")
    return [rng.choice(VOCABULARY) for _ in range(count)]


def count_words(text: str) -> int:
    """Tokens in ``text`` as the simulator counts them: whitespace-separated words."""
    return len(text.split())


def prompt_tokens(contents: Iterable[str]) -> int:
    """Prompt tokens of a request: the words of all message contents, at least 1."""
    return max(1, sum(count_words(text) for text in contents))


def reply_plan(profile: SimProfile, max_tokens: int) -> tuple[int, str]:
    """How many words a reply has and why it ends: ``"length"`` at max_tokens, else ``"stop"``."""
    if 0 < profile.reply_words < max_tokens:
        return profile.reply_words, "stop"
    return max_tokens, "length"
