"""Sentence embeddings for the semantic cache, from a model whose weights ship inside a Python package.

The semantic cache needs a model that installs from PyPI whole: no download
at run time (nothing but the package registries is reachable from our
machines, CI included), and no torch. :class:`StaticEmbedder` is such a
model: a table of token vectors, one row per token of a tokenizer; a text's
vector is the mean of its tokens' rows, scaled to length 1. The weights are
WordLlama's ``l2_supercat`` at 256 dimensions (MIT; the ``wordllama``
package, the ``semantic`` extra), 32,000 tokens in float16: 16 MB on disk and
in memory, loaded in well under a second, about 0.05 ms per short prompt on
one core (``bench/semantic_cache.py`` measures it).

The files are read straight from the installed package, without importing
it: ``wordllama``'s own loader looks for its tokenizer in a folder that its
wheel does not have (and so tries the network), and importing it calls
``logging.basicConfig(level=INFO)``, which would reconfigure the worker's
logging. Both files are checked against the SHA-256 recorded here, so the
model that runs is the model whose hit and false-hit rates were measured; a
``wordllama`` release that changed them is refused at load with a message
saying so, rather than silently moving every similarity.

:class:`Embedder` is the small protocol the index needs, so another model
can stand in (in the benchmark, say).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from llmrouter.errors import ModelUnavailable

__all__ = ["Embedder", "StaticEmbedder", "ModelUnavailable", "WORDLLAMA_FILES"]

WORDLLAMA_FILES = {  # path inside the installed package -> SHA-256 (wordllama 0.4.0.post1)
    "weights/l2_supercat_256.safetensors": "64b47a2dc493cb8e85944076601189739852d7b64e0e1eedcb1937a251cd9fd5",
    "tokenizers/l2_supercat_tokenizer_config.json": "93248f2a9ec36c7b35f700a033d5f36228aae48db61aee31007fa49062cdeb68",
}
_TENSOR = "embedding.weight"
_CHUNK_TOKENS = 4096  # rows gathered at a time: a long prompt never needs a (tokens x dim) float32 copy at once


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One float32 row per text, each of length 1 (or all zeros for a text with no tokens)."""
        ...


class StaticEmbedder:
    """Mean of token vectors, normalised; see the module docstring."""

    def __init__(self, name: str, vectors: np.ndarray, tokenizer: object) -> None:
        if vectors.ndim != 2:
            raise ValueError(f"token vectors must be a (tokens, dim) matrix, not shape {vectors.shape}")
        self.name = name
        self.dim = int(vectors.shape[1])
        self._vectors = vectors
        self._tokenizer = tokenizer

    @classmethod
    def wordllama(cls) -> StaticEmbedder:
        """WordLlama ``l2_supercat`` 256-d from the installed package; :class:`ModelUnavailable` if it cannot be."""
        from safetensors.numpy import load_file  # wordllama's own dependencies, so only needed with the extra
        from tokenizers import Tokenizer

        spec = importlib.util.find_spec("wordllama")
        if spec is None or not spec.submodule_search_locations:
            raise ModelUnavailable("the semantic cache needs the wordllama package: "
                                   "pip install 'llm-router[semantic]'")
        root = Path(next(iter(spec.submodule_search_locations)))
        weights, tokenizer = (_checked(root / relative, digest) for relative, digest in WORDLLAMA_FILES.items())
        vectors = load_file(str(weights))[_TENSOR]
        return cls("wordllama-l2_supercat-256", vectors, Tokenizer.from_file(str(tokenizer)))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, encoding in enumerate(self._tokenizer.encode_batch(list(texts), add_special_tokens=False)):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            ids = ids[ids < len(self._vectors)]
            for start in range(0, len(ids), _CHUNK_TOKENS):
                out[row] += self._vectors[ids[start:start + _CHUNK_TOKENS]].sum(axis=0, dtype=np.float32)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)  # the mean's length is divided away with the sum's
        return out


def _checked(path: Path, sha256: str) -> Path:
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ModelUnavailable(f"the semantic cache's model file {path} cannot be read ({exc}); "
                               "reinstall the semantic extra (wordllama 0.4)") from exc
    if digest != sha256:
        raise ModelUnavailable(f"{path} has SHA-256 {digest}, not the {sha256} whose hit and false-hit rates "
                               "were measured; pin wordllama to 0.4.0.post1 or measure the new weights "
                               "(bench/semantic_cache.py) and record their digest in llmrouter/cache/embedding.py")
    return path
