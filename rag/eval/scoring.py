"""Per-question metrics of one answer, and their aggregates over a run (overall, per question type, speed).

Metrics (per question, then averaged over the questions they apply to; ``None`` = not applicable):

- Retrieval (questions with a gold article): ``hit@1``, ``hit@5`` and ``mrr`` of the gold article over the
  ranked ``Answer.passages``. A passage is from the gold article when its article id is the gold id, when
  both ids are byte-identical copies (same sha256 in the index: duplicates are stored once, under the id of
  the first copy), or when the gold article is among the ids whose identical passage the retriever
  collapsed into it (``Passage.duplicates``). ``evidence_hit``: the gold evidence sentence lies inside a
  retrieved passage (whitespace-normalised containment, or its span in the article inside the passage's).
- Answer (answerable questions): ``em`` and ``f1`` against the best gold answer and ``contains`` (the
  normalised gold answer occurs, token-aligned, in the normalised answer), all on
  :func:`~rag.eval.metrics.normalize_answer` text. Citation markers ``[n]`` are removed first; an
  abstention counts as the empty answer.
- Citations: ``citation_precision``, the share of citations whose quote contains a gold answer or covers at
  least half of the evidence sentence's tokens; ``first_citation_gold``, whether the first citation is from
  the gold article (same equivalence as above).
- Abstention: ``abstain_accuracy`` on unanswerable questions (share abstained) and ``false_abstention`` on
  answerable ones (share abstained).
- Speed: p50/p95/mean seconds per stage of ``Answer.timings`` (``total`` included).
"""

from __future__ import annotations

from typing import Optional, Sequence

from rag.core.text import strip_markers
from rag.core.types import Answer
from rag.eval.metrics import (
    ArticleMatcher, citation_is_correct, contains_answer, evidence_retrieved, exact_match, gold_rank, percentile,
    token_f1,
)
from rag.eval.questions import EvalQuestion

HIT_RANKS = (1, 5)  # the ranks of hit@1 and hit@5
SUMMARY_DIGITS = 4  # decimals kept in aggregates and speed figures

# Every aggregated metric, in table order, with its column label.
METRICS = [
    ("hit@1", "hit@1"), ("hit@5", "hit@5"), ("mrr", "MRR"), ("evidence_hit", "evid"),
    ("em", "EM"), ("f1", "F1"), ("contains", "cont"),
    ("citation_precision", "citeP"), ("first_citation_gold", "cite1"), ("first_citation_ok", "cite1+"),
    ("abstain_accuracy", "abst"), ("false_abstention", "f-abst"),
]
METRIC_DESCRIPTIONS = {
    "hit@1": "gold article is the first passage",
    "hit@5": "gold article in the first 5 passages",
    "mrr": "mean reciprocal rank of the gold article",
    "evidence_hit": "evidence sentence inside a retrieved passage",
    "em": "exact match (answerable)",
    "f1": "token F1 (answerable)",
    "contains": "answer contains a gold answer (answerable)",
    "citation_precision": "citations quoting the answer/evidence",
    "first_citation_gold": "first citation from the gold article",
    "first_citation_ok": "first citation from a gold article or quoting a gold answer",
    "abstain_accuracy": "abstained on unanswerable questions",
    "false_abstention": "abstained on answerable questions",
}


def _retrieval_metrics(question: EvalQuestion, answer: Answer, matcher: ArticleMatcher) -> dict:
    """hit@1, hit@5, mrr and the gold rank over the gold articles (None without a gold article)."""
    if not question.article:
        return {"hit@1": None, "hit@5": None, "mrr": None, "gold_rank": None}
    ranks = (gold_rank(answer.passages, g, matcher) for g in question.gold_articles)
    rank = min((r for r in ranks if r), default=None)
    first, fifth = HIT_RANKS
    return {
        "hit@1": float(rank is not None and rank <= first), "hit@5": float(rank is not None and rank <= fifth),
        "mrr": 1.0 / rank if rank else 0.0, "gold_rank": rank,
    }


