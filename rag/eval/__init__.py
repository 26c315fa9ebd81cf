"""Evaluation against gold questions (a developer tool): question sets, metrics, the runner, the LlamaIndex
baseline, reports, and cached evaluation indexes (:mod:`rag.eval.index_cache`, imported on its own: it opens
the index through :mod:`rag.app`).

- :mod:`rag.eval.questions`: gold question files (JSONL, CSV).
- :mod:`rag.eval.metrics`: pure metric functions and the one percentile.
- :mod:`rag.eval.scoring`: the per-question metrics of an answer and their aggregates.
- :mod:`rag.eval.runner`: asking the questions and building a report.
- :mod:`rag.eval.baseline`: a plain LlamaIndex vector retriever over the same index.
- :mod:`rag.eval.report`: tables, two reports side by side, reports on disk.
"""

from rag.core.text import strip_markers
from rag.eval.baseline import baseline_answer, baseline_retriever, evaluate_baseline
from rag.eval.metrics import (
    ArticleMatcher, citation_is_correct, contains_answer, evidence_overlap, evidence_retrieved, exact_match,
    find_span, gold_rank, normalize_answer, percentile, token_f1,
)
from rag.eval.questions import EvalQuestion, load_questions
from rag.eval.report import compare, format_table, read_report, write_report
from rag.eval.runner import evaluate, run_questions
from rag.eval.scoring import METRIC_DESCRIPTIONS, METRICS, aggregate, score_answer, speed_summary, summarise

__all__ = [
    "EvalQuestion", "load_questions", "strip_markers", "normalize_answer", "exact_match", "token_f1",
    "contains_answer", "evidence_overlap", "citation_is_correct", "ArticleMatcher", "gold_rank", "find_span",
    "evidence_retrieved", "percentile", "score_answer", "aggregate", "speed_summary", "summarise", "evaluate",
    "run_questions", "baseline_retriever", "baseline_answer", "evaluate_baseline", "format_table", "compare",
    "write_report", "read_report", "METRICS", "METRIC_DESCRIPTIONS",
]
