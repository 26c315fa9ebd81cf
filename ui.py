"""The web UI: a Gradio chat over the indexed articles, with cited passages and corpus management.

A thin layer over :mod:`rag.app`: every answer, citation and ingestion comes from the core; the HTML (which
escapes all article text, untrusted input) is :mod:`rag.web.render`, the upload checks and article list are
:mod:`rag.web.library`, the event handlers :mod:`rag.web.callbacks`, and the CSS and JavaScript are the static
files of :mod:`rag.web`. This module lays out the page and connects its events.

Run ``python ui.py``: it opens the index named by the ``RAG_*`` settings, ingests the default corpus into an
empty index, finishes or rolls back the uploads a killed process left, and serves on ``RAG_HOST``:``RAG_PORT``
(127.0.0.1:7860 by default). It refuses to start with half a login, or reachable by others without one unless
``RAG_ALLOW_OPEN=1``. Tests build the same app with :func:`build_app` and serve it with
:func:`rag.web.serve.launch`.
"""

from __future__ import annotations

import logging
import sys
from datetime import date
from types import SimpleNamespace

import gradio as gr

from rag.app import ACCEPTED_SUFFIXES, Services, open_services
from rag.core.errors import RagError
from rag.core.settings import MAX_TOP_K, Settings, get_settings
from rag.llm import resolve_gguf
from rag.web import static_text
from rag.web.callbacks import AskCallbacks, LibraryCallbacks
from rag.web.library import COLUMNS, NEWEST_INGESTED, ORDERS, Library
from rag.web.render import EVIDENCE_PLACEHOLDER, VIEWER_PLACEHOLDER, public_url, settings_html
from rag.web.serve import exposure_problem, exposure_warning, launch

log = logging.getLogger(__name__)

UPLOAD_CACHE_SECONDS = 3600  # uploads in Gradio's cache are removed after this (accepted ones are copied first)
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
    # Questions beyond ui_concurrency wait in Gradio's queue: the chat shows their place ("queue: 2/3") and the
    # time waited, not nothing; answering ones stream at once, so no indicator covers them.
    for trigger in (ui.question.submit, ui.send.click):
        trigger(ask.respond, ask_inputs, ask_outputs, api_visibility="private",
                concurrency_limit=settings.ui_concurrency, show_progress="minimal",
                show_progress_on=[ui.chatbot])
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
    ask, library = AskCallbacks(services), LibraryCallbacks(services, ACCEPTED_SUFFIXES)
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


def start(settings: Settings) -> Services:
    """Open the index of ``settings``, ingest the default corpus into an empty one, finish or roll back the uploads
    a killed process left, and warm up; saying each step on stdout. RagError when the index cannot be used."""
    print(f"Loading the embedding model {settings.embed_model} and opening {settings.index_location} ...", flush=True)
    services = open_services(settings)
    report = services.ensure_corpus(progress=True)
    if report is not None:
        print(f"Ingested the default corpus: {report.summary()}", flush=True)
    recovered = Library(services, ACCEPTED_SUFFIXES).recover().summary()
    if recovered:
        print(f"Uploads folder: {recovered}", flush=True)
    print(f"{services.store.article_count()} articles indexed; warming up ...", flush=True)
    services.pipeline.warm_up()
    return services


def main() -> None:
    """``python ui.py``: :func:`start`, then serve the app. An unusable index, or settings that would expose the
    app (:func:`rag.web.serve.exposure_problem`), is one line on stderr saying what to do (exit status 2), never a
    traceback."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = get_settings()
    problem = exposure_problem(settings)
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    warning = exposure_warning(settings)
    if warning:
        log.warning(warning)
    try:
        services = start(settings)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    demo = build_app(services)
    print(f"Serving on http://{settings.host}:{settings.port}", flush=True)
    launch(demo, settings, pipeline=services.pipeline)  # the page, its Gradio API and POST /api/ask


if __name__ == "__main__":
    main()
