"""Running an evaluation: ask every gold question, score the answer, and build the JSON-ready report.

    from rag.eval import load_questions, evaluate, format_table
    questions, problems = load_questions("qa.jsonl")
    report = evaluate(pipeline, questions)
    print(format_table(report))

A report is ``{"meta": {...}, "summary": {"overall", "by_type", "speed"}, "questions": [row, ...]}``; each row
holds the question, the answer, its citations and passages, the metrics of :mod:`rag.eval.scoring`, the
timings and notes, and the error when answering failed.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import Callable, Optional, Sequence

from rag.core.errors import RagError
from rag.core.types import Answer, Citation, Passage
from rag.eval.metrics import ArticleMatcher, find_span
from rag.eval.questions import EvalQuestion
from rag.eval.scoring import score_answer, summarise

log = logging.getLogger(__name__)

TIMING_DIGITS = 5  # decimals of the per-question timings kept in a report


def _citation_dict(c: Citation) -> dict:
    return {
        "n": c.n, "article_id": c.article_id, "title": c.title, "source": c.source, "quote": c.quote,
        "start_char_idx": c.start_char_idx, "end_char_idx": c.end_char_idx, "score": c.score,
    }


def _passage_dict(rank: int, p: Passage) -> dict:
    return {
        "rank": rank, "article_id": p.article_id, "chunk_id": p.chunk_id, "title": p.title,
        "start_char_idx": p.start_char_idx, "end_char_idx": p.end_char_idx, "score": p.score,
        "duplicates": list(p.duplicates or []), "text": p.text,
    }


def _row(question: EvalQuestion, answer: Answer, metrics: dict, matcher: ArticleMatcher, error: Optional[str]) -> dict:
    return {
        "id": question.id, "question": question.question, "type": question.type,
        "answerable": question.answerable, "gold_answers": list(question.answers), "gold_article": question.article,
        "gold_articles": question.gold_articles, "short_answer": answer.short_answer,
        "gold_in_index": matcher.known(question.article) if question.article else None,
        "evidence": question.evidence, "answer": answer.text, "abstained": answer.abstained,
        "abstain_reason": answer.abstain_reason, "mode": answer.mode,
        "citations": [_citation_dict(c) for c in answer.citations],
        "passages": [_passage_dict(i, p) for i, p in enumerate(answer.passages, start=1)],
        "metrics": metrics, "timings": {k: round(v, TIMING_DIGITS) for k, v in answer.timings.items()},
        "notes": list(answer.notes), "error": error, "llm_reply": answer.llm_reply,
        "evidence_score": answer.evidence_score,
    }


class _EvidenceSpans:
    """Spans of evidence sentences in their gold articles (article texts fetched once)."""

    def __init__(self, store):
        self.store = store
        self.cache: dict[str, Optional[str]] = {}

    def span(self, question: EvalQuestion) -> Optional[tuple[int, int]]:
        if not question.article or not question.evidence:
            return None
        if question.article not in self.cache:
            got = self.store.get_articles([question.article], with_text=True).get(question.article)
            self.cache[question.article] = got.text if got else None
        return find_span(self.cache[question.article], question.evidence)


def _answer_or_error(answer_fn: Callable[[EvalQuestion], Answer], question: EvalQuestion, mode: str):
    """(answer, None), or an empty answer and the error when answering failed."""
    try:
        return answer_fn(question), None
    except RagError as exc:  # an LLM that fails on one question must not end the run
        log.warning("question %s failed: %s", question.id, exc)
        return Answer(question=question.question, text="", abstained=False, mode=mode), f"{type(exc).__name__}: {exc}"


def run_questions(
    name: str, questions: Sequence, answer_fn: Callable[[EvalQuestion], Answer], store, *, meta: dict,
    progress: bool,
) -> dict:
    """Ask every question through ``answer_fn`` and score the answers against the index ``store``: the report.

    ``meta`` is merged into the report's meta; ``questions`` as for :func:`evaluate`.
    """
    from tqdm.auto import tqdm

    questions = [EvalQuestion.coerce(q, i) for i, q in enumerate(questions)]
    matcher = ArticleMatcher({r.article_id: r.sha256 for r in store.all_articles()})
    spans = _EvidenceSpans(store)
    rows = []
    started = time.perf_counter()
    for q in tqdm(questions, desc=f"evaluating {name}", unit="q", disable=not progress):
        answer, error = _answer_or_error(answer_fn, q, meta.get("mode") or "")
        metrics = score_answer(q, answer, matcher, spans.span(q))
        rows.append(_row(q, answer, metrics, matcher, error))
    missing = sorted({q.article for q in questions if q.article and not matcher.known(q.article)})
    return {
        "meta": {
            "name": name, **meta, "questions": len(questions), "articles_in_index": len(matcher.sha_by_id),
            "gold_articles_missing": missing, "seconds": round(time.perf_counter() - started, 3),
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        },
        "summary": summarise(rows),
        "questions": rows,
    }


def evaluate(pipeline, questions: Sequence, *, mode: Optional[str] = None, top_k: Optional[int] = None,
             progress: bool = True, use_dates: bool = True) -> dict:
    """Ask every question through ``pipeline`` and score it; returns the report (JSON-ready dict).

    ``questions``: EvalQuestion objects, dicts in the JSONL format or plain strings. ``use_dates``: a question's
    ``question_date`` is the date it is asked as of (``ask(as_of=...)``); False asks every question as of today.
    """
    settings = pipeline.settings
    mode = mode or settings.answer_mode
    top_k = top_k or settings.top_k
    meta = {
        "system": "pipeline", "mode": mode, "top_k": top_k, "index": settings.index_location,
        "embed_model": settings.embed_model, "llm": settings.llm if mode == "llm" else None,
        "abstain_threshold": settings.abstain_threshold, "question_dates": use_dates,
    }

    def answer(q: EvalQuestion) -> Answer:
        return pipeline.ask(q.question, top_k=top_k, mode=mode, as_of=q.question_date if use_dates else None)

    return run_questions(f"pipeline ({mode})", questions, answer, pipeline.store, meta=meta, progress=progress)
