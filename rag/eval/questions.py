"""Gold question sets: the :class:`EvalQuestion` record and the JSONL / CSV files it is read from.

- JSONL, one object a line: ``{"id", "question", "answers": [...], "article", "evidence", "type"}``. Only
  ``question`` is required; ``answers`` may be empty (or missing) for an unanswerable question; ``article``
  is the gold article id (the path relative to the ingested root, e.g. ``business/123.txt``) or null.
- CSV with a header holding at least ``question`` and ``answer`` (or ``answers``; several acceptable
  answers separated by ``|``); ``id``, ``article``, ``evidence`` and ``type`` columns are used when present.

An empty answer marks an unanswerable question. A missing ``type`` becomes ``answerable``/``unanswerable``.
Bad lines are skipped and reported with their line number.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

CSV_ANSWER_SEPARATOR = "|"  # several acceptable answers in one CSV cell


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
        """Whether some gold answer exists."""
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


def _answers(obj: dict) -> tuple[Optional[list[str]], Optional[str]]:
    """The non-empty answers of a record, or (None, why they are bad)."""
    answers = obj.get("answers", obj.get("answer", []))
    if answers is None:
        answers = []
    if isinstance(answers, str):
        answers = [answers] if answers.strip() else []
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        return None, "'answers' must be a list of strings"
    return [a for a in answers if a.strip()], None


def _question_from_dict(obj, line: int) -> tuple[Optional[EvalQuestion], Optional[str]]:
    """Validate one record; returns (question, None) or (None, why it is bad)."""
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        return None, "missing or empty 'question'"
    answers, problem = _answers(obj)
    if answers is None:
        return None, problem
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


def _csv_records(path: Path, problems: list[str]) -> Iterator[tuple[dict, int]]:
    """(record, line) of every usable CSV row, in the JSONL record format; problems appended to ``problems``."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
        if "question" not in header or not ({"answer", "answers"} & header.keys()):
            problems.append("line 1: the CSV header needs 'question' and 'answer' columns")
            return
        for row in reader:
            line = reader.line_num
            if None in row:  # more cells than the header has
                problems.append(f"line {line}: more cells than header columns")
                continue
            rec = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
            raw = rec.get("answers", rec.get("answer", ""))
            rec["answers"] = [a.strip() for a in raw.split(CSV_ANSWER_SEPARATOR) if a.strip()] if raw else []
            rec.pop("answer", None)
            yield rec, line


def _jsonl_records(path: Path, problems: list[str]) -> Iterator[tuple[object, int]]:
    """(parsed object, line) of every non-blank JSONL line that parses; problems appended to ``problems``."""
    with path.open(encoding="utf-8-sig", errors="replace") as fh:
        for line, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                problems.append(f"line {line}: invalid JSON ({exc.msg})")
                continue
            yield obj, line


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
    records = _csv_records if path.suffix.lower() == ".csv" else _jsonl_records
    for obj, line in records(path, problems):
        question, problem = _question_from_dict(obj, line)
        if question is None:
            problems.append(f"line {line}: {problem}")
            continue
        if question.id in seen_ids:
            problems.append(f"line {question.line}: duplicate id {question.id!r} (renamed to line{question.line})")
            question.id = f"line{question.line}"
        seen_ids.add(question.id)
        questions.append(question)
    return questions, problems
