"""Pure metric functions: answer normalisation, answer and citation scores, gold-article matching, percentiles.

Nothing here reads an index or a file; :mod:`rag.eval.scoring` combines these into per-question metrics.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from typing import Optional, Sequence, Union

from rag.core.types import Passage

Golds = Union[str, Sequence[str], None]

CITATION_MIN_OVERLAP = 0.5  # share of the evidence sentence's tokens a quote must cover to count as correct

_APOSTROPHES = frozenset("'`\u2018\u2019\u02bc\u2032")
_ARTICLES = frozenset({"a", "an", "the"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERCENT = re.compile(r"(?<!\s)\s*+%|\bper\s+cent\b|\bpercent\b")  # spaces from a run's start only: linear


# --- answer normalisation and answer metrics ----------------------------------------------------------------


def normalize_answer(text: Optional[str]) -> str:
    """SQuAD-style answer normalisation, made robust to unicode, currency and number formatting.

    Steps, in order:
    1. Unicode NFKD, then combining marks dropped: "Théodore" -> "Theodore", "ﬁ" -> "fi", no-break and other
       exotic spaces -> " ", "²" -> "2".
    2. Lower case.
    3. Thousands separators inside numbers dropped ("19,800" -> "19800"); "%", "per cent" and "percent" all
       become the word "percent" ("72%" == "72 per cent").
    4. Apostrophes (straight and curly) removed, joining the word ("Don't" -> "dont"), as SQuAD does.
    5. Every other character that is not a letter or digit becomes a space -- punctuation, dashes, quotes,
       brackets and symbols, including currency symbols (unicode category Sc), so "$1.13bn" == "1.13bn"
       and "£98" == "98". Unlike SQuAD, which deletes punctuation, it separates words
       ("Jean-Francois" -> "jean francois", so token F1 still sees two words), and a decimal point between
       two digits is kept ("1.13" stays "1.13", not "113").
    6. The articles "a", "an" and "the" removed as whole words; whitespace collapsed to single spaces.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = _THOUSANDS.sub("", text)
    text = _PERCENT.sub(" percent ", text)
    out: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        if ch in _APOSTROPHES:
            continue
        cat = unicodedata.category(ch)
        if cat[0] in "LN":
            out.append(ch)
        elif ch == "." and 0 < i < n - 1 and text[i - 1].isdigit() and text[i + 1].isdigit():
            out.append(ch)
        else:
            out.append(" ")
    return " ".join(w for w in "".join(out).split() if w not in _ARTICLES)


def _golds(golds: Golds) -> list[str]:
    if golds is None:
        return []
    if isinstance(golds, str):
        return [golds]
    return list(golds)


def _normalised_golds(golds: Golds) -> list[str]:
    """Normalised non-empty gold answers (a gold answer that normalises to nothing is ignored)."""
    return [g for g in (normalize_answer(x) for x in _golds(golds)) if g]


def exact_match(prediction: Optional[str], golds: Golds) -> float:
    """1.0 when the normalised prediction equals a normalised gold answer.

    With no gold answers (unanswerable question), 1.0 exactly when the prediction is empty (SQuAD 2.0).
    """
    pred = normalize_answer(prediction)
    normed = _normalised_golds(golds)
    if not normed:
        return float(pred == "")
    return float(any(pred == g for g in normed))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: Optional[str], golds: Golds) -> float:
    """The best SQuAD token F1 of the prediction against any gold answer (no golds: 1.0 iff empty)."""
    pred = normalize_answer(prediction).split()
    normed = _normalised_golds(golds)
    if not normed:
        return float(not pred)
    return max(_f1(pred, g.split()) for g in normed)


def contains_answer(prediction: Optional[str], golds: Golds) -> float:
    """1.0 when some normalised gold answer occurs in the normalised prediction as whole tokens.

    ("8 December" is in "Lenovo signed on 8 December 2004", "20" is not in "200".) No golds: 1.0 iff empty.
    """
    pred = normalize_answer(prediction)
    normed = _normalised_golds(golds)
    if not normed:
        return float(pred == "")
    padded = f" {pred} "
    return float(any(f" {g} " in padded for g in normed))


