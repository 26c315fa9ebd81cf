"""The web UI end to end: `python ui.py` on a small real index, driven by headless Chromium (Playwright).

One server process serves the whole module (starting it loads the model and ingests the corpus: ~30-60 s).
Each test opens its own browser page, so each is its own Gradio session.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

from typing import Any, Iterator

import pytest
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata

import ui
from rag.app import ACCEPTED_SUFFIXES, open_services
from rag.core.settings import Settings
from rag.web.callbacks import AskCallbacks, LibraryCallbacks
from rag.web.serve import launch
from tests import dated
from tests.conftest import TEST_CORPUS, free_port, make_settings, stop_process

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
# Three business stories of the test corpus, beside the seed article.
NEWS = ["business/halden-air-strike.txt", "business/cardell-mortgage-rates.txt", "business/marrowgate-quarterly-profits.txt"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SEED_ID = "catl-baic-xiaomi-battery-jv.txt"
SEED_TITLE = "CATL, BAIC, and Xiaomi to build a battery factory in Beijing"
QUESTION = "Who holds the majority stake?"
MAJORITY = "CATL will hold a majority stake of 51%, followed by BAIC with 39% and Xiaomi Auto with 5%."
UNANSWERABLE = "Which film won the Palme d'Or at the 2005 Cannes Film Festival?"
SECRET = "sk-uitest-never-show-this-0123456789"
UPLOAD_TITLE = "Zephyria solar farm opens on the Quillon plateau"
UPLOAD_TEXT = (
    f"{UPLOAD_TITLE}\n\n"
    "The Zephyria solar farm, built by Heliomar Energy, opened on Tuesday on the Quillon plateau. "
    "The Zephyria solar farm has a capacity of 740 megawatts, enough for 310,000 homes. "
    "Engineers tagged the panels <b>not bold</b> & <img src=x onerror=\"window.__pwned=1\"> for testing.\n"
)


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Wait until ``proc`` (a `python ui.py` writing to ``log``) accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ui.py exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"ui.py did not open port {port} in {timeout} s:\n{log.read_text()[-4000:]}")


def ui_env(data: Path, corpus: Path, port: int, **extra: str) -> dict:
    """The environment of a `python ui.py` child: no RAG_* setting of the calling shell, an extractive app on
    loopback serving the index in ``data`` (the articles of ``corpus`` ingested into an empty one); ``extra`` wins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_DATA_DIR=str(data), RAG_CORPUS_DIR=str(corpus), RAG_HOST="127.0.0.1", RAG_PORT=str(port),
        RAG_LLM="none", RAG_ANSWER_MODE="extractive", RAG_SHARE="false", GRADIO_ANALYTICS_ENABLED="False",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def start_ui(env: dict, log: Path) -> subprocess.Popen:
    """`python ui.py` with ``env`` (its output appended to ``log``), once it serves on ``RAG_PORT``."""
    with log.open("a") as out:
        proc = subprocess.Popen([sys.executable, "ui.py"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(int(env["RAG_PORT"]), proc, log)
    except BaseException:
        stop_process(proc)
        raise
    return proc


def seed_corpus(folder: Path) -> Path:
    """``folder`` holding only the seed article (the smallest corpus the app starts on)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "corpus" / SEED_ID, folder / SEED_ID)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python ui.py` on a fresh index of the seed article and 3 business articles of the test corpus."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (make browser installs it)")
    base = tmp_path_factory.mktemp("ui")
    corpus = seed_corpus(base / "corpus")
    for rel in NEWS:
        shutil.copy(TEST_CORPUS / rel, corpus / f"news-{Path(rel).name}")
    port = free_port()
    env = ui_env(base / "data", corpus, port, RAG_MAX_UPLOAD_MB="1", OPENAI_API_KEY=SECRET)
    log = base / "server.log"
    proc = start_ui(env, log)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "data": base / "data", "log": log}
    finally:
        stop_process(proc, timeout=15)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    chromium = pw.chromium.launch(
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
    )
    yield chromium
    chromium.close()
    pw.stop()


def open_page(browser, url: str):
    """A page of its own browser context (so its own Gradio session) at ``url``; close its ``.context``."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server["url"])
    page.wait_for_selector("#question textarea")
    yield page
    page.context.close()


def ask(page, question: str) -> None:
    """Type a question, press Enter and wait until its answer and evidence are shown."""
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(
        "q => (document.querySelector('#evidence') || {}).textContent.includes(q)", arg=question
    )


def last_answer(page):
    return page.locator("#chat .answer").last


def wait_text(page, selector: str, text: str, present: bool = True) -> None:
    """Wait until the element's visible text includes (or no longer includes) ``text``."""
    page.wait_for_function(
        "([s, t, p]) => { const e = document.querySelector(s); return !!e && e.innerText.includes(t) === p; }",
        arg=[selector, text, present],
    )


def no_horizontal_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def seed_text() -> str:
    return (ROOT / "corpus" / SEED_ID).read_text(encoding="utf-8-sig").replace("\r\n", "\n")


# --- tests ---------------------------------------------------------------------------------------------
def test_answer_with_citation_viewer_and_follow_up(page, tmp_path):
    ask(page, QUESTION)
    answer = last_answer(page)
    assert "51%" in answer.inner_text()
    assert MAJORITY in answer.inner_text()
    assert answer.locator("a.cite-marker").count() >= 1

    card = page.locator("#evidence .cite-card").first
    assert card.locator(".cite-title").inner_text() == SEED_TITLE
    assert SEED_ID in card.locator(".cite-src").inner_text()
    mark = card.locator("mark.quote")
    start, end = int(mark.get_attribute("data-start")), int(mark.get_attribute("data-end"))
    text = seed_text()
    assert mark.text_content() == text[start:end] == MAJORITY

    shot = tmp_path / "answer.png"
    page.screenshot(path=str(shot))
    data = shot.read_bytes()
    assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert no_horizontal_overflow(page)

    # Clicking the citation opens the full article, scrolled to the highlighted span.
    card.locator(".cite-title").click()
    highlight = page.locator("#article-viewer mark#article-highlight")
    highlight.wait_for()
    assert highlight.text_content() == text[start:end]
    assert page.locator("#article-viewer .article-text").text_content() == text
    page.wait_for_function(
        """() => { const m = document.querySelector('#article-highlight').getBoundingClientRect();
                   const b = document.querySelector('#article-viewer .article-text').getBoundingClientRect();
                   return m.top >= b.top - 1 && m.bottom <= b.bottom + 1 && m.top >= 0 && m.bottom <= innerHeight; }"""
    )

    # The [n] marker in the chat opens it too (after the viewer is reset by a follow-up question).
    ask(page, "And how much does BAIC hold?")
    assert "39%" in last_answer(page).inner_text()
    assert page.locator("#chat .answer").count() == 2
    assert page.locator("#article-viewer mark").count() == 0
    last_answer(page).locator("a.cite-marker").first.click()
    page.locator("#article-viewer mark#article-highlight").wait_for()

    page.locator("#new-conversation").click()
    page.wait_for_function("() => document.querySelectorAll('#chat .answer').length === 0")
    assert page.locator("#evidence .cite-card").count() == 0


def test_each_browser_session_has_its_own_conversation(page, browser, server):
    other = open_page(browser, server["url"])
    other.wait_for_selector("#question textarea")
    ask(page, QUESTION)
    ask(other, UNANSWERABLE)
    assert page.locator("#chat .answer").count() == 1 and "51%" in last_answer(page).inner_text()
    assert other.locator("#chat .answer").count() == 1 and "Not found" in last_answer(other).inner_text()
    other.context.close()


def test_abstention_shows_related_passages_not_citations(page):
    ask(page, UNANSWERABLE)
    answer = last_answer(page)
    assert "Not found in the articles" in answer.inner_text()
    assert answer.locator("a.cite-marker").count() == 0
    assert "Not found in the articles" in page.locator("#evidence h2").inner_text()
    evidence = page.locator("#evidence").inner_text()
    assert f"No passage answers “{UNANSWERABLE}”. Closest passages (related, not citations):" in evidence
    assert "the closest passages are shown as related" not in evidence  # the reason is said once, in those words
    related = page.locator("#evidence .cite-card.related")
    assert related.count() >= 1
    assert page.locator("#evidence mark.quote").count() == 0
    related.first.locator("button").click()
    page.locator("#article-viewer mark#article-highlight.related-hl").wait_for()


def test_upload_ask_and_delete(page, server, tmp_path):
    good = tmp_path / "zephyria-solar.txt"
    good.write_text(UPLOAD_TEXT, encoding="utf-8")
    exe = tmp_path / "setup.exe"
    exe.write_bytes(b"MZ\x90\x00" + b"\x00" * 64)
    archive = tmp_path / "articles.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    big = tmp_path / "huge.txt"
    big.write_text("word " * 260_000, encoding="utf-8")  # 1.3 MB > RAG_MAX_UPLOAD_MB=1

    page.get_by_role("tab", name="Articles").click()
    wait_text(page, "#article-list", SEED_TITLE)
    page.locator("#upload input[type=file]").set_input_files([str(good), str(exe), str(archive)])
    status = page.locator("#upload-status")
    status.get_by_text("zephyria-solar.txt").wait_for()
    assert "added" in status.locator("li.ok").inner_text()
    bad = status.locator("li.bad").all_inner_texts()
    assert any("setup.exe" in b and "unsupported file type .exe" in b for b in bad)
    assert any("articles.zip" in b and "unsupported file type .zip" in b for b in bad)
    wait_text(page, "#article-list", UPLOAD_TITLE)
    assert (server["data"] / "uploads" / "zephyria-solar.txt").is_file()
    assert not (server["data"] / "uploads" / "setup.exe").exists()

    # Too large (Gradio's own limit or ours) never reaches the index.
    page.locator("#upload input[type=file]").set_input_files([str(big)])
    page.wait_for_function(
        "() => /exceed the maximum allowed size|too large/i.test(document.body.innerText)"
    )
    assert not (server["data"] / "uploads" / "huge.txt").exists()

    # The search box filters the list.
    page.locator("#article-search textarea, #article-search input").first.fill("zephyria")
    wait_text(page, "#article-list", "Time Warner", present=False)
    assert UPLOAD_TITLE in page.locator("#article-list").inner_text()

    # The uploaded article answers questions; its markup is shown as text, never run.
    page.get_by_role("tab", name="Ask").click()
    ask(page, "What is the capacity of the Zephyria solar farm?")
    assert "740 megawatts" in last_answer(page).inner_text()
    page.locator("#evidence .cite-title").first.click()
    viewer = page.locator("#article-viewer .article-text")
    page.locator("#article-viewer mark#article-highlight").wait_for()
    assert '<img src=x onerror="window.__pwned=1">' in viewer.text_content()
    assert page.locator("#article-viewer img, #article-viewer b, #evidence img").count() == 0
    assert page.evaluate("window.__pwned === undefined")

    # Delete it: pick the row, press Delete, and it is gone from the list and the uploads folder.
    page.get_by_role("tab", name="Articles").click()
    page.locator("#article-list").get_by_text(UPLOAD_TITLE).filter(visible=True).first.click()
    page.wait_for_function(
        "() => document.querySelector('#delete-choice input').value.includes('zephyria-solar.txt')"
    )
    dialogs = []
    page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.locator("#delete").click()
    page.locator("#delete-status").get_by_text("Deleted").wait_for()
    wait_text(page, "#article-list", UPLOAD_TITLE, present=False)
    assert not (server["data"] / "uploads" / "zephyria-solar.txt").exists()
    assert dialogs and "zephyria-solar.txt" in dialogs[0]


def test_no_exposure_warning_when_served_on_loopback(server):
    log = server["log"].read_text()
    assert "Serving on http://127.0.0.1:" in log and "no login is set" not in log


def test_settings_panel_shows_models_but_no_keys(page):
    page.get_by_role("tab", name="Settings").click()
    info = page.locator("#settings-info")
    info.wait_for()
    text = info.inner_text()
    assert "all-MiniLM-L6-v2" in text
    assert "chroma" in text and "news" in text
    assert "none" in text.lower()  # the LLM
    modes = page.locator("#answer-mode input[type=radio]")
    assert modes.count() == 1  # no LLM configured: extractive only
    assert SECRET not in page.content()
    assert SECRET not in page.evaluate("fetch('/config').then(r => r.text())")


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_layout_has_no_horizontal_overflow(page, width, height):
    page.set_viewport_size({"width": width, "height": height})
    ask(page, QUESTION)
    page.locator("#evidence .cite-title").first.click()
    page.locator("#article-viewer mark#article-highlight").wait_for()
    assert no_horizontal_overflow(page), page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    for tab in ("Articles", "Settings"):
        page.get_by_role("tab", name=tab).click()
        page.wait_for_timeout(300)
        assert no_horizontal_overflow(page), (tab, page.evaluate("[document.documentElement.scrollWidth, innerWidth]"))


def test_gradio_api_answers(server):
    from gradio_client import Client

    client = Client(server["url"], verbose=False)
    text, answer_json = client.predict(QUESTION, api_name="/ask")
    assert MAJORITY in text
    answer = json.loads(answer_json)
    assert not answer["abstained"]
    citation = answer["citations"][0]
    assert citation["title"] == SEED_TITLE
    assert seed_text()[citation["start_char_idx"]:citation["end_char_idx"]] == citation["quote"]
    articles = json.loads(client.predict(api_name="/articles"))
    assert SEED_ID in {a["article_id"] for a in articles}


# --- in-process: LLM mode with a scripted LLM, upload checks, sources -----------------------------------------
LLM_REPLY = "ANSWER: a majority stake of 51%\nPASSAGE: 1"  # the reader's format: a phrase and a passage


class ScriptedLLM(CustomLLM):
    """A deterministic LlamaIndex LLM: replies with a fixed text, streamed word by word."""

    reply: str = ""
    delay: float = 0.0

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(context_window=4096, num_output=256, model_name="scripted")

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.reply)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Iterator[CompletionResponse]:
        text = ""
        for i in range(0, len(self.reply), 4):
            time.sleep(self.delay)
            delta = self.reply[i : i + 4]
            text += delta
            yield CompletionResponse(text=text, delta=delta)


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
