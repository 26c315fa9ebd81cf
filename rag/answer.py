"""Extractive answering and abstention: pick the sentence(s) of the retrieved passages that answer the question.

No library does answer-type-aware sentence selection over retrieved passages with exact spans, so this is
written here. Each candidate sentence is scored on
- meaning: cosine similarity to the question with the same embedding model,
- keywords: the share of the question's (idf-weighted) terms it contains,
- answer type: whether it holds the kind of thing asked for (a name for who/which, a number for how
  much/many, a date for when, a place for where) that the question itself does not already contain,
- the rank of the passage it comes from.
The evidence score that decides abstention combines the best sentence's score with how much of the
question the best passage covers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from rag.retrieve import BM25Index, Tokenizer
from rag.sentences import expand_to_sentences, sentence_spans
from rag.store import Embedder
from rag.types import Citation, Passage

ABSTAIN_TEXT = "The indexed articles do not answer this question."

MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    "thousand|million|billion|trillion|dozen|half|quarter"
)
_NUMBER = re.compile(rf"[$£€¥]?\d[\d,.]*\s*(?:%|bn|m|k|per ?cent)?|\b(?:{NUMBER_WORDS})\b", re.I)
_DATE = re.compile(rf"\b(?:{MONTHS})\b|\b(?:{DAYS})\b|\b(?:1[89]|20)\d\d\b|\b(?:yesterday|today|tomorrow)\b", re.I)
_CAPITALISED = re.compile(r"\b[A-Z][\w'&.-]*(?:\s+(?:of|de|the|and|&)?\s*[A-Z][\w'&.-]*)*")

_TYPE_PATTERNS = [
    ("date", re.compile(
        r"^\s*when\b|\b(?:what|which|in which|in what|by what|by which|from what|on what|on which)\s+"
        r"(?:date|day|year|month|time|decade|century)\b", re.I)),
    ("number", re.compile(
        r"\bhow (?:much|many|fast|far|long|old|big|large|high|often)\b|"
        r"\b(?:what|which)\s+(?:percentage|proportion|share|price|level|rate|amount|sum|number|figure|"
        r"total|score|fee|cost|value)\b|\bby what\b", re.I)),
    ("place", re.compile(
        r"^\s*where\b|\b(?:in|at|from|to)\s+(?:which|what)\s+(?:city|town|country|venue|hotel|stadium|place|"
        r"region|state|capital|village|ground|prison|club|festival)\b|\bwhich (?:city|town|country)\b", re.I)),
    ("name", re.compile(r"^\s*(?:who|whom|whose)\b|\bwho\b|\bwhich\b|\bwhat is the name\b|\bname(?:d)? the\b", re.I)),
]


def answer_type(question: str) -> str:
    """What kind of thing the question asks for: date, number, place, name or other."""
    for kind, pattern in _TYPE_PATTERNS:
        if pattern.search(question):
            return kind
    return "other"


def has_answer_type(sentence: str, kind: str, question: str, tokenizer: Tokenizer) -> float:
    """1.0 when ``sentence`` holds a thing of ``kind`` that the question does not already mention."""
    if kind == "other":
        return 0.0
    q_words = {w.lower() for w in re.findall(r"\w+", question)}

    def novel(match: str) -> bool:
        return any(w.lower() not in q_words for w in re.findall(r"\w+", match))

    if kind == "number":
        return 1.0 if any(novel(m.group(0)) for m in _NUMBER.finditer(sentence)) else 0.0
    if kind == "date":
        return 1.0 if any(novel(m.group(0)) for m in _DATE.finditer(sentence)) else 0.0
    # name / place: a capitalised phrase that is new, ignoring the sentence's first word
    for m in _CAPITALISED.finditer(sentence):
        if m.start() == 0 and " " not in m.group(0):
            continue
        if novel(m.group(0)):
            return 1.0
    return 0.0


@dataclass
class Candidate:
    passage_index: int
    start: int
    end: int
    text: str
    score: float = 0.0
    dense: float = 0.0
    keywords: float = 0.0
    typed: float = 0.0


@dataclass
class ExtractiveResult:
    text: str
    citations: list[Citation]
    abstained: bool
    evidence_score: float


WEIGHTS = {"dense": 0.45, "keywords": 0.35, "typed": 0.12, "rank": 0.08}
MAX_SENTENCES_TO_EMBED = 24


def keyword_coverage(question_terms: list[str], text_terms: set[str], bm25: BM25Index) -> float:
    """Idf-weighted share of the question's terms present in a text."""
    if not question_terms:
        return 0.0
    weights = {t: bm25.idf(t) for t in set(question_terms)}
    total = sum(weights.values()) or 1.0
    return sum(w for t, w in weights.items() if t in text_terms) / total


