"""Evaluation of retrieval, answers, citations, abstention and speed against a set of gold questions.

    from rag.eval import load_questions, evaluate, format_table
    questions, problems = load_questions("qa.jsonl")
    report = evaluate(pipeline, questions)
    print(format_table(report))

Question files
--------------
- JSONL, one object a line: ``{"id", "question", "answers": [...], "article", "evidence", "type"}``. Only
  ``question`` is required; ``answers`` may be empty (or missing) for an unanswerable question; ``article``
  is the gold article id (the path relative to the ingested root, e.g. ``business/123.txt``) or null.
- CSV with a header holding at least ``question`` and ``answer`` (or ``answers``; several acceptable
  answers separated by ``|``); ``id``, ``article``, ``evidence`` and ``type`` columns are used when present.
An empty answer marks an unanswerable question. A missing ``type`` becomes ``answerable``/``unanswerable``.
Bad lines are skipped and reported with their line number.

Metrics (per question, then averaged over the questions they apply to; ``None`` = not applicable)
-------------------------------------------------------------------------------------------------------
- Retrieval (questions with a gold article): ``hit@1``, ``hit@5`` and ``mrr`` of the gold article over the
  ranked ``Answer.passages``. A passage is from the gold article when its article id is the gold id, when
  both ids are byte-identical copies (same sha256 in the index: duplicates are stored once, under the id of
  the first copy), or when the gold article is among the ids whose identical passage the retriever
  collapsed into it (``Passage.duplicates``). ``evidence_hit``: the gold evidence sentence lies inside a
  retrieved passage (whitespace-normalised containment, or its span in the article inside the passage's).
- Answer (answerable questions): ``em`` and ``f1`` against the best gold answer and ``contains`` (the
  normalised gold answer occurs, token-aligned, in the normalised answer), all on :func:`normalize_answer`
  text. Citation markers ``[n]`` are removed first; an abstention counts as the empty answer.
- Citations: ``citation_precision``, the share of citations whose quote contains a gold answer or covers at
  least half of the evidence sentence's tokens; ``first_citation_gold``, whether the first citation is from
  the gold article (same equivalence as above).
- Abstention: ``abstain_accuracy`` on unanswerable questions (share abstained) and ``false_abstention`` on
  answerable ones (share abstained).
- Speed: p50/p95/mean seconds per stage of ``Answer.timings`` (``total`` included).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence, Union

from rag.core.errors import RagError
from rag.core.types import Answer, Citation, Passage

log = logging.getLogger(__name__)

# --- questions ---------------------------------------------------------------------------------------------


@dataclass
class EvalQuestion:
    """One gold question. ``answers == []`` means nothing in the corpus answers it."""

    question: str
    answers: list[str] = field(default_factory=list)
    id: str = ""
    article: Optional[str] = None
    evidence: Optional[str] = None
    type: str = ""
    line: int = 0
    articles: list[str] = field(default_factory=list)  # every gold article (``article`` is the first)
    question_date: Optional[str] = None  # when the question was asked (ISO date), as RealTime QA gives it

    @property
    def gold_articles(self) -> list[str]:
        """``articles``, or ``[article]`` for records that name one gold article."""
        return self.articles or ([self.article] if self.article else [])

    def __post_init__(self):
        if not self.type:
            self.type = "answerable" if self.answers else "unanswerable"

    @property
    def answerable(self) -> bool:
        return bool(self.answers)

    @classmethod
    def coerce(cls, item: Union["EvalQuestion", dict, str], index: int = 0) -> "EvalQuestion":
        """An EvalQuestion from itself, a dict in the JSONL format, or a bare question string."""
        if isinstance(item, EvalQuestion):
            return item
        if isinstance(item, str):
            return cls(question=item, id=f"q{index + 1:03d}")
        question, problem = _question_from_dict(item, index + 1)
        if question is None:
            raise ValueError(problem)
        return question


def _question_from_dict(obj, line: int) -> tuple[Optional[EvalQuestion], Optional[str]]:
    """Validate one record; returns (question, None) or (None, why it is bad)."""
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        return None, "missing or empty 'question'"
    answers = obj.get("answers", obj.get("answer", []))
    if answers is None:
        answers = []
    if isinstance(answers, str):
        answers = [answers] if answers.strip() else []
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        return None, "'answers' must be a list of strings"
    answers = [a for a in answers if a.strip()]
    articles = obj.get("articles") or []
    if not isinstance(articles, list) or not all(isinstance(a, str) for a in articles):
        return None, "'articles' must be a list of strings"
    fields = {}
    for key in ("id", "article", "evidence", "type", "question_date"):
        value = obj.get(key)
        if value is not None and not isinstance(value, (str, int)):
            return None, f"'{key}' must be a string or null"
        fields[key] = None if value is None or str(value).strip() == "" else str(value).strip()
    return EvalQuestion(
        question=" ".join(question.split()), answers=answers, id=fields["id"] or f"line{line}",
        article=fields["article"] or (articles[0] if articles else None), evidence=fields["evidence"],
        type=fields["type"] or "", line=line, articles=[a.strip() for a in articles if a.strip()],
        question_date=fields["question_date"],
    ), None


def load_questions(path: Union[str, Path]) -> tuple[list[EvalQuestion], list[str]]:
    """Questions from a JSONL or CSV file, and the problems found (``"line N: why"``; those lines skipped).

    Raises FileNotFoundError for a missing file. CSV is chosen by the ``.csv`` suffix, JSONL otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such question file: {path}")
    questions: list[EvalQuestion] = []
    problems: list[str] = []
    seen_ids: set[str] = set()

    def add(obj, line: int) -> None:
        question, problem = _question_from_dict(obj, line)
        if question is None:
            problems.append(f"line {line}: {problem}")
            return
        if question.id in seen_ids:
            problems.append(f"line {question.line}: duplicate id {question.id!r} (renamed to line{question.line})")
            question.id = f"line{question.line}"
        seen_ids.add(question.id)
        questions.append(question)

    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
            if "question" not in header or not ({"answer", "answers"} & header.keys()):
                problems.append("line 1: the CSV header needs 'question' and 'answer' columns")
                return [], problems
            for row in reader:
                line = reader.line_num
                if None in row:  # more cells than the header has
                    problems.append(f"line {line}: more cells than header columns")
                    continue
                rec = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
                raw = rec.get("answers", rec.get("answer", ""))
                rec["answers"] = [a.strip() for a in raw.split("|") if a.strip()] if raw else []
                rec.pop("answer", None)
                add(rec, line)
        return questions, problems

    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"line {line}: invalid JSON ({exc.msg})")
                continue
            add(obj, line)
    return questions, problems


