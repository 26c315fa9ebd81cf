"""The web UI: a Gradio chat over the indexed articles, with cited passages and corpus management.

A thin layer over :class:`rag.query.pipeline.Pipeline`: every answer, citation and ingestion comes from the core;
this module only renders them (HTML-escaping all article text, which is untrusted input) and checks uploads.

Run ``python ui.py``: it opens the index named by the ``RAG_*`` settings, ingests the default corpus into an
empty index, and serves on ``RAG_HOST``:``RAG_PORT`` (127.0.0.1:7860 by default). Tests build the same app
with :func:`build_app`.
"""

from __future__ import annotations

import bisect
import html
import json
import logging
import os
import re
import shutil
import threading
import unicodedata
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

import gradio as gr

from ingest.loaders import SUPPORTED_SUFFIXES
from rag.core.errors import InvalidQuestion, LLMError, RagError
from rag.query.pipeline import Pipeline
from rag.core.settings import Settings, get_settings
from rag.core.types import Reading

log = logging.getLogger(__name__)

NOT_FOUND = "Not found in the articles"
MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
CONTEXT_CHARS = 400  # passage context shown around a quote in the evidence panel
MAX_LISTED = 500  # articles shown in the list / delete menu at once (the search box narrows it)
MAX_RELATED = 3
UPLOAD_NAME = re.compile(r"[^\W_][\w .,()+&'@-]{0,119}")
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}

EVIDENCE_PLACEHOLDER = (
    '<section class="evidence empty" aria-label="Evidence"><h2 class="panel-title">Evidence</h2>'
    "<p>Ask a question: the numbered passages supporting the answer appear here. "
    "Click a citation or a <b>[n]</b> marker to read the full article.</p></section>"
)
VIEWER_PLACEHOLDER = (
    '<section class="viewer empty" aria-label="Article viewer"><h2 class="panel-title">Article</h2>'
    "<p>The full text of a cited article opens here, scrolled to the highlighted passage.</p></section>"
)

# Clicks on citation cards ([data-cite]) and on [n] markers in the chat (links to #cite-TURN-N) are sent to
# the server as one event of the evidence panel, which answers with the article viewer.
CITE_JS = r"""
window.__newsragOpen = (ref) => trigger('click', {ref: ref});
if (!window.__newsragListener) {
  window.__newsragListener = true;
  document.addEventListener('click', (event) => {
    const el = event.target && event.target.closest ? event.target.closest('[data-cite], a[href^="#cite-"]') : null;
    if (!el) return;
    let ref = el.getAttribute('data-cite');
    if (!ref) {
      const m = (el.getAttribute('href') || '').match(/^#cite-(\d+)-(\d+)$/);
      if (!m) return;
      ref = m[1] + ':c:' + m[2];
    }
    event.preventDefault();
    event.stopPropagation();
    window.__newsragOpen(ref);
  }, true);
}
"""
CONFIRM_DELETE_JS = """
(articleId, query) => {
  if (!articleId) return [articleId, query];
  return window.confirm('Delete ' + articleId + ' from the index?') ? [articleId, query] : [null, query];
}
"""
SCROLL_JS = """
() => {
  setTimeout(() => {
    const mark = document.querySelector('#article-viewer mark.hl');
    const box = document.querySelector('#article-viewer .article-text');
    if (mark && box) {
      mark.scrollIntoView({block: 'center', inline: 'nearest'});
      mark.setAttribute('tabindex', '-1');
      mark.focus({preventScroll: true});
    }
  }, 60);
}
"""