def extract_answer(
    question: str,
    passages: list[Passage],
    articles: dict[str, str],
    *,
    embedder: Embedder,
    bm25: BM25Index,
    threshold: float,
    question_embedding: Optional[list[float]] = None,
    keyword_query: Optional[str] = None,
) -> ExtractiveResult:
    """Select answer sentences from ``passages`` (``articles`` maps article id to its full text)."""
    if not passages:
        return ExtractiveResult(ABSTAIN_TEXT, [], True, 0.0)
    tokenizer = bm25.tokenizer
    q_terms = tokenizer(keyword_query or question)
    kind = answer_type(question)
    candidates: list[Candidate] = []
    for index, passage in enumerate(passages):
        text = articles.get(passage.article_id)
        if text is None:
            continue
        a, b = expand_to_sentences(text, passage.start_char_idx, passage.end_char_idx)
        for s, e in sentence_spans(text, a, b):
            if e <= passage.start_char_idx or s >= passage.end_char_idx:
                continue
            sentence = text[s:e]
            if len(sentence) < 12:
                continue
            cand = Candidate(index, s, e, sentence)
            cand.keywords = keyword_coverage(q_terms, set(tokenizer(sentence)), bm25)
            cand.typed = has_answer_type(sentence, kind, question, tokenizer)
            candidates.append(cand)
    if not candidates:
        return ExtractiveResult(ABSTAIN_TEXT, [], True, 0.0)
    # Embed only the most promising sentences (keeps latency flat for long passages).
    candidates.sort(key=lambda c: (-(c.keywords + 0.3 * c.typed), c.passage_index))
    unique: dict[tuple[str, int, int], Candidate] = {}
    for c in candidates:
        unique.setdefault((passages[c.passage_index].article_id, c.start, c.end), c)
    candidates = list(unique.values())[:MAX_SENTENCES_TO_EMBED]
    q_vec = np.asarray(question_embedding if question_embedding is not None else embedder.embed_query(question))
    vectors = embedder.encode([c.text for c in candidates])
    dense = vectors @ q_vec
    for c, sim in zip(candidates, dense):
        c.dense = float(sim)
        rank_prior = 1.0 / (1 + c.passage_index)
        c.score = (
            WEIGHTS["dense"] * c.dense + WEIGHTS["keywords"] * c.keywords + WEIGHTS["typed"] * c.typed
            + WEIGHTS["rank"] * rank_prior
        )
    candidates.sort(key=lambda c: -c.score)
    best = candidates[0]
    top = passages[best.passage_index]
    passage_cover = keyword_coverage(q_terms, set(tokenizer(f"{top.title} {articles.get(top.article_id, '')}")), bm25)
    evidence = 0.5 * best.score + 0.5 * passage_cover * best.dense
    chosen = [best]
    if len(candidates) > 1:
        second = candidates[1]
        if second.score >= 0.92 * best.score and second.typed >= best.typed and second.text != best.text:
            chosen.append(second)
    if evidence < threshold:
        return ExtractiveResult(ABSTAIN_TEXT, [], True, round(evidence, 4))
    chosen.sort(key=lambda c: (c.passage_index, c.start))
    citations = [
        Citation(
            n=i + 1, article_id=passages[c.passage_index].article_id, title=passages[c.passage_index].title,
            source=passages[c.passage_index].source, quote=c.text, start_char_idx=c.start, end_char_idx=c.end,
            score=round(c.score, 4), page=passages[c.passage_index].page, passage_index=c.passage_index,
        )
        for i, c in enumerate(chosen)
    ]
    text = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    return ExtractiveResult(text, citations, False, round(evidence, 4))
