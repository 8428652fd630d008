"""The semantic cache's index (F035): from a prompt to the exact cache key of an earlier prompt that asked the same.

Opt-in (``cache.semantic_enabled``). After an exact miss, :meth:`SemanticIndex.nearest`
looks for an earlier request that differs only in wording; if one is found,
its exact key is read through the cache levels as usual. On every answer
stored (and every exact hit, so paraphrases of what other workers answered are
found too) :meth:`SemanticIndex.add` remembers the prompt's vector under its
exact key. The index holds keys, never answers: TTLs, clears and the levels
stay the exact cache's business, and a key whose entry has gone is simply a
miss there (then :meth:`SemanticIndex.discard` it).

A candidate must pass two tests:

* its cosine similarity to the new prompt (vectors of
  :mod:`llmrouter.cache.embedding`) is at least ``threshold``;
* :func:`~llmrouter.cache.semantic_guard.mismatch` finds no difference in
  numbers, names, quoted text, negations or content words. The embedding
  alone cannot tell "capital of France" from "capital of Germany" reliably,
  nor 5 km from 50 km at all; see that module.

The best-scoring candidate that passes both wins.

Only requests that would share an exact key but for their text are compared:
entries live in buckets by scope (the tenant, as in
:func:`~llmrouter.cache.keys.scope_of`), ``task_type``, the ``providers``
allow-list, ``max_tokens``, ``temperature``, ``seed`` and the sequence of
message roles. One tenant's prompt never finds another's, and an answer made
for 50 tokens never serves a request for 500.

The text compared is what the exact key hashes: the prompt and each message's
content, normalised and with the operator's templates applied, one per line.
Bounds: at most ``max_entries`` in all and ``max_bucket_entries`` in one
bucket, the least recently used (added or matched) going first. Search is a
matrix-vector product over the bucket (256 float32 per entry): about 0.25 ms
at 4,096 entries, on the event loop, after an exact miss only. Not
thread-safe: one event loop owns it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from llmrouter.cache.embedding import Embedder, StaticEmbedder
from llmrouter.cache.keys import scope_of
from llmrouter.cache.normalise import Templates, normalise
from llmrouter.cache.semantic_guard import RULES, Anchors, anchors_of, mismatch
from llmrouter.wire.contract import Request

__all__ = ["SemanticIndex", "SemanticMatch", "SemanticStats", "bucket_of", "semantic_text", "open_index",
           "MAX_BUCKET_ENTRIES"]

MAX_BUCKET_ENTRIES = 4096  # one bucket's bound: a lookup costs one (entries x 256) product over it
_INITIAL_ROWS = 16

Bucket = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    cache_key: str
    similarity: float


@dataclass(frozen=True, slots=True)
class SemanticStats:
    entries: int
    buckets: int
    lookups: int
    matches: int
    below_threshold: int  # lookups whose best candidate scored under the threshold (or had none)
    guard_rejections: int  # lookups with candidates above the threshold, every one refused by the guard
    evictions: int


def bucket_of(request: Request, *, shared_namespace: bool) -> Bucket:
    """Everything of the exact key but the text: requests in different buckets never match."""
    return (scope_of(request, shared_namespace=shared_namespace), request.task_type,
            tuple(sorted(set(request.providers))) if request.providers is not None else None,
            request.max_tokens, request.temperature + 0.0, request.seed,
            tuple(role for role, _ in request.messages))


def semantic_text(request: Request, templates: Templates) -> str:
    """The prompt and the messages' contents, as the exact key sees them, one per line."""
    parts = [request.prompt or ""] + [content for _, content in request.messages]
    return "\n".join(templates.apply(normalise(part)) for part in parts if part)


async def open_index(*, threshold: float, max_entries: int, shared_namespace: bool,
                     templates: Templates) -> SemanticIndex:
    """The index a worker uses, its model read in a thread: hashing and parsing 18 MB takes 0.2 to 0.4 s.

    Raises :class:`~llmrouter.cache.embedding.ModelUnavailable` (say so and stop: the operator asked for the
    semantic cache) when the ``semantic`` extra is not installed or its files are not the measured ones.
    """
    embedder = await asyncio.to_thread(StaticEmbedder.wordllama)
    return SemanticIndex(embedder, threshold=threshold, max_entries=max_entries, shared_namespace=shared_namespace,
                         templates=templates)


class _Rows:
    """One bucket: a growing matrix of unit vectors with their keys and anchors.

    ``row_of`` is also the bucket's recency order (least recent first). A
    removed row is filled with the last one, so ``matrix[:len(self)]`` is
    always the live part.
    """

    def __init__(self, dim: int) -> None:
        self.matrix = np.empty((_INITIAL_ROWS, dim), dtype=np.float32)
        self.keys: list[str] = []
        self.anchors: list[Anchors] = []
        self.row_of: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self.keys)

    def append(self, key: str, vector: np.ndarray, anchors: Anchors) -> None:
        row = len(self.keys)
        if row == len(self.matrix):
            self.matrix = np.concatenate([self.matrix, np.empty_like(self.matrix)])
        self.matrix[row] = vector
        self.keys.append(key)
        self.anchors.append(anchors)
        self.row_of[key] = row

    def remove(self, key: str) -> None:
        row = self.row_of.pop(key)
        last = len(self.keys) - 1
        if row != last:
            self.matrix[row] = self.matrix[last]
            self.keys[row] = self.keys[last]
            self.anchors[row] = self.anchors[last]
            self.row_of[self.keys[row]] = row
        self.keys.pop()
        self.anchors.pop()

    def least_recent(self) -> str:
        return next(iter(self.row_of))

    def scores(self, vector: np.ndarray) -> np.ndarray:
        # einsum, not `@`: numpy hands `@` to OpenBLAS, whose threaded matrix-vector product took 16 ms
        # instead of 0.1 ms for 4,096 rows on a busy 2-core machine; einsum's own loop takes 0.25 ms, always.
        return np.einsum("ij,j->i", self.matrix[:len(self.keys)], vector)