# --- answer normalisation and answer metrics ----------------------------------------------------------------

_MARKER = re.compile(r"\s*\[\s*\d+(?:\s*,\s*\d+)*\s*\]")
_APOSTROPHES = frozenset("'`\u2018\u2019\u02bc\u2032")
_ARTICLES = frozenset({"a", "an", "the"})
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERCENT = re.compile(r"\s*%|\bper\s+cent\b|\bpercent\b")


def strip_markers(text: str) -> str:
    """``text`` without citation markers (``[1]``, ``[1, 2]``)."""
    return _MARKER.sub("", text or "").strip()


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


def _golds(golds: Union[str, Sequence[str], None]) -> list[str]:
    if golds is None:
        return []
    if isinstance(golds, str):
        return [golds]
    return list(golds)


def _normalised_golds(golds) -> list[str]:
    """Normalised non-empty gold answers (a gold answer that normalises to nothing is ignored)."""
    return [g for g in (normalize_answer(x) for x in _golds(golds)) if g]


def exact_match(prediction: Optional[str], golds: Union[str, Sequence[str], None]) -> float:
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


def token_f1(prediction: Optional[str], golds: Union[str, Sequence[str], None]) -> float:
    """The best SQuAD token F1 of the prediction against any gold answer (no golds: 1.0 iff empty)."""
    pred = normalize_answer(prediction).split()
    normed = _normalised_golds(golds)
    if not normed:
        return float(not pred)
    return max(_f1(pred, g.split()) for g in normed)


