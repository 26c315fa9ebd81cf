"""The web UI end to end: `python ui.py` on a small real index, driven by headless Chromium (Playwright).

One server process serves the whole module (starting it loads the model and ingests the corpus: ~30-60 s).
Each test opens its own browser page, so each is its own Gradio session.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import TEST_CORPUS, free_port, stop_process
from tests.ui_helpers import (  # noqa: F401  (browser: a fixture)
    CHROMIUM, MAJORITY, QUESTION, ROOT, SEED_ID, SEED_TITLE, ask, browser, last_answer, open_page, seed_corpus,
    start_ui, ui_env, wait_text,
)

pytestmark = pytest.mark.browser

# Three business stories of the test corpus, beside the seed article.
NEWS = ["business/halden-air-strike.txt", "business/cardell-mortgage-rates.txt", "business/marrowgate-quarterly-profits.txt"]
UNANSWERABLE = "Which film won the Palme d'Or at the 2005 Cannes Film Festival?"
SECRET = "sk-uitest-never-show-this-0123456789"
UPLOAD_TITLE = "Zephyria solar farm opens on the Quillon plateau"
UPLOAD_TEXT = (
    f"{UPLOAD_TITLE}\n\n"
    "The Zephyria solar farm, built by Heliomar Energy, opened on Tuesday on the Quillon plateau. "
    "The Zephyria solar farm has a capacity of 740 megawatts, enough for 310,000 homes. "
    "Engineers tagged the panels <b>not bold</b> & <img src=x onerror=\"window.__pwned=1\"> for testing.\n"
)


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


@pytest.fixture
def page(browser, server):
    page = open_page(browser, server["url"])
    page.wait_for_selector("#question textarea")
    yield page
    page.context.close()


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
    page.locator("#answer-mode input[value=extractive]").wait_for()  # the tab's parts may render one by one
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