CSS = """
.gradio-container { width: 100% !important; max-width: 1320px !important; margin: 0 auto !important; }
.app-header h1 { margin: 0 0 .15rem 0; font-size: 1.5rem; }
.app-header p { margin: 0; }
.app-header p, .cite-src, .notes, .hint { color: var(--neutral-600); }
.dark .app-header p, .dark .cite-src, .dark .notes, .dark .hint { color: var(--neutral-400); }
.hint { font-size: .85em; margin: 0; }
#chat { overflow-wrap: anywhere; }
#chat .answer { line-height: 1.55; }
#chat .answer.abstained .nf { font-weight: 700; display: block; }
#chat .answer.error { color: var(--error-text-color, #b91c1c); }
a.cite-marker { font-weight: 700; text-decoration: none; padding: 0 1px; white-space: nowrap; }
a.cite-marker:hover, a.cite-marker:focus { text-decoration: underline; }
.panel-title { font-size: 1.05rem !important; margin: 0 0 .5rem 0 !important; }
.panel-title.viewer-title { font-size: .95rem !important; margin: 0 0 .1rem 0 !important; }
.evidence, .viewer { overflow-wrap: anywhere; }
.evidence ol { list-style: none; padding: 0; margin: 0; }
.cite-card { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6rem .75rem;
  margin: 0 0 .6rem 0; background: var(--background-fill-secondary); }
.cite-card.active { border-color: var(--color-accent, #2563eb); box-shadow: 0 0 0 1px var(--color-accent, #2563eb); }
.cite-card.related { border-style: dashed; }
.cite-head { display: flex; gap: .5rem; align-items: baseline; }
.cite-n { font-weight: 700; flex: none; }
button.link { all: unset; cursor: pointer; font-weight: 600; color: var(--link-text-color, #2563eb); }
button.link:hover, button.link:focus-visible { text-decoration: underline; outline: 2px solid transparent; }
button.link:focus-visible { outline: 2px solid var(--color-accent, #2563eb); outline-offset: 2px; border-radius: 2px; }
.cite-src { font-size: .85em; margin: .15rem 0 .35rem 0; }
.passage { margin: 0; padding: 0 0 0 .6rem; border-left: 3px solid var(--border-color-primary);
  font-size: .92em; line-height: 1.5; white-space: pre-wrap; }
mark.quote, mark.hl { background: #fde68a; color: #1f2937; padding: 0 .1em; border-radius: 2px; }
mark.hl.related-hl { background: #dbeafe; }
.notes { font-size: .85em; margin-top: .4rem; }
.notes li { margin: .1rem 0; }
.article-text { white-space: pre-wrap; overflow-wrap: anywhere; max-height: 17rem; overflow-y: auto;
  border: 1px solid var(--border-color-primary); border-radius: 8px; padding: .6rem .75rem; line-height: 1.55;
  background: var(--background-fill-primary); }
.viewer .warn { color: #b45309; }
.upload-status ul { margin: .25rem 0; padding-left: 1.2rem; }
.upload-status .ok { color: #15803d; }
.upload-status .bad { color: #b91c1c; }
.settings-info dt { font-weight: 600; margin-top: .4rem; }
.settings-info dd { margin: 0; overflow-wrap: anywhere; font-family: var(--font-mono); font-size: .9em; }
/* The article table scrolls sideways inside its box on narrow screens instead of widening the page. */
#article-list { min-width: 0 !important; max-width: 100% !important; overflow-x: auto; contain: inline-size; }
#article-list .table-wrap, #article-list .table-container { max-width: 100%; min-width: 0; overflow-x: auto; }
#article-list, #article-list * { font-family: var(--font) !important; }
@media (max-width: 640px) {
  .gradio-container { padding-left: 8px !important; padding-right: 8px !important; }
  .article-text { max-height: 20rem; }
}
"""


# System fonts only: the app works offline, so it must not fetch web fonts.
_FONT = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif")
_MONO = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")
THEME = gr.themes.Default(primary_hue="blue", font=_FONT, font_mono=_MONO)


# --- small helpers ---------------------------------------------------------------------------------------
def esc(value: Any) -> str:
    """HTML-escape anything (article text is untrusted)."""
    return html.escape("" if value is None else str(value), quote=True)


def _lines(text: str) -> str:
    """Escaped text on one line (newlines as <br>), safe inside a Markdown HTML block."""
    return esc(text).replace("\r", "").replace("\n", "<br>")


def public_url(url: str) -> str:
    """A URL without credentials, query or fragment (for showing a server address)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def llm_description(settings: Settings) -> str:
    """The configured LLM, in words (never a key)."""
    if settings.llm == "none":
        return "none (extractive answers only; set RAG_LLM to llamacpp, openai or ollama for LLM mode)"
    if settings.llm == "llamacpp":
        from rag.llm.models import resolve_gguf

        path = resolve_gguf(settings)
        model = path.name if path else "no GGUF model (python -m rag models install)"
        return f"llama.cpp: {model}"
    if settings.llm == "openai":
        return f"OpenAI-compatible: {settings.openai_model} at {public_url(settings.openai_base_url)}"
    return f"Ollama: {settings.ollama_model} at {public_url(settings.ollama_host)}"


def source_html(source: str, url: str = "", page: int = 0) -> str:
    """The source of an article: a link for web addresses, the file name otherwise, and the PDF page."""
    target = url or (source if re.match(r"https?://", source or "", re.I) else "")
    if target and re.match(r"https?://", target, re.I):
        label = esc(public_url(target) if len(target) > 90 else target)
        out = f'<a href="{esc(target)}" target="_blank" rel="noopener noreferrer nofollow">{label}</a>'
    else:
        out = esc(Path(source or "").name or source or "unknown source")
    if page:
        out += f" · page {int(page)}"
    return out


def page_of(offset: int, page_starts: list[int]) -> int:
    """1-based page holding character ``offset`` (0 when the article has no pages)."""
    return bisect.bisect_right(page_starts, offset) if page_starts else 0


def check_upload_name(raw: str) -> tuple[Optional[str], str]:
    """A safe file name for an upload (paths stripped), or None and the reason it is refused."""
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    suffix = Path(name).suffix.lower()
    if not name:
        return None, "the file has no name"
    if suffix not in SUPPORTED_SUFFIXES:
        return None, f"unsupported file type {esc(suffix or '(none)')}; accepted: {', '.join(SUPPORTED_SUFFIXES)}"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return None, "the file name contains control characters"
    if name.startswith(".") or not UPLOAD_NAME.fullmatch(name) or ".." in name:
        return None, ("unusual file name; use letters, digits, spaces and . , ( ) + & ' @ - only "
                      "(at most 120 characters, not starting with a dot)")
    if Path(name).stem.lower().split(".")[0] in RESERVED_NAMES:
        return None, "reserved file name"
    return name, ""


# --- rendering answers ----------------------------------------------------------------------------------
def _marker_links(escaped: str, turn: int, valid: set[int]) -> str:
    def link(m: re.Match) -> str:
        parts = []
        for raw in re.split(r"\s*,\s*", m.group(1)):
            n = int(raw)
            if n in valid:
                parts.append(
                    f'<a class="cite-marker" href="#cite-{turn}-{n}" title="Citation {n}: open the article">{n}</a>'
                )
            else:
                parts.append(esc(raw))
        return "[" + ", ".join(parts) + "]"

    return MARKER.sub(link, escaped)


def answer_message(answer: dict, turn: int) -> str:
    """The assistant's chat message for an Answer (as a dict): escaped text and linked markers."""
    if answer["abstained"]:
        return (
            f'<div class="answer abstained"><span class="nf">{NOT_FOUND}.</span>{_lines(answer["text"])} '
            "The closest passages are listed beside the chat as related, not as evidence.</div>"
        )
    text = answer["text"]
    valid = {c["n"] for c in answer["citations"]}
    short = answer.get("short_answer")
    lead = f"{short} \u2014 "
    if short and text.startswith(lead):  # LLM mode: the answer phrase in bold, then the sentence holding it
        rest = _marker_links(_lines(text[len(lead):]), turn, valid)
        return f'<div class="answer"><strong class="short-answer">{esc(short)}</strong> \u2014 {rest}</div>'
    return f'<div class="answer">{_marker_links(_lines(text), turn, valid)}</div>'


