"""The web UI: a Gradio chat over the indexed articles, with cited passages and corpus management.

A thin layer over :mod:`rag.app`: every answer, citation and ingestion comes from the core; the HTML (which
escapes all article text, untrusted input) is :mod:`rag.web.render`, the upload checks and article list are
:mod:`rag.web.library`, and the CSS and JavaScript are the static files of :mod:`rag.web`. This module lays out
the page and connects its events.

Run ``python ui.py``: it opens the index named by the ``RAG_*`` settings, ingests the default corpus into an
empty index, and serves on ``RAG_HOST``:``RAG_PORT`` (127.0.0.1:7860 by default). Tests build the same app
with :func:`build_app`.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from rag.app import ACCEPTED_SUFFIXES, Services, open_services
from rag.core.errors import RagError
from rag.core.settings import Settings, get_settings
from rag.core.types import Reading
from rag.llm import resolve_gguf
from rag.web import static_text
from rag.web.library import COLUMNS, NEWEST_INGESTED, ORDERS, Library
from rag.web.render import (
    EVIDENCE_PLACEHOLDER, VIEWER_PLACEHOLDER, answer_message, article_count_html, error_message, evidence_html,
    pending_message, public_url, question_message, settings_html, streaming_message, upload_status_html,
)
from rag.web.turns import answer_turn, ask_options, open_reference, reading_turn

log = logging.getLogger(__name__)

# System fonts only: the app works offline, so it must not fetch web fonts.
FONT = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif")
MONO = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")
UPLOAD_CACHE_SECONDS = 3600  # uploads in Gradio's cache are removed after this (accepted ones are copied first)
MAX_TOP_K = 20  # the top-k slider's upper end
NOISY_LOGGERS = ("httpx", "chromadb", "sentence_transformers", "urllib3")


def llm_description(settings: Settings) -> str:
    """The configured LLM, in words (never a key)."""
    if settings.llm == "none":
        return "none (extractive answers only; set RAG_LLM to llamacpp, openai or ollama for LLM mode)"
    if settings.llm == "llamacpp":
        path = resolve_gguf(settings)
        model = path.name if path else "no GGUF model (python -m rag models install)"
        return f"llama.cpp: {model}"
    if settings.llm == "openai":
        return f"OpenAI-compatible: {settings.openai_model} at {public_url(settings.openai_base_url)}"
    return f"Ollama: {settings.ollama_model} at {public_url(settings.ollama_host)}"


def _assistant(html: str) -> dict:
    return {"role": "assistant", "content": html}


# --- callbacks ------------------------------------------------------------------------------------------
class AskCallbacks:
    """The Ask tab and the /ask API, bound to one pipeline (per-session data lives in gr.State, never here)."""

    def __init__(self, services: Services):
        self.pipeline = services.pipeline
        self.store = services.store

    def respond(self, question, chat, history, answers, mode, top_k, as_of="", since="", until="", sources=None):
        """Stream an answer into the chat (a generator: Gradio shows each yield).

        ``as_of``, ``since``, ``until`` (YYYY-MM-DD, empty: none) and ``sources`` (outlets) narrow what it cites.
        """
        options = ask_options(mode, top_k, as_of, since, until, sources)
        chat, history, answers = list(chat or []), list(history or []), list(answers or [])
        question = question if isinstance(question, str) else ""
        if not question.strip():
            gr.Warning("Please type a question.")
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
        except (ValueError, TypeError) as exc:
            raise gr.Error("history must be a JSON list of [question, answer] pairs") from exc
        try:
            options = ask_options(mode, top_k, as_of, since, until, sources)
            answer = self.pipeline.ask(question, history=turns or None, **options)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        return answer.text, answer.to_json()


class LibraryCallbacks:
    """The Articles tab and the /articles API: Gradio's side of :class:`rag.web.library.Library`."""

    def __init__(self, services: Services):
        self.library = Library(services, ACCEPTED_SUFFIXES)

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


