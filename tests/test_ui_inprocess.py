"""The web UI served from the test process: LLM mode with a scripted LLM, the upload checks, PDF pages and web
links as sources, and the publish-date and outlet filters on a tiny dated index.
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import date

import pytest

import ui
from rag.app import ACCEPTED_SUFFIXES, open_services
from rag.core.settings import Settings
from rag.web.callbacks import AskCallbacks, LibraryCallbacks
from rag.web.serve import launch
from tests import dated
from tests.conftest import free_port, make_settings
from tests.llm_helpers import ScriptedLLM
from tests.ui_helpers import (  # noqa: F401  (browser: a fixture)
    QUESTION, ROOT, SEED_ID, SEED_TITLE, ask, browser, last_answer, open_page, wait_text,
)

pytestmark = pytest.mark.browser


# --- in-process: LLM mode with a scripted LLM, upload checks, sources -----------------------------------------
LLM_REPLY = "ANSWER: a majority stake of 51%\nPASSAGE: 1"  # the reader's format: a phrase and a passage


@pytest.fixture(scope="module")
def llm_app(tmp_path_factory, embedder):
    """The UI's services in this process, on the seed article, with a scripted LLM configured."""
    base = tmp_path_factory.mktemp("ui-llm")
    corpus = base / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / SEED_ID, corpus / SEED_ID)
    settings = Settings(
        data_dir=base / "data", corpus_dir=corpus, llm="llamacpp", answer_mode="llm", host="127.0.0.1",
        port=free_port(), max_upload_mb=0.001, share=False, username=None, password=None,
    )
    services = open_services(settings, llm=ScriptedLLM(reply=LLM_REPLY), embedder=embedder)
    services.ensure_corpus(progress=False)
    return services


def test_llm_answer_shows_evidence_first_then_streams_the_phrase(llm_app):
    updates, shown = [], []  # the last chat message at each yield (the chat list is updated in place)
    ask = AskCallbacks(llm_app)
    for update in ask.respond(QUESTION, [], [], [], "llm", 5):
        updates.append(update)
        if isinstance(update[1], list):
            shown.append(update[1][-1]["content"])
    # The passages being read reach the evidence panel before the model has answered.
    reading = [u[4] for u in updates if isinstance(u[4], str) and "Reading these passages" in u[4]]
    assert reading and "Reading the passages" in shown[1]
    assert any("majority" in m and "51%" not in m for m in shown[2:-1])  # the phrase grows
    final = shown[-1]
    assert '<strong class="short-answer">a majority stake of 51%</strong>' in final
    assert 'href="#cite-0-1"' in final
    _, _, history, answers, evidence, _ = updates[-1]
    assert history[-1][0] == QUESTION and answers[0]["answer"]["mode"] == "llm"
    assert answers[0]["answer"]["short_answer"] == "a majority stake of 51%"
    assert 'mark class="quote"' in evidence and "a majority stake of 51%" in evidence

    # An empty question changes nothing.
    with pytest.warns(UserWarning, match="Please type a question"):
        empty = list(ask.respond("   ", [], [], [], "llm", 5))
    assert len(empty) == 1


def test_llm_mode_in_the_browser(llm_app, browser):
    settings = llm_app.settings
    llm_app.pipeline.llm.delay = 0.15
    demo = ui.build_app(llm_app)
    launch(demo, settings, prevent_thread_lock=True, quiet=True)
    try:
        page = open_page(browser, f"http://127.0.0.1:{settings.port}")
        page.get_by_role("tab", name="Settings").click()
        page.locator("#answer-mode input[value=llm]").wait_for()  # the tab renders its content on first show
        assert page.locator("#answer-mode input[type=radio]").count() == 2
        assert page.locator("#answer-mode input[value=llm]").is_checked()
        page.get_by_role("tab", name="Ask").click()
        box = page.locator("#question textarea")
        box.fill(QUESTION)
        box.press("Enter")
        # Progressive: the evidence panel lists the passages being read while the phrase is still growing.
        page.wait_for_function(
            """() => document.body.innerText.includes('Reading these passages')
                     && !document.querySelector('#chat .answer .short-answer')"""
        )
        page.locator("#chat .answer .short-answer").wait_for()
        assert page.locator("#chat .answer .short-answer").inner_text() == "a majority stake of 51%"
        assert page.locator("#chat .answer a.cite-marker").count() >= 1
        page.context.close()
    finally:
        llm_app.pipeline.llm.delay = 0.0
        demo.close()