def _context(text: str, lo: int, start: int, end: int, hi: int) -> str:
    """Escaped ``text[lo:hi]`` with ``[start:end]`` in a <mark>; long context trimmed at word breaks."""
    before, quote, after = text[lo:start], text[start:end], text[end:hi]
    if len(before) > CONTEXT_CHARS:
        cut = before[-CONTEXT_CHARS:]
        breaks = [m.end() for m in re.finditer(r"\n|[.!?]\s", cut)]
        before = "…" + (cut[breaks[0]:] if breaks else cut[cut.find(" ") + 1:] if " " in cut else cut).lstrip()
    if len(after) > CONTEXT_CHARS:
        cut = after[:CONTEXT_CHARS]
        breaks = [m.start() + 1 for m in re.finditer(r"[.!?](?=\s)|\n", cut)]
        after = (cut[: breaks[-1]] if breaks else cut[: cut.rfind(" ")] if " " in cut else cut).rstrip() + " …"
    return (
        f"{esc(before)}<mark class=\"quote\" data-start=\"{start}\" data-end=\"{end}\">{esc(quote)}</mark>{esc(after)}"
    )


def evidence_html(turn_data: Optional[dict], turn: int, active: str = "") -> str:
    """The evidence panel for one answer: numbered citations, or related passages when it abstained."""
    if not turn_data:
        return EVIDENCE_PLACEHOLDER
    answer, articles = turn_data["answer"], turn_data["articles"]
    parts = ['<section class="evidence" aria-label="Evidence">']
    question = esc(answer["question"])
    if answer.get("pending"):  # LLM mode: the passages the model is reading, shown while it works
        parts.append('<h2 class="panel-title">Reading these passages\u2026</h2>')
        parts.append(_related_list(answer, articles, turn, active, label="Passage", limit=len(answer["passages"])))
    elif answer["abstained"]:
        parts.append(f'<h2 class="panel-title">{NOT_FOUND}</h2>')
        parts.append(
            f'<p class="notes">No passage answers “{question}”. Closest passages (related, not citations):</p>'
        )
        parts.append(_related_list(answer, articles, turn, active, label="Related", limit=MAX_RELATED))
    else:
        parts.append(f'<h2 class="panel-title">Evidence for “{question}”</h2><ol class="cites">')
        for c in answer["citations"]:
            ref = f"{turn}:c:{c['n']}"
            rec = articles.get(c["article_id"], {})
            text = rec.get("text")
            start, end = c["start_char_idx"], c["end_char_idx"]
            passages = answer["passages"]
            p = passages[c["passage_index"]] if 0 <= c["passage_index"] < len(passages) else None
            if text is not None and text[start:end] == c["quote"]:
                lo, hi = start, end
                if p and p["article_id"] == c["article_id"]:
                    lo, hi = min(lo, p["start_char_idx"]), max(hi, p["end_char_idx"])
                body = _context(text, lo, start, end, hi)
            else:  # the article changed or vanished since: show the quote alone
                body = f'<mark class="quote" data-start="{start}" data-end="{end}">{esc(c["quote"])}</mark>'
            page = page_of(start, rec.get("page_starts") or []) or c.get("page", 0)
            parts.append(
                f'<li class="cite-card{" active" if ref == active else ""}" id="evidence-{turn}-{c["n"]}">'
                f'<div class="cite-head"><span class="cite-n">[{c["n"]}]</span>'
                f'<button class="link cite-title" data-cite="{ref}" '
                f'aria-label="Citation {c["n"]}: open the article {esc(c["title"])}">'
                f'{esc(c["title"] or c["article_id"])}</button></div>'
                f'<div class="cite-src">{source_html(c["source"], rec.get("url", ""), page)}</div>'
                f'<blockquote class="passage">{body}</blockquote></li>'
            )
        parts.append("</ol>")
    notes = [n for n in answer.get("notes") or [] if not n.startswith("No passage answers")]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    parts.append("</section>")
    return "".join(parts)



