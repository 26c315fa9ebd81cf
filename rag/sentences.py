"""Sentence spans of article text, exact to the character.

NLTK's Punkt tokenizer does the splitting. Its trained English model is a separate data download that is
not available offline, so it runs with a hand-listed set of abbreviations common in news text; paragraph
breaks (blank or single newlines: headlines, bylines) always end a sentence.
"""

from __future__ import annotations

import re
from functools import lru_cache

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sir", "st", "mt", "gen", "col", "lt", "sgt", "capt", "rev", "gov", "sen",
    "rep", "jr", "sr", "inc", "co", "corp", "ltd", "plc", "bros", "no", "vs", "etc", "approx", "est", "dept",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
    "u.s", "u.k", "u.n", "e.g", "i.e", "a.m", "p.m",
}


@lru_cache(maxsize=1)
def _tokenizer() -> PunktSentenceTokenizer:
    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


_LINE = re.compile(r"[^\n]+")


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) offsets in ``text`` of each sentence lying in ``text[start:end]``, whitespace trimmed."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for line in _LINE.finditer(text, start, end):
        segment = line.group(0)
        for s, e in _tokenizer().span_tokenize(segment):
            piece = segment[s:e]
            stripped = piece.strip()
            if not stripped:
                continue
            lead = len(piece) - len(piece.lstrip())
            a = line.start() + s + lead
            spans.append((a, a + len(stripped)))
    return spans


def expand_to_sentences(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to whole lines so that no sentence is cut at a chunk boundary."""
    a = text.rfind("\n", 0, start) + 1
    b = text.find("\n", end)
    return a, len(text) if b < 0 else b
