"""Turning a growing list of token ids into text deltas for streaming."""

from __future__ import annotations

from tokenizers import Tokenizer

__all__ = ["IncrementalDecoder"]

_REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Emit the new text each token adds, never half a character.

    Each step decodes the whole completion so far and emits the suffix that
    was not emitted yet, so multi-token characters and BPE merges come out
    right. A trailing U+FFFD (an incomplete UTF-8 sequence) is held back
    until a later token completes it or :meth:`flush` is called. Joined, the
    deltas equal ``tokenizer.decode(all_ids)``.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._emitted = ""

    def add(self, token_id: int) -> str:
        """Add one token; return the text it makes available (maybe "")."""
        self._ids.append(token_id)
        text = self._tokenizer.decode(self._ids, skip_special_tokens=True)
        if text.endswith(_REPLACEMENT):
            return ""
        return self._take(text)

    def flush(self) -> str:
        """Return whatever is still held back (at the end of generation)."""
        return self._take(self._tokenizer.decode(self._ids, skip_special_tokens=True))

    def _take(self, text: str) -> str:
        # Byte-level and SentencePiece decoders are prefix-stable, so the text
        # emitted so far is a prefix of ``text``; only the rest is new.
        delta = text[len(self._emitted) :]
        self._emitted = text
        return delta
