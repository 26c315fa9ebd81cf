"""Extractive answering and abstention: pick the sentence(s) of the retrieved passages that answer the question.

No library does answer-type-aware sentence selection over retrieved passages with exact spans, so this is
written here. Each candidate sentence is scored on
- meaning: cosine similarity of the question to the sentence's vector (pooled at ingest from the encoder's
  token vectors of its chunk, see ``ingest.sentence_vectors``),
- answer type: whether it holds the kind of thing asked for (a name for who/which, a number for how
  much/many, a date for when, a place for where) that the question itself does not already contain,
- proximity: how much of the question (idf-weighted) stands right beside that answer-like span,
- article: how much of the question its whole article covers (is this the story asked about?),
- the score and rank of the passage it comes from.
A sentence about another year or quarter than the question pins is never the answer (see ``rag.core.periods``).
The evidence score that decides abstention (see ``evidence_score``) combines the best sentence's scores
with how much of the question its article covers.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Optional

import numpy as np

from rag.core.calibration import SENTENCE_WEIGHTS
from rag.core.periods import (
    Periods, contradicts, matches, periods_in, published_in, question_periods, years_clash,
)
from rag.core.sentences import expand_to_sentences, sentence_spans
from rag.core.text import ABSTAIN_TEXT, DAY_PATTERN, MONTH_PATTERN, NUMBER_WORD_PATTERN, WORD, YEAR
from rag.core.types import Citation, Passage
from rag.index.embedder import Embedder
from rag.query.bm25 import BM25Index
from rag.query.names import full_name

_SCALE = r"(?:bn|m|k|tn|million|billion|trillion)\b"
_NUMBER = re.compile(
    rf"[$£€¥]?\d[\d,.]*(?:\s*(?:%|per ?cent\b|{_SCALE}))?|\b(?:{NUMBER_WORD_PATTERN})\b", re.I
)
_DATE = re.compile(
    rf"\b(?:{MONTH_PATTERN})\b|\b(?:{DAY_PATTERN})\b|{YEAR.pattern}|\b(?:yesterday|today|tomorrow)\b", re.I
)
# Capitalised words joined by spaces and a connector ("Bank of England"); possessive, so that untrusted text cannot
# make it backtrack (a run of spaces split two ways between quantifiers costs its length squared).
_CAPITALISED = re.compile(r"\b[A-Z][\w'&.-]*+(?:\s++(?:(?:of|de|the|and|&)\s*+)?[A-Z][\w'&.-]*+)*+")

_TYPE_PATTERNS = [
    ("date", re.compile(
        r"^\s*when\b|\b(?:what|which|in which|in what|by what|by which|from what|on what|on which)\s+"
        r"(?:date|day|year|month|time|decade|century)\b", re.I)),
    ("number", re.compile(
        r"\bhow (?:much|many|fast|far|long|old|big|large|high|often)\b|"
        r"\b(?:what|which)\s+(?:percentage|proportion|share|price|level|rate|amount|sum|number|figure|"
        r"total|score|fee|cost|value)\b|\bby what\b|^\s*(?:what|which)\b.*\b(?:price|cost|fee|percentage|rate|"
        r"amount|sum|figure|salary|profit|revenue|turnover|fine|score)\b", re.I)),
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


_PERCENT_Q = re.compile(
    r"percent|per cent|\bhold|\bheld\b|stake|\bshare\b|\bowns?\b|\brate\b|how fast|\bgr[eo]w|growth|\brise\b|"
    r"\brose\b|\bfell\b|\bfall\b", re.I
)
_MONEY_Q = re.compile(
    r"how much|price|cost|\bfee|\bpa(?:y|id)\b|worth|\btake\b|profit|revenue|turnover|salary|spen[dt]|raise", re.I)
MAX_DIGITS = 40  # digits a number may have here: unbounded, a long digit run costs its length squared (below)
_PERCENT = re.compile(rf"\d[\d.]{{0,{MAX_DIGITS}}}+\s*+(?:%|per ?cent)", re.I)
_MONEY = re.compile(
    rf"[$£€¥]\s?\d[\d,.]*+(?:\s*+{_SCALE})?"
    rf"|\d[\d,.]{{0,{MAX_DIGITS}}}+(?:\s*+{_SCALE})?\s*+(?:yen|euros?|dollars?|pounds?|yuan|rupees?)\b"
    rf"|\d[\d.]{{0,{MAX_DIGITS}}}+\s*+(?:bn|m)\b", re.I)
_DAY_MONTH = re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{MONTH_PATTERN})\b|\b(?:{MONTH_PATTERN})\s+\d{{1,2}}\b|\b(?:{DAY_PATTERN})\b", re.I)
_MONTH = re.compile(rf"\b(?:{MONTH_PATTERN})\b", re.I)


@lru_cache(maxsize=64)
def _words_of(question: str) -> frozenset[str]:
    return frozenset(w.lower() for w in re.findall(r"\w+", question))


def answer_spans(sentence: str, kind: str, question: str) -> list[tuple[int, int, float]]:
    """Where ``sentence`` holds a thing of ``kind`` that the question does not already mention.

    (start, end, strength): 1.0 for the specific form asked for (a percentage for "how fast did it grow", an
    amount of money for "how much", a day and month for "on what date", a capitalised place after in/at/from
    for "where", a name of two or more words for "who"), 0.5 for a thing of the kind in general.
    """
    if kind == "other":
        return []
    q_words = _words_of(question)
    q = question.lower()
    spans: list[tuple[int, int, float]] = []

    def novel(match: str) -> bool:
        return any(w.lower() not in q_words for w in re.findall(r"\w+", match))

    def add(pattern: re.Pattern, strength: float, keep=lambda text: True) -> None:
        spans.extend(
            (m.start(), m.end(), strength) for m in pattern.finditer(sentence) if novel(m.group(0)) and keep(m.group(0))
        )

    if kind == "number":
        if _PERCENT_Q.search(question):
            add(_PERCENT, 1.0)
        if _MONEY_Q.search(question):
            add(_MONEY, 1.0)
        if "how many" in q:
            add(_NUMBER, 1.0, keep=lambda text: not YEAR.fullmatch(text.strip()))
        add(_NUMBER, 0.5)
        return spans
    if kind == "date":
        if "date" in q or " day" in q:
            add(_DAY_MONTH, 1.0)
        if "year" in q:
            add(YEAR, 1.0)
        if "month" in q:
            add(_MONTH, 1.0)
        add(_DATE, 0.5)
        return spans
    for m in _CAPITALISED.finditer(sentence):
        start, phrase = m.start(), m.group(0)
        if start == 0:  # a capital at the start of a sentence says nothing
            phrase = phrase.partition(" ")[2]
            start = m.end() - len(phrase)
        if not phrase or not novel(phrase):
            continue
        strength = 0.5
        if kind == "place" and re.search(r"\b(?:in|at|from|near|to)\s+(?:the\s+)?$", sentence[:start]):
            strength = 1.0
        if kind == "name" and len(phrase.split()) >= 2:
            strength = 1.0
        spans.append((start, m.end(), strength))
    return spans


PROXIMITY_WORDS = 6  # question terms this many words either side of an answer-like span count as near it


def proximity(sentence: str, spans: list[tuple[int, int, float]], weights: dict[str, float], stem) -> float:
    """How much of the question (``weights``: its terms' share) sits right next to an answer-like span.

    An answer stands beside the words of its question ("Euronext chief Jean-Francois Theodore",
    "Woodhill, Milton Keynes"); a name or number elsewhere in a long matching sentence is weaker evidence.
    """
    if not spans or not weights:
        return 0.0
    words = list(WORD.finditer(sentence))
    starts = [m.start() for m in words]
    stems: list[Optional[str]] = [None] * len(words)
    best = 0.0
    for start, end, strength in spans:
        first = max(0, bisect_right(starts, start) - 1)
        if first < len(words) and words[first].end() <= start:
            first += 1
        last = bisect_left(starts, end) - 1
        if first > last:
            continue
        near = set()
        before = range(max(0, first - PROXIMITY_WORDS), first)
        after = range(last + 1, min(len(words), last + 1 + PROXIMITY_WORDS))
        for i in [*before, *after]:
            if stems[i] is None:
                stems[i] = stem(words[i].group(0).lower())
            near.add(stems[i])
        best = max(best, strength * sum(w for t, w in weights.items() if t in near))
    return best


@dataclass
class Candidate:
    passage_index: int
    article_id: str
    start: int
    end: int
    text: str
    score: float = 0.0
    dense: float = 0.0
    typed: float = 0.0
    proximity: float = 0.0  # question terms right next to the answer-like span
    article: float = 0.0  # question terms anywhere in the sentence's article (is this the story asked about?)
    period: float = 0.0  # the sentence names the year or quarter the question pins
    passage_score: float = 0.0
    clash: str = ""  # the sentence is about another year or quarter than the question pins
    clash_years: bool = False  # ... and the clash is one of years (not of quarters within the year asked)

    def cheap_score(self, weights: dict) -> float:
        """The score without meaning: it picks which candidates are scored on meaning too."""
        return (
            weights["typed"] * self.typed + weights["proximity"] * self.proximity + weights["article"] * self.article
            + weights["period"] * self.period + weights["passage"] * self.passage_score
            + weights["rank"] / (1 + self.passage_index)
        )


@dataclass
class ExtractiveResult:
    text: str
    citations: list[Citation]
    abstained: bool
    evidence_score: float
    clash: str = ""  # why the closest evidence was set aside (it is about another period)
    candidates: list[Candidate] = field(default_factory=list)  # the scored sentences, best first
    short_answer: Optional[str] = None  # the answer phrase alone: a span of the first citation, or of its article
    # where that gives the name in full (rag.query.names)


MAX_SENTENCES_SCORED = 12
# Page furniture a news site's video player and photo gallery leave in an article's plain text ("JUST WATCHED
# <video title> Replay More Videos ... MUST WATCH <video title> 03:00", "Hide Caption 6 of 18 Photos: <gallery
# title>"): the titles repeat the story's words, so such sentences outscore the story's own. They are not
# candidates; the stored text keeps them (quotes stay exact spans). Written here because no library strips
# furniture from plain text: trafilatura, used for HTML at ingest, needs the page's markup.
PAGE_FURNITURE = re.compile(r"\b(?:JUST WATCHED|MUST WATCH|Replay More Videos|Hide Caption \d+ of \d+)\b")
SECOND_SENTENCE_RATIO = 0.95
SENTENCE_EMBED_CHARS = 200
FOLLOWING_CHARS = 300  # sentences this far past a passage are candidates too (the answer often follows)


def candidate_sentences(
    question: str, passages: list[Passage], articles: dict[str, str], bm25: BM25Index,
    sentences: Optional[dict[str, list[tuple[int, int, int]]]] = None, only: Optional[set[int]] = None,
) -> list[Candidate]:
    """Sentences of (and just after) the passages (those whose indexes are in ``only``, when given), with every
    feature but meaning.

    ``sentences``: the sentence spans of articles as stored at ingest (articles absent from it are split here).
    """
    q_terms = bm25.tokenizer(question)
    weights = bm25.question_weights(q_terms)
    kind = answer_type(question)
    asked = question_periods(question)
    # Sentences are split once per article, over the lines that hold all of its passages.
    lines = {
        index: _candidate_lines(articles[p.article_id], p)
        for index, p in enumerate(passages) if p.article_id in articles and (only is None or index in only)
    }
    ranges: dict[str, tuple[int, int]] = {}
    for index, (a, b) in lines.items():
        known = ranges.get(passages[index].article_id, (a, b))
        ranges[passages[index].article_id] = (min(a, known[0]), max(b, known[1]))
    sentences = sentences or {}
    sentences_of = {
        aid: [(s, e) for s, e, *_ in sentences[aid] if a <= s < b] if sentences.get(aid) is not None
        else sentence_spans(articles[aid], a, b)
        for aid, (a, b) in ranges.items()
    }
    seen: dict[tuple[str, int], Candidate] = {}
    for index, (first, last) in lines.items():
        passage = passages[index]
        text = articles[passage.article_id]
        article = bm25.coverage(q_terms, bm25.article_terms.get(passage.article_id, set()))
        previous_periods = Periods()
        for s, e in sentences_of[passage.article_id]:
            if s < first:
                continue
            if s >= last:
                break
            sentence = text[s:e]
            periods = periods_in(sentence) if asked else Periods()
            # A sentence naming no year (or quarter) is read in the one its previous sentence names.
            context_periods = Periods(
                periods.years or previous_periods.years, periods.quarters or previous_periods.quarters
            )
            previous_periods = periods
            if s == 0 and sentence.strip() == passage.title.strip():
                continue  # the headline line: it names the story, it does not answer
            if e <= passage.start_char_idx or len(sentence) < 12 or (passage.article_id, s) in seen:
                continue
            if PAGE_FURNITURE.search(sentence):
                continue
            cand = Candidate(index, passage.article_id, s, e, sentence, passage_score=passage.score)
            spans = answer_spans(sentence, kind, question)
            cand.typed = max((strength for _, _, strength in spans), default=0.0)
            cand.proximity = proximity(sentence, spans, weights, bm25.tokenizer.stem)
            cand.article = article
            cand.clash = contradicts(asked, context_periods) if asked else ""
            cand.clash_years = years_clash(asked, context_periods)
            cand.period = 1.0 if asked and matches(asked, periods) else 0.0
            seen[(passage.article_id, s)] = cand
    return list(seen.values())


def _candidate_lines(text: str, passage: Passage) -> tuple[int, int]:
    """The whole lines holding a passage and the FOLLOWING_CHARS after it: where its candidates lie."""
    return expand_to_sentences(text, passage.start_char_idx, min(len(text), passage.end_char_idx + FOLLOWING_CHARS))


SentenceVectors = Callable[[list[tuple[str, int]]], dict]


def score_candidates(
    candidates: list[Candidate], question_vector, embedder: Embedder, weights=None,
    sentence_vectors: Optional[SentenceVectors] = None,
) -> list[Candidate]:
    """Score the most promising candidates on meaning too, best first.

    ``sentence_vectors`` maps (article id, start) keys to the vectors the index stores for those sentences;
    a sentence without one (no chunk's encoder window held all of it) is encoded here.
    """
    weights = weights or SENTENCE_WEIGHTS
    candidates = sorted(candidates, key=lambda c: (-c.cheap_score(weights), c.passage_index))[:MAX_SENTENCES_SCORED]
    if not candidates:
        return []
    q = np.asarray(question_vector)
    stored = sentence_vectors([(c.article_id, c.start) for c in candidates]) if sentence_vectors else {}
    missing = [c for c in candidates if (c.article_id, c.start) not in stored]
    if missing:
        # Long sentences are cut for encoding: their start carries the meaning, and cost grows with length.
        for c, vector in zip(missing, embedder.encode([c.text[:SENTENCE_EMBED_CHARS] for c in missing])):
            stored[(c.article_id, c.start)] = vector
    for c in candidates:
        c.dense = float(np.dot(np.asarray(stored[(c.article_id, c.start)]), q))
        c.score = weights["dense"] * c.dense + c.cheap_score(weights)
    return sorted(candidates, key=lambda c: -c.score)


# Another thing of the kind this close to the question's words (relative to the closest one) leaves the
# short answer open: the sentence alone is shown. Chosen from 0.5-0.9 on both dev sets' first-citation
# sentences: at 0.67 a short answer shown from a sentence holding the gold answer is that answer 21 of 23 times
# on BBC, 23 of 32 on RealTime QA (without the rule: 22 of 24, 24 of 37).
AMBIGUOUS_SPAN_RATIO = 0.67


def short_answer(question: str, best: Candidate, bm25: BM25Index) -> Optional[tuple[int, int]]:
    """The span of ``best``'s sentence (offsets within it) that answers ``question``: of the things of the
    asked-for kind in its specific form (a percentage for "how fast did it grow", a day and month for "on
    what date", a name of two or more words for "who"), the one closest to the question's words.

    None when the question asks for no such kind, the sentence holds none, none stands beside any word of
    the question, or another stands nearly as close: the whole sentence is then the answer.
    """
    spans = [s for s in answer_spans(best.text, answer_type(question), question) if s[2] >= 1.0]
    if not spans:
        return None
    weights = bm25.question_weights(bm25.tokenizer(question))
    near = sorted(((closeness(best.text, s[0], s[1], weights, bm25.tokenizer.stem), -s[0], s) for s in spans),
                  reverse=True)
    score, _, (start, end, _) = near[0]
    phrase = best.text[start:end]
    rivals = [n for n, _, (a, b, _) in near[1:] if best.text[a:b].strip(" ,.;:") != phrase.strip(" ,.;:")]
    if score <= 0 or (rivals and rivals[0] >= AMBIGUOUS_SPAN_RATIO * score):
        return None
    start += len(phrase) - len(phrase.lstrip())
    end -= len(phrase) - len(phrase.rstrip(" ,.;:"))  # "1997." at a sentence's end is "1997"
    return (start, end) if end > start else None


def closeness(sentence: str, start: int, end: int, weights: dict[str, float], stem) -> float:
    """How close the question's words stand to ``sentence[start:end]``: each question term within
    PROXIMITY_WORDS words of it counts its share of the question (``weights``) divided by its distance in words.

    In "Euronext chief Jean-Francois Theodore held talks with LSE boss Clara Furse", asked who runs Euronext:
    of several things of a kind in one sentence, the answer is the one the question's words stand beside.
    """
    words = list(WORD.finditer(sentence))
    inside = [i for i, m in enumerate(words) if m.start() < end and m.end() > start]
    if not inside:
        return 0.0
    first, last = inside[0], inside[-1]
    nearest: dict[str, int] = {}
    for i, m in enumerate(words):
        if first <= i <= last:
            continue
        term = stem(m.group(0).lower())
        if term in weights:
            distance = first - i if i < first else i - last
            nearest[term] = min(distance, nearest.get(term, distance))
    return sum(weights[t] / d for t, d in nearest.items() if d <= PROXIMITY_WORDS)


def evidence_score(best: Candidate, passages: list[Passage]) -> float:
    """How strongly the passages support an answer: the mean of the question's keyword coverage of the best
    sentence's article, that sentence's similarity and score, and the top passage's retrieval score."""
    return (best.article + best.dense + best.score + passages[0].score) / 4


def extract_answer(
    question: str,
    passages: list[Passage],
    articles: dict[str, str],
    *,
    embedder: Embedder,
    bm25: BM25Index,
    threshold: float,
    question_embedding: Optional[list[float]] = None,
    sentence_vectors: Optional[SentenceVectors] = None,
    sentences: Optional[dict[str, list[tuple[int, int, int]]]] = None,
    only: Optional[set[int]] = None,
) -> ExtractiveResult:
    """Select answer sentences from ``passages`` (``articles`` maps article id to its full text; ``sentences``
    and ``sentence_vectors`` give what the index stores about its sentences; ``only``: the indexes of the
    passages the answer may come from, default all)."""
    q_vec = question_embedding if question_embedding is not None else embedder.embed_query(question)
    candidates = score_candidates(
        candidate_sentences(question, passages, articles, bm25, sentences, only), q_vec, embedder,
        sentence_vectors=sentence_vectors,
    )
    if not candidates:
        return ExtractiveResult(ABSTAIN_TEXT, [], True, 0.0)
    best = candidates[0]
    considered = [p for i, p in enumerate(passages) if only is None or i in only]
    ranked = [c for c in candidates if not c.clash]
    # A sentence about another year, where articles published in the year asked were retrieved, is history the
    # story recalls ("the franchise's first title since 2001" in a report of this year's final): the answer is
    # looked for in the other sentences. Undated articles (no publish date) never count as such.
    if best.clash_years and ranked and published_in(question_periods(question), [p.published for p in considered]):
        best = ranked[0]
    evidence = evidence_score(best, considered)
    # When the best match is about another year or quarter than the one asked about, the articles cover the
    # story but not the period asked ("profit in the three months to December" for "profit in the first
    # quarter of 2005"): say so rather than answer from a weaker sentence or the wrong period.
    if best.clash:
        return ExtractiveResult(ABSTAIN_TEXT, [], True, round(evidence, 4), best.clash, ranked)
    if evidence < threshold:
        return ExtractiveResult(ABSTAIN_TEXT, [], True, round(evidence, 4), candidates=ranked)
    candidates = ranked
    # A close runner-up is shown too: it often holds the answer when the best sentence is its cue.
    chosen = [best] + [c for c in candidates[1:2] if c.score >= SECOND_SENTENCE_RATIO * best.score]
    citations = [
        Citation(
            n=i + 1, article_id=passages[c.passage_index].article_id, title=passages[c.passage_index].title,
            source=passages[c.passage_index].source, quote=c.text, start_char_idx=c.start, end_char_idx=c.end,
            score=round(c.score, 4), page=passages[c.passage_index].page, passage_index=c.passage_index,
            published=passages[c.passage_index].published, site=passages[c.passage_index].site,
        )
        for i, c in enumerate(chosen)
    ]
    text = " ".join(f"{c.quote} [{c.n}]" for c in citations)
    # The short answer is given beside the text, not shown as the answer: picked by typed patterns and word
    # distance, it is right less often than the sentence holding it (README, How it works).
    span = short_answer(question, best, bm25)
    short = best.text[span[0] : span[1]] if span else None
    article = articles[best.article_id]  # candidates are cut from these texts
    name = full_name(short, article, (best.start, best.end), question) if short else None
    if name is not None:  # "Biden" in the sentence, "President Joe Biden" as the article names him
        short = article[name[0] : name[1]]
    return ExtractiveResult(text, citations, False, round(evidence, 4), candidates=ranked, short_answer=short)
