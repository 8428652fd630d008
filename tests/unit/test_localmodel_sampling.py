"""Tests of next-token selection and incremental detokenization (pure, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from llmrouter.localmodel.detokenize import IncrementalDecoder
from llmrouter.localmodel.sampling import pick_token
from llmrouter.localmodel.tiny_tokenizer import build_tiny_tokenizer


def test_zero_temperature_is_argmax() -> None:
    """temperature 0 returns the index of the largest logit and needs no generator."""
    assert pick_token(np.array([0.1, 3.0, -1.0, 2.9]), temperature=0.0, top_p=1.0, rng=None) == 1


def test_sampling_with_the_same_seed_repeats() -> None:
    """Two generators with the same seed draw the same tokens."""
    logits = np.random.default_rng(0).standard_normal(100)
    draws = [
        [pick_token(logits, temperature=1.0, top_p=1.0, rng=rng) for _ in range(20)]
        for rng in (np.random.default_rng(7), np.random.default_rng(7))
    ]
    assert draws[0] == draws[1]
    assert len(set(draws[0])) > 1


def test_small_top_p_keeps_only_the_most_likely_token() -> None:
    """With top_p small enough only the most likely token can be drawn."""
    logits = np.array([1.0, 5.0, 2.0, 0.0])
    rng = np.random.default_rng(1)
    assert {pick_token(logits, temperature=1.0, top_p=0.01, rng=rng) for _ in range(50)} == {1}


def test_top_p_excludes_the_unlikely_tail() -> None:
    """Tokens outside the top-p nucleus are never drawn."""
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    rng = np.random.default_rng(2)
    drawn = {pick_token(logits, temperature=1.0, top_p=0.75, rng=rng) for _ in range(300)}
    assert drawn == {0, 1}


def test_sampling_without_a_generator_is_refused() -> None:
    """A temperature above 0 without a random generator raises ValueError."""
    with pytest.raises(ValueError, match="random generator"):
        pick_token(np.zeros(3), temperature=0.5, top_p=1.0, rng=None)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    """The tiny byte-level tokenizer."""
    return build_tiny_tokenizer(512)


def test_incremental_decoder_never_emits_half_a_character(tokenizer: Tokenizer) -> None:
    """Multi-byte characters split over tokens come out whole, and the deltas join to the full decode."""
    text = "Héllo wörld 😀 the router ✓"
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.add(i) for i in ids] + [decoder.flush()]
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert any(d == "" for d in deltas)  # the emoji's first bytes were held back
