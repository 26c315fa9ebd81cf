"""HTML for the web UI: chat messages, the evidence panel, the article viewer and status lines.

Pure functions of plain data (an Answer as a dict, article metadata as dicts): no Gradio, no index. Article
text is untrusted input, so every piece of it is HTML-escaped here, in one place.
"""

from __future__ import annotations

import bisect
import html
import math
import re
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlsplit, urlunsplit

from rag.core.text import MARKER, NO_ANSWER, marker_numbers
from rag.core.turns import Waiting

NOT_FOUND = "Not found in the articles"
CONTEXT_CHARS = 400  # passage context shown around a quote in the evidence panel
MAX_RELATED = 3  # related passages shown when the answer abstains
LONG_URL_CHARS = 90  # a link label longer than this shows the address without its query

EVIDENCE_PLACEHOLDER = (
    '<section class="evidence empty" aria-label="Evidence"><h2 class="panel-title">Evidence</h2>'
    "<p>Ask a question: the numbered passages supporting the answer appear here. "
    "Click a citation or a <b>[n]</b> marker to read the full article.</p></section>"
)
VIEWER_PLACEHOLDER = (
    '<section class="viewer empty" aria-label="Article viewer"><h2 class="panel-title">Article</h2>'
    "<p>The full text of a cited article opens here, scrolled to the highlighted passage.</p></section>"
)
STALE_REFERENCE = (
    '<section class="viewer"><p class="warn">This citation belongs to an earlier '
    "conversation and is no longer available.</p></section>"
)


# --- text and sources ------------------------------------------------------------------------------------
def esc(value: Any) -> str:
    """HTML-escape anything (article text is untrusted)."""
    return html.escape("" if value is None else str(value), quote=True)


def lines(text: str) -> str:
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


def source_html(source: str, url: str = "", page: int = 0) -> str:
    """The source of an article: a link for web addresses, the file name otherwise, and the PDF page."""
    target = url or (source if re.match(r"https?://", source or "", re.I) else "")
    if target and re.match(r"https?://", target, re.I):
        label = esc(public_url(target) if len(target) > LONG_URL_CHARS else target)
        out = f'<a href="{esc(target)}" target="_blank" rel="noopener noreferrer nofollow">{label}</a>'
    else:
        out = esc(Path(source or "").name or source or "unknown source")
    if page:
        out += f" · page {int(page)}"
    return out


def byline(site: str, published: str) -> str:
    """The outlet and publish date of an article, escaped ("cnn · 2022-06-14"); "" when neither is known."""
    return " · ".join(esc(part) for part in (site, published) if part)


def _with_byline(meta: str, source: str) -> str:
    """A source line (HTML) led by the article's outlet and date when known."""
    return f'<span class="byline">{meta}</span> · {source}' if meta else source


def page_of(offset: int, page_starts: list[int]) -> int:
    """1-based page holding character ``offset`` (0 when the article has no pages)."""
    return bisect.bisect_right(page_starts, offset) if page_starts else 0


def short(text: str, limit: int = 70) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis (for menu labels)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- chat messages ----------------------------------------------------------------------------------------
def question_message(question: str) -> str:
    """The user's chat message."""
    return f'<div class="question">{lines(question.strip())}</div>'


def pending_message(text: str) -> str:
    """The assistant's placeholder while it searches or reads (``text`` is the UI's own words)."""
    return f'<div class="answer pending">{text}</div>'


def waiting_message(waiting: Waiting) -> str:
    """The placeholder while other people's questions hold the reader model: how many, and about how long."""
    ahead = f"{waiting.ahead} question{'s' if waiting.ahead != 1 else ''} ahead of yours"
    if waiting.seconds is None:
        wait = ""
    elif waiting.seconds < 1:
        wait = ", your turn is next"
    else:
        wait = f", about {math.ceil(waiting.seconds)} s"
    return pending_message(f"Waiting for the reader model: {ahead}{wait}\u2026")


def streaming_message(text: str) -> str:
    """The answer as streamed so far (no markers linked yet)."""
    return f'<div class="answer">{lines(text)}</div>'


def error_message(text: str) -> str:
    """An error shown in place of the answer."""
    return f'<div class="answer error">⚠ {lines(text)}</div>'


def _marker_links(escaped: str, turn: int, valid: set[int]) -> str:
    """``escaped`` text with each [n] marker of a valid citation linked to it (``#cite-TURN-N``)."""
    def link(m: re.Match) -> str:
        parts = []
        for n in marker_numbers(m):
            if n in valid:
                parts.append(
                    f'<a class="cite-marker" href="#cite-{turn}-{n}" title="Citation {n}: open the article">{n}</a>'
                )
            else:
                parts.append(str(n))
        return "[" + ", ".join(parts) + "]"

    return MARKER.sub(link, escaped)


def scope_note(time_scope: str, as_of: str = "") -> str:
    """The small note under an answer saying what it was drawn from ("" when nothing was narrowed).

    ``time_scope``: the Answer's scope in words; ``as_of``: the as-of date, given only when the user chose one.
    """
    parts = ([f"as of {as_of}"] if as_of else []) + ([time_scope] if time_scope else [])
    if not parts:
        return ""
    text = "; ".join(parts)
    return f'<p class="scope-note">{esc(text[0].upper() + text[1:])}</p>'


