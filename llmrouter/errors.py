"""The one error tree of llm-router.

::

                                                                  retriable  next provider?
    RouterError                     base; code "internal_error"     no
    ├── ConfigError                 settings or a provider config   no
    │                               is invalid
    ├── RequestError                a request cannot be served as   no
    │   │                           asked (error_code)
    │   ├── InvalidRequest          decoded, but fails validation  -> DLQ
    │   └── UndecodableRequest      not Avro single-object, not JSON -> DLQ
    ├── ModelLoadError              the local model cannot be       no
    │   │                           loaded (memory, files)
    │   └── ModelUnavailable        the semantic cache's embedding  no
    │                               model is missing or not the
    │                               measured one (also a RuntimeError)
    ├── BudgetExceeded              a reservation would pass an     no
    │                               account's budget (ledger)
    ├── Fenced                      the job's partition is handed   no   (never a result: the
    │                               over or the worker is stopping        next owner handles it)
    ├── WriteFailed                 a Kafka write failed every try  yes  (the caller's tries
    │                               (delivery_failed)                     are spent: DLQ path)
    ├── RecordTooLarge              a record over the producer's    no   (never tried: a smaller
    │                               limit (record_too_large)              record or a refusal)
    ├── GenerationCancelled         the local model's caller        no
    │                               cancelled (deadline, went away)
    ├── InfraError                  a local Kafka or Redis cannot   no
    │                               be started, reached or stopped
    │                               (also a RuntimeError)
    ├── RequestProblem              the simulator's vendor refuses  no
    │                               a body: its 400 (also a ValueError)
    └── ProviderError               a provider call failed         retry?  next provider?
        ├── ProviderUnavailable     down, 5xx, overloaded;        yes      yes
        │   │                       may carry retry_after_s
        │   └── Overloaded          our own queue is full, or     no       yes
        │                           the deadline cannot be met
        ├── ProviderTimeout         no answer in time             yes      yes
        ├── RateLimited             429; carries retry_after_s    yes      yes
        ├── MalformedReply          garbage, a cut stream         yes      yes
        ├── AuthError               401/403                       no       yes
        ├── ContextTooLong          prompt over the window        no       yes (a larger window may fit)
        └── BadRequest              400/404/422                   no       no  (the request itself is bad)

Each error carries a stable ``code`` (it goes into ``LLMResult.error_code``)
and whether trying the same thing again could help (``retriable``); provider
errors also say whether another provider could (``next_provider_may_help``).
Three keep a built-in base beside :class:`RouterError` (``RuntimeError``,
``ValueError``) so that code catching those still catches them.

Each error is importable from here and, as before, from the module that
raises it (``llmrouter.runtime.inflight.Fenced``, ``llmrouter.core.ledger.
BudgetExceeded``, ``llmrouter.runtime.writes.WriteFailed``,
``llmrouter.localmodel.generation.GenerationCancelled``,
``llmrouter.cache.embedding.ModelUnavailable``, ``llmrouter.infra.InfraError``,
``llmrouter.simulator.formats.RequestProblem``).
"""

from __future__ import annotations


class RouterError(Exception):
    """Base of every error llm-router raises on purpose."""

    code = "internal_error"
    retriable = False  # whether trying the same thing again could help


class ConfigError(RouterError):
    """Settings or a provider configuration are invalid."""

    code = "invalid_config"


class RequestError(RouterError):
    """A request cannot be served as asked."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class InvalidRequest(RequestError):
    """The request decoded but does not satisfy the LLMRequest contract."""


class UndecodableRequest(RequestError):
    """The bytes are neither Avro single-object encoding nor a JSON object."""

    code = "undecodable"


class ModelLoadError(RouterError):
    """The local model cannot be loaded (files missing, over max_memory)."""

    code = "model_load_failed"


class ModelUnavailable(ModelLoadError, RuntimeError):
    """The model's package is not installed, or its files are not the ones this module was measured with."""

    code = "model_unavailable"


class BudgetExceeded(RouterError):
    """A reservation that would take the account past its budget."""

    code = "budget_exceeded"


class Fenced(RouterError):
    """The job's partition was revoked or the worker is stopping: it must not pay or write."""

    code = "fenced"


class WriteFailed(RouterError):
    """A Kafka write failed every time it was tried."""

    code = "delivery_failed"
    retriable = True


class RecordTooLarge(RouterError):
    """A Kafka record (key, value, headers and overhead) over the producer's ``kafka.max_record_bytes``:
    no retry can send it, so the caller writes a smaller one (a truncated dead letter, a refusal)."""

    code = "record_too_large"

    def __init__(self, message: str, *, size: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class GenerationCancelled(RouterError):
    """The caller set the cancel event (its deadline passed or it went away)."""

    code = "cancelled"


class InfraError(RouterError, RuntimeError):
    """A local service could not be started, reached or stopped."""

    code = "infra_error"


class RequestProblem(RouterError, ValueError):
    """The request body is not what the vendor accepts; answered as its 400."""

    code = "bad_request"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ProviderError(RouterError):
    """A provider call failed; ``retry_after_s`` is how long the provider asked us to wait, if it said."""

    code = "provider_error"
    retriable = False
    next_provider_may_help = True

    def __init__(self, message: str, *, provider: str = "", retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.retry_after_s = retry_after_s


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    retriable = True


class Overloaded(ProviderUnavailable):
    """A provider with a bounded queue of its own (the local model) refused the call at once:
    the queue is full, or the wait ahead would pass the request's deadline. Asking the same
    provider again only queues again, so it is not retriable; the next provider may answer."""

    code = "overloaded"
    retriable = False


class ProviderTimeout(ProviderError):
    code = "provider_timeout"
    retriable = True


class RateLimited(ProviderError):
    code = "rate_limited"
    retriable = True


class MalformedReply(ProviderError):
    code = "malformed_reply"
    retriable = True


class AuthError(ProviderError):
    code = "auth_error"


class BadRequest(ProviderError):
    code = "bad_request"
    next_provider_may_help = False


class ContextTooLong(ProviderError):
    code = "context_too_long"


def error_for_status(status: int, message: str, *, provider: str = "", retry_after_s: float | None = None) -> ProviderError:
    """Map an HTTP status from a provider to the error tree (the one place that does)."""
    if status == 429:
        return RateLimited(message, provider=provider, retry_after_s=retry_after_s)
    if status in (401, 403):
        return AuthError(message, provider=provider)
    if status == 413:
        return ContextTooLong(message, provider=provider)
    if status in (400, 404, 422):
        return BadRequest(message, provider=provider)
    if status == 408:
        return ProviderTimeout(message, provider=provider)
    return ProviderUnavailable(message, provider=provider, retry_after_s=retry_after_s)
