"""The provider abstraction of specification F005.

Every way of answering a prompt (the local ONNX model, each cloud API)
implements :class:`LLMProvider`. The dispatcher knows nothing else about a
provider: it asks for capabilities and a cost estimate, then calls
``generate`` or ``stream``.

A provider raises only :class:`llmrouter.errors.ProviderError` subclasses;
the error says whether a retry could help (``retriable``).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]  # seconds on one clock: the router's (the dispatcher's), shared with every provider


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens ``text`` takes, for a model whose tokenizer is not at hand (the cloud APIs'
    are not shipped offline). It errs high, never low: a budget reserves what this says before the call, so
    a count below the real one would let a call spend past the budget (a CJK prompt at the old 4 characters
    per token cost up to twelve times its reservation).

    * a character outside ASCII counts one token per byte of its UTF-8 form (3 for a CJK character): the
      most any byte-level BPE vocabulary (GPT's, Llama 3's) or SentencePiece with byte fallback (Llama 2's)
      ever spends on it, since each token holds at least one byte;
    * ASCII letters and whitespace count a token per 3 characters, rounded up in each stretch between two
      characters outside ASCII (English averages about 4 per token in those vocabularies, code about 3; a
      space between two CJK or Hangul words is a token of its own);
    * ASCII digits, punctuation and symbols count a token each (Llama splits digits one by one, and
      punctuation is mostly a token of its own);
    * plus 1 for the start-of-text token many tokenizers put in front.

    English prose is over-estimated by about a third: the reservation is released at settlement, so the
    price of erring high is a budget that refuses a little early near its end, never one spent past its limit.
    """
    tokens, run = 1, 0  # run: ASCII letters and whitespace since the last character outside ASCII
    for char in text:
        if not char.isascii():
            tokens += -(-run // 3) + len(char.encode("utf-8", "surrogatepass"))
            run = 0
        elif char.isalpha() or char.isspace():
            run += 1
        else:
            tokens += 1
    return tokens + -(-run // 3)


@dataclass(frozen=True)
class Deadline:
    """An absolute time on ``clock``: the one form a request's deadline takes from the answer stage to the
    provider call, so a test that moves the clock moves every deadline with it."""

    at_s: float
    clock: Clock

    def left_s(self) -> float:
        """Seconds left now on the deadline's own clock (negative once it passed)."""
        return self.at_s - self.clock()


@dataclass(frozen=True, kw_only=True)
class Prompt:
    """What a provider is asked to continue: plain text or chat messages.

    ``priority`` and ``deadline`` are not part of what is asked (they take no
    part in equality): they tell a provider with a queue of its own (the local
    model) whom to serve first and what it cannot finish in time. The
    dispatcher sets them on every call.
    """

    text: str = ""
    messages: tuple[tuple[str, str], ...] = ()  # (role, content) pairs
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None
    priority: int = field(default=2, compare=False)  # 0 = critical ... 3 = low
    deadline: Deadline | None = field(default=None, compare=False)  # on the dispatcher's clock; None = no deadline

    def as_text(self) -> str:
        """The prompt as one string, for providers without a chat format."""
        if self.text:
            return self.text
        return "".join(f"<|{role}|>\n{content}\n" for role, content in self.messages) + "<|assistant|>\n"


@dataclass(frozen=True, kw_only=True)
class Generation:
    """A finished answer with the usage the provider reported."""

    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # stop | length


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a provider can do, for routing and for the registry."""

    models: tuple[str, ...]
    context_tokens: int
    streaming: bool = True
    batching: bool = False
    local: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class Health:
    """The answer to a health check."""

    healthy: bool
    detail: str = ""
    latency_s: float = 0.0


@dataclass(frozen=True, kw_only=True)
class StreamDelta:
    """One piece of a streamed answer; the last one carries the generation."""

    delta: str
    final: Generation | None = None


class LLMProvider(abc.ABC):
    """One way of answering prompts (specification F005)."""

    name: str

    @abc.abstractmethod
    async def generate(self, prompt: Prompt) -> Generation:
        """Answer ``prompt`` in one piece."""

    @abc.abstractmethod
    def stream(self, prompt: Prompt) -> AsyncIterator[StreamDelta]:
        """Answer ``prompt`` token by token; the last delta has ``final`` set."""

    @abc.abstractmethod
    async def health_check(self) -> Health:
        """Say whether the provider can take traffic now."""

    @abc.abstractmethod
    def get_capabilities(self) -> Capabilities:
        """Describe models, context length and features."""

    @abc.abstractmethod
    def estimate_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost in US dollars of a call with these token counts."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` would take, for the budget's estimate: :func:`estimate_tokens` unless the provider
        has the model's own tokenizer (the local model overrides this with it)."""
        return estimate_tokens(text)

    async def start(self) -> None:
        """Acquire resources (sessions, models). Called once before use."""

    async def stop(self) -> None:
        """Release what :meth:`start` acquired."""