def _related_list(answer: dict, articles: dict, turn: int, active: str, *, label: str, limit: int) -> str:
    """Passages as cards (not citations): the related ones of an abstention, or those an LLM is reading."""
    seen: set[str] = set()
    items = []
    for i, p in enumerate(answer["passages"]):
        if p["chunk_id"] in seen or len(items) >= limit:
            continue
        seen.add(p["chunk_id"])
        ref = f"{turn}:p:{i}"
        rec = articles.get(p["article_id"], {})
        page = page_of(p["start_char_idx"], rec.get("page_starts") or []) or p.get("page", 0)
        items.append(
            f'<li class="cite-card related{" active" if ref == active else ""}">'
            f'<div class="cite-head"><span class="cite-n">{label}</span>'
            f'<button class="link" data-cite="{ref}" aria-label="Open the article {esc(p["title"])}">'
            f'{esc(p["title"] or p["article_id"])}</button></div>'
            f'<div class="cite-src">{source_html(p["source"], rec.get("url", ""), page)}</div>'
            f'<blockquote class="passage">{esc(_trim(_compact(p["text"]), CONTEXT_CHARS))}</blockquote></li>'
        )
    return '<ol class="related">' + "".join(items) + "</ol>"

def _compact(text: str) -> str:
    """Blank lines collapsed (for related passages, shown as excerpts)."""
    return re.sub(r"\n\s*\n", "\n", text)


