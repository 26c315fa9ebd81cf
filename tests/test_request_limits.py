"""Bounded work per request and careless exposure: question length, top-k, history and files per upload are capped
alike for the page, the Gradio API and ``POST /api/ask`` with a clear message; a full queue answers "busy" at once;
failed logins are rate-limited. The app is served from this process (real server, real pipeline on the seed
article, a scripted LLM that answers slowly so that questions pile up).
"""

from __future__ import annotations

import shutil
import threading
import time

import httpx
import pytest

import ui
from rag.app import ACCEPTED_SUFFIXES, open_services
from rag.web.callbacks import AskCallbacks
from rag.web.library import Library
from rag.web.serve import launch
from tests.conftest import free_port, make_settings
from tests.llm_helpers import ScriptedLLM
from tests.ui_helpers import MAJORITY, QUESTION, ROOT, SEED_ID

USER, PASSWORD = "editor", "correct horse battery"
REPLY = "ANSWER: CATL\nPASSAGE: 1"


class SlowLLM(ScriptedLLM):
    """The scripted reader, taking ``delay`` seconds for a whole reply too (not only when streamed)."""

    def complete(self, prompt: str, formatted: bool = False, **kwargs):
        time.sleep(self.delay)
        return super().complete(prompt, formatted, **kwargs)


@pytest.fixture(scope="module")
def services(tmp_path_factory, embedder):
    """The app's services on the seed article: one question at a time, one more may wait; a slow scripted LLM
    (2 s an answer); three failed logins in a 2-second window."""
    base = tmp_path_factory.mktemp("limits")
    corpus = base / "corpus"
    corpus.mkdir()
    shutil.copy(ROOT / "corpus" / SEED_ID, corpus / SEED_ID)
    settings = make_settings(
        base / "data", corpus_dir=corpus, llm="llamacpp", answer_mode="extractive", host="127.0.0.1", share=False,
        username=USER, password=PASSWORD, ui_concurrency=1, queue_size=1, login_attempts=3, login_window=2.0,
        max_upload_files=3,
    )
    built = open_services(settings, llm=SlowLLM(reply=REPLY, delay=2.0), embedder=embedder)
    built.ensure_corpus(progress=False)
    return built


@pytest.fixture
def app(services):
    """The page, its Gradio API and /api/ask served on a fresh port (a fresh login throttle each time)."""
    settings = services.settings.model_copy(update={"port": free_port()})
    demo = ui.build_app(services)
    launch(demo, settings, pipeline=services.pipeline, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        demo.close()


def ask_api(url: str, body: dict, auth=(USER, PASSWORD)) -> httpx.Response:
    return httpx.post(f"{url}/api/ask", json=body, auth=auth, timeout=60)


@pytest.mark.heavy
def test_failed_logins_are_refused_for_a_while_after_a_few(app):
    for _ in range(3):
        assert httpx.post(f"{app}/login", data={"username": USER, "password": "guess"}, timeout=30).status_code == 400
    refused = httpx.post(f"{app}/login", data={"username": USER, "password": PASSWORD}, timeout=30)
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) in (1, 2)
    assert "too many failed logins" in refused.json()["error"]
    assert ask_api(app, {"question": QUESTION}).status_code == 429  # the same address, whatever the door
    time.sleep(2.1)  # the window passes: the right password works again
    assert httpx.post(f"{app}/login", data={"username": USER, "password": PASSWORD}, timeout=30).status_code == 200


@pytest.mark.heavy
def test_failed_api_logins_count_too(app):
    for _ in range(3):
        assert ask_api(app, {"question": QUESTION}, auth=(USER, "guess")).status_code == 401
    assert ask_api(app, {"question": QUESTION}).status_code == 429
    assert httpx.post(f"{app}/login", data={"username": USER, "password": PASSWORD}, timeout=30).status_code == 429


def _concurrently(calls) -> list:
    """Run each call in its own thread, started together; their results (or exceptions) in order."""
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            results[i] = call()
        except Exception as exc:  # the outcome under test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(120)
    return results


@pytest.mark.heavy
def test_a_full_queue_answers_busy_at_once_on_the_http_api(app):
    body = {"question": QUESTION, "mode": "llm"}
    replies = _concurrently([lambda: ask_api(app, body)] * 4)
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200, 200, 503, 503], [r.text for r in replies]
    busy = next(r for r in replies if r.status_code == 503)
    assert busy.json()["error"].startswith("busy: too many questions are waiting") and busy.headers["retry-after"]
    assert all(r.json()["short_answer"] == "CATL" for r in replies if r.status_code == 200)