def test_upload_checks_sizes_names_and_collisions(llm_app, tmp_path):
    no_progress = lambda *args, **kwargs: None  # noqa: E731
    small = tmp_path / "short-note.txt"
    small.write_text("Short note\n\nThe harbour reopened on Monday.\n", encoding="utf-8")
    big = tmp_path / "long-note.txt"
    big.write_text("word " * 400, encoding="utf-8")  # 2 kB > 0.001 MB
    binary = tmp_path / "fake.txt"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    clash = tmp_path / SEED_ID  # same name as the corpus article, other content
    clash.write_text("Another article\n\nIt is not about batteries.\n", encoding="utf-8")
    library = LibraryCallbacks(llm_app, ACCEPTED_SUFFIXES)
    status, cleared, *_ = library.upload([str(small), str(big), str(binary), str(clash)], "", progress=no_progress)
    assert cleared is None
    assert "short-note.txt</b>: added" in status
    assert "long-note.txt</b>: rejected: file too large" in status
    assert "fake.txt</b>: rejected: binary content" in status
    assert "saved as catl-baic-xiaomi-battery-jv-2.txt" in status
    uploads = library.library.uploads_dir
    assert sorted(p.name for p in uploads.iterdir()) == ["catl-baic-xiaomi-battery-jv-2.txt", "short-note.txt"]
    seed = llm_app.store.get_articles([SEED_ID])[SEED_ID]
    assert seed.title == SEED_TITLE  # the corpus article was not replaced
    for article_id in ("short-note.txt", "catl-baic-xiaomi-battery-jv-2.txt"):
        message, *_ = library.delete(article_id, "")
        assert "Deleted" in message
    assert list(uploads.iterdir()) == []
    assert SEED_ID in {r.article_id for r in llm_app.store.all_articles()}


def test_sources_show_pdf_pages_and_web_links(llm_app, tmp_path):
    import io

    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    pdf = canvas.Canvas(buf, pagesize=A4)
    pdf.setTitle("Port authority annual review")
    for lines in (["Port authority annual review", "Cargo volumes were steady through the spring."],
                  ["The new Kestrel crane terminal cost 92 million euros to build."]):
        for i, line in enumerate(lines):
            pdf.drawString(40, 800 - 15 * i, line)
        pdf.showPage()
    pdf.save()
    (tmp_path / "port-review.pdf").write_bytes(buf.getvalue())
    (tmp_path / "glacier.html").write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Glacier museum opens</title>'
        '<link rel="canonical" href="https://news.example.org/2024/glacier-museum"></head><body><article>'
        "<h1>Glacier museum opens</h1><p>The Vatnajokull glacier museum opened in Hofn on Friday. "
        "The Vatnajokull glacier museum welcomed 4,200 visitors in its first weekend.</p>"
        "<p>Its director said the exhibits explain how the ice cap has shrunk since 1890.</p></article></body></html>",
        encoding="utf-8",
    )
    report = llm_app.ingestor.ingest([tmp_path / "port-review.pdf", tmp_path / "glacier.html"], progress=False)
    assert sorted(report.added) == ["glacier.html", "port-review.pdf"], report.skipped
    try:
        for question, expected in (
            ("How much did the Kestrel crane terminal cost?", "page 2"),
            ("How many visitors did the Vatnajokull glacier museum welcome?",
             '<a href="https://news.example.org/2024/glacier-museum" target="_blank" rel="noopener noreferrer'),
        ):
            *_, last = AskCallbacks(llm_app).respond(question, [], [], [], "extractive", 5)
            evidence = last[4]
            assert isinstance(evidence, str) and "mark class=\"quote\"" in evidence, last[1][-1]["content"]
            assert expected in evidence
    finally:
        for article_id in report.added:
            llm_app.ingestor.delete(article_id)