def contains_answer(prediction: Optional[str], golds: Union[str, Sequence[str], None]) -> float:
    """1.0 when some normalised gold answer occurs in the normalised prediction as whole tokens.

    ("8 December" is in "Lenovo signed on 8 December 2004", "20" is not in "200".) No golds: 1.0 iff empty.
    """
    pred = normalize_answer(prediction)
    normed = _normalised_golds(golds)
    if not normed:
        return float(pred == "")
    padded = f" {pred} "
    return float(any(f" {g} " in padded for g in normed))


def evidence_overlap(quote: str, evidence: Optional[str]) -> float:
    """Share of the evidence sentence's normalised tokens (with multiplicity) that also occur in ``quote``."""
    ev = normalize_answer(evidence).split()
    if not ev:
        return 0.0
    common = Counter(ev) & Counter(normalize_answer(quote).split())
    return sum(common.values()) / len(ev)


def citation_is_correct(quote: str, golds: Sequence[str], evidence: Optional[str], min_overlap: float = 0.5) -> bool:
    """A citation is correct when its quote contains a gold answer or covers ``min_overlap`` of the evidence."""
    if _normalised_golds(golds) and contains_answer(quote, golds):
        return True
    return bool(evidence) and evidence_overlap(quote, evidence) >= min_overlap


# --- retrieval metrics ----------------------------------------------------------------------------------------


def _ws(text: str) -> str:
    return " ".join((text or "").split())


class ArticleMatcher:
    """Decides whether an article id is the gold article, treating byte-identical copies as the same article."""

    def __init__(self, sha_by_id: Optional[dict[str, str]] = None):
        self.sha_by_id = dict(sha_by_id or {})

    @classmethod
    def from_store(cls, store) -> "ArticleMatcher":
        return cls({r.article_id: r.sha256 for r in store.all_articles()})

    def same(self, article_id: Optional[str], gold: Optional[str]) -> bool:
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


# --- scoring one answer -------------------------------------------------------------------------------------


def score_answer(
    question: EvalQuestion, answer: Answer, matcher: ArticleMatcher, evidence_span: Optional[tuple[int, int]] = None
) -> dict:
    """Every per-question metric (None where it does not apply)."""
    m: dict[str, Optional[float]] = {}
    gold = question.article
    golds = question.gold_articles
    if gold:
        rank = min((r for r in (gold_rank(answer.passages, g, matcher) for g in golds) if r), default=None)
        m["hit@1"] = float(rank is not None and rank <= 1)
        m["hit@5"] = float(rank is not None and rank <= 5)
        m["mrr"] = 1.0 / rank if rank else 0.0
        m["gold_rank"] = rank
    else:
        m["hit@1"] = m["hit@5"] = m["mrr"] = m["gold_rank"] = None
    if question.evidence:
        m["evidence_hit"] = float(evidence_retrieved(answer.passages, question.evidence, gold, evidence_span, matcher))
    else:
        m["evidence_hit"] = None
    prediction = "" if answer.abstained else strip_markers(answer.text)
    short = "" if answer.abstained else (answer.short_answer or prediction)  # EM and F1 judge the short answer
    if question.answerable:
        m["em"] = exact_match(short, question.answers)
        m["f1"] = token_f1(short, question.answers)
        m["contains"] = contains_answer(prediction, question.answers)
    else:
        m["em"] = m["f1"] = m["contains"] = None
    if answer.citations and (question.answerable or question.evidence):
        correct = [citation_is_correct(c.quote, question.answers, question.evidence) for c in answer.citations]
        m["citation_precision"] = sum(correct) / len(correct)
    else:
        m["citation_precision"] = None
    if answer.citations and gold:
        first = answer.citations[0]
        m["first_citation_gold"] = float(any(matcher.same(first.article_id, g) for g in golds))
        # Lenient: other articles often report the same answer (RealTime QA's distractors are search results
        # for the question); a first citation quoting a gold answer counts as right too.
        quotes_gold = bool(contains_answer(first.quote, question.answers))
        m["first_citation_ok"] = float(bool(m["first_citation_gold"]) or quotes_gold)
    else:
        m["first_citation_gold"] = m["first_citation_ok"] = None
    m["abstain_accuracy"] = None if question.answerable else float(answer.abstained)
    m["false_abstention"] = float(answer.abstained) if question.answerable else None
    return m