# --- citation metrics -------------------------------------------------------------------------------------------


def evidence_overlap(quote: str, evidence: Optional[str]) -> float:
    """Share of the evidence sentence's normalised tokens (with multiplicity) that also occur in ``quote``."""
    ev = normalize_answer(evidence).split()
    if not ev:
        return 0.0
    common = Counter(ev) & Counter(normalize_answer(quote).split())
    return sum(common.values()) / len(ev)


def citation_is_correct(
    quote: str, golds: Sequence[str], evidence: Optional[str], min_overlap: float = CITATION_MIN_OVERLAP
) -> bool:
    """A citation is correct when its quote contains a gold answer or covers ``min_overlap`` of the evidence."""
    if _normalised_golds(golds) and contains_answer(quote, golds):
        return True
    return bool(evidence) and evidence_overlap(quote, evidence) >= min_overlap


# --- retrieval metrics ----------------------------------------------------------------------------------------


def _ws(text: str) -> str:
    return " ".join((text or "").split())


class ArticleMatcher:
    """Decides whether an article id is the gold article, treating byte-identical copies as the same article.

    ``sha_by_id``: the content hash of every article id in the index (duplicates are stored once, under the
    id of the first copy, and their records carry the same hash).
    """

    def __init__(self, sha_by_id: Optional[dict[str, str]] = None):
        self.sha_by_id = dict(sha_by_id or {})

    def same(self, article_id: Optional[str], gold: Optional[str]) -> bool:
        """Whether ``article_id`` is ``gold`` or a byte-identical copy of it."""
        if not article_id or not gold:
            return False
        if article_id == gold:
            return True
        sha = self.sha_by_id.get(article_id)
        return bool(sha) and sha == self.sha_by_id.get(gold)

    def passage_is_gold(self, passage: Passage, gold: Optional[str]) -> bool:
        """The passage is from the gold article (or an identical passage of it was collapsed into it)."""
        return any(self.same(a, gold) for a in [passage.article_id, *(passage.duplicates or [])])

    def known(self, article_id: Optional[str]) -> bool:
        """Whether the index holds an article with this id."""
        return bool(article_id) and article_id in self.sha_by_id


def gold_rank(passages: Sequence[Passage], gold: Optional[str], matcher: ArticleMatcher) -> Optional[int]:
    """1-based rank of the first passage from the gold article, or None."""
    for rank, passage in enumerate(passages, start=1):
        if matcher.passage_is_gold(passage, gold):
            return rank
    return None


def find_span(text: Optional[str], snippet: Optional[str]) -> Optional[tuple[int, int]]:
    """Character span of ``snippet`` in ``text``, allowing any whitespace between its words; None if absent."""
    words = (snippet or "").split()
    if not text or not words:
        return None
    match = re.search(r"\s+".join(re.escape(w) for w in words), text)
    return (match.start(), match.end()) if match else None


def evidence_retrieved(
    passages: Sequence[Passage], evidence: Optional[str], gold: Optional[str] = None,
    evidence_span: Optional[tuple[int, int]] = None, matcher: Optional[ArticleMatcher] = None,
) -> bool:
    """The evidence sentence lies inside one retrieved passage (its text, or its span in the gold article)."""
    ev = _ws(evidence or "")
    if not ev:
        return False
    for passage in passages:
        if ev in _ws(passage.text):
            return True
        if evidence_span and matcher is not None and matcher.passage_is_gold(passage, gold):
            if passage.start_char_idx <= evidence_span[0] and evidence_span[1] <= passage.end_char_idx:
                return True
    return False


# --- speed ------------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The q-th percentile (0-100) with linear interpolation; None for no values (None and NaN are ignored).

    The one percentile of the project: evaluation reports and the benchmarks both use it.
    """
    values = sorted(v for v in values if v is not None and not math.isnan(v))
    if not values:
        return None
    pos = (len(values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)
