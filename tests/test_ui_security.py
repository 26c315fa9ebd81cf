"""Hostile content and exposure: an article full of markup is shown as text and runs nothing in a real browser;
an app reachable from other machines without a login (or with half a login) refuses to start; with a login, nothing
works without it, and failed logins are rate-limited.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.parse

import httpx
import pytest
from pydantic import SecretStr

import ui
from rag.app import open_services
from rag.core.settings import Settings
from rag.web.serve import ExposureRefused, exposure_problem, exposure_warning, launch
from tests.conftest import free_port, make_settings, stop_process
from tests.ui_helpers import (  # noqa: F401  (browser: a fixture)
    MAJORITY, QUESTION, ROOT, SEED_ID, browser, open_page, seed_corpus, start_ui, ui_env, wait_text,
)

# Markup an article may carry: scripts, event handlers, javascript: links, and Markdown that would load an image
# from another host if anything rendered it.
HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    '<a href="javascript:alert(3)">x</a>',
    "[click](javascript:alert(4))",
    "![](http://example.invalid/beacon.png)",
]
HOSTILE_TITLE = f"Quillon observatory counts meteors {' '.join(HOSTILE[:3])}"
HOSTILE_TEXT = (
    f"{HOSTILE_TITLE}\n\n"
    f"The Quillon observatory counted 4,812 meteors on Sunday night, its bulletin {' '.join(HOSTILE)} said. "
    "Astronomers at the observatory said the shower peaked shortly after midnight.\n"
)
HOSTILE_QUESTION = "How many meteors did the Quillon observatory count?"
USER, PASSWORD = "editor", "correct horse battery"
# The panels that show article text; none may hold an element made from it.
PANELS = ("#chat .answer", "#evidence", "#article-viewer", "#upload-status")
MADE_FROM_TEXT = ("script", "img", "iframe", "a[href^='javascript:' i]", "[onerror]")


@pytest.fixture(scope="module")
def hostile_app(tmp_path_factory, embedder):
    """The app served from this process on the seed article; the test uploads the hostile one."""
    base = tmp_path_factory.mktemp("ui-hostile")
    settings = make_settings(base / "data", corpus_dir=seed_corpus(base / "corpus"), llm="none",
                             answer_mode="extractive", host="127.0.0.1", port=free_port(), share=False,
                             username=None, password=None)
    services = open_services(settings, embedder=embedder)
    services.ensure_corpus(progress=False)
    demo = ui.build_app(services)
    launch(demo, settings, prevent_thread_lock=True, quiet=True)
    try:
        yield {"url": f"http://127.0.0.1:{settings.port}", "services": services}
    finally:
        demo.close()


def watch(page, origin: str) -> dict:
    """Record what a page does that it must not: dialogs (dismissed), console errors, uncaught errors, and
    requests to any other host or for the article's image sources."""
    seen = {"dialogs": [], "console": [], "errors": [], "requests": []}
    own = urllib.parse.urlsplit(origin).netloc

    def request(req):
        parts = urllib.parse.urlsplit(req.url)
        if parts.scheme in ("http", "https", "ws", "wss") and (
            parts.netloc != own or parts.path.rstrip("/").endswith(("/x", "beacon.png"))
        ):
            seen["requests"].append(req.url)

    page.on("dialog", lambda dialog: (seen["dialogs"].append(dialog.message), dialog.dismiss()))
    page.on("console", lambda msg: seen["console"].append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: seen["errors"].append(str(exc)))
    page.on("request", request)
    return seen