# --- publish dates and outlets: the as-of date, the source filter, the article list's order -------------------
@pytest.fixture(scope="module")
def dated_app(tmp_path_factory, embedder):
    """The UI served from this process on the tiny dated index of tests/dated.py."""
    base = tmp_path_factory.mktemp("ui-dated")
    settings = make_settings(base / "data", corpus_dir=base / "corpus", llm="none", answer_mode="extractive",
                             host="127.0.0.1", port=free_port(), share=False, username=None, password=None)
    services = open_services(settings, embedder=embedder)
    dated.build_dated_index(services, base / "corpus")
    demo = ui.build_app(services)
    launch(demo, settings, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        demo.close()


def pick(page, dropdown: str, option: str) -> None:
    """Choose ``option`` in the Gradio dropdown ``dropdown`` (a selector)."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def ask_fresh(page, question: str) -> None:
    """A new conversation, then :func:`ask` (the evidence panel of the last turn would satisfy it at once)."""
    page.locator("#new-conversation").click()
    page.wait_for_function("() => !document.querySelector('#evidence .cite-card')")
    ask(page, question)


def test_as_of_date_and_sources_filter_what_is_cited(dated_app, browser):
    newer, older = dated.title_of(dated.NEWER), dated.title_of(dated.OLDER)
    page = open_page(browser, dated_app)
    page.wait_for_selector("#question textarea")
    ask(page, dated.QUESTION)  # as of today: both reports may be cited, each card with its outlet and date
    evidence = page.locator("#evidence").inner_text()
    assert newer in evidence and "Coastal Times · 2022-06-14" in evidence
    assert "scope-note" not in last_answer(page).inner_html()

    page.locator("#scope").get_by_text("Time and sources").click()
    as_of = page.locator("#as-of input")
    assert as_of.get_attribute("placeholder") == date.today().isoformat()  # blank means today
    as_of.fill("2022-06-01")  # (a) before the newer report was published: it is out of the evidence
    ask_fresh(page, dated.QUESTION)
    evidence = page.locator("#evidence").inner_text()
    assert older in evidence and "Harbour Herald · 2022-05-10" in evidence and "9,800" in last_answer(page).inner_text()
    assert newer not in evidence and "12,400" not in last_answer(page).inner_text()
    assert last_answer(page).locator(".scope-note").inner_text() == "As of 2022-06-01"

    as_of.fill("")  # (b) one outlet: only its articles are cited
    pick(page, "#sources", "Coastal Times")
    ask_fresh(page, dated.QUESTION)
    cards = page.locator("#evidence .cite-card")
    assert cards.count() >= 1 and all("Coastal Times" in t for t in cards.locator(".cite-src").all_inner_texts())
    assert older not in page.locator("#evidence").inner_text() and "12,400" in last_answer(page).inner_text()
    assert "coastal times" in last_answer(page).locator(".scope-note").inner_text().lower()

    page.locator("#since input").fill("2022-13-45")  # a bad date is said in the chat, and nothing else changes
    page.locator("#question textarea").fill(dated.QUESTION)
    page.locator("#question textarea").press("Enter")
    page.locator("#chat .answer.error").wait_for()
    assert "not a date: '2022-13-45'" in page.locator("#chat .answer.error").inner_text()
    assert page.locator("#question textarea").input_value() == dated.QUESTION  # back in the box, to fix and retry

    # (c) the article list shows each article's date and outlet, sorted by date with the undated one last
    page.get_by_role("tab", name="Articles").click()
    wait_text(page, "#article-list", dated.UNDATED_TITLE)
    listed = page.locator("#article-list").inner_text()
    assert "Published" in listed and "Site" in listed and "2022-06-14" in listed and "Harbour Herald" in listed
    for order, expected in (("Oldest published", [older, newer]), ("Newest published", [newer, older])):
        pick(page, "#article-order", order)
        page.wait_for_function(
            "([a, b, c]) => { const t = document.querySelector('#article-list').innerText;"
            " return t.indexOf(a) >= 0 && t.indexOf(a) < t.indexOf(b) && t.indexOf(b) < t.indexOf(c); }",
            arg=[*expected, dated.UNDATED_TITLE],
        )
    page.context.close()


def test_gradio_api_takes_the_time_and_source_filters(dated_app):
    from gradio_client import Client

    client = Client(dated_app, verbose=False)
    _, answer_json = client.predict(dated.QUESTION, as_of="2022-06-01", api_name="/ask")
    answer = json.loads(answer_json)
    assert answer["as_of"] == "2022-06-01" and {c["article_id"] for c in answer["citations"]} == {dated.OLDER}
    _, answer_json = client.predict(dated.QUESTION, sources="Coastal Times", api_name="/ask")
    citations = json.loads(answer_json)["citations"]
    assert citations and {(c["site"], c["published"]) for c in citations} == {("Coastal Times", "2022-06-14")}
    with pytest.raises(Exception, match="after until"):
        client.predict(dated.QUESTION, since="2022-06-10", until="2022-06-01", api_name="/ask")
    articles = {a["article_id"]: a for a in json.loads(client.predict(api_name="/articles"))}
    assert (articles[dated.NEWER]["site"], articles[dated.NEWER]["published"]) == ("Coastal Times", "2022-06-14")
