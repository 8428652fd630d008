"""The value types of a generation: what is asked, what comes back, and cancellation."""

from __future__ import annotations

from dataclasses import dataclass

from llmrouter.errors import GenerationCancelled

__all__ = ["GenerationRequest", "LocalResult", "GenerationCancelled"]


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """One prompt to continue and how."""

    prompt: str
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    ignore_eos: bool = False  # benchmarks: always generate max_tokens

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}.")
        if self.temperature < 0:
            raise ValueError(f"temperature must not be negative, got {self.temperature}.")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")


@dataclass(frozen=True, kw_only=True)
class LocalResult:
    """A finished generation; ``finish_reason`` is stop, length or cancelled."""

    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
