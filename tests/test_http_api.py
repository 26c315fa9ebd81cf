"""The plain HTTP JSON API (``POST /api/ask``) of `python ui.py`, behind the UI's login; and bench/load.py driving it
(the HTTP API, the Gradio API, uploads through the page) and its check that no answer shows half an article.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench import load_ingest
from tests.conftest import TEST_CORPUS, free_port, stop_process
from tests.ui_helpers import MAJORITY, QUESTION, ROOT, SEED_ID, seed_corpus, start_ui, ui_env

USER, PASSWORD = "editor", "correct horse battery"
NEWS = ["business/halden-air-strike.txt", "business/cardell-mortgage-rates.txt"]
STRIKE = "How many flights will the Halden Air strike cancel?"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python ui.py` with a login, on a fresh index of the seed article and two articles of the test corpus."""
    base = tmp_path_factory.mktemp("http-api")
    corpus = seed_corpus(base / "corpus")
    for rel in NEWS:
        shutil.copy(TEST_CORPUS / rel, corpus / rel.split("/")[-1])
    port = free_port()
    env = ui_env(base / "data", corpus, port, RAG_USERNAME=USER, RAG_PASSWORD=PASSWORD)
    log = base / "server.log"
    proc = start_ui(env, log)
    try:
        yield {"url": f"http://127.0.0.1:{port}", "env": env, "log": log, "base": base}
    finally:
        stop_process(proc)


def post(server, body, auth=(USER, PASSWORD), raw: bytes = None) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{server['url']}/api/ask", content=content, auth=auth, timeout=60,
                      headers={"Content-Type": "application/json"})


@pytest.mark.heavy
def test_without_the_login_nothing_is_answered(server):
    for auth in (None, (USER, "wrong password"), ("someone", PASSWORD)):
        refused = post(server, {"question": QUESTION}, auth=auth)
        assert refused.status_code == 401, refused.text
        assert refused.json() == {"error": "login required: send the app's username and password (HTTP Basic auth)"}
        assert refused.headers["www-authenticate"].startswith("Basic ")
    garbled = httpx.post(f"{server['url']}/api/ask", json={"question": QUESTION},
                         headers={"Authorization": "Basic not-base64!"}, timeout=30)
    assert garbled.status_code == 401
    # The Gradio API refuses the same requests: one login for both.
    assert httpx.post(f"{server['url']}/gradio_api/call/ask", json={"data": [QUESTION]}, timeout=30).status_code == 401
    assert post(server, {"question": QUESTION}).status_code == 200


@pytest.mark.heavy
def test_a_question_is_answered_with_citations(server):
    reply = post(server, {"question": QUESTION})
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/json"
    answer = reply.json()
    assert MAJORITY in answer["text"] and "[1]" in answer["text"]
    cited = answer["citations"][0]
    assert cited["article_id"] == SEED_ID and cited["quote"] == MAJORITY and cited["n"] == 1
    article = (ROOT / "corpus" / SEED_ID).read_text(encoding="utf-8-sig").replace("\r\n", "\n")
    assert article[cited["start_char_idx"]:cited["end_char_idx"]] == MAJORITY
    assert answer["passages"] and answer["mode"] == "extractive" and not answer["abstained"]

    # The other fields: top-k, a follow-up with its history, outlets and dates.
    assert len(post(server, {"question": STRIKE, "top_k": 1}).json()["passages"]) == 1
    follow = post(server, {"question": "And how much does BAIC hold?", "history": [[QUESTION, answer["text"]]]})
    assert follow.status_code == 200 and "39%" in follow.json()["text"], follow.text
    scoped = post(server, {"question": STRIKE, "as_of": "2030-01-01", "since": None, "until": "",
                           "sources": ["nowhere-news"], "mode": "extractive"})
    assert scoped.status_code == 200 and scoped.json()["abstained"] and not scoped.json()["passages"], scoped.text


