"""Streaming text segmentation for TTS: cut LLM tokens into clauses as soon as they are settled.

Latency comes first: the first clause of a reply goes to synthesis the moment its punctuation
is *settled*, i.e. the text after the mark shows it really ends the clause. "?" and "!" (and
clause marks) are settled by the space after them, and so is an ellipsis ("Wait... what?" pauses
there when spoken, so it is cut). A single period is ambiguous ("3.5", "Dr. Smith",
"e.g. apples", "5 p.m. tomorrow", but "The answer is no. Try"): pysbd (English rules: the
voices speak English) decides whether it ends a sentence. The space settles it when pysbd would
cut before any next word ("Hello there. "); otherwise the first visible character after the
space does. LLM tokens carry their leading space (" Try"), so that character usually arrives
with the space and the wait costs nothing. pysbd runs only at a period followed by a space, on
at most `_CONTEXT_CHARS` of text (about 0.5 ms a call), never on other tokens.

The first segment of a reply may end at a clause mark (comma, semicolon, colon, dash) once it
has a few words, so the bot starts talking early; later segments end at sentence marks only,
which keeps prosody natural and requests few.
"""

from __future__ import annotations

from dataclasses import dataclass

import pysbd

_SENTENCE_MARKS = frozenset(".!?\u2026\u3002\uff01\uff1f")  # … 。 fullwidth ! ?
_CLAUSE_MARKS = frozenset(",;:\u2014\u3001\uff0c\uff1b\uff1a")  # — 、 fullwidth , ; :
#: Closing quotes and brackets may follow a mark before the space that settles it.
_CLOSERS = frozenset("\"')]}\u00bb\u201d\u2019")  # » and closing curly quotes
#: Text before a period that pysbd sees: enough for "Smith et al." or "U.S.", and a bound on
#: the cost of a call however long the sentence grows.
_CONTEXT_CHARS = 80
_SEGMENTER = pysbd.Segmenter(language="en", clean=False)
#: Stand-ins for the first character of a next word not yet streamed: capital, lower case, digit.
_NEXT_WORD_PROBES = ("A", "a", "1")


@dataclass(slots=True)
class SentenceOptions:
    #: The first segment of a reply may end at a clause mark once it has this many words
    #: (0 disables clause cuts: sentences only).
    first_clause_min_words: int = 3
    #: A segment is cut at a newline (lists, paragraphs) once it holds any text.
    split_on_newline: bool = True


class SentenceSplitter:
    """Accumulates streamed text; `push` returns the segments that became settled.

    Segments keep their trailing whitespace-free text; joining them with spaces gives back the
    words in order. Call `flush` at the end of a reply for whatever is left.
    """

    def __init__(self, options: SentenceOptions | None = None) -> None:
        self.options = options or SentenceOptions()
        self._buf = ""
        self._scan_from = 0
        self._segments_out = 0

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while (cut := self._find_cut()) is not None:
            segment, self._buf = self._buf[:cut].strip(), self._buf[cut:]
            self._scan_from = 0
            if segment:
                out.append(segment)
                self._segments_out += 1
        return out

    def flush(self) -> str | None:
        """The unfinished rest (end of reply); None if there is none."""
        rest, self._buf, self._scan_from = self._buf.strip(), "", 0
        if rest:
            self._segments_out += 1
        return rest or None

    def reset(self) -> None:
        """Forget everything (interruption, next reply)."""
        self._buf, self._scan_from, self._segments_out = "", 0, 0

    @property
    def pending(self) -> str:
        return self._buf

    def _find_cut(self) -> int | None:
        """Index just after a settled boundary in the buffer, or None if there is none yet."""
        buf = self._buf
        i = self._scan_from
        while i < len(buf):
            ch = buf[i]
            if ch == "\n" and self.options.split_on_newline and buf[:i].strip():
                return i + 1
            if ch in _SENTENCE_MARKS or (ch in _CLAUSE_MARKS and self._clause_allowed(i)):
                end = i + 1
                while end < len(buf) and (buf[end] in _CLOSERS or buf[end] in _SENTENCE_MARKS):
                    end += 1
                if end >= len(buf):
                    # Not settled yet: the next token decides. Rescan this mark then.
                    self._scan_from = i
                    return None
                if buf[end].isspace():
                    if buf[i] != "." or ".." in buf[i:end]:
                        return end  # "?", "!", a clause mark, or an ellipsis (a spoken pause)
                    settled = _ends_sentence(buf, i, end)
                    if settled is None:
                        self._scan_from = i  # the next visible character decides
                        return None
                    if settled:
                        return end
                i = end
                continue
            i += 1
        self._scan_from = len(buf)
        return None

    def _clause_allowed(self, i: int) -> bool:
        min_words = self.options.first_clause_min_words
        return self._segments_out == 0 and min_words > 0 and len(self._buf[:i].split()) >= min_words


def _ends_sentence(buf: str, mark: int, end: int) -> bool | None:
    """Whether the period at `mark` (its closers end at `end`) ends a sentence; None: not known yet.

    pysbd needs the first character of the next word (its case, or a digit, tells "5 p.m.
    tomorrow" from "5 p.m. Tomorrow"); the decision reads only text up to that character, so
    it does not depend on how the tokens were chunked.
    """
    after = end
    while after < len(buf) and buf[after].isspace():
        after += 1
    start = max(0, mark - _CONTEXT_CHARS)
    if after < len(buf):
        return _pysbd_cuts(buf[start : after + 1], end - start)
    # The next word has not arrived: cut now if every kind of next word would end the sentence
    # ("Hello there. " ends either way), else wait for it ("no. " could be "No. 5").
    if all(_pysbd_cuts(buf[start:after] + probe, end - start) for probe in _NEXT_WORD_PROBES):
        return True
    return None


def _pysbd_cuts(text: str, boundary: int) -> bool:
    """Whether pysbd ends a sentence of `text` at index `boundary`."""
    position = 0
    for sentence in _SEGMENTER.segment(text):
        position += len(sentence)
        if len(text[:position].rstrip()) == boundary:
            return True
    return False


__all__ = ["SentenceOptions", "SentenceSplitter"]
