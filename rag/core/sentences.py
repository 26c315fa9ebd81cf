"""Sentence spans of article text, exact to the character.

NLTK's Punkt tokenizer does the splitting. Its trained English model is a separate data download that is
not available offline, so it runs with a hand-listed set of abbreviations common in news text; paragraph
breaks (blank or single newlines: headlines, bylines) always end a sentence. Text without sentence
punctuation (a transcript, a scraped table, a hostile upload) would make one "sentence" of any length, so
longer ones are cut at a space: a quote stays readable and a candidate stays cheap to score.
"""

from __future__ import annotations

import re
from functools import lru_cache

from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

from rag.core.text import MONTH_ABBREVIATIONS

ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "sir", "st", "mt", "gen", "col", "lt", "sgt", "capt", "rev", "gov", "sen",
    "rep", "jr", "sr", "inc", "co", "corp", "ltd", "plc", "bros", "no", "vs", "etc", "approx", "est", "dept",
    *MONTH_ABBREVIATIONS,
    "u.s", "u.k", "u.n", "e.g", "i.e", "a.m", "p.m",
}


@lru_cache(maxsize=1)
def _tokenizer() -> PunktSentenceTokenizer:
    params = PunktParameters()
    params.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(params)


_LINE = re.compile(r"[^\n]+")
MAX_SENTENCE_CHARS = 600  # longer sentences are cut (one in 44,000 BBC sentences is longer)
MAX_CONTEXT_CHARS = 5000  # how far a passage's line is followed either side (BBC paragraphs stay under 2,600)


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
            spans.extend(_cut_long(text, a, a + len(stripped)))
    return spans


def _cut_long(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` as pieces of at most MAX_SENTENCE_CHARS, cut at the last space that allows it."""
    pieces = []
    while end - start > MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", start + MAX_SENTENCE_CHARS // 2, start + MAX_SENTENCE_CHARS)
        if cut < 0:
            cut = start + MAX_SENTENCE_CHARS  # no space at all: cut anywhere
        stop = cut
        while stop > start and text[stop - 1].isspace():
            stop -= 1
        pieces.append((start, stop))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        pieces.append((start, end))
    return pieces


def expand_to_sentences(text: str, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to whole lines so that no sentence is cut at a chunk boundary (but by at most
    MAX_CONTEXT_CHARS either side, at a space: a line can be a whole unpunctuated document)."""
    a = text.rfind("\n", 0, start) + 1
    b = text.find("\n", end)
    b = len(text) if b < 0 else b
    if start - a > MAX_CONTEXT_CHARS:
        a = text.find(" ", start - MAX_CONTEXT_CHARS, start) + 1 or start
    if b - end > MAX_CONTEXT_CHARS:
        b = text.rfind(" ", end, end + MAX_CONTEXT_CHARS)
        b = end + MAX_CONTEXT_CHARS if b < 0 else b
    return a, b
