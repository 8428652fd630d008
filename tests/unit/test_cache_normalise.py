"""Normalisation and operator templates applied before a cache key is hashed."""

from __future__ import annotations

import pytest

from llmrouter.cache.normalise import Templates, normalise


def test_composition_line_endings_and_surrounding_whitespace_vanish_inner_whitespace_stays():
    """NFC, CRLF to LF, stripped at both ends (NBSP included); runs, tabs and indentation inside are kept."""
    assert normalise("  Cafe\u0301 \t au\r\n\n lait\u00a0 ") == "Caf\u00e9 \t au\n\n lait"
    assert normalise("Caf\u00e9 au lait") == "Caf\u00e9 au lait"


def test_case_is_kept_because_it_can_change_the_answer():
    """'US' and 'us' stay different."""
    assert normalise("What is US?") != normalise("What is us?")


def test_there_are_no_templates_by_default():
    """An empty Templates changes nothing but the escaping of '<' and '\\'."""
    assert Templates().apply("order 12345 on 2024-05-01") == "order 12345 on 2024-05-01"
    assert len(Templates()) == 0


def test_a_template_replaces_each_match_by_its_name():
    """Two prompts that differ only in the volatile part become the same text."""
    templates = Templates([("now", r"Current time: \S+")])
    first = templates.apply(normalise("Current time: 2024-05-01T10:00Z\nSummarise the report."))
    second = templates.apply(normalise("Current time: 2024-05-02T11:30Z\r\nSummarise the report."))
    assert first == second == "<now>\nSummarise the report."


def test_templates_apply_in_order_and_never_inside_a_placeholder():
    """A later pattern that would match the name of an earlier placeholder leaves it alone."""
    templates = Templates([("date", r"\d{4}-\d{2}-\d{2}"), ("word", r"date")])
    assert templates.apply("on 2024-05-01 the date") == "on <date> the <word>"


def test_literal_placeholder_text_never_equals_a_stripped_part():
    """A prompt that really says '<date>' differs from one whose date was stripped."""
    templates = Templates([("date", r"\d{4}-\d{2}-\d{2}")])
    assert templates.apply("due <date>") != templates.apply("due 2024-05-01")
    assert templates.apply("a\\<date>") != templates.apply("a<date>")


@pytest.mark.parametrize("patterns, problem", [
    ([("d", "(")], "not a valid regular expression"),
    ([("d", r"\d*")], "matches the empty string"),
    ([("my-date", r"\d")], "must be an identifier"),
    ([("d", r"\d"), ("d", r"x")], "used twice"),
])
def test_a_bad_template_is_refused_with_its_name(patterns, problem):
    """Invalid regex, empty matches, odd names and repeated names are refused when compiled."""
    with pytest.raises(ValueError, match=problem):
        Templates(patterns)