@pytest.mark.heavy
@pytest.mark.parametrize("body,message", [
    ({"question": ""}, "Please type a question."),
    ({"question": " \u200b "}, "Please type a question."),
    ({}, "question is required and must be text"),
    ({"question": 42}, "question is required and must be text"),
    ({"question": STRIKE, "as_of": "2024-13-45"}, "not a date: '2024-13-45'"),
    ({"question": STRIKE, "since": "2024-06-01", "until": "2024-01-01"}, "is after until"),
    ({"question": STRIKE, "until": 20240101}, "until must be text"),
    ({"question": STRIKE, "history": "[]"}, "history must be a list of [question, answer] pairs"),
    ({"question": STRIKE, "history": [["only a question"]]}, "history must be a list of [question, answer] pairs"),
    ({"question": STRIKE, "history": [[QUESTION, None]]}, "history must be a list of [question, answer] pairs"),
    ({"question": STRIKE, "top_k": "five"}, "top_k must be a whole number from 1 to 50"),
    ({"question": STRIKE, "top_k": 0}, "top_k must be a whole number from 1 to 50"),
    # Bounded work per request: the same limits as the page and the Gradio API (rag.web.turns.check_request).
    ({"question": STRIKE, "top_k": 51}, "top_k must be a whole number from 1 to 50, not 51"),
    ({"question": "Who? " * 401}, "The question is 2,005 characters long; the limit is 2,000."),
    ({"question": STRIKE, "history": [[QUESTION, "CATL."]] * 51}, "51 earlier turns; the limit is 50"),
    ({"question": STRIKE, "history": [["q" * 30_000, "a" * 30_000]] * 2}, "120,000 characters long; the limit is"),
    ({"question": STRIKE, "sources": [1]}, "sources must be a list of outlet names"),
    ({"question": STRIKE, "mode": "poetry"}, "unknown answer mode 'poetry'"),
    ({"question": STRIKE, "qestion": STRIKE}, "unknown field(s): qestion"),
    ([STRIKE], "the body must be a JSON object"),
    (b"{not json", "the body is not JSON"),
])
def test_bad_requests_are_400_with_a_message(server, body, message):
    reply = post(server, None, raw=body) if isinstance(body, bytes) else post(server, body)
    assert reply.status_code == 400, reply.text
    assert message in reply.json()["error"] and "Traceback" not in reply.text


@pytest.mark.heavy
def test_the_apps_own_errors_are_503_and_other_refusals(server):
    reply = post(server, {"question": STRIKE, "mode": "llm"})  # no LLM configured: the pipeline's LLMError
    assert reply.status_code == 503
    assert reply.json() == {"error": "LLM answer mode needs an LLM: set RAG_LLM to llamacpp, openai or ollama"}
    assert httpx.get(f"{server['url']}/api/ask", auth=(USER, PASSWORD), timeout=30).status_code == 405
    huge = post(server, {"question": STRIKE, "history": [["q" * 1000, "a" * 1000]] * 600})
    assert huge.status_code == 413 and "larger than 1,000,000 bytes" in huge.json()["error"]
    assert "Traceback" not in server["log"].read_text()


