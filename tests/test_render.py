"""The web UI's HTML and upload checks without Gradio or a browser: tiny inputs, fast.

The same behaviour is checked end to end in a real browser by tests/test_ui.py.
"""

from __future__ import annotations

import pytest

from rag.app import ACCEPTED_SUFFIXES
from rag.core.text import NO_ANSWER
from rag.index.store import ArticleRecord
from rag.web import static_text
from rag.web.library import (
    BY_SITE, BY_TITLE, NEWEST_INGESTED, NEWEST_PUBLISHED, OLDEST_PUBLISHED, check_upload_name, distinct_sites,
    sort_records,
)
from rag.web.render import (
    MAX_RELATED, answer_message, article_count_html, byline, evidence_html, page_of, panel_notes, public_url,
    scope_note, source_html, upload_status_html, viewer_html,
)
from rag.web.turns import ask_options, open_reference

EVIL = '<script>alert(1)</script><img src=x onerror=alert(2)>'


def _passage(i: int, text: str, article_id: str = "a", chunk_id: str = "") -> dict:
    return {"chunk_id": chunk_id or f"{article_id}#{i}", "article_id": article_id, "title": f"Title {i}",
            "source": f"/corpus/{article_id}", "text": text, "start_char_idx": 0, "end_char_idx": len(text), "page": 0}


def _answer(text: str, citations: list[dict], passages: list[dict], **extra) -> dict:
    return {"question": "Who?", "text": text, "abstained": False, "abstain_reason": "", "notes": [],
            "citations": citations, "passages": passages, "short_answer": None, **extra}


def _citation(n: int, text: str, quote: str) -> dict:
    start = text.index(quote)
    return {"n": n, "article_id": "a", "title": "Title", "source": "/corpus/a", "quote": quote,
            "start_char_idx": start, "end_char_idx": start + len(quote), "score": 1.0, "page": 0, "passage_index": 0}


def test_hostile_article_text_is_escaped_everywhere():
    text = f"{EVIL} Intro. The answer is 42. Outro."
    start = text.index("The answer")
    end = start + len("The answer is 42.")
    passage = {**_passage(0, text), "title": EVIL, "source": EVIL}
    citation = {**_citation(1, text, "The answer is 42."), "title": EVIL, "source": "https://example.com/x?q=1\"><b>"}
    answer = _answer(f"The answer is 42. {EVIL} [1]", [citation], [passage], question=EVIL, notes=[EVIL])
    turn = {"answer": answer, "articles": {"a": {"text": text, "url": "", "page_starts": []}}}
    for out in (answer_message(answer, 0), evidence_html(turn, 0),
                viewer_html(EVIL, EVIL, "", text, start, end, text[start:end], EVIL)):
        assert "<script" not in out and "<img" not in out and "<b>" not in out
        assert "&lt;script&gt;" in out
    mark = f'<mark class="quote" data-start="{start}" data-end="{end}">The answer is 42.</mark>'
    assert mark in evidence_html(turn, 0)
    assert public_url("https://user:pw@llm.example.com:8443/v1?key=abc") == "https://llm.example.com:8443/v1"
    assert "<b>&lt;img src=x&gt;.exe</b>" in upload_status_html([(False, "<img src=x>.exe", "unsupported")])
    assert "&lt;b&gt;" in article_count_html(3, "<b>", 0, 0)


def test_markers_link_to_their_citations_only():
    text = "Alpha rose. Beta fell."
    cites = [_citation(1, text, "Alpha rose."), _citation(2, text, "Beta fell.")]
    message = answer_message(_answer("Alpha rose [1]. Beta fell [2, 7]. See [ 1 ].", cites, [_passage(0, text)]), 3)
    assert message.count('class="cite-marker"') == 3
    assert '<a class="cite-marker" href="#cite-3-1" title="Citation 1: open the article">1</a>' in message
    assert 'href="#cite-3-2"' in message and "#cite-3-7" not in message
    assert "#cite-3-2\" title=\"Citation 2: open the article\">2</a>, 7]" in message  # 7 is no citation: plain


def test_short_answer_in_bold_before_its_sentence():
    text = "CATL will hold a majority stake of 51%."
    answer = _answer(f"a majority stake of 51% \u2014 {text} [1]", [_citation(1, text, text)], [_passage(0, text)],
                     short_answer="a majority stake of 51%")
    message = answer_message(answer, 0)
    bold = '<strong class="short-answer">a majority stake of 51%</strong>'
    assert message.startswith(f'<div class="answer">{bold} \u2014 CATL will hold')
    assert 'href="#cite-0-1"' in message
    plain = answer_message({**answer, "text": f"{text} [1]", "short_answer": text}, 0)  # the phrase is the sentence
    assert "short-answer" not in plain and 'href="#cite-0-1"' in plain