@pytest.mark.browser
def test_hostile_article_is_shown_as_text_and_runs_nothing(hostile_app, browser, tmp_path):  # noqa: F811
    article = tmp_path / "quillon-meteors.txt"
    article.write_text(HOSTILE_TEXT, encoding="utf-8")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    seen = watch(page, hostile_app["url"])
    page.goto(hostile_app["url"])
    page.wait_for_selector("#question textarea")

    # Uploaded through the Articles tab: the status line and the list show its title as text.
    page.get_by_role("tab", name="Articles").click()
    page.locator("#upload input[type=file]").set_input_files([str(article)])
    page.locator("#upload-status li.ok").wait_for()
    assert HOSTILE_TITLE in page.locator("#upload-status").inner_text()
    wait_text(page, "#article-list", HOSTILE[0])

    # The answer, its evidence card and the article viewer show every piece of markup as the characters it is.
    page.get_by_role("tab", name="Ask").click()
    box = page.locator("#question textarea")
    box.fill(HOSTILE_QUESTION)
    box.press("Enter")
    page.locator("#evidence .cite-card").first.wait_for()
    answer = page.locator("#chat .answer").last.inner_text()
    assert "4,812 meteors" in answer and all(h in answer for h in HOSTILE[:4]), answer
    card = page.locator("#evidence .cite-card").first
    assert card.locator(".cite-title").inner_text() == HOSTILE_TITLE
    assert all(h in card.inner_text() for h in HOSTILE), card.inner_text()
    card.locator(".cite-title").click()
    page.locator("#article-viewer mark#article-highlight").wait_for()
    assert page.locator("#article-viewer .viewer-title").inner_text() == HOSTILE_TITLE
    assert page.locator("#article-viewer .article-text").text_content() == HOSTILE_TEXT
    page.wait_for_timeout(1000)  # time for an image error handler or a beacon request, were there one

    made = {f"{panel} {tag}": page.locator(f"{panel} {tag}").count() for panel in PANELS for tag in MADE_FROM_TEXT}
    assert {k: n for k, n in made.items() if n} == {}
    assert page.evaluate("document.querySelectorAll('a[href^=\"javascript:\" i]').length") == 0
    assert seen == {"dialogs": [], "console": [], "errors": [], "requests": []}
    context.close()


# --- exposure: loopback, refusals, the login --------------------------------------------------------------------
@pytest.mark.parametrize("host,share,exposed", [
    ("127.0.0.1", False, False), ("localhost", False, False), ("::1", False, False), ("127.0.1.1", False, False),
    ("0.0.0.0", False, True), ("::", False, True), ("192.168.1.20", False, True), ("newsbox.example", False, True),
    ("127.0.0.1", True, True),
])
def test_exposed_without_a_login_refuses_unless_the_operator_allows_it(host, share, exposed):
    problem = exposure_problem(Settings(_env_file=None, host=host, share=share, username=None, password=None))
    assert bool(problem) == exposed
    if exposed:
        assert "no login is set" in problem and "RAG_USERNAME and RAG_PASSWORD" in problem
        assert "RAG_ALLOW_OPEN=1" in problem
    allowed = Settings(_env_file=None, host=host, share=share, username=None, password=None, allow_open=True)
    assert exposure_problem(allowed) == "" and bool(exposure_warning(allowed)) == exposed
    logged_in = Settings(_env_file=None, host=host, share=share, username=USER, password=PASSWORD)
    assert exposure_problem(logged_in) == exposure_warning(logged_in) == ""


@pytest.mark.parametrize("half", [{"username": USER}, {"password": PASSWORD}])
def test_half_a_login_refuses_to_start_wherever_it_listens(half):
    for host in ("127.0.0.1", "0.0.0.0"):
        problem = exposure_problem(Settings(_env_file=None, host=host, allow_open=True, **half))
        assert "is set but" in problem and "Set both, or neither" in problem, problem
    settings = Settings(_env_file=None, port=free_port(), **half)
    with pytest.raises(ExposureRefused):
        launch(None, settings)  # refused before anything is built or served


