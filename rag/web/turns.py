"""What one chat turn keeps in the browser session, and what a click on one of its references shows.

A turn is a plain dict (Gradio keeps it in a ``gr.State``): ``{"answer": Answer as a dict, "articles": {id:
metadata, and the text of cited articles}}``. ``store`` is the index's :class:`rag.index.store.Store`.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict
from typing import Iterable, Optional, Sequence, Union

from rag.core.errors import InvalidQuestion
from rag.core.settings import MAX_TOP_K
from rag.core.types import Answer, Reading
from rag.web.render import STALE_REFERENCE, byline, evidence_html, page_of, viewer_html

# TURN:c:N a citation, TURN:p:I a passage (see static/cite-links.js)
REFERENCE = re.compile(r"(?<!\d)(\d++):([cp]):(\d++)")


def ask_options(mode: str = "", top_k: float = 0, as_of: str = "", since: str = "", until: str = "",
                sources: Union[str, Iterable[str], None] = None) -> dict:
    """The keywords of ``ask`` from the UI's fields or the API's arguments.

    An empty mode or top-k is the configured one; an empty date is none (as of today, no since/until);
    ``sources``: outlet names, as a list or comma-separated text (none: every outlet). InvalidQuestion for a top-k
    that is not a whole number from 1 to :data:`MAX_TOP_K`.
    """
    if top_k and not (isinstance(top_k, (int, float)) and math.isfinite(top_k) and top_k == int(top_k)
                      and 1 <= top_k <= MAX_TOP_K):
        raise InvalidQuestion(f"top_k must be a whole number from 1 to {MAX_TOP_K}, not {str(top_k)[:20]}")
    if isinstance(sources, str):
        sources = sources.split(",")
    names = [s.strip() for s in sources or [] if isinstance(s, str) and s.strip()]
    dates = {key: (value or "").strip() or None for key, value in (("as_of", as_of), ("since", since), ("until", until))}
    return {"mode": mode or None, "top_k": int(top_k) if top_k else None, **dates, "sources": names or None}


def check_request(question: str, history: Sequence[tuple[str, str]], settings) -> None:
    """InvalidQuestion when a question from the page or an API asks for more work than one request may: a
    question over ``max_question_chars``, or more than ``max_history_turns`` earlier turns or
    ``max_history_chars`` characters of them. (``ask`` itself truncates a long question; a request is refused, so
    that its sender knows.)"""
    if len(question) > settings.max_question_chars:
        raise InvalidQuestion(f"The question is {len(question):,} characters long; the limit is "
                              f"{settings.max_question_chars:,}.")
    if len(history) > settings.max_history_turns:
        raise InvalidQuestion(f"The conversation has {len(history):,} earlier turns; the limit is "
                              f"{settings.max_history_turns:,}. Start a new conversation.")
    chars = sum(len(q) + len(a) for q, a in history)
    if chars > settings.max_history_chars:
        raise InvalidQuestion(f"The conversation so far is {chars:,} characters long; the limit is "
                              f"{settings.max_history_chars:,}. Start a new conversation.")


def reading_turn(reading: Reading, store) -> dict:
    """A provisional turn for the evidence panel: the passages an LLM is reading."""
    records = store.get_articles({p.article_id for p in reading.passages})
    answer = {"question": reading.question, "pending": True, "abstained": False, "citations": [],
              "passages": [asdict(p) for p in reading.passages]}
    return {"answer": answer, "articles": {i: {"url": r.url, "page_starts": r.page_starts} for i, r in records.items()}}


def answer_turn(answer: Answer, store) -> dict:
    """What a turn keeps in the session: the answer and the cited/related articles' text and metadata."""
    data = answer.to_dict()
    cited = {c["article_id"] for c in data["citations"]}
    records = store.get_articles(cited | {p["article_id"] for p in data["passages"]}, with_text=True)
    articles = {
        i: {"title": r.title, "source": r.source, "url": r.url, "format": r.format,
            "page_starts": r.page_starts, "sha256": r.sha256, "text": r.text if i in cited else None}
        for i, r in records.items()
    }
    return {"answer": data, "articles": articles}


def open_reference(ref: str, turns: list[dict], store) -> tuple[Optional[str], Optional[str]]:
    """A click on a citation, [n] marker or related passage: (evidence panel, article viewer) HTML.

    None means "leave that panel as it is" (a reference to nothing of its turn).
    """
    m = REFERENCE.fullmatch(ref)
    if not m or int(m.group(1)) >= len(turns):
        return None, STALE_REFERENCE
    turn, kind, index = int(m.group(1)), m.group(2), int(m.group(3))
    turn_data = turns[turn]
    answer = turn_data["answer"]
    if kind == "c":
        found = [c for c in answer["citations"] if c["n"] == index]
        if not found:
            return None, None
        c = found[0]
        article_id, start, end, expected = c["article_id"], c["start_char_idx"], c["end_char_idx"], c["quote"]
        title, source, label = c["title"], c["source"], f"highlighted: the passage cited as [{index}]"
    else:
        if index >= len(answer["passages"]):
            return None, None
        p = answer["passages"][index]
        article_id, start, end, expected = p["article_id"], p["start_char_idx"], p["end_char_idx"], p["text"]
        title, source, label = p["title"], p["source"], "highlighted: a related passage (not an answer)"
    record = store.get_articles([article_id], with_text=True).get(article_id)
    text = record.text if record is not None else None
    url = record.url if record is not None else ""
    page = page_of(start, record.page_starts if record is not None else [])
    meta = byline(record.site, record.published) if record is not None else ""
    viewer = viewer_html(title or article_id, source, url, text, start, end, expected, label, page,
                         related=kind == "p", meta=meta)
    return evidence_html(turn_data, turn, active=ref), viewer
