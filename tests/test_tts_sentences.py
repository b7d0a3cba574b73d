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


# Replies as an LLM voice assistant writes them (English: the language the voices speak). Each
# pair is one reply and the segments TTS must receive; a cut inside "Dr. Smith" splits a name
# across two syntheses, a missed cut after "no." makes the first audio wait for the next sentence.
REAL_REPLIES = [
    ("The answer is no. Try again later.", ["The answer is no.", "Try again later."]),
    ("I left at 9 am. Then I had lunch.", ["I left at 9 am.", "Then I had lunch."]),
    ("It starts at 8 pm. See you there.", ["It starts at 8 pm.", "See you there."]),
    ("The meeting is on Sun. Bring snacks.", ["The meeting is on Sun.", "Bring snacks."]),
    ("Today is Sat. Tomorrow is Sunday.", ["Today is Sat.", "Tomorrow is Sunday."]),
    ("It is Wed. The report is due Friday.", ["It is Wed.", "The report is due Friday."]),
    ("Her birthday is in Mar. She turns ten.", ["Her birthday is in Mar.", "She turns ten."]),
    ("The shop closes in Dec. It reopens in spring.", ["The shop closes in Dec.", "It reopens in spring."]),
    ("The time zone is EST. That is five hours behind.", ["The time zone is EST.", "That is five hours behind."]),
    ("Call Acme and Co. They can help.", ["Call Acme and Co.", "They can help."]),
    ("Ask Al. He knows the way.", ["Ask Al.", "He knows the way."]),
    ("Dr. Smith will see you now. Please come in.", ["Dr. Smith will see you now.", "Please come in."]),
    ("Mr. and Mrs. Jones are here. Shall I let them in?", ["Mr. and Mrs. Jones are here.", "Shall I let them in?"]),
    ("Bring fruit, e.g. apples or pears. Thanks!", ["Bring fruit, e.g. apples or pears.", "Thanks!"]),
    ("Use a short name, i.e. one word. Done.", ["Use a short name, i.e. one word.", "Done."]),
    ("The U.S. dollar rose today. Stocks fell.", ["The U.S. dollar rose today.", "Stocks fell."]),
    ("The rate is 3.5 percent. That is low.", ["The rate is 3.5 percent.", "That is low."]),
    ("Pi is about 3.14159. Neat, right?", ["Pi is about 3.14159.", "Neat, right?"]),
    ("Come by at 5 p.m. tomorrow. I will wait.", ["Come by at 5 p.m. tomorrow.", "I will wait."]),
    ("It ends at 5 p.m. Tomorrow is free.", ["It ends at 5 p.m.", "Tomorrow is free."]),
    ("Smith et al. found the same. It holds.", ["Smith et al. found the same.", "It holds."]),
    ("Hmm... let me think. Yes, it works.", ["Hmm...", "let me think.", "Yes, it works."]),
    ("Room No. 5 is free. Book it now.", ["Room No. 5 is free.", "Book it now."]),
]


@pytest.mark.parametrize(("text", "segments"), REAL_REPLIES)
def test_real_replies_are_cut_at_sentence_ends_only(text: str, segments: list[str]) -> None:
    options = SentenceOptions(first_clause_min_words=0)  # sentence boundaries alone
    assert split_all(list(text), options) == segments  # one character per token
    words = text.split(" ")
    assert split_all([f"{w} " for w in words], options) == segments  # trailing spaces
    assert split_all([w if i == 0 else f" {w}" for i, w in enumerate(words)], options) == segments  # LLM-style


def test_an_ordinary_word_before_a_period_releases_the_sentence_with_the_next_word() -> None:
    splitter = SentenceSplitter(SentenceOptions(first_clause_min_words=0))
    assert splitter.push("The answer is no.") == []
    assert splitter.push(" ") == []  # "no." could be "No. 5": the next word's first letter decides
    assert splitter.push("Try") == ["The answer is no."]
    assert splitter.flush() == "Try"


def test_a_question_mark_is_released_by_the_space_alone() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Ready?") == []
    assert splitter.push(" ") == ["Ready?"]


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