def test_abstained_answer_shows_related_passages_and_its_reason():
    passages = [_passage(i, f"Passage {i} text.\n\n\nMore.") for i in range(5)]
    passages.insert(1, _passage(0, "Passage 0 text.", chunk_id="a#0"))  # the same chunk twice: listed once
    answer = _answer("The indexed articles do not answer this question.", [], passages, question="Who won <it>?",
                     abstained=True, abstain_reason=NO_ANSWER, notes=["The question was shortened."])
    message = answer_message(answer, 0)
    assert '<span class="nf">Not found in the articles.</span>' in message and "cite-marker" not in message
    panel = evidence_html({"answer": answer, "articles": {}}, 2)
    assert '<h2 class="panel-title">Not found in the articles</h2>' in panel
    assert ('<p class="notes">No passage answers “Who won &lt;it&gt;?”. Closest passages (related, not citations):'
            "</p>") in panel
    assert panel.count('class="cite-card related"') == MAX_RELATED
    assert 'data-cite="2:p:0"' in panel and 'data-cite="2:p:1"' not in panel and 'data-cite="2:p:2"' in panel
    assert "Passage 0 text.\nMore." in panel  # blank lines collapsed
    assert "mark" not in panel and "cite-marker" not in panel
    # The generic reason is the panel's own line; the notes are listed as they are.
    assert NO_ANSWER not in panel and "<li>The question was shortened.</li>" in panel
    clash = {**answer, "abstain_reason": f"{NO_ANSWER} The closest passage is about 2019.", "notes": []}
    assert panel_notes(clash) == ["The closest passage is about 2019."]
    model = {**answer, "abstain_reason": "The model found no answer in the passages.", "notes": ["n"]}
    assert panel_notes(model) == ["The model found no answer in the passages.", "n"]
    assert panel_notes({**model, "abstained": False, "abstain_reason": ""}) == ["n"]


def test_pending_turn_lists_every_passage_being_read():
    passages = [_passage(i, f"Passage {i}.", article_id=f"a{i}") for i in range(5)]
    answer = {"question": "Who?", "pending": True, "abstained": False, "citations": [], "passages": passages}
    panel = evidence_html({"answer": answer, "articles": {}}, 0)
    assert "Reading these passages\u2026" in panel and panel.count('<span class="cite-n">Passage</span>') == 5


def test_viewer_highlights_the_span_or_says_why_not():
    text = "Line one.\nThe cited sentence.\nLine three."
    start = text.index("The cited")
    end = start + len("The cited sentence.")
    out = viewer_html("T", "a.txt", "", text, start, end, text[start:end], "highlighted", related=True)
    assert f'<mark id="article-highlight" class="hl related-hl" data-start="{start}" data-end="{end}">' in out
    changed = viewer_html("T", "a.txt", "", text, start, end, "Another sentence.", "")
    assert "The article changed since this answer" in changed and "<mark" not in changed
    assert "no longer in the index" in viewer_html("T", "a.txt", "", None, 0, 1, None, "")


def test_sources_pages_and_links():
    assert source_html("/data/uploads/report.pdf", page=2) == "report.pdf · page 2"
    link = source_html("a.html", "https://news.example.org/2024/story")
    assert link.startswith('<a href="https://news.example.org/2024/story" target="_blank" rel="noopener noreferrer')
    long = "https://news.example.org/" + "x" * 80 + "?token=secret"
    assert ">https://news.example.org/" + "x" * 80 + "</a>" in source_html("", long)
    assert source_html("") == "unknown source"
    assert [page_of(o, [0, 100, 250]) for o in (0, 99, 100, 300)] == [1, 1, 2, 3] and page_of(5, []) == 0


