"""The Gradio side of the web UI's events: the Ask tab and /ask API (:class:`AskCallbacks`), and the Articles tab
and /articles API (:class:`LibraryCallbacks`). ``ui.py`` lays out the page and connects these to it.

``services`` is a :class:`rag.app.Services`: the pipeline answers, the store and ingestor serve the library. Per
browser-session data lives in Gradio's ``gr.State``, never in these objects.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import gradio as gr

from rag.core.errors import InvalidQuestion, RagError
from rag.core.turns import Waiting
from rag.core.types import Reading
from rag.web.library import COLUMNS, NEWEST_INGESTED, Library
from rag.web.render import (
    EVIDENCE_PLACEHOLDER, VIEWER_PLACEHOLDER, answer_message, article_count_html, error_message, evidence_html,
    pending_message, question_message, streaming_message, upload_status_html, waiting_message,
)
from rag.web.turns import answer_turn, ask_options, check_request, open_reference, reading_turn

log = logging.getLogger(__name__)


def _assistant(html: str) -> dict:
    return {"role": "assistant", "content": html}


class AskCallbacks:
    """The Ask tab and the /ask API, bound to one pipeline (per-session data lives in gr.State, never here)."""

    def __init__(self, services):
        self.pipeline = services.pipeline
        self.store = services.store
        self.settings = services.settings

    def respond(self, question, chat, history, answers, mode, top_k, as_of="", since="", until="", sources=None):
        """Stream an answer into the chat (a generator: Gradio shows each yield).

        ``as_of``, ``since``, ``until`` (YYYY-MM-DD, empty: none) and ``sources`` (outlets) narrow what it cites.
        """
        chat, history, answers = list(chat or []), list(history or []), list(answers or [])
        question = question if isinstance(question, str) else ""
        try:
            if not question.strip():
                raise InvalidQuestion("Please type a question.")
            options = ask_options(mode, top_k, as_of, since, until, sources)
            check_request(question, history, self.settings)
        except InvalidQuestion as exc:  # the question stays in its box
            gr.Warning(str(exc))
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        turn = len(answers)
        chat.append({"role": "user", "content": question_message(question)})
        chat.append(_assistant(pending_message("Searching the articles…")))
        yield "", chat, history, answers, gr.skip(), gr.skip()
        try:
            answer = yield from self._stream(question, chat, history, turn, options)
        except RagError as exc:  # messages meant for people, shown as they are
            chat[-1] = _assistant(error_message(str(exc)))
            yield question, chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()  # the question back, to retry
            return
        except Exception as exc:  # never show a traceback; log it
            log.exception("answering failed")
            chat[-1] = _assistant(error_message(
                f"Something went wrong ({type(exc).__name__}); the error is in the server log."))
            yield question, chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        turn_data = answer_turn(answer, self.store)
        answers.append(turn_data)
        history.append((answer.question, answer.text))
        chat[-1] = _assistant(answer_message(turn_data["answer"], turn, answer.as_of if options["as_of"] else ""))
        yield gr.skip(), chat, history, answers, evidence_html(turn_data, turn), VIEWER_PLACEHOLDER

    def _stream(self, question, chat, history, turn, options):
        """Yield the chat as the answer streams in (and the evidence an LLM reads); return the Answer."""
        streamed, answer = "", None
        for item in self.pipeline.ask_stream(question, history=history, **options):
            if isinstance(item, str):
                streamed += item
                chat[-1] = _assistant(streaming_message(streamed))
                yield gr.skip(), chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif isinstance(item, Waiting):  # others' questions hold the model: say how long, never hang mute
                chat[-1] = _assistant(waiting_message(item))
                yield gr.skip(), chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif isinstance(item, Reading):  # the evidence at once, while the model reads it
                chat[-1] = _assistant(pending_message("Reading the passages\u2026"))
                evidence = evidence_html(reading_turn(item, self.store), turn)
                yield gr.skip(), chat, gr.skip(), gr.skip(), evidence, gr.skip()
            else:
                answer = item
        if answer is None:
            raise RuntimeError("the pipeline returned no answer")
        return answer

    def open_ref(self, answers, evt: gr.EventData):
        """A click on a citation, [n] marker or related passage: evidence panel + article viewer."""
        data = getattr(evt, "_data", None) or {}
        evidence, viewer = open_reference(str(data.get("ref", "")), answers or [], self.store)
        return (gr.skip() if evidence is None else evidence), (gr.skip() if viewer is None else viewer)

    @staticmethod
    def new_conversation():
        """Empty chat, history and evidence: the state of a fresh page."""
        return [], [], [], EVIDENCE_PLACEHOLDER, VIEWER_PLACEHOLDER, ""

    def api_ask(self, question: str, mode: str = "", top_k: float = 0, history: str = "[]", as_of: str = "",
                since: str = "", until: str = "", sources: str = "") -> tuple[str, str]:
        """Answer a question: the answer text (with [n] markers) and the whole Answer as JSON.

        ``history`` is a JSON list of [question, answer] pairs for follow-up questions. ``as_of`` (default
        today), ``since`` and ``until`` are dates (YYYY-MM-DD); ``sources``: outlet names, comma-separated.
        """
        try:
            turns = json.loads(history or "[]")
            turns = [(str(q), str(a)) for q, a in turns]
        except (ValueError, TypeError, RecursionError) as exc:
            raise gr.Error("history must be a JSON list of [question, answer] pairs") from exc
        try:
            options = ask_options(mode, top_k, as_of, since, until, sources)
            check_request(question, turns, self.settings)
            answer = self.pipeline.ask(question, history=turns or None, **options)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        return answer.text, answer.to_json()


class LibraryCallbacks:
    """The Articles tab and the /articles API: Gradio's side of :class:`rag.web.library.Library`; ``accepted``:
    the file suffixes ingestion reads."""

    def __init__(self, services, accepted: Sequence[str]):
        self.library = Library(services, accepted)

    def article_views(self, query: str = "", order: str = NEWEST_INGESTED):
        """The article table (filtered by ``query``, in ``order``), the delete menu, the count line, and the
        Ask tab's source choices (every indexed outlet)."""
        import pandas as pd

        query = query or ""
        listing = self.library.listing(query, order)
        frame = pd.DataFrame(listing.rows, columns=list(COLUMNS))
        count = article_count_html(listing.total, query, listing.matching, listing.shown,
                                   "" if order == NEWEST_INGESTED else (order or "").lower())
        return frame, gr.update(choices=listing.choices, value=None), count, gr.update(choices=listing.sites)

    def upload(self, files, query, order=NEWEST_INGESTED, progress=gr.Progress()):
        """Check uploads, copy the accepted ones into <data_dir>/uploads and ingest them."""
        files = [f for f in (files or []) if f]
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        named = []
        for f in files:
            path = Path(getattr(f, "name", f))
            named.append((path, getattr(f, "orig_name", None) or path.name))
        status = upload_status_html(self.library.upload(named, progress))
        return status, None, *self.article_views(query, order)

    def delete(self, article_id, query, order=NEWEST_INGESTED):
        """Delete one article (and its copy in the uploads folder, if it was uploaded)."""
        if not article_id:
            message = '<p class="notes" role="status">Nothing deleted: choose an article first.</p>'
            return message, gr.skip(), gr.skip(), gr.skip(), gr.skip()
        message = self.library.delete(article_id)
        return message, *self.article_views(query, order)

    @staticmethod
    def select_row(evt: gr.SelectData):
        """Clicking a row of the article table picks that article in the delete menu."""
        row = getattr(evt, "row_value", None)
        if row and len(row) >= len(COLUMNS):
            return row[COLUMNS.index("ID")]
        return gr.skip()

    def api_articles(self) -> str:
        """Every indexed article (id, title, source, url, published, site, author, chunks, ingested_at,
        duplicate_of) as JSON."""
        return self.library.articles_json()