@pytest.mark.heavy
def test_a_full_queue_answers_busy_at_once_on_the_gradio_api(app):
    from gradio_client import Client

    client = Client(app, auth=(USER, PASSWORD), verbose=False)
    outcomes = _concurrently([lambda: client.predict(QUESTION, "llm", api_name="/ask")] * 4)
    refused = [o for o in outcomes if isinstance(o, Exception)]
    answered = [o for o in outcomes if not isinstance(o, Exception)]
    assert len(answered) == 2 and all("CATL" in text for text, _ in answered), outcomes
    assert len(refused) == 2 and all("Queue is full" in str(e) for e in refused), refused


@pytest.mark.heavy
@pytest.mark.parametrize("arguments,message", [
    ({"question": "Who? " * 401}, "The question is 2,005 characters long; the limit is 2,000."),
    ({"question": QUESTION, "top_k": 51}, "top_k must be a whole number from 1 to 50, not 51"),
    ({"question": QUESTION, "history": '[["Who?", "CATL."]' + ', ["Who?", "CATL."]' * 50 + "]"},
     "51 earlier turns; the limit is 50"),
])
def test_the_gradio_api_refuses_work_over_the_limits(app, arguments, message):
    from gradio_client import Client

    client = Client(app, auth=(USER, PASSWORD), verbose=False)
    with pytest.raises(Exception, match=message.replace("?", r"\?").replace("(", r"\(")):
        client.predict(**arguments, api_name="/ask")
    text, _ = client.predict(QUESTION, api_name="/ask")  # and answers within them
    assert MAJORITY in text


def test_the_page_refuses_a_question_over_the_limit_and_keeps_it(services):
    ask = AskCallbacks(services)
    with pytest.warns(UserWarning, match="The question is 2,001 characters long; the limit is 2,000"):
        updates = list(ask.respond("x" * 2001, [], [], [], "extractive", 5))
    assert len(updates) == 1 and updates[0][0].__class__.__name__ != "str"  # nothing changed, the box kept
    history = [("Who?", "CATL.")] * 51
    with pytest.warns(UserWarning, match="51 earlier turns; the limit is 50. Start a new conversation."):
        list(ask.respond(QUESTION, [], history, [], "extractive", 5))
    with pytest.warns(UserWarning, match="top_k must be a whole number from 1 to 50"):
        list(ask.respond(QUESTION, [], [], [], "extractive", float("nan")))


def test_an_upload_of_too_many_files_is_refused_whole(services, tmp_path):
    files = []
    for i in range(4):
        path = tmp_path / f"note-{i}.txt"
        path.write_text(f"Note {i}\n\nThe harbour note number {i} says the ferry sailed.\n", encoding="utf-8")
        files.append((path, path.name))
    library = Library(services, ACCEPTED_SUFFIXES)
    before = services.store.article_count()
    results = library.upload(files, lambda *args, **kwargs: None)
    assert results == [(False, "4 files", "4 files in one upload; the limit is 3 (RAG_MAX_UPLOAD_FILES): nothing "
                                          "was added")]
    assert services.store.article_count() == before and not list(library.uploads_dir.glob("note-*"))
    assert library.upload(files[:3], lambda *args, **kwargs: None)[0][0]  # three at once are fine


@pytest.mark.heavy
def test_a_body_over_the_limit_is_refused_unread_by_every_api(app):
    huge = {"data": ["Who? " * 250_000]}  # 1.25 MB of question
    for path in ("/gradio_api/call/ask", "/gradio_api/queue/join", "/api/ask"):
        declared = httpx.post(f"{app}{path}", json=huge, auth=(USER, PASSWORD), timeout=30)
        assert declared.status_code == 413, (path, declared.text)
        assert "larger than 1,000,000 bytes" in declared.json()["error"]

    def chunked():  # no Content-Length: counted as it streams in
        for _ in range(30):
            yield b"x" * 50_000

    streamed = httpx.post(f"{app}/api/ask", content=chunked(), auth=(USER, PASSWORD), timeout=30)
    assert streamed.status_code == 413
    assert MAJORITY in ask_api(app, {"question": QUESTION}).json()["text"]  # and a normal body still works
