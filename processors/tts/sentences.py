"""Streaming text segmentation for TTS: cut LLM tokens into clauses as soon as they are settled.

Latency comes first: the first clause of a reply goes to synthesis the moment its punctuation
is *settled*, i.e. the next character shows the mark really ends the clause. "Hello." followed
by a space is settled; "3." followed by "5" is a decimal; "Dr." and "e.g." are abbreviations;
"J. K." are initials. The first segment of a reply may end at a clause mark (comma, semicolon,
colon, dash) once it has a few words, so the bot starts talking early; later segments end at
sentence marks only, which keeps prosody natural and requests few.
"""

from __future__ import annotations

from dataclasses import dataclass

_SENTENCE_MARKS = frozenset(".!?\u2026\u3002\uff01\uff1f")  # … 。 fullwidth ! ?
_CLAUSE_MARKS = frozenset(",;:\u2014\u3001\uff0c\uff1b\uff1a")  # — 、 fullwidth , ; :
#: Closing quotes and brackets may follow a mark before the space that settles it.
_CLOSERS = frozenset("\"')]}\u00bb\u201d\u2019")  # » and closing curly quotes
_OPENERS = "\"'([{\u00ab\u201c\u2018"
#: Lower-case words that end in a period without ending a sentence.
_ABBREVIATION_TEXT = """
mr mrs ms dr prof sr jr st vs etc e.g i.e eg ie inc ltd co corp no nos fig approx dept est
mt ft jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
a.m p.m am pm u.s u.k cf al viz
"""
ABBREVIATIONS = frozenset(_ABBREVIATION_TEXT.split())


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
                if buf[end].isspace() and not self._is_false_stop(buf, i):
                    return end
                i = end
                continue
            i += 1
        self._scan_from = len(buf)
        return None

    def _clause_allowed(self, i: int) -> bool:
        min_words = self.options.first_clause_min_words
        return self._segments_out == 0 and min_words > 0 and len(self._buf[:i].split()) >= min_words

    @staticmethod
    def _is_false_stop(buf: str, i: int) -> bool:
        """A period after an abbreviation or an initial does not end a sentence."""
        if buf[i] != ".":
            return False
        start = i
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        word = buf[start:i].lstrip(_OPENERS)
        if len(word) == 1 and word.isupper():
            return True  # an initial: "J. K. Rowling"
        return word.lower() in ABBREVIATIONS


__all__ = ["ABBREVIATIONS", "SentenceOptions", "SentenceSplitter"]
