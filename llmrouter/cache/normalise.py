"""Text normalisation before a cache key is hashed (F035).

Two steps, both pure:

* :func:`normalise` removes differences that cannot change an answer: Unicode
  composition (NFC, so ``"é"`` typed as one code point or as ``e`` plus a
  combining accent is the same text), line endings (``\\r\\n`` and ``\\r``
  become ``\\n``) and leading and trailing whitespace. Whitespace inside the
  text is kept as it is: indentation is meaning in code and YAML, so two
  prompts that differ only in it get different keys. Case is kept too:
  ``"US"`` and ``"us"`` may get different answers.

* :class:`Templates` replaces what an operator has declared volatile, for
  example a ``Current time: 2024-05-01T10:00Z`` line that a client puts in
  every system prompt, by a placeholder ``<name>`` so the rest of the prompt
  can still hit the cache. There are **no templates by default**: stripping a
  part that does change the answer (an order id the model is asked about, a
  date in "what day of the week is ...") would serve one user's answer to
  another question, and a wrong cached answer is worse than a miss. Add a
  pattern only for text the model's answer does not depend on.

Templates are applied after :func:`normalise`, so a pattern is written against
text with ``\\n`` line endings and no surrounding whitespace. Literal ``<`` and
``\\`` in the text are always escaped (``\\<``, ``\\\\``), templates or not, so
a prompt that really contains ``<date>`` is never the same as one whose date
was stripped, even between two workers configured differently during a
rolling change. Patterns are compiled once, when the settings are loaded; an
invalid one is refused there with its name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = ["normalise", "Templates"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def normalise(text: str) -> str:
    """NFC, line endings ``\\n``, stripped at both ends; whitespace inside and case kept."""
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()


class Templates:
    """An ordered list of ``(name, regex)``; each match becomes ``<name>``.

    Raises ``ValueError`` naming the template when a name is not an
    identifier, a name repeats, a pattern does not compile, or a pattern
    matches the empty string (it would put a placeholder between every two
    characters).
    """

    def __init__(self, patterns: Iterable[tuple[str, str]] = ()) -> None:
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for name, pattern in patterns:
            if not _NAME.fullmatch(name):
                raise ValueError(f"template name {name!r} must be an identifier (letters, digits, _)")
            if any(name == seen for seen, _ in compiled):
                raise ValueError(f"template name {name!r} is used twice")
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"template {name!r}: {pattern!r} is not a valid regular expression: {exc}") from None
            if regex.fullmatch(""):
                raise ValueError(f"template {name!r}: {pattern!r} matches the empty string")
            compiled.append((name, regex))
        self._compiled = tuple(compiled)

    def __len__(self) -> int:
        return len(self._compiled)

    def __repr__(self) -> str:
        return f"Templates({[(name, regex.pattern) for name, regex in self._compiled]!r})"

    def apply(self, text: str) -> str:
        """``text`` with every match replaced by ``<name>`` (in order; a match never spans a placeholder)."""
        if not self._compiled:
            return _escape(text)
        pieces: list[str | tuple[str]] = [text]  # str: literal text; (name,): a placeholder
        for name, regex in self._compiled:
            pieces = [part for piece in pieces for part in _split(piece, name, regex)]
        return "".join(f"<{piece[0]}>" if isinstance(piece, tuple) else _escape(piece) for piece in pieces)


def _split(piece: str | tuple[str], name: str, regex: re.Pattern[str]) -> list[str | tuple[str]]:
    if isinstance(piece, tuple):
        return [piece]
    out: list[str | tuple[str]] = []
    start = 0
    for match in regex.finditer(piece):
        if match.start() == match.end():
            continue  # an empty match inside a longer text replaces nothing
        out += [piece[start:match.start()], (name,)]
        start = match.end()
    out.append(piece[start:])
    return out


def _escape(literal: str) -> str:
    return literal.replace("\\", "\\\\").replace("<", "\\<")