def _trim(text: str, limit: int = 2 * CONTEXT_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return (cut[: cut.rfind(" ")] if " " in cut else cut) + "…"


def viewer_html(title: str, source: str, url: str, text: Optional[str], start: int, end: int,
                expected: Optional[str], label: str, page: int = 0, related: bool = False) -> str:
    """The article viewer: the full escaped text with ``text[start:end]`` in <mark id="article-highlight">."""
    head = (
        f'<section class="viewer" aria-label="Article viewer"><h2 class="panel-title viewer-title">{esc(title)}</h2>'
        f'<div class="cite-src">{source_html(source, url, page)}{" · " + esc(label) if label else ""}</div>'
    )
    if text is None:
        return head + '<p class="warn">This article is no longer in the index.</p></section>'
    if not (0 <= start <= end <= len(text)) or (expected is not None and text[start:end] != expected):
        return (
            head + '<p class="warn">The article changed since this answer; the passage is not highlighted.</p>'
            f'<div class="article-text" tabindex="0">{esc(text)}</div></section>'
        )
    cls = "hl related-hl" if related else "hl"
    return (
        head + f'<div class="article-text" tabindex="0" aria-label="Full article text">{esc(text[:start])}'
        f'<mark id="article-highlight" class="{cls}" data-start="{start}" data-end="{end}">'
        f"{esc(text[start:end])}</mark>"
        f"{esc(text[end:])}</div></section>"
    )


# --- the app --------------------------------------------------------------------------------------------
class App:
    """The UI's callbacks, bound to one Pipeline (per-session data lives in gr.State, never here)."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.settings = pipeline.settings
        self.uploads_dir = (self.settings.data_dir / "uploads").resolve()
        self.write_lock = threading.Lock()

    # --- answering ---------------------------------------------------------------------------------
    def _reading(self, reading) -> dict:
        """A provisional turn for the evidence panel: the passages an LLM is reading."""
        records = self.pipeline.store.get_articles({p.article_id for p in reading.passages})
        answer = {"question": reading.question, "pending": True, "abstained": False, "citations": [],
                  "passages": [asdict(p) for p in reading.passages]}
        return {"answer": answer, "articles": {i: {"url": r.url, "page_starts": r.page_starts} for i, r in records.items()}}

    def _record(self, answer) -> dict:
        """What a turn keeps in the session: the answer and the cited/related articles' text and metadata."""
        data = answer.to_dict()
        ids = {c["article_id"] for c in data["citations"]} | {p["article_id"] for p in data["passages"]}
        records = self.pipeline.store.get_articles(ids, with_text=True)
        articles = {
            i: {"title": r.title, "source": r.source, "url": r.url, "format": r.format,
                "page_starts": r.page_starts, "sha256": r.sha256,
                "text": r.text if i in {c["article_id"] for c in data["citations"]} else None}
            for i, r in records.items()
        }
        return {"answer": data, "articles": articles}

    def respond(self, question, chat, history, answers, mode, top_k):
        """Stream an answer into the chat (a generator: Gradio shows each yield)."""
        chat = list(chat or [])
        history = list(history or [])
        answers = list(answers or [])
        question = question if isinstance(question, str) else ""
        if not question.strip():
            gr.Warning("Please type a question.")
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        turn = len(answers)
        chat.append({"role": "user", "content": f'<div class="question">{_lines(question.strip())}</div>'})
        chat.append({"role": "assistant", "content": '<div class="answer pending">Searching the articles…</div>'})
        yield "", chat, history, answers, gr.skip(), gr.skip()
        streamed, answer = "", None
        try:
            stream = self.pipeline.ask_stream(
                question, history=history, mode=mode or None, top_k=int(top_k) if top_k else None
            )
            for item in stream:
                if isinstance(item, str):
                    streamed += item
                    chat[-1] = {"role": "assistant", "content": f'<div class="answer">{_lines(streamed)}</div>'}
                    yield gr.skip(), chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()
                elif isinstance(item, Reading):  # the evidence at once, while the model reads it
                    chat[-1] = {"role": "assistant", "content": '<div class="answer pending">Reading the passages\u2026</div>'}
                    yield gr.skip(), chat, gr.skip(), gr.skip(), evidence_html(self._reading(item), turn), gr.skip()
                else:
                    answer = item
            if answer is None:
                raise RuntimeError("the pipeline returned no answer")
        except (InvalidQuestion, LLMError, RagError) as exc:  # messages meant for people, shown as they are
            chat[-1] = {"role": "assistant", "content": f'<div class="answer error">⚠ {_lines(str(exc))}</div>'}
            yield question, chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()  # the question back, to retry
            return
        except Exception as exc:  # never show a traceback; log it
            log.exception("answering failed")
            message = f"Something went wrong ({type(exc).__name__}); the error is in the server log."
            chat[-1] = {"role": "assistant", "content": f'<div class="answer error">⚠ {esc(message)}</div>'}
            yield question, chat, gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        turn_data = self._record(answer)
        answers.append(turn_data)
        history.append((answer.question, answer.text))
        chat[-1] = {"role": "assistant", "content": answer_message(turn_data["answer"], turn)}
        yield gr.skip(), chat, history, answers, evidence_html(turn_data, turn), VIEWER_PLACEHOLDER

    def open_ref(self, answers, evt: gr.EventData):
        """A click on a citation, [n] marker or related passage: evidence panel + article viewer."""
        data = getattr(evt, "_data", None) or {}
        ref = str(data.get("ref", ""))
        m = re.fullmatch(r"(\d+):([cp]):(\d+)", ref)
        answers = answers or []
        if not m or int(m.group(1)) >= len(answers):
            return gr.skip(), ('<section class="viewer"><p class="warn">This citation belongs to an earlier '
                               "conversation and is no longer available.</p></section>")
        turn, kind, index = int(m.group(1)), m.group(2), int(m.group(3))
        turn_data = answers[turn]
        answer = turn_data["answer"]
        if kind == "c":
            found = [c for c in answer["citations"] if c["n"] == index]
            if not found:
                return gr.skip(), gr.skip()
            c = found[0]
            article_id, start, end, expected = c["article_id"], c["start_char_idx"], c["end_char_idx"], c["quote"]
            title, source, label = c["title"], c["source"], f"highlighted: the passage cited as [{index}]"
        else:
            if index >= len(answer["passages"]):
                return gr.skip(), gr.skip()
            p = answer["passages"][index]
            article_id, start, end, expected = p["article_id"], p["start_char_idx"], p["end_char_idx"], p["text"]
            title, source, label = p["title"], p["source"], "highlighted: a related passage (not an answer)"
        record = self.pipeline.store.get_articles([article_id], with_text=True).get(article_id)
        text = record.text if record is not None else None
        url = record.url if record is not None else ""
        page = page_of(start, record.page_starts if record is not None else [])
        viewer = viewer_html(title or article_id, source, url, text, start, end, expected, label, page,
                             related=kind == "p")
        return evidence_html(turn_data, turn, active=ref), viewer

    @staticmethod
    def new_conversation():
        return [], [], [], EVIDENCE_PLACEHOLDER, VIEWER_PLACEHOLDER, ""

    def api_ask(self, question: str, mode: str = "", top_k: float = 0, history: str = "[]") -> tuple[str, str]:
        """Answer a question: the answer text (with [n] markers) and the whole Answer as JSON.

        ``history`` is a JSON list of [question, answer] pairs for follow-up questions.
        """
        try:
            turns = json.loads(history or "[]")
            turns = [(str(q), str(a)) for q, a in turns]
        except (ValueError, TypeError) as exc:
            raise gr.Error("history must be a JSON list of [question, answer] pairs") from exc
        try:
            answer = self.pipeline.ask(question, history=turns or None, mode=mode or None,
                                       top_k=int(top_k) if top_k else None)
        except RagError as exc:
            raise gr.Error(str(exc)) from exc
        return answer.text, answer.to_json()

    # --- corpus management -----------------------------------------------------------------------------
    def _records(self, query: str = ""):
        records = self.pipeline.store.all_articles()
        q = (query or "").strip().lower()
        if q:
            records = [r for r in records if q in f"{r.title}\n{r.source}\n{r.article_id}".lower()]
        records.sort(key=lambda r: (r.ingested_at, r.title.lower()), reverse=True)
        return records

    def article_views(self, query: str = ""):
        """The article table, the delete menu and the count line, filtered by ``query``."""
        import pandas as pd

        total = self.pipeline.store.articles.count()
        records = self._records(query)
        shown = records[:MAX_LISTED]
        rows = []
        for r in shown:
            chunks = f"0 (duplicate of {r.duplicate_of})" if r.duplicate_of else str(r.chunks)
            source = r.url or Path(r.source).name or r.source
            rows.append([r.title or r.article_id, source, chunks, (r.ingested_at or "").replace("T", " ")[:16],
                         r.article_id])
        frame = pd.DataFrame(rows, columns=["Title", "Source", "Chunks", "Ingested (UTC)", "ID"])
        choices = [(f"{_short(r.title or r.article_id)} — {r.article_id}", r.article_id) for r in shown]
        count = f"{total} article{'s' if total != 1 else ''} indexed"
        if (query or "").strip():
            count += f"; {len(records)} match “{esc(query.strip())}”"
        if len(records) > len(shown):
            count += f"; showing the newest {len(shown)} (search to narrow)"
        return frame, gr.update(choices=choices, value=None), f'<p class="notes" id="article-count">{count}</p>'

    def _unique_name(self, name: str, existing: dict) -> str:
        """``name``, or ``stem-2.ext``... when an article from elsewhere already has that id."""
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, i = name, 1
        while candidate in existing and Path(existing[candidate].root or "/").resolve() != self.uploads_dir:
            i += 1
            candidate = f"{stem}-{i}{suffix}"
        return candidate

    def upload(self, files, query, progress=gr.Progress()):
        """Check uploads, copy the accepted ones into <data_dir>/uploads and ingest them."""
        files = [f for f in (files or []) if f]
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        limit = int(self.settings.max_upload_mb * 1_000_000)
        results: list[tuple[bool, str, str]] = []  # (ok, name, message)
        with self.write_lock:
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            existing = {r.article_id: r for r in self.pipeline.store.all_articles()}
            accepted: list[tuple[str, Path]] = []
            progress(0, desc="Checking files")
            for f in files:
                path = Path(getattr(f, "name", f))
                original = getattr(f, "orig_name", None) or path.name
                name, reason = check_upload_name(original)
                if name is None:
                    results.append((False, original, reason))
                    continue
                try:
                    size = path.stat().st_size
                except OSError:
                    results.append((False, name, "the upload could not be read"))
                    continue
                if size > limit:
                    results.append((False, name, f"file too large ({size / 1e6:.1f} MB; the limit is "
                                                 f"{self.settings.max_upload_mb:g} MB)"))
                    continue
                if size == 0:
                    results.append((False, name, "empty file"))
                    continue
                accepted.append((name, path))
            for i, (name, path) in enumerate(accepted):
                progress((i, len(accepted)), desc=f"Indexing {name}", unit="files")
                final = self._unique_name(name, existing)
                dest = self.uploads_dir / final
                existed = dest.exists()
                tmp = self.uploads_dir / f".{uuid.uuid4().hex}.part"
                backup = self.uploads_dir / f".{uuid.uuid4().hex}.previous"
                try:
                    shutil.copyfile(path, tmp)
                    if existed:  # kept until the new version is indexed: a rejected one must not destroy it
                        os.replace(dest, backup)
                    os.replace(tmp, dest)
                    report = self.pipeline.ingestor.ingest([dest], progress=False)
                except Exception as exc:
                    log.exception("ingesting upload %s failed", final)
                    tmp.unlink(missing_ok=True)
                    self._restore(backup, dest, existed)
                    results.append((False, name, f"could not be indexed ({type(exc).__name__})"))
                    continue
                renamed = f" (saved as {esc(final)})" if final != name else ""
                if report.skipped:
                    self._restore(backup, dest, existed)
                    results.append((False, name, esc(report.skipped[0].reason)))
                    continue
                backup.unlink(missing_ok=True)
                if report.duplicates:
                    article_id, canonical = report.duplicates[0]
                    other = existing.get(canonical)
                    results.append((True, name, f"identical to “{esc(other.title if other else canonical)}”, "
                                                f"already indexed; recorded as a duplicate{renamed}"))
                elif report.updated:
                    results.append((True, name, f"updated{renamed}"))
                elif report.unchanged:
                    results.append((True, name, f"already indexed, unchanged{renamed}"))
                else:
                    record = self.pipeline.store.get_articles([final]).get(final)
                    title = f" as “{esc(record.title)}”" if record and record.title else ""
                    chunks = f", {record.chunks} passages" if record else ""
                    results.append((True, name, f"added{title}{chunks}{renamed}"))
                for warning in report.warnings:
                    results.append((True, name, f"note: {esc(warning)}"))
                existing = {r.article_id: r for r in self.pipeline.store.all_articles()}
            progress(1.0, desc="Done")
        items = "".join(
            f'<li class="{"ok" if ok else "bad"}">{"✓" if ok else "✗"} <b>{esc(name)}</b>: '
            f'{msg if ok else "rejected: " + msg}</li>'
            for ok, name, msg in results
        )
        status = f'<div class="upload-status" role="status"><ul>{items}</ul></div>'
        frame, menu, count = self.article_views(query)
        return status, None, frame, menu, count

    @staticmethod
    def _restore(backup: Path, dest: Path, existed: bool) -> None:
        """Put back the previously stored upload (or remove the new file when there was none)."""
        if existed and backup.exists():
            os.replace(backup, dest)
        elif not existed:
            dest.unlink(missing_ok=True)

    def delete(self, article_id, query):
        """Delete one article (and its copy in the uploads folder, if it was uploaded)."""
        if not article_id:
            message = '<p class="notes" role="status">Nothing deleted: choose an article first.</p>'
            return message, gr.skip(), gr.skip(), gr.skip()
        with self.write_lock:
            record = self.pipeline.store.get_articles([article_id]).get(article_id)
            deleted = self.pipeline.ingestor.delete(article_id)
            if deleted and record is not None and record.root and Path(record.root).resolve() == self.uploads_dir:
                copy = (self.uploads_dir / article_id).resolve()
                if copy.parent == self.uploads_dir:
                    copy.unlink(missing_ok=True)
        if deleted:
            message = f"Deleted “{esc(record.title if record else article_id)}” ({esc(article_id)})."
        else:
            message = f"{esc(article_id)} is not in the index (already deleted?)."
        frame, menu, count = self.article_views(query)
        return f'<p class="upload-status" role="status">{message}</p>', frame, menu, count

    def select_row(self, evt: gr.SelectData):
        """Clicking a row of the article table picks that article in the delete menu."""
        row = getattr(evt, "row_value", None)
        if row and len(row) >= 5:
            return row[4]
        return gr.skip()

    def api_articles(self) -> str:
        """Every indexed article (id, title, source, chunks, ingested_at, duplicate_of) as JSON."""
        return json.dumps([
            {"article_id": r.article_id, "title": r.title, "source": r.source, "url": r.url, "chunks": r.chunks,
             "ingested_at": r.ingested_at, "duplicate_of": r.duplicate_of}
            for r in self.pipeline.store.all_articles()
        ], ensure_ascii=False)

    def settings_html(self) -> str:
        s = self.settings
        rows = [
            ("Embedding model", s.embed_model),
            ("LLM", llm_description(s)),
            ("Index location", s.index_location),
            ("Uploads folder", str(self.uploads_dir)),
            ("Upload limit", f"{s.max_upload_mb:g} MB per file; {', '.join(SUPPORTED_SUFFIXES)}"),
        ]
        items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
        return f'<dl class="settings-info">{items}</dl>'


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_app(pipeline: Pipeline) -> gr.Blocks:
    """The Gradio app for ``pipeline`` (launch it with :func:`launch` to get its CSS and limits)."""
    app = App(pipeline)
    settings = pipeline.settings
    llm_ok = settings.llm != "none"
    modes = [("Extractive: quote the sentences that answer", "extractive")]
    if llm_ok:
        modes.append((f"LLM: {llm_description(settings)}", "llm"))
    default_mode = settings.answer_mode if (settings.answer_mode != "llm" or llm_ok) else "extractive"

    # delete_cache: uploaded files in Gradio's cache are removed after an hour (accepted ones are copied first).
    with gr.Blocks(title="News Q&A", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        history = gr.State([])  # (question, answer text) pairs for follow-ups: one per browser session
        answers = gr.State([])  # per turn: the Answer (as a dict) and its articles, for the evidence viewer
        gr.HTML(
            '<header class="app-header"><h1>News Q&amp;A</h1><p>Answers come only from the indexed articles; '
            "every claim cites the exact passage it comes from.</p></header>"
        )
        with gr.Tabs():
            with gr.Tab("Ask", id="ask"):
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
                    with gr.Column(scale=5, min_width=300):
                        evidence = gr.HTML(EVIDENCE_PLACEHOLDER, elem_id="evidence", js_on_load=CITE_JS)
                        viewer = gr.HTML(VIEWER_PLACEHOLDER, elem_id="article-viewer")
            with gr.Tab("Articles", id="articles") as articles_tab:
                upload_files = gr.File(
                    label=f"Add articles ({', '.join(SUPPORTED_SUFFIXES)}; up to {settings.max_upload_mb:g} MB each)",
                    file_count="multiple", type="filepath", elem_id="upload", height=160,
                )
                upload_status = gr.HTML("", elem_id="upload-status")
                with gr.Row():
                    search = gr.Textbox(label="Search articles", placeholder="Title, source or ID",
                                        elem_id="article-search", scale=3, min_width=200)
                count = gr.HTML("", elem_id="article-count-box")
                table = gr.Dataframe(
                    headers=["Title", "Source", "Chunks", "Ingested (UTC)", "ID"], interactive=False, wrap=True,
                    column_widths=["34%", "22%", "10%", "16%", "18%"],
                    elem_id="article-list", max_height=420, label="Indexed articles",
                )
                with gr.Row():
                    to_delete = gr.Dropdown(label="Article to delete", choices=[], elem_id="delete-choice",
                                            scale=4, min_width=200, filterable=True)
                    delete_btn = gr.Button("Delete article", variant="stop", elem_id="delete", scale=1,
                                           min_width=140)
                delete_status = gr.HTML("", elem_id="delete-status")
            with gr.Tab("Settings", id="settings"):
                mode = gr.Radio(modes, value=default_mode, label="Answer mode", elem_id="answer-mode",
                                info=None if llm_ok else "LLM mode is off: no LLM is configured (RAG_LLM=none).")
                top_k = gr.Slider(1, 20, value=min(settings.top_k, 20), step=1, label="Passages retrieved (top-k)",
                                  elem_id="top-k")
                gr.HTML(app.settings_html(), elem_id="settings-info")

        ask_inputs = [question, chatbot, history, answers, mode, top_k]
        ask_outputs = [question, chatbot, history, answers, evidence, viewer]
        question.submit(app.respond, ask_inputs, ask_outputs, api_visibility="private", concurrency_limit=4,
                        show_progress="hidden")
        send.click(app.respond, ask_inputs, ask_outputs, api_visibility="private", concurrency_limit=4,
                   show_progress="hidden")
        reset = [chatbot, history, answers, evidence, viewer, question]
        new_chat.click(app.new_conversation, None, reset, api_visibility="private", queue=False)
        chatbot.clear(app.new_conversation, None, reset, api_visibility="private", queue=False)
        evidence.click(app.open_ref, [answers], [evidence, viewer], api_visibility="private",
                       show_progress="hidden").then(None, js=SCROLL_JS, api_visibility="private")

        views = [table, to_delete, count]
        upload_files.upload(app.upload, [upload_files, search], [upload_status, upload_files, *views],
                            api_visibility="private", show_progress_on=[upload_status], concurrency_id="write",
                            concurrency_limit=1)
        search.change(app.article_views, [search], views, api_visibility="private", show_progress="hidden")
        articles_tab.select(app.article_views, [search], views, api_visibility="private", show_progress="hidden")
        delete_btn.click(app.delete, [to_delete, search], [delete_status, *views], api_visibility="private",
                         js=CONFIRM_DELETE_JS, concurrency_id="write", concurrency_limit=1)
        table.select(app.select_row, None, [to_delete], api_visibility="private", show_progress="hidden")
        demo.load(app.article_views, [search], views, api_visibility="private", show_progress="hidden")

        gr.api(app.api_ask, api_name="ask", concurrency_limit=4)
        gr.api(app.api_articles, api_name="articles")
    return demo


def launch(demo: gr.Blocks, settings: Settings, **kwargs):
    """Serve ``demo`` as configured: host, port, optional password, share link only when asked for."""
    auth = None
    if settings.username and settings.password:
        auth = (settings.username, settings.password.get_secret_value())
    elif settings.username or settings.password:
        log.warning("both RAG_USERNAME and RAG_PASSWORD are needed for a login; serving without one")
    demo.queue(default_concurrency_limit=4)  # uploads and deletions run one at a time ("write")
    return demo.launch(
        server_name=settings.host, server_port=settings.port, auth=auth, share=settings.share,
        max_file_size=max(1, int(settings.max_upload_mb * 1024 * 1024)), css=CSS, theme=THEME,
        footer_links=["api"], show_error=False, **kwargs,
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "chromadb", "sentence_transformers", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = get_settings()
    print(f"Loading the embedding model {settings.embed_model} and opening {settings.index_location} ...", flush=True)
    pipeline = Pipeline(settings)
    report = pipeline.ensure_corpus(progress=True)
    if report is not None:
        print(f"Ingested the default corpus: {report.summary()}", flush=True)
    print(f"{pipeline.store.articles.count()} articles indexed; warming up ...", flush=True)
    pipeline.warm_up()
    demo = build_app(pipeline)
    print(f"Serving on http://{settings.host}:{settings.port}", flush=True)
    launch(demo, settings)


if __name__ == "__main__":
    main()
