"""What two prompts must share before one's cached answer may serve the other (F035, the semantic cache).

An embedding says that two prompts are *about* the same thing, not that they
*ask* the same thing. On ``tests/data/paraphrase_pairs.jsonl`` the packaged
model puts "Convert 5 km to miles." and "Convert 50 km to miles." at cosine
0.997, "... arguments for remote work" and "... against remote work" at 0.98
and "Fahrenheit to Celsius" and "Celsius to Fahrenheit" at 1.0 (it averages
token vectors, so word order is invisible), while true paraphrases such as
"Translate 'good morning' to German." / "What is 'good morning' in German?"
sit at 0.62. No threshold separates those; a wrong cached answer is worse
than a miss. So the semantic cache retrieves by embedding and then verifies
by the words: a candidate is served only if :func:`mismatch` finds nothing.

Each prompt is reduced once to its :class:`Anchors`; two prompts agree when

* ``numbers``: they hold the same numbers: digit runs (``1,250.00`` is
  ``1250.00``) and number words and ordinals (``three``, ``second``; not
  ``one``, which is as often "a" as a count);
* ``names``: every capitalised word of one that does not start a sentence
  (``France``, ``Python``, ``II``) occurs, in any case, in the other;
* ``quotes``: they quote the same spans, so the data a request works on
  (``'I like coffee'`` against ``'I don't like coffee'``) is the same;
* ``negations``: they hold the same negation and polarity words (``not``,
  ``n't``, ``without``, ``against`` ...);
* ``content``: they hold the same content words: what is left after
  function words and the generic verbs of asking ("explain", "tell",
  "give", "list", "write" ...; not the verbs that name a task, such as
  "summarise", "translate" or "classify"), crudely stemmed. Any word one
  prompt has and the other lacks refuses the match, whether it is a
  substitution ("largest" for "smallest", "unsafe" for "safe", "haiku" for
  "limerick": as often an antonym as a synonym, and no word list here can
  tell which) or an addition ("a *sad* poem", "*iced* tea": a qualifier that
  changes the answer looks just like "which *city* is the capital");
* ``direction``: where both name what comes after ``from`` or after
  ``to``/``into``, it is the same word, so "Fahrenheit to Celsius" does not
  serve "Celsius to Fahrenheit" (the same words, so the same vector).

Question words other than "what" and "which" are content words too: "how
vaccines work" and "why vaccines work" ask different things (that pair got
through the first version of these rules, on the held-out pairs).

So the embedding finds the candidates and the words decide: in practice a
hit is a request reworded around the same content words. What still passes:
a swap of two words that the direction rule does not see ("the Pacific or
the Atlantic" are names and both sides hold both), and any difference in
meaning carried by word order alone. The benchmark (``bench/semantic_cache.py``)
measures what each rule costs in hits and saves in wrong answers.

Pure and stdlib only: no numpy, no model.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = ["Anchors", "anchors_of", "mismatch", "RULES"]

RULES = ("numbers", "names", "quotes", "negations", "content", "direction")

_NUMBER_WORDS = frozenset("""
    zero two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen
    eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million billion
    trillion half quarter twice thrice dozen first second third fourth fifth sixth seventh eighth ninth tenth
    last single double triple
""".split())
_NEGATIONS = frozenset("""
    not no never none nothing nobody nowhere neither nor without against except unless cannot can't won't
    don't doesn't didn't isn't aren't wasn't weren't shouldn't wouldn't couldn't haven't hasn't hadn't
""".split())
_FUNCTION_WORDS = frozenset("""
    a an the this that these those it its it's is are was were be been being am do does did doing done have has
    had having i me my mine myself we us our you your yours he him his she her they them their there here
    what what's which of in on at by for with from to into onto about
    as than then and or but if so such can could would should will shall may might must let some any all each
    every also just very really usually typically typical please kindly one ones thing things s many much
    between because while through during both too now again further
""".split())
_ASKING_WORDS = frozenset("""
    explain explanation describe description define definition tell give show list name write wrote written
    compose draft create make generate produce provide share say help need want know answer question following
