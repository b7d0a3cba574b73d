"""Sentence streaming: clauses are cut as soon as punctuation settles them, and only then."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from voxframe.processors.tts import SentenceOptions, SentenceSplitter


def split_all(tokens: list[str], options: SentenceOptions | None = None) -> list[str]:
    splitter = SentenceSplitter(options)
    out = [segment for token in tokens for segment in splitter.push(token)]
    rest = splitter.flush()
    return [*out, rest] if rest else out


def test_a_sentence_is_released_by_the_space_that_settles_it() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Hello there.") == []  # "." could still be "...", a decimal, "e.g."
    assert splitter.push(" How") == ["Hello there."]
    assert splitter.flush() == "How"


def test_the_first_clause_may_end_at_a_comma_later_ones_only_at_sentence_ends() -> None:
    text = "Sure, I can check that for you, give me one second, please. Then, we go."
    assert split_all(list(text)) == [
        "Sure, I can check that for you,",
        "give me one second, please.",
        "Then, we go.",
    ]


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("It costs 3.50 dollars. Bye", ["It costs 3.50 dollars.", "Bye"]),
        ("Dr. Smith, e.g. today. Ok", ["Dr. Smith, e.g. today.", "Ok"]),
        ("J. K. Rowling wrote it. Yes", ["J. K. Rowling wrote it.", "Yes"]),
        ('He said "stop." Then left', ['He said "stop."', "Then left"]),
        ("Wait... what? Really!", ["Wait...", "what?", "Really!"]),
        ("The U.S. team won 1,000 points. Great", ["The U.S. team won 1,000 points.", "Great"]),
        ("Items:\n- one\n- two", ["Items:", "- one", "- two"]),
    ],
)
def test_abbreviations_decimals_initials_and_quotes(text: str, segments: list[str]) -> None:
    assert split_all(list(text)) == segments


def test_clause_cuts_can_be_turned_off() -> None:
    assert split_all(["One, two, three, four. Five"], SentenceOptions(first_clause_min_words=0)) == [
        "One, two, three, four.",
        "Five",
    ]


def test_reset_forgets_pending_text() -> None:
    splitter = SentenceSplitter()
    splitter.push("half a sent")
    splitter.reset()
    assert splitter.flush() is None


_pieces = st.sampled_from([*"ab .,!?3\n'", "Dr", "e.g", " J"])
_text = st.lists(_pieces, max_size=40).map("".join)


@given(text=_text, cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=12))
def test_segmentation_does_not_depend_on_how_tokens_are_chunked(text: str, cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    tokens = [text[a:b] for a, b in itertools.pairwise(bounds)]
    segments = split_all(tokens)
    assert segments == split_all([text])
    assert " ".join(segments).split() == text.split()  # nothing lost, nothing repeated
