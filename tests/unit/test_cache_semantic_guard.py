"""The semantic cache's guard: which differences between two prompts refuse a match, rule by rule (pure, no model)."""

from __future__ import annotations

import pytest

from llmrouter.cache.semantic_guard import RULES, anchors_of, mismatch


def refused_by(a: str, b: str) -> str | None:
    return mismatch(anchors_of(a), anchors_of(b))


@pytest.mark.parametrize("a, b, rule", [
    ("Convert 5 km to miles.", "Convert 50 km to miles.", "numbers"),
    ("Total $1,250.00 due.", "Total $1,250.01 due.", "numbers"),
    ("Give me three tips.", "Give me ten tips.", "numbers"),
    ("Who was the first president?", "Who was the second president?", "numbers"),
    ("What is the capital of France?", "What is the capital of Germany?", "names"),
    ("What year did World War II end?", "What year did World War I end?", "names"),
    ("Translate 'I like coffee' into French.", "Translate 'I love coffee' into French.", "quotes"),
    ("Summarise the arguments for remote work.", "Summarise the arguments against remote work.", "negations"),
    ("List the countries that use the euro.", "List the countries that do not use the euro.", "negations"),
    ("What is the largest planet?", "What is the smallest planet?", "content"),
    ("Write a poem about the sea.", "Write a sad poem about the sea.", "content"),
    ("Summarise this email: hi.", "Classify this email: hi.", "content"),
    ("Explain how vaccines work.", "Explain why vaccines work.", "content"),
    ("Convert 100 degrees Fahrenheit to Celsius.", "Convert 100 degrees Celsius to Fahrenheit.", "direction"),
])
def test_a_difference_that_changes_the_answer_is_refused_by_its_rule(a, b, rule):
    """Each hard negative is caught, and by the rule meant for it; the verdict does not depend on the order."""
    assert refused_by(a, b) == rule
    assert refused_by(b, a) == rule


@pytest.mark.parametrize("a, b", [
    ("Explain what a hash table is.", "What is a hash table? Please explain."),
    ("Write a Python function that reverses a string.", "Write a function in Python to reverse a string."),
    ("Summarise this review: it broke.", "Give me a summary of this review: it broke."),
    ("what is the capital of australia", "What is the capital of Australia?"),
    ("Detect the language of this text: 'Je voudrais un café, s'il vous plaît.'",
     "Please detect the language of this text: 'Je voudrais un café, s'il vous plaît.'"),
    ("Who discovered penicillin?", "Penicillin was discovered by whom?"),
    ("Convert 100 USD to EUR.", "Please convert 100 USD into EUR."),
])
def test_a_rewording_around_the_same_content_passes(a, b):
    """Function words, generic verbs of asking, word order, inflection and case may differ."""
    assert refused_by(a, b) is None


def test_a_capitalised_word_that_opens_a_sentence_or_quote_is_not_a_name():
    """'What', 'Which' and a quotation's first word are not names; 'France' and 'II' are."""
    anchors = anchors_of("Which city is it? Tell me: 'Where is France?' World War II.")
    assert anchors.names == {"france", "ii", "war"}


def test_quotes_are_found_around_apostrophes():
    """An apostrophe inside a word ("What's", "s'il") neither opens nor closes a quotation."""
    anchors = anchors_of("What's the language of 'Je voudrais un café, s'il vous plaît.' here?")
    assert anchors.quotes == {"Je voudrais un café, s'il vous plaît."}


def test_rules_can_be_chosen_one_by_one():
    """The benchmark measures subsets; with no rules nothing is refused."""
    a, b = anchors_of("Convert 5 km to miles."), anchors_of("Convert 50 km to miles.")
    assert mismatch(a, b, ()) is None
    assert mismatch(a, b, ("names",)) is None
    assert mismatch(a, b, RULES) == "numbers"