# --- aggregation --------------------------------------------------------------------------------------------

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


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    values = sorted(v for v in values if v is not None and not math.isnan(v))
    if not values:
        return None
    pos = (len(values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


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
        out[key] = round(sum(values) / len(values), 4) if values else None
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


def _round(value: Optional[float], digits: int = 4) -> Optional[float]:
    return None if value is None else round(value, digits)


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


# --- running an evaluation ------------------------------------------------------------------------------------


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
        "evidence": question.evidence, "answer": answer.text, "abstained": answer.abstained, "mode": answer.mode,
        "citations": [_citation_dict(c) for c in answer.citations],
        "passages": [_passage_dict(i, p) for i, p in enumerate(answer.passages, start=1)],
        "metrics": metrics, "timings": {k: round(v, 5) for k, v in answer.timings.items()},
        "notes": list(answer.notes), "error": error,
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


def _run(
    name: str, questions: Sequence, answer_fn, store, *, meta: dict, progress: bool
) -> dict:
    from tqdm.auto import tqdm

    questions = [EvalQuestion.coerce(q, i) for i, q in enumerate(questions)]
    matcher = ArticleMatcher.from_store(store)
    spans = _EvidenceSpans(store)
    rows = []
    started = time.perf_counter()
    for q in tqdm(questions, desc=f"evaluating {name}", unit="q", disable=not progress):
        error = None
        try:
            answer = answer_fn(q.question)
        except RagError as exc:  # an LLM that fails on one question must not end the run
            log.warning("question %s failed: %s", q.id, exc)
            error = f"{type(exc).__name__}: {exc}"
            answer = Answer(question=q.question, text="", abstained=False, mode=meta.get("mode") or "")
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
             progress: bool = True) -> dict:
    """Ask every question through ``pipeline`` and score it; returns the report (JSON-ready dict).

    ``questions``: EvalQuestion objects, dicts in the JSONL format or plain strings.
    """
    settings = pipeline.settings
    mode = mode or settings.answer_mode
    top_k = top_k or settings.top_k
    meta = {
        "system": "pipeline", "mode": mode, "top_k": top_k, "index": settings.index_location,
        "embed_model": settings.embed_model, "llm": settings.llm if mode == "llm" else None,
        "abstain_threshold": settings.abstain_threshold,
    }
    return _run(
        f"pipeline ({mode})", questions, lambda q: pipeline.ask(q, top_k=top_k, mode=mode), pipeline.store,
        meta=meta, progress=progress,
    )


def baseline_retriever(pipeline, top_k: int):
    """A plain LlamaIndex vector retriever over the pipeline's own chunks collection."""
    from llama_index.core import VectorStoreIndex

    index = VectorStoreIndex.from_vector_store(pipeline.store.vector_store, embed_model=pipeline.embedder.llama)
    return index.as_retriever(similarity_top_k=top_k)


def baseline_answer(retriever, question: str) -> Answer:
    """The baseline's answer: the top retrieved chunk's text (never abstains); citations = the retrieved nodes."""
    t0 = time.perf_counter()
    nodes = retriever.retrieve(question)
    elapsed = time.perf_counter() - t0
    passages, citations = [], []
    for i, hit in enumerate(nodes):
        node, meta = hit.node, hit.node.metadata or {}
        start = meta.get("start", node.start_char_idx if node.start_char_idx is not None else 0)
        end = meta.get("end", node.end_char_idx if node.end_char_idx is not None else 0)
        article_id = str(meta.get("article_id", node.ref_doc_id or ""))
        score = round(float(hit.score or 0.0), 6)
        text = node.get_content()
        passages.append(Passage(
            chunk_id=node.node_id, article_id=article_id, title=meta.get("title", ""), source=meta.get("source", ""),
            text=text, start_char_idx=int(start), end_char_idx=int(end), score=score, dense_score=score,
        ))
        citations.append(Citation(
            n=i + 1, article_id=article_id, title=meta.get("title", ""), source=meta.get("source", ""), quote=text,
            start_char_idx=int(start), end_char_idx=int(end), score=score, passage_index=i,
        ))
    return Answer(
        question=question, text=passages[0].text if passages else "", citations=citations, passages=passages,
        abstained=False, mode="baseline", timings={"retrieve": elapsed, "total": elapsed}, retrieval_query=question,
    )


def evaluate_baseline(pipeline, questions: Sequence, top_k: Optional[int] = None, *, progress: bool = True) -> dict:
    """Score a plain LlamaIndex vector retriever over the same index (answer = top chunk, no abstention)."""
    top_k = top_k or pipeline.settings.top_k
    retriever = baseline_retriever(pipeline, top_k)
    meta = {
        "system": "baseline", "mode": "top chunk", "top_k": top_k, "index": pipeline.settings.index_location,
        "embed_model": pipeline.settings.embed_model,
        "description": "VectorStoreIndex.from_vector_store(...).as_retriever(similarity_top_k=top_k); "
                       "answer = top chunk text, citations = retrieved chunks, never abstains",
    }
    return _run("baseline (vector)", questions, lambda q: baseline_answer(retriever, q), pipeline.store,
                meta=meta, progress=progress)


# --- formatting -----------------------------------------------------------------------------------------------


def _fmt(value, width: int = 6, digits: int = 3) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        return f"{value:.{digits}f}".rjust(width)
    return str(value).rjust(width)


def _header_line(report: dict) -> str:
    meta, overall = report.get("meta", {}), report["summary"]["overall"]
    parts = [
        f"{meta.get('name', 'report')}: {overall['n']} questions ({overall['answerable']} answerable, "
        f"{overall['unanswerable']} unanswerable)",
        f"top_k {meta.get('top_k')}",
        f"index {meta.get('index')}",
    ]
    line = " | ".join(parts)
    if overall.get("errors"):
        line += f"\n{overall['errors']} question(s) failed with an error (scored as wrong answers)"
    missing = meta.get("gold_articles_missing") or []
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        line += f"\nwarning: {len(missing)} gold article(s) not in the index: {shown}"
    return line


def format_table(report: dict) -> str:
    """The summary table of one report: metrics overall and per question type, then speed per stage."""
    summary = report["summary"]
    name_w = max([12] + [len(t) + 1 for t in summary["by_type"]])
    head = "type".ljust(name_w) + "   n" + "".join(_fmt(label, 7) for _, label in METRICS)
    lines = [_header_line(report), "", head, "-" * len(head)]

    def row(name, agg):
        return name.ljust(name_w) + f"{agg['n']:4d}" + "".join(_fmt(agg[k], 7) for k, _ in METRICS)

    lines.append(row("overall", summary["overall"]))
    for t, agg in summary["by_type"].items():
        lines.append(row(t, agg))
    lines.append("")
    lines.append("columns: " + "; ".join(f"{label} = {METRIC_DESCRIPTIONS[k]}" for k, label in METRICS))
    if summary.get("speed"):
        lines += ["", "seconds".ljust(12) + "    p50    p95   mean"]
        for stage, s in summary["speed"].items():
            lines.append(stage.ljust(12) + "".join(_fmt(s[k], 7) for k in ("p50", "p95", "mean")))
    return "\n".join(lines)


def _delta(a, b) -> str:
    if a is None or b is None:
        return "".rjust(8)
    d = b - a
    return (f"{d:+.3f}" if abs(d) >= 0.0005 else "=").rjust(8)


_OUTCOMES = [("hit@1", "hit@1"), ("evidence_hit", "evid"), ("contains", "cont"), ("em", "EM"),
             ("first_citation_gold", "cite1")]


def compare(a: dict, b: dict, names: Optional[tuple[str, str]] = None) -> str:
    """Two reports side by side (B minus A in the delta column), then the questions whose outcome changed."""
    na = (names or (None, None))[0] or a.get("meta", {}).get("name", "A")
    nb = (names or (None, None))[1] or b.get("meta", {}).get("name", "B")
    lines = [f"A = {_header_line(a)}", f"B = {_header_line(b)}", ""]
    head = "metric".ljust(22) + "A".rjust(8) + "B".rjust(8) + "B-A".rjust(8)
    lines += [head + f"    (A = {na}, B = {nb})", "-" * len(head)]
    oa, ob = a["summary"]["overall"], b["summary"]["overall"]
    for key, _ in METRICS:
        lines.append(key.ljust(22) + _fmt(oa.get(key), 8) + _fmt(ob.get(key), 8) + _delta(oa.get(key), ob.get(key)))

    # per type: the headline metrics, A / B pairs
    types = list(dict.fromkeys([*a["summary"]["by_type"], *b["summary"]["by_type"]]))
    keys = [("hit@1", "hit@1"), ("mrr", "MRR"), ("evidence_hit", "evid"), ("f1", "F1"), ("contains", "cont"),
            ("citation_precision", "citeP"), ("abstain_accuracy", "abst")]
    type_w = max([14] + [len(t) + 1 for t in types])
    cell_w = 14
    lines += ["", "per type".ljust(type_w) + "   n" + "".join(f"{label + ' A / B':>{cell_w}}" for _, label in keys)]
    for t in types:
        ta, tb = a["summary"]["by_type"].get(t) or {}, b["summary"]["by_type"].get(t) or {}
        n = (ta or tb).get("n", 0)
        cells = "".join(f"{_fmt(ta.get(k), 5)} / {_fmt(tb.get(k), 5).strip():<5}".rjust(cell_w) for k, _ in keys)
        lines.append(t.ljust(type_w) + f"{n:4d}" + cells)

    # speed
    sa, sb = a["summary"].get("speed", {}), b["summary"].get("speed", {})
    stages = list(dict.fromkeys([*sa, *sb]))
    if stages:
        lines += ["", "seconds".ljust(12) + "p50 A".rjust(8) + "p50 B".rjust(8) + "p95 A".rjust(8) + "p95 B".rjust(8)]
        for stage in stages:
            x, y = sa.get(stage, {}), sb.get(stage, {})
            lines.append(stage.ljust(12) + "".join(_fmt(v, 8) for v in (x.get("p50"), y.get("p50"), x.get("p95"),
                                                                        y.get("p95"))))

    # per question
    def key_of(r):
        return r.get("id") or r.get("question")

    qa = {key_of(r): r for r in a.get("questions", [])}
    qb = {key_of(r): r for r in b.get("questions", [])}
    changed = []
    for k in qa.keys() & qb.keys():
        ra, rb = qa[k], qb[k]
        diffs = []
        for metric, label in _OUTCOMES:
            va, vb = ra["metrics"].get(metric), rb["metrics"].get(metric)
            if va is not None and vb is not None and va != vb:
                diffs.append(f"{label} {va:g}->{vb:g}")
        if ra.get("abstained") != rb.get("abstained"):
            diffs.append(f"abstained {ra.get('abstained')}->{rb.get('abstained')}")
        if diffs:
            changed.append((k, ra["type"], diffs))
    lines += ["", f"questions whose outcome differs: {len(changed)}"]
    for k, t, diffs in sorted(changed, key=lambda x: str(x[0])):
        lines.append(f"  {k} [{t}]: " + ", ".join(diffs))
    only_a, only_b = sorted(qa.keys() - qb.keys(), key=str), sorted(qb.keys() - qa.keys(), key=str)
    if only_a:
        lines.append(f"only in A ({len(only_a)}): " + ", ".join(map(str, only_a[:20])) + (" ..." if len(only_a) > 20 else ""))
    if only_b:
        lines.append(f"only in B ({len(only_b)}): " + ", ".join(map(str, only_b[:20])) + (" ..." if len(only_b) > 20 else ""))
    return "\n".join(lines)


def write_report(report: dict, path: Union[str, Path]) -> Path:
    """Write a report as indented UTF-8 JSON (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    return path


def read_report(path: Union[str, Path]) -> dict:
    """A report written by :func:`write_report` (ValueError when it is not one)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "summary" not in data or "overall" not in data.get("summary", {}):
        raise ValueError(f"{path} is not an evaluation report")
    return data


__all__ = [
    "EvalQuestion", "ArticleMatcher", "load_questions", "normalize_answer", "strip_markers", "exact_match",
    "token_f1", "contains_answer", "evidence_overlap", "citation_is_correct", "gold_rank", "find_span",
    "evidence_retrieved", "score_answer", "aggregate", "summarise", "percentile", "evaluate", "evaluate_baseline",
    "baseline_answer", "baseline_retriever", "format_table", "compare", "write_report", "read_report",
]