class SemanticIndex:
    def __init__(self, embedder: Embedder, *, threshold: float, max_entries: int,
                 max_bucket_entries: int = MAX_BUCKET_ENTRIES, shared_namespace: bool = False,
                 templates: Templates | None = None, rules: tuple[str, ...] = RULES) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"the semantic threshold is a cosine similarity in (0, 1], not {threshold}")
        if max_entries < 1 or max_bucket_entries < 1:
            raise ValueError(f"the semantic index needs room for at least one entry, not "
                             f"max_entries={max_entries}, max_bucket_entries={max_bucket_entries}")
        unknown = set(rules) - set(RULES)
        if unknown:
            raise ValueError(f"unknown guard rules {sorted(unknown)}; known: {', '.join(RULES)}")
        self.embedder = embedder
        self.threshold = threshold
        self.max_entries = max_entries
        self.max_bucket_entries = max_bucket_entries
        self._shared = shared_namespace
        self._templates = templates if templates is not None else Templates()
        self._rules = rules
        self._buckets: dict[Bucket, _Rows] = {}
        self._recency: OrderedDict[str, Bucket] = OrderedDict()  # cache key -> its bucket; least recent first
        self._lookups = self._matches = self._below = self._rejected = self._evictions = 0

    def __len__(self) -> int:
        return len(self._recency)

    def add(self, request: Request, cache_key: str) -> None:
        """Remember ``request``'s text under ``cache_key``, evicting the least recent entry if full.

        A key already here is only marked recent (same key, same text: nothing
        to embed), so calling this on every exact hit costs a dictionary lookup.
        """
        bucket = self._recency.get(cache_key)
        if bucket is not None:
            self._touch(cache_key, bucket)
            return
        text = semantic_text(request, self._templates)
        if not text:
            return
        bucket = bucket_of(request, shared_namespace=self._shared)
        rows = self._buckets.get(bucket)
        if rows is not None and len(rows) >= self.max_bucket_entries:
            self._evict(rows.least_recent())
        elif len(self._recency) >= self.max_entries:
            self._evict(next(iter(self._recency)))
        rows = self._buckets.get(bucket)  # an eviction may have emptied and dropped it
        if rows is None:
            rows = self._buckets[bucket] = _Rows(self.embedder.dim)
        rows.append(cache_key, self.embedder.embed([text])[0], anchors_of(text))
        self._recency[cache_key] = bucket

    def nearest(self, request: Request) -> SemanticMatch | None:
        """The exact key of the most similar earlier request that passes threshold and guard, else None."""
        self._lookups += 1
        text = semantic_text(request, self._templates)
        rows = self._buckets.get(bucket_of(request, shared_namespace=self._shared))
        if not text or rows is None:
            self._below += 1
            return None
        scores = rows.scores(self.embedder.embed([text])[0])
        candidates = np.flatnonzero(scores >= self.threshold)
        if len(candidates) == 0:
            self._below += 1
            return None
        anchors = anchors_of(text)
        for row in candidates[np.argsort(-scores[candidates], kind="stable")]:
            if mismatch(anchors, rows.anchors[row], self._rules) is None:
                key = rows.keys[row]
                self._touch(key, self._recency[key])
                self._matches += 1
                return SemanticMatch(key, float(scores[row]))
        self._rejected += 1
        return None

    def discard(self, cache_key: str) -> bool:
        """Forget ``cache_key`` (its entry expired or was cleared); True if it was here."""
        bucket = self._recency.pop(cache_key, None)
        if bucket is None:
            return False
        rows = self._buckets[bucket]
        rows.remove(cache_key)
        if not rows:
            del self._buckets[bucket]
        return True

    def clear(self, prefix: str | None = None) -> int:
        """Forget every key (``prefix=None``) or those starting with ``prefix`` (a clear event); how many went."""
        doomed = list(self._recency) if prefix is None else [key for key in self._recency if key.startswith(prefix)]
        for key in doomed:
            self.discard(key)
        return len(doomed)

    def stats(self) -> SemanticStats:
        return SemanticStats(entries=len(self._recency), buckets=len(self._buckets), lookups=self._lookups,
                             matches=self._matches, below_threshold=self._below, guard_rejections=self._rejected,
                             evictions=self._evictions)

    def _touch(self, key: str, bucket: Bucket) -> None:
        self._recency.move_to_end(key)
        self._buckets[bucket].row_of.move_to_end(key)

    def _evict(self, key: str) -> None:
        self.discard(key)
        self._evictions += 1
