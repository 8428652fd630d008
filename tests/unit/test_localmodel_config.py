"""Tests of LocalModelConfig validation and parse_size."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrouter.localmodel.config import LocalModelConfig, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.5GB", 1_610_612_736),
        ("1.5 GiB", 1_610_612_736),
        ("512MB", 512 * 1024**2),
        ("512mib", 512 * 1024**2),
        ("64KB", 65_536),
        ("64KiB", 65_536),
        ("100B", 100),
        ("2048", 2048),
    ],
)
def test_parse_size_reads_binary_units(text: str, expected: int) -> None:
    """parse_size reads B/KB/MB/GB/KiB/MiB/GiB (1024-based, case-insensitive) and bare bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "1.5TBX", "-1GB", "0", "one gig"])
def test_parse_size_rejects_non_sizes_with_a_sentence(text: str) -> None:
    """Anything that is not a positive size raises ValueError naming the accepted units or the sign."""
    with pytest.raises(ValueError, match=r"(units|positive)"):
        parse_size(text)


def test_config_defaults_match_the_specification() -> None:
    """Defaults: 1.5 GiB memory, 4 threads, int8, batch 1, 1 worker, 10 s timeout, 2048 tokens."""
    config = LocalModelConfig(model_path="models/tiny")
    assert config.model_path == Path("models/tiny")
    assert (config.max_memory_bytes, config.inference_threads, config.quantization) == (1_610_612_736, 4, "int8")
    assert (config.batch_size, config.max_concurrent, config.timeout_s, config.context_tokens) == (1, 1, 10.0, 2048)
    assert (config.batching, config.max_batch_wait_s, config.max_queue) == ("balanced", None, 32)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_memory_bytes", 0),
        ("inference_threads", 0),
        ("quantization", "int4"),
        ("batch_size", 0),
        ("max_concurrent", 0),
        ("timeout_s", 0.0),
        ("context_tokens", 1),
        ("batching", "fastest"),
        ("max_batch_wait_s", -0.1),
        ("max_queue", -1),
    ],
)
def test_config_rejects_invalid_fields_with_a_sentence(field: str, value: object) -> None:
    """Each invalid field raises ValueError whose message names the field and ends in a full stop."""
    with pytest.raises(ValueError, match=field) as info:
        LocalModelConfig(model_path=Path("m"), **{field: value})
    assert str(info.value).endswith(".")


def test_config_is_frozen_and_keyword_only() -> None:
    """The config cannot be changed after creation nor built positionally."""
    config = LocalModelConfig(model_path=Path("m"))
    with pytest.raises(AttributeError):
        config.batch_size = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        LocalModelConfig(Path("m"))  # type: ignore[misc]