def _answer_metrics(question: EvalQuestion, answer: Answer) -> dict:
    """em and f1 of the short answer, contains of the whole answer (None for an unanswerable question)."""
    if not question.answerable:
        return {"em": None, "f1": None, "contains": None}
    prediction = "" if answer.abstained else strip_markers(answer.text)
    short = "" if answer.abstained else (answer.short_answer or prediction)  # EM and F1 judge the short answer
    return {
        "em": exact_match(short, question.answers), "f1": token_f1(short, question.answers),
        "contains": contains_answer(prediction, question.answers),
    }


def _citation_metrics(question: EvalQuestion, answer: Answer, matcher: ArticleMatcher) -> dict:
    """citation_precision, first_citation_gold and first_citation_ok (None where they do not apply)."""
    m: dict[str, Optional[float]] = {"citation_precision": None, "first_citation_gold": None,
                                     "first_citation_ok": None}
    if answer.citations and (question.answerable or question.evidence):
        correct = [citation_is_correct(c.quote, question.answers, question.evidence) for c in answer.citations]
        m["citation_precision"] = sum(correct) / len(correct)
    if answer.citations and question.article:
        first = answer.citations[0]
        m["first_citation_gold"] = float(any(matcher.same(first.article_id, g) for g in question.gold_articles))
        # Lenient: other articles often report the same answer (RealTime QA's distractors are search results
        # for the question); a first citation quoting a gold answer counts as right too.
        quotes_gold = bool(contains_answer(first.quote, question.answers))
        m["first_citation_ok"] = float(bool(m["first_citation_gold"]) or quotes_gold)
    return m


def score_answer(
    question: EvalQuestion, answer: Answer, matcher: ArticleMatcher, evidence_span: Optional[tuple[int, int]] = None
) -> dict:
    """Every per-question metric (None where it does not apply)."""
    m: dict[str, Optional[float]] = _retrieval_metrics(question, answer, matcher)
    if question.evidence:
        hit = evidence_retrieved(answer.passages, question.evidence, question.article, evidence_span, matcher)
        m["evidence_hit"] = float(hit)
    else:
        m["evidence_hit"] = None
    m.update(_answer_metrics(question, answer))
    m.update(_citation_metrics(question, answer, matcher))
    m["abstain_accuracy"] = None if question.answerable else float(answer.abstained)
    m["false_abstention"] = float(answer.abstained) if question.answerable else None
    return m


# --- aggregation --------------------------------------------------------------------------------------------


def _round(value: Optional[float], digits: int = SUMMARY_DIGITS) -> Optional[float]:
    return None if value is None else round(value, digits)


def aggregate(rows: Sequence[dict]) -> dict:
    """Means of every metric over the rows it applies to, with counts."""
    out: dict = {
        "n": len(rows),
        "answerable": sum(1 for r in rows if r["answerable"]),
        "unanswerable": sum(1 for r in rows if not r["answerable"]),
        "errors": sum(1 for r in rows if r.get("error")),
    }
    for key, _ in METRICS:
        values = [r["metrics"][key] for r in rows if r["metrics"].get(key) is not None]
        out[key] = _round(sum(values) / len(values)) if values else None
        out[f"{key}_n"] = len(values)
    return out


def speed_summary(rows: Sequence[dict]) -> dict:
    """p50/p95/mean seconds per timing stage over the rows (stages in first-seen order, total last)."""
    stages: list[str] = []
    for r in rows:
        for stage in r.get("timings", {}):
            if stage not in stages:
                stages.append(stage)
    if "total" in stages:
        stages.remove("total")
        stages.append("total")
    out = {}
    for stage in stages:
        values = [r["timings"][stage] for r in rows if stage in r.get("timings", {})]
        out[stage] = {
            "p50": _round(percentile(values, 50)), "p95": _round(percentile(values, 95)),
            "mean": _round(sum(values) / len(values)) if values else None, "n": len(values),
        }
    return out


def summarise(rows: Sequence[dict]) -> dict:
    """Overall and per-type aggregates plus the speed table."""
    types: dict[str, list[dict]] = {}
    for r in rows:
        types.setdefault(r["type"], []).append(r)
    return {
        "overall": aggregate(rows),
        "by_type": {t: aggregate(rs) for t, rs in sorted(types.items())},
        "speed": speed_summary(rows),
    }