@pytest.mark.heavy
def test_python_ui_refuses_to_start_exposed_and_starts_when_allowed(tmp_path):
    env = ui_env(tmp_path / "data", seed_corpus(tmp_path / "corpus"), free_port(), RAG_HOST="0.0.0.0")
    refused = subprocess.run([sys.executable, "ui.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = refused.stderr.strip().splitlines()[-1]
    assert line.startswith("error: RAG_HOST=0.0.0.0") and "RAG_ALLOW_OPEN=1" in line, refused.stderr
    assert "Loading the embedding model" not in refused.stdout and "Traceback" not in refused.stderr
    half = subprocess.run([sys.executable, "ui.py"], cwd=ROOT, env={**env, "RAG_HOST": "127.0.0.1",
                          "RAG_USERNAME": USER}, capture_output=True, text=True, timeout=120)
    assert half.returncode == 2 and "RAG_USERNAME is set but RAG_PASSWORD is not" in half.stderr, half.stderr

    log = tmp_path / "ui.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "ui.py"], cwd=ROOT, env={**env, "RAG_ALLOW_OPEN": "1"}, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "no login is set" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        output = log.read_text()
        warning = next((line for line in output.splitlines() if "no login is set" in line), "")
        assert "RAG_HOST=0.0.0.0" in warning and "RAG_ALLOW_OPEN=1" in warning, output[-3000:]
        # Said before the model loads, so it is not lost among later output.
        assert "Loading the embedding model" not in output.split(warning)[0]
    finally:
        stop_process(proc)


def _ids(config: dict, elem_id: str, event: str) -> tuple[int, int]:
    """(event id, component id) of the ``event`` of the component ``elem_id`` in a Gradio config."""
    component = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == elem_id)
    fn = next(d["id"] for d in config["dependencies"] if [component, event] in d["targets"])
    return fn, component


@pytest.mark.heavy
@pytest.mark.browser
def test_with_a_login_nothing_works_without_it(browser, tmp_path):  # noqa: F811
    from gradio_client import Client

    port = free_port()
    env = ui_env(tmp_path / "data", seed_corpus(tmp_path / "corpus"), port, RAG_USERNAME=USER, RAG_PASSWORD=PASSWORD)
    log = tmp_path / "ui.log"
    proc = start_ui(env, log)
    url = f"http://127.0.0.1:{port}"
    uploads = tmp_path / "data" / "uploads"
    try:
        assert "no login is set" not in log.read_text()
        with httpx.Client(base_url=url, timeout=30) as session:  # logged in: the ids of the write events
            assert session.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
            config = session.get("/config").json()
        delete_fn, delete_button = _ids(config, "delete", "click")
        upload_fn, upload_box = _ids(config, "upload", "upload")

        # Without the login: the page's configuration, file uploads, every event (the upload's and the delete's
        # included) and the API are refused.
        with httpx.Client(base_url=url, timeout=30) as anonymous:
            assert anonymous.get("/config").status_code == 401
            sent = anonymous.post("/gradio_api/upload", files={"files": ("note.txt", b"Note\n\nA short note.\n")})
            assert sent.status_code == 401
            for fn, trigger, data in ((delete_fn, delete_button, [SEED_ID, "", "Recently ingested"]),
                                      (upload_fn, upload_box, [[], "", "Recently ingested"])):
                joined = anonymous.post("/gradio_api/queue/join", json={
                    "data": data, "fn_index": fn, "trigger_id": trigger, "session_hash": "anonymous01",
                    "event_data": None})
                assert joined.status_code == 401, joined.text
            assert anonymous.post("/gradio_api/call/ask", json={"data": [QUESTION]}).status_code == 401
        with pytest.raises(Exception):
            Client(url, verbose=False)

        # With it: the API answers, and the refused deletion did nothing.
        client = Client(url, auth=(USER, PASSWORD), verbose=False)
        text, _ = client.predict(QUESTION, api_name="/ask")
        assert MAJORITY in text
        assert SEED_ID in client.predict(api_name="/articles")

        # And a logged-in browser uploads and deletes.
        note = tmp_path / "harbour-note.txt"
        note.write_text("Harbour reopens\n\nThe harbour of Vellmar reopened on Monday after the storm.\n")
        page = open_page(browser, url)
        page.get_by_label("username").fill(USER)
        page.get_by_label("password").fill(PASSWORD)
        page.get_by_role("button", name="Login").click()
        page.get_by_role("tab", name="Articles").click()
        page.locator("#upload input[type=file]").set_input_files([str(note)])
        page.locator("#upload-status li.ok").wait_for()
        assert (uploads / "harbour-note.txt").is_file()
        page.locator("#article-list").get_by_text("Harbour reopens").filter(visible=True).first.click()
        page.wait_for_function("() => document.querySelector('#delete-choice input').value.includes('harbour-note')")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#delete").click()
        page.locator("#delete-status").get_by_text("Deleted").wait_for()
        assert not (uploads / "harbour-note.txt").exists()
        page.context.close()
    finally:
        stop_process(proc)


@pytest.mark.browser
def test_login_form_when_username_and_password_are_set(hostile_app, browser):  # noqa: F811
    settings = hostile_app["services"].settings.model_copy(
        update={"username": USER, "password": SecretStr(PASSWORD), "port": free_port()}
    )
    demo = ui.build_app(hostile_app["services"])
    launch(demo, settings, prevent_thread_lock=True, quiet=True)
    url = f"http://127.0.0.1:{settings.port}"
    try:
        # Without a login the app does not even give out its configuration.
        assert httpx.get(f"{url}/config", timeout=10).status_code == 401
        page = open_page(browser, url)
        page.get_by_label("username").fill(USER)
        page.get_by_label("password").fill("wrong password")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("Incorrect Credentials").wait_for()
        assert page.locator("#question textarea").count() == 0
        page.get_by_label("username").fill(USER)  # a failed login clears the form
        page.get_by_label("password").fill(PASSWORD)
        page.get_by_role("button", name="Login").click()
        page.locator("#question textarea").wait_for()
        assert PASSWORD not in page.content()
        page.context.close()
    finally:
        demo.close()
