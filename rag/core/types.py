"""The contract between the core and every face (UI, CLI, evaluation): plain, JSON-serialisable dataclasses."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Optional


@dataclass(kw_only=True)
class ArticleMeta:
    """What is known about an article besides its text: shared by the loaded article and the stored record."""

    title: str
    source: str
    sha256: str
    format: str = ""
    published: str = ""  # publish date, ISO 8601 (YYYY-MM-DD); "" when unknown
    author: str = ""  # the authors' names, comma-separated
    url: str = ""
    site: str = ""  # the outlet that published it (e.g. "cnn", "BBC News")
    page_starts: list[int] = field(default_factory=list)  # PDF: character offset where each page begins


def article_meta(article: ArticleMeta) -> dict:
    """The :class:`ArticleMeta` fields of ``article`` (a loaded article or a stored record) as keywords."""
    return {f.name: getattr(article, f.name) for f in fields(ArticleMeta)}


@dataclass
class Passage:
    """A retrieved chunk. ``text == article_text[start_char_idx:end_char_idx]``."""

    chunk_id: str
    article_id: str
    title: str
    source: str
    text: str
    start_char_idx: int
    end_char_idx: int
    score: float  # retrieval score after reranking (higher is better)
    page: int = 0
    dense_score: Optional[float] = None  # cosine similarity to the question
    bm25_score: Optional[float] = None
    coverage: float = 0.0  # idf-weighted share of the question's terms in the passage (and its title)
    duplicates: list[str] = field(default_factory=list)  # article ids whose identical passage was collapsed
    published: str = ""  # the article's publish date (ISO), "" when unknown
    site: str = ""  # the article's outlet


@dataclass
class Citation:
    """A numbered citation: ``quote == article_text[start_char_idx:end_char_idx]``."""

    n: int
    article_id: str
    title: str
    source: str
    quote: str
    start_char_idx: int
    end_char_idx: int
    score: float
    page: int = 0
    passage_index: int = 0  # index into Answer.passages of the passage holding the quote
    published: str = ""  # the article's publish date (ISO), "" when unknown
    site: str = ""  # the article's outlet


@dataclass
class Reading:
    """Streamed by ``ask_stream`` in LLM mode before the model is called: the passages it is given to read,
    so that a face can show the evidence at once while the model works."""

    question: str
    passages: list[Passage]


@dataclass
class Answer:
    """What ``ask`` returns."""

    question: str
    text: str  # the answer as shown, with [n] markers
    citations: list[Citation] = field(default_factory=list)
    short_answer: Optional[str] = None  # the answer phrase alone (LLM mode), an exact span of the first citation
    passages: list[Passage] = field(default_factory=list)
    abstained: bool = False
    abstain_reason: str = ""  # why it abstained (shown instead of an answer); "" when it answered
    mode: str = "extractive"
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "LLM cited nothing valid; extractive answer shown"
    retrieval_query: str = ""  # the standalone question actually used for retrieval (differs for follow-ups)
    evidence_score: float = 0.0
    llm_reply: Optional[str] = None  # the LLM's raw reply (LLM mode), kept for auditing what was checked
    as_of: str = ""  # the date the question was answered as of (ISO): no article published later is used
    time_scope: str = ""  # the publish dates the answer was drawn from, in words ("" when not narrowed)

    def to_dict(self) -> dict:
        """A plain dict (JSON-ready)."""
        return asdict(self)

    def to_json(self, **kwargs) -> str:
        """The answer as JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False, **kwargs)