def test_outlet_and_date_on_every_card_and_the_scope_under_the_answer():
    text = "Alpha rose. Beta fell."
    dated = {**_citation(1, text, "Alpha rose."), "site": "cnn", "published": "2022-06-14"}
    undated = _citation(2, text, "Beta fell.")
    answer = _answer("Alpha rose [1]. Beta fell [2].", [dated, undated], [_passage(0, text)],
                     time_scope="from cnn", as_of="2022-06-16")
    panel = evidence_html({"answer": answer, "articles": {"a": {"text": text, "url": "", "page_starts": []}}}, 0)
    assert panel.count('<span class="byline">') == 1
    assert '<div class="cite-src"><span class="byline">cnn · 2022-06-14</span> · a</div>' in panel
    assert '<div class="cite-src">a</div>' in panel  # nothing known: the source alone
    related = {**answer, "abstained": True, "passages": [{**_passage(0, text), "site": "bbc", "published": ""}]}
    assert '<span class="byline">bbc</span> · a' in evidence_html({"answer": related, "articles": {}}, 0)
    assert answer_message(answer, 0).endswith('<p class="scope-note">From cnn</p></div>')
    assert '<p class="scope-note">As of 2022-06-01; from cnn</p>' in answer_message(answer, 0, as_of="2022-06-01")
    assert "scope-note" not in answer_message({**answer, "time_scope": ""}, 0)
    assert "scope-note" in answer_message({**related, "time_scope": "from cnn"}, 0)  # an abstention says it too
    viewer = viewer_html("T", "a.txt", "", text, 0, 5, "Alpha", "", meta=byline("cnn", "2022-06-14"))
    assert '<span class="byline">cnn · 2022-06-14</span> · a.txt' in viewer
    # Outlets and scopes come from article metadata and the question: escaped like article text.
    hostile = {**dated, "site": EVIL, "published": "<b>2022</b>"}
    out = evidence_html({"answer": {**answer, "citations": [hostile]}, "articles": {}}, 0)
    out += answer_message({**answer, "time_scope": EVIL}, 0) + scope_note(EVIL, EVIL)
    assert "<script" not in out and "<img" not in out and "<b>" not in out and "&lt;b&gt;2022&lt;/b&gt;" in out
    assert byline("", "") == "" and scope_note("", "") == ""


def test_ask_options_from_the_fields():
    assert ask_options() == {"mode": None, "top_k": None, "as_of": None, "since": None, "until": None,
                             "sources": None}
    options = ask_options("llm", 5.0, " 2022-06-16 ", "", "2022-06-30", [" Coastal Times ", "", "bbc"])
    assert options == {"mode": "llm", "top_k": 5, "as_of": "2022-06-16", "since": None, "until": "2022-06-30",
                       "sources": ["Coastal Times", "bbc"]}
    assert ask_options(sources="cnn, Harbour Herald,")["sources"] == ["cnn", "Harbour Herald"]


def _record(article_id: str, published: str = "", site: str = "", ingested: str = "2024-01-01T00:00:00") -> ArticleRecord:
    return ArticleRecord(article_id=article_id, title=article_id.upper(), source=article_id, sha256="0",
                         chunks=1, ingested_at=ingested, published=published, site=site)


def test_article_orders_put_undated_and_unsourced_last():
    records = [_record("b", "2022-06-14", "cnn", "2024-01-03"), _record("a", "", "", "2024-01-02"),
               _record("c", "2021-01-01", "BBC", "2024-01-01"), _record("d", "2023-02-02", "", "2024-01-04")]
    order = lambda name: [r.article_id for r in sort_records(records, name)]  # noqa: E731
    assert order(NEWEST_INGESTED) == ["d", "b", "a", "c"] == order("anything else")
    assert order(NEWEST_PUBLISHED) == ["d", "b", "c", "a"]
    assert order(OLDEST_PUBLISHED) == ["c", "b", "d", "a"]
    assert order(BY_TITLE) == ["a", "b", "c", "d"]
    assert order(BY_SITE) == ["c", "b", "a", "d"]
    assert distinct_sites(records + [_record("e", site="cnn "), _record("f", site="Cnn")]) == ["BBC", "cnn"]
    assert "showing the first 2 by oldest published (search" in article_count_html(4, "", 4, 2, "oldest published")
    assert "showing the newest 2 (search" in article_count_html(4, "", 4, 2)


def test_stale_references_open_nothing():
    assert "no longer available" in open_reference("4:c:1", [], store=None)[1]
    assert "no longer available" in open_reference("not-a-ref", [], store=None)[1]
    turn = {"answer": _answer("x", [], []), "articles": {}}
    assert open_reference("0:c:9", [turn], store=None) == (None, None)
    assert open_reference("0:p:9", [turn], store=None) == (None, None)


@pytest.mark.parametrize(
    "raw,ok",
    [
        ("news.txt", "news.txt"), ("C:\\Users\\me\\Report 2024 (final).pdf", "Report 2024 (final).pdf"),
        ("../../etc/passwd.md", "passwd.md"), ("page.HTM", "page.HTM"), ("setup.exe", None), ("archive.zip", None),
        (".hidden.txt", None), ("bad\x00name.txt", None), ("a<b>.html", None), ("noext", None), ("con.txt", None),
        ("x" * 200 + ".txt", None),
    ],
)
def test_upload_names(raw, ok):
    name, reason = check_upload_name(raw, ACCEPTED_SUFFIXES)
    assert name == ok
    assert bool(reason) == (ok is None)


def test_static_files_are_packaged():
    assert "#article-list" in static_text("app.css")
    assert "data-cite" in static_text("cite-links.js")
    assert static_text("confirm-delete.js").lstrip().startswith("(articleId, ...listed) =>")
    assert "#article-viewer mark.hl" in static_text("scroll-to-highlight.js")