# --- layout ---------------------------------------------------------------------------------------------
def _ask_tab() -> SimpleNamespace:
    """The chat, the question box and the evidence and article panels."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, min_width=320):
            chatbot = gr.Chatbot(
                label="Conversation", elem_id="chat", height=430, latex_delimiters=[],
                feedback_options=None, buttons=["copy"], autoscroll=True,
                placeholder="Ask about the articles, e.g. “Who holds the majority stake?”",
            )
            with gr.Row(equal_height=True):
                question = gr.Textbox(
                    label="Your question", placeholder="Ask a question…",
                    elem_id="question", scale=6, min_width=200, lines=1, max_lines=4,
                    autofocus=True, submit_btn=False,
                )
                send = gr.Button("Send", variant="primary", elem_id="send", min_width=90, scale=1)
            with gr.Row():
                new_chat = gr.Button("New conversation", elem_id="new-conversation", size="sm",
                                     min_width=160, scale=0)
                gr.HTML('<p class="hint">Enter sends · Shift+Enter adds a line · follow-up questions '
                        "use the conversation so far</p>", elem_id="hint")
            scope = _scope_controls()
        with gr.Column(scale=5, min_width=300):
            # Clicks on citation cards and [n] markers become one event of this panel (static/cite-links.js).
            evidence = gr.HTML(EVIDENCE_PLACEHOLDER, elem_id="evidence", js_on_load=static_text("cite-links.js"))
            viewer = gr.HTML(VIEWER_PLACEHOLDER, elem_id="article-viewer")
    return SimpleNamespace(chatbot=chatbot, question=question, send=send, new_chat=new_chat, evidence=evidence,
                           viewer=viewer, **vars(scope))


def _scope_controls() -> SimpleNamespace:
    """The as-of date, the publish-date range and the outlets a question is answered from (all optional)."""
    def date_box(label: str, elem_id: str, placeholder: str, info: str):
        return gr.Textbox(label=label, placeholder=placeholder, elem_id=elem_id, info=info, lines=1, max_lines=1,
                          min_width=130)

    with gr.Accordion("Time and sources", open=False, elem_id="scope"):
        with gr.Row():
            as_of = date_box("As of", "as-of", date.today().isoformat(), "nothing published later is cited")
            since = date_box("Published since", "since", "YYYY-MM-DD", "optional")
            until = date_box("Published until", "until", "YYYY-MM-DD", "optional")
        sources = gr.Dropdown(label="Sources", choices=[], value=[], multiselect=True, allow_custom_value=True,
                              elem_id="sources", info="only these outlets (none chosen: all)")
    return SimpleNamespace(as_of=as_of, since=since, until=until, sources=sources)


def _articles_tab(settings: Settings) -> SimpleNamespace:
    """Upload, search, list and delete articles."""
    upload_files = gr.File(
        label=f"Add articles ({', '.join(ACCEPTED_SUFFIXES)}; up to {settings.max_upload_mb:g} MB each)",
        file_count="multiple", type="filepath", elem_id="upload", height=160,
    )
    upload_status = gr.HTML("", elem_id="upload-status")
    with gr.Row():
        search = gr.Textbox(label="Search articles", placeholder="Title, source, outlet or ID",
                            elem_id="article-search", scale=3, min_width=200)
        order = gr.Dropdown(list(ORDERS), value=NEWEST_INGESTED, label="Sort by", elem_id="article-order",
                            scale=1, min_width=160)
    count = gr.HTML("", elem_id="article-count-box")
    table = gr.Dataframe(
        headers=list(COLUMNS), interactive=False, wrap=True, elem_id="article-list", max_height=420,
        column_widths=["26%", "11%", "11%", "16%", "8%", "12%", "16%"], label="Indexed articles",
    )
    with gr.Row():
        to_delete = gr.Dropdown(label="Article to delete", choices=[], elem_id="delete-choice",
                                scale=4, min_width=200, filterable=True)
        delete_btn = gr.Button("Delete article", variant="stop", elem_id="delete", scale=1, min_width=140)
    delete_status = gr.HTML("", elem_id="delete-status")
    return SimpleNamespace(upload_files=upload_files, upload_status=upload_status, search=search, order=order,
                           count=count, table=table, to_delete=to_delete, delete_btn=delete_btn,
                           delete_status=delete_status)


def _settings_tab(settings: Settings, library: Library) -> SimpleNamespace:
    """The answer mode, top-k and a description of the configuration (never a key)."""
    llm_ok = settings.llm != "none"
    modes = [("Extractive: quote the sentences that answer", "extractive")]
    if llm_ok:
        modes.append((f"LLM: {llm_description(settings)}", "llm"))
    default_mode = settings.answer_mode if (settings.answer_mode != "llm" or llm_ok) else "extractive"
    mode = gr.Radio(modes, value=default_mode, label="Answer mode", elem_id="answer-mode",
                    info=None if llm_ok else "LLM mode is off: no LLM is configured (RAG_LLM=none).")
    top_k = gr.Slider(1, MAX_TOP_K, value=min(settings.top_k, MAX_TOP_K), step=1,
                      label="Passages retrieved (top-k)", elem_id="top-k")
    rows = [
        ("Embedding model", settings.embed_model),
        ("LLM", llm_description(settings)),
        ("Index location", settings.index_location),
        ("Uploads folder", str(library.uploads_dir)),
        ("Upload limit", f"{settings.max_upload_mb:g} MB per file; {', '.join(ACCEPTED_SUFFIXES)}"),
    ]
    gr.HTML(settings_html(rows), elem_id="settings-info")
    return SimpleNamespace(mode=mode, top_k=top_k)


def _wire_ask(ask: AskCallbacks, ui: SimpleNamespace, options: SimpleNamespace, history, answers,
              settings: Settings) -> None:
    """Questions (with the settings tab's ``options``), new conversations and reference clicks."""
    ask_inputs = [ui.question, ui.chatbot, history, answers, options.mode, options.top_k, ui.as_of, ui.since,
                  ui.until, ui.sources]
    ask_outputs = [ui.question, ui.chatbot, history, answers, ui.evidence, ui.viewer]
    for trigger in (ui.question.submit, ui.send.click):
        trigger(ask.respond, ask_inputs, ask_outputs, api_visibility="private",
                concurrency_limit=settings.ui_concurrency, show_progress="hidden")
    reset = [ui.chatbot, history, answers, ui.evidence, ui.viewer, ui.question]
    ui.new_chat.click(ask.new_conversation, None, reset, api_visibility="private", queue=False)
    ui.chatbot.clear(ask.new_conversation, None, reset, api_visibility="private", queue=False)
    ui.evidence.click(ask.open_ref, [answers], [ui.evidence, ui.viewer], api_visibility="private",
                      show_progress="hidden").then(None, js=static_text("scroll-to-highlight.js"),
                                                   api_visibility="private")


def _wire_articles(library: LibraryCallbacks, ui: SimpleNamespace, articles_tab, sources, demo: gr.Blocks) -> None:
    """Uploads, search, sorting, deletion (one write at a time) and refreshing the list (and the Ask tab's
    ``sources`` choices with it)."""
    views, listed = [ui.table, ui.to_delete, ui.count, sources], [ui.search, ui.order]
    ui.upload_files.upload(library.upload, [ui.upload_files, *listed], [ui.upload_status, ui.upload_files, *views],
                           api_visibility="private", show_progress_on=[ui.upload_status], concurrency_id="write",
                           concurrency_limit=1)
    for trigger in (ui.search.change, ui.order.change, articles_tab.select, demo.load):
        trigger(library.article_views, listed, views, api_visibility="private", show_progress="hidden")
    ui.delete_btn.click(library.delete, [ui.to_delete, *listed], [ui.delete_status, *views],
                        api_visibility="private", js=static_text("confirm-delete.js"), concurrency_id="write",
                        concurrency_limit=1)
    ui.table.select(library.select_row, None, [ui.to_delete], api_visibility="private", show_progress="hidden")


def build_app(services: Services) -> gr.Blocks:
    """The Gradio app for ``services`` (launch it with :func:`launch` to get its CSS and limits)."""
    settings = services.settings
    ask, library = AskCallbacks(services), LibraryCallbacks(services)
    with gr.Blocks(title="News Q&A", analytics_enabled=False,
                   delete_cache=(UPLOAD_CACHE_SECONDS, UPLOAD_CACHE_SECONDS)) as demo:
        history = gr.State([])  # (question, answer text) pairs for follow-ups: one per browser session
        answers = gr.State([])  # per turn: the Answer (as a dict) and its articles, for the evidence viewer
        gr.HTML(
            '<header class="app-header"><h1>News Q&amp;A</h1><p>Answers come only from the indexed articles; '
            "every claim cites the exact passage it comes from.</p></header>"
        )
        with gr.Tabs():
            with gr.Tab("Ask", id="ask"):
                ask_ui = _ask_tab()
            with gr.Tab("Articles", id="articles") as articles_tab:
                articles_ui = _articles_tab(settings)
            with gr.Tab("Settings", id="settings"):
                settings_ui = _settings_tab(settings, library.library)
        _wire_ask(ask, ask_ui, settings_ui, history, answers, settings)
        _wire_articles(library, articles_ui, articles_tab, ask_ui.sources, demo)
        # The as-of placeholder says the date a blank field means, on the day the page is opened.
        demo.load(lambda: gr.update(placeholder=date.today().isoformat()), None, [ask_ui.as_of],
                  api_visibility="private", queue=False)
        gr.api(ask.api_ask, api_name="ask", concurrency_limit=settings.ui_concurrency)
        gr.api(library.api_articles, api_name="articles")
    return demo


def launch(demo: gr.Blocks, settings: Settings, **kwargs):
    """Serve ``demo`` as configured: host, port, optional password, share link only when asked for."""
    auth = None
    if settings.username and settings.password:
        auth = (settings.username, settings.password.get_secret_value())
    elif settings.username or settings.password:
        log.warning("both RAG_USERNAME and RAG_PASSWORD are needed for a login; serving without one")
    # Questions run ui_concurrency at a time; uploads and deletions one at a time (concurrency_id "write").
    demo.queue(default_concurrency_limit=settings.ui_concurrency)
    return demo.launch(
        server_name=settings.host, server_port=settings.port, auth=auth, share=settings.share,
        max_file_size=max(1, int(settings.max_upload_mb * 1024 * 1024)), css=static_text("app.css"),
        theme=gr.themes.Default(primary_hue="blue", font=FONT, font_mono=MONO),
        footer_links=["api"], show_error=False, **kwargs,
    )


def main() -> None:
    """``python ui.py``: open the index (ingesting the default corpus into an empty one) and serve the app."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = get_settings()
    print(f"Loading the embedding model {settings.embed_model} and opening {settings.index_location} ...", flush=True)
    services = open_services(settings)
    report = services.ensure_corpus(progress=True)
    if report is not None:
        print(f"Ingested the default corpus: {report.summary()}", flush=True)
    print(f"{services.store.article_count()} articles indexed; warming up ...", flush=True)
    services.pipeline.warm_up()
    demo = build_app(services)
    print(f"Serving on http://{settings.host}:{settings.port}", flush=True)
    launch(demo, settings)


if __name__ == "__main__":
    main()