def answer_message(answer: dict, turn: int, as_of: str = "") -> str:
    """The assistant's chat message for an Answer (as a dict): escaped text and linked markers, then the
    scope note (``as_of``: the as-of date when the user chose one)."""
    note = scope_note(answer.get("time_scope") or "", as_of)
    if answer["abstained"]:
        return (
            f'<div class="answer abstained"><span class="nf">{NOT_FOUND}.</span>{lines(answer["text"])} '
            f"The closest passages are listed beside the chat as related, not as evidence.{note}</div>"
        )
    text = answer["text"]
    valid = {c["n"] for c in answer["citations"]}
    phrase = answer.get("short_answer")
    lead = f"{phrase} \u2014 "
    if phrase and text.startswith(lead):  # LLM mode: the answer phrase in bold, then the sentence holding it
        rest = _marker_links(lines(text[len(lead):]), turn, valid)
        return f'<div class="answer"><strong class="short-answer">{esc(phrase)}</strong> \u2014 {rest}{note}</div>'
    return f'<div class="answer">{_marker_links(lines(text), turn, valid)}{note}</div>'


# --- the evidence panel ---------------------------------------------------------------------------------
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


def _citation_card(c: dict, answer: dict, articles: dict, turn: int, active: str) -> str:
    """One numbered citation: title (opens the article), source, and the quote marked in its context."""
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
    meta = byline(c.get("site", ""), c.get("published", ""))
    return (
        f'<li class="cite-card{" active" if ref == active else ""}" id="evidence-{turn}-{c["n"]}">'
        f'<div class="cite-head"><span class="cite-n">[{c["n"]}]</span>'
        f'<button class="link cite-title" data-cite="{ref}" '
        f'aria-label="Citation {c["n"]}: open the article {esc(c["title"])}">'
        f'{esc(c["title"] or c["article_id"])}</button></div>'
        f'<div class="cite-src">{_with_byline(meta, source_html(c["source"], rec.get("url", ""), page))}</div>'
        f'<blockquote class="passage">{body}</blockquote></li>'
    )


def _compact(text: str) -> str:
    """Blank lines collapsed (for related passages, shown as excerpts)."""
    return re.sub(r"\n\s*\n", "\n", text)


def _trim(text: str, limit: int = 2 * CONTEXT_CHARS) -> str:
    """``text`` cut at a word break to at most ``limit`` characters, with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    return (cut[: cut.rfind(" ")] if " " in cut else cut) + "…"


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
        source = _with_byline(byline(p.get("site", ""), p.get("published", "")),
                              source_html(p["source"], rec.get("url", ""), page))
        items.append(
            f'<li class="cite-card related{" active" if ref == active else ""}">'
            f'<div class="cite-head"><span class="cite-n">{label}</span>'
            f'<button class="link" data-cite="{ref}" aria-label="Open the article {esc(p["title"])}">'
            f'{esc(p["title"] or p["article_id"])}</button></div>'
            f'<div class="cite-src">{source}</div>'
            f'<blockquote class="passage">{esc(_trim(_compact(p["text"]), CONTEXT_CHARS))}</blockquote></li>'
        )
    return '<ol class="related">' + "".join(items) + "</ol>"


def panel_notes(answer: dict) -> list[str]:
    """The notes under the evidence: why it abstained, then the answer's notes.

    The panel says the generic reason (:data:`NO_ANSWER`) itself, in other words and with the question, so
    only what a reason adds to it is a note (e.g. the period the closest passage is about).
    """
    reason = (answer.get("abstain_reason") or "") if answer.get("abstained") else ""
    reason = reason.removeprefix(NO_ANSWER).strip()
    return ([reason] if reason else []) + list(answer.get("notes") or [])


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
        parts.extend(_citation_card(c, answer, articles, turn, active) for c in answer["citations"])
        parts.append("</ol>")
    notes = panel_notes(answer)
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


# --- the article viewer ---------------------------------------------------------------------------------
def viewer_html(title: str, source: str, url: str, text: Optional[str], start: int, end: int,
                expected: Optional[str], label: str, page: int = 0, related: bool = False, meta: str = "") -> str:
    """The article viewer: the full escaped text with ``text[start:end]`` in <mark id="article-highlight">.

    ``meta``: the article's :func:`byline` (outlet and date), "" when unknown.
    """
    head = (
        f'<section class="viewer" aria-label="Article viewer"><h2 class="panel-title viewer-title">{esc(title)}</h2>'
        f'<div class="cite-src">{_with_byline(meta, source_html(source, url, page))}'
        f'{" · " + esc(label) if label else ""}</div>'
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


# --- the articles tab and settings ----------------------------------------------------------------------
def upload_status_html(results: list[tuple[bool, str, str]]) -> str:
    """The outcome of each uploaded file: (accepted, file name, message); messages are already HTML."""
    items = "".join(
        f'<li class="{"ok" if ok else "bad"}">{"✓" if ok else "✗"} <b>{esc(name)}</b>: '
        f'{msg if ok else "rejected: " + msg}</li>'
        for ok, name, msg in results
    )
    return f'<div class="upload-status" role="status"><ul>{items}</ul></div>'


def article_count_html(total: int, query: str, matching: int, shown: int, order: str = "") -> str:
    """The line above the article table: how many are indexed, match the search and are listed.

    ``order``: the list's order in words when it is not the default (newest ingested first).
    """
    count = f"{total} article{'s' if total != 1 else ''} indexed"
    if query.strip():
        count += f"; {matching} match “{esc(query.strip())}”"
    if matching > shown:
        first = f"the first {shown} by {esc(order)}" if order else f"the newest {shown}"
        count += f"; showing {first} (search to narrow)"
    return f'<p class="notes" id="article-count">{count}</p>'


def settings_html(rows: list[tuple[str, str]]) -> str:
    """The settings tab's description list of (name, value) pairs."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    return f'<dl class="settings-info">{items}</dl>'