def run_bench(server, *args: str) -> list[str]:
    """bench/load.py against the server (its login from the environment, as the server's): its output lines."""
    done = subprocess.run([sys.executable, "bench/load.py", "--url", server["url"], "--users", "2", *args],
                          cwd=ROOT, env=server["env"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()


@pytest.mark.heavy
def test_bench_drives_both_apis_and_uploads_through_the_page(server, tmp_path):
    lines = run_bench(server, "--max-requests", "6", "--api", "gradio")
    assert "(gradio API)" in lines[0] and lines[-1].startswith("users=2 requests=6 errors=0 ")

    articles = tmp_path / "new"
    articles.mkdir()
    for n in range(2):  # new articles: the title and one sentence differ from the indexed one
        text = (TEST_CORPUS / NEWS[0]).read_text(encoding="utf-8").replace("Halden Air", f"Halden Air {n + 7}", 1)
        (articles / f"halden-copy-{n}.txt").write_text(text + f"\nFiled as copy {n}.\n", encoding="utf-8")
    lines = run_bench(server, "--seconds", "2", "--ingest", str(articles), "--ingest-count", "2")
    assert "(http API)" in lines[0] and "uploading 2 articles" in lines[0]
    assert lines[-2] == "uploads=2 upload_errors=0 half_articles=0", "\n".join(lines)
    assert " errors=0 " in lines[-1]
    listed = httpx.Client(base_url=server["url"], timeout=30)
    assert listed.post("/login", data={"username": USER, "password": PASSWORD}).status_code == 200
    event = listed.post("/gradio_api/call/articles", json={"data": []}).json()["event_id"]
    assert "halden-copy-1.txt" in listed.get(f"/gradio_api/call/articles/{event}").text


# --- the bench's half-article check, on made-up answers (no server) ----------------------------------------------
class Lister:
    """Stands in for the page session that reads the article list."""

    def __init__(self, *records: dict):
        self.records = list(records)

    def articles(self) -> list[dict]:
        return self.records


def made_upload(name: str = "vellmar-harbour.txt") -> load_ingest.Upload:
    from ingest.loaders import load_bytes

    data = b"Harbour reopens in Vellmar\n\nThe harbour of Vellmar reopened on Monday after the storm.\n"
    article = load_bytes(data, Path(name))
    return load_ingest.Upload(name, data, article.title, article.text, article.sha256)


def answer_showing(upload: load_ingest.Upload, chunk: int = 0, version: str = "", start: int = 0,
                   end: int = 26) -> dict:
    chunk_id = f"{upload.name}#{version or upload.sha[:16]}#{chunk}"
    return {"passages": [{"chunk_id": chunk_id, "article_id": upload.name, "text": upload.text[start:end],
                          "start_char_idx": start, "end_char_idx": end, "duplicates": []}], "citations": []}


def test_the_bench_counts_an_article_shown_before_it_was_committed_as_half():
    upload = made_upload()
    run = load_ingest.IngestRun(None, Lister(), [upload])
    run.observe(answer_showing(upload), arrived=time.monotonic())  # its upload had not begun
    upload.began = time.monotonic()
    run.observe(answer_showing(upload), arrived=time.monotonic())  # uploading, and the article list lacks it
    assert sorted(run.half.values()) == [
        "shown before its upload began", "shown while it was being uploaded, before the index committed it"]
    run.lister.records.append({"article_id": upload.name, "chunks": 1, "duplicate_of": None})
    run.observe(answer_showing(upload), arrived=time.monotonic())  # uploading, and committed by now: fine
    assert len(run.half) == 2 and run.in_flight == 2 and run.listings == 2


@pytest.mark.parametrize("shown,why", [
    ({}, ""),
    ({"chunk": 1}, "a chunk the committed article does not have"),
    ({"version": "0" * 16}, "a passage of another version"),
    ({"start": 1, "end": 27}, ""),
])
def test_the_bench_checks_every_passage_against_the_whole_committed_article(shown, why):
    upload = made_upload()
    upload.began, upload.ended = 1.0, 2.0
    run = load_ingest.IngestRun(None, Lister(), [upload])
    answer = answer_showing(upload, **shown)
    run.observe(answer, arrived=3.0)
    run.lister.records.append({"article_id": upload.name, "chunks": 1, "duplicate_of": None})
    run.verify()
    assert [message.split(" (")[0] for message in run.half.values()] == ([why] if why else [])
    answer = answer_showing(upload)
    answer["passages"][0]["text"] = "Harbour reopens in Vellmaz"  # not the article's text at those offsets
    assert load_ingest.IngestRun._whole(upload.name, upload, run.lister.records[0], answer).startswith(
        "a passage that is not the article's text")
    assert load_ingest.IngestRun._whole(upload.name, upload, None, answer) == "not in the index at the end"


def test_upload_outcomes_from_the_status_the_page_shows():
    ok = ('<div class="upload-status" role="status"><ul><li class="ok">✓ <b>a.txt</b>: added as “A &amp; B”, '
          '3 passages</li></ul></div>')
    assert load_ingest.upload_outcome(ok) == ("added", "added as “A & B”, 3 passages", None)
    renamed = '<ul><li class="ok">✓ <b>a.txt</b>: updated (saved as a-2.txt)</li></ul>'
    assert load_ingest.upload_outcome(renamed) == ("updated", "updated (saved as a-2.txt)", "a-2.txt")
    bad = '<ul><li class="bad">✗ <b>a.exe</b>: rejected: unsupported file type .exe; accepted: .txt</li></ul>'
    assert load_ingest.upload_outcome(bad)[0:2] == ("rejected", "unsupported file type .exe; accepted: .txt")