""".split())
_DIRECTIONS = {"from": "from", "to": "to", "into": "to"}
_SAME_WORD = {"whom": "who", "how's": "how", "who's": "who", "where's": "where", "when's": "when"}
_SUFFIXES = ("ational", "ations", "ation", "ising", "izing", "ised", "ized", "ises", "izes", "ise", "ize", "ments", "ment",
             "ences", "ence", "ances", "ance", "ings", "ing", "edly", "ed", "ies", "es", "ly", "s", "y")

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_QUOTED = re.compile(r"""(?:^|(?<=[\s(\[{:]))(['"‘“«])(.+?)['"’”»](?=$|[\s.,;:!?)\]}])""")
_ENDS_SENTENCE = frozenset(".!?:;\"'‘“«([>")  # ">": the end of a template placeholder such as <now>


@dataclass(frozen=True, slots=True)
class Anchors:
    """What of a prompt must match (see the module docstring); all lower case but ``quotes``."""

    numbers: frozenset[str]
    names: frozenset[str]
    quotes: frozenset[str]
    negations: frozenset[str]
    content: frozenset[str]
    directions: frozenset[tuple[str, str]]  # ("to", "celsius"): the word after from / to / into
    words: frozenset[str]  # every word, lower case: where the other prompt's names are looked for


def anchors_of(text: str) -> Anchors:
    """The anchors of ``text`` (compute once per prompt and keep them beside its vector)."""
    text = " ".join(unicodedata.normalize("NFKC", text).replace("’", "'").split())
    spans = [(match.group(), match.start()) for match in _WORD.finditer(text)]
    words = [_SAME_WORD.get(word.lower(), word.lower()) for word, _ in spans]
    numbers = {digits.replace(",", "") for digits in _NUMBER.findall(text)}
    numbers.update(word for word in words if word in _NUMBER_WORDS)
    names = {word.lower() for word, start in spans
             if word[0].isupper() and word != "I" and not _starts_sentence(text, start)}
    quotes = {" ".join(quoted.split()) for _, quoted in _QUOTED.findall(text)}
    negations = {word for word in words if word in _NEGATIONS or word.endswith("n't")}
    content = {_stem(word) for word in words
               if word not in _FUNCTION_WORDS and word not in _ASKING_WORDS and word not in _NUMBER_WORDS
               and word not in _NEGATIONS and not word.isdigit()}
    directions = {(_DIRECTIONS[word], after) for word, after in zip(words, words[1:])
                  if word in _DIRECTIONS and after not in _FUNCTION_WORDS}
    return Anchors(numbers=frozenset(numbers), names=frozenset(names), quotes=frozenset(quotes),
                   negations=frozenset(negations), content=frozenset(content), directions=frozenset(directions),
                   words=frozenset(words))


def mismatch(a: Anchors, b: Anchors, rules: tuple[str, ...] = RULES) -> str | None:
    """The first of ``rules`` on which ``a`` and ``b`` disagree, or None if they agree on all of them."""
    for rule in rules:
        if rule == "numbers" and a.numbers != b.numbers:
            return rule
        if rule == "names" and not (a.names <= b.words and b.names <= a.words):
            return rule
        if rule == "quotes" and a.quotes != b.quotes:
            return rule
        if rule == "negations" and a.negations != b.negations:
            return rule
        if rule == "content" and a.content != b.content:
            return rule
        if rule == "direction" and _crossed(a.directions, b.directions):
            return rule
    return None


def _starts_sentence(text: str, start: int) -> bool:
    """Whether the word at ``start`` opens the text, a sentence, a clause after a colon, a quotation or follows
    a template placeholder."""
    before = start - 1
    if before >= 0 and text[before] == " ":  # whitespace runs are single spaces by now
        before -= 1
    return before < 0 or text[before] in _ENDS_SENTENCE


def _stem(word: str) -> str:
    """A crude suffix stripper: "reverses"/"reverse", "difference"/"differ", "summary"/"summarise" meet."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[:-len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _crossed(a: frozenset[tuple[str, str]], b: frozenset[tuple[str, str]]) -> bool:
    """Both say where something goes from (or to), and not to the same word."""
    return any({word for kind, word in a if kind == side} and {word for kind, word in b if kind == side}
               and not {word for kind, word in a if kind == side} & {word for kind, word in b if kind == side}
               for side in ("from", "to"))
