"""Faults under the web UI: an unusable index at start, a process killed during an upload or a deletion, and the
Chroma server going away under a running app. Real `python ui.py` processes, a real `chroma run` server, real
Chroma on disk and the real embedding model.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
import uuid

import gradio as gr
import pytest

from rag.app import ACCEPTED_SUFFIXES, open_services
from rag.index.store import Store
from rag.web.callbacks import AskCallbacks
from rag.web.library import Library
from tests.conftest import free_port, make_settings, stop_process
from tests.ingest_helpers import check_index
from tests.test_chroma_server import start_chroma_server
from tests.ui_helpers import (  # noqa: F401  (browser: a fixture)
    MAJORITY, QUESTION, ROOT, browser, open_page, seed_corpus, start_ui, ui_env,
)

REBUILD = "To rebuild the index"


# --- an unusable index at start ---------------------------------------------------------------------------------
def _random_bytes(data, embedder) -> None:
    (data / "chroma" / "chroma.sqlite3").write_bytes(random.Random(7).randbytes(32_000))


def _foreign_database(data, embedder) -> None:
    with sqlite3.connect(data / "chroma" / "chroma.sqlite3") as db:
        db.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
        db.execute("INSERT INTO invoices VALUES (1, 99.5)")


def _other_layout(data, embedder) -> None:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    Store(make_settings(data), embedder).close()  # a real, empty index of this version
    client = chromadb.PersistentClient(path=str(data / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    client.get_collection("news_meta").upsert(ids=["index_layout"], embeddings=[[1.0]], metadatas=[{"layout": 99}])
    client.clear_system_cache()


@pytest.mark.heavy
@pytest.mark.parametrize("damage,says", [
    (_random_bytes, "is damaged: chroma.sqlite3 is not a database"),
    (_foreign_database, "holds a database of another program"),
    (_other_layout, "has layout 99, but this version reads layout 1"),
])
def test_an_unusable_index_stops_the_start_with_one_message_and_no_traceback(damage, says, tmp_path, embedder):
    data = tmp_path / "data"
    (data / "chroma").mkdir(parents=True)
    damage(data, embedder)
    before = (data / "chroma" / "chroma.sqlite3").read_bytes()
    done = subprocess.run([sys.executable, "ui.py"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=ui_env(data, seed_corpus(tmp_path / "corpus"), free_port()))
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and says in error[0] and REBUILD in error[0], done.stderr[-2000:]
    assert str(data / "chroma") in error[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert "Serving on" not in done.stdout
    if damage is not _other_layout:  # (Chroma opens a Chroma database before the layout is read)
        assert (data / "chroma" / "chroma.sqlite3").read_bytes() == before  # nothing written into it


# --- a process killed during an upload or a deletion ------------------------------------------------------------
def _dead_pid() -> int:
    """The id of a process that has exited."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _staged(folder, name: str, pid: int, kind: str):
    """The path an upload of process ``pid`` stages ``name`` at (as :func:`rag.web.uploads.staged_path` names it)."""
    return folder / f".{name}.{pid}-{uuid.uuid4().hex}.{kind}"


def test_the_next_start_finishes_or_rolls_back_what_a_killed_process_left(tmp_path, embedder):
    settings = make_settings(tmp_path / "data", corpus_dir=seed_corpus(tmp_path / "corpus"))
    services = open_services(settings, embedder=embedder)
    services.ensure_corpus(progress=False)
    library = Library(services, ACCEPTED_SUFFIXES)
    uploads = library.uploads_dir
    uploads.mkdir(parents=True)

    def upload(name: str, text: str) -> None:
        (uploads / name).write_text(text, encoding="utf-8")
        assert services.ingestor.ingest([uploads / name], progress=False).added == [name]

    old = {name: f"{title}\n\nThe {title.lower()} story, first version, told in one sentence.\n"
           for name, title in (("gone.txt", "Gone"), ("notes.txt", "Notes"), ("kept.txt", "Kept"),
                               ("refused.txt", "Refused"))}
    for name, text in old.items():
        upload(name, text)
    dead, alive = _dead_pid(), subprocess.Popen(["sleep", "60"])
    try:
        # Killed: while deleting gone.txt (its file moved aside, the index not yet told); while indexing a new
        # notes.txt; between moving kept.txt aside and putting its new version in place; while indexing a
        # refused.txt that will not be accepted; while copying fresh.txt in; while indexing late.txt (new).
        os.replace(uploads / "gone.txt", _staged(uploads, "gone.txt", dead, "deleted"))
        (uploads / "notes.txt").write_text("Notes\n\nThe notes story, second version, now longer.\n")
        _staged(uploads, "notes.txt", dead, "previous").write_text(old["notes.txt"])
        os.replace(uploads / "kept.txt", _staged(uploads, "kept.txt", dead, "previous"))
        _staged(uploads, "kept.txt", dead, "part").write_text("Kept\n\nThe kept story, second vers")
        (uploads / "refused.txt").write_bytes(b"\x00\x01\x02" * 100)
        _staged(uploads, "refused.txt", dead, "previous").write_text(old["refused.txt"])
        _staged(uploads, "fresh.txt", dead, "part").write_text("Fresh\n\nThe fresh story, cut sh")
        (uploads / "late.txt").write_text("Late\n\nThe late story arrived but was never indexed.\n")
        busy = _staged(uploads, "busy.txt", alive.pid, "part")  # another running process's upload: left alone
        busy.write_text("Busy\n\nStill being copied")

        recovery = library.recover()
    finally:
        alive.kill()
        alive.wait()

    names = ["gone.txt", "notes.txt", "kept.txt", "refused.txt", "fresh.txt", "late.txt", "busy.txt"]
    stored = {i: r.text for i, r in services.store.get_articles(names, with_text=True).items()}
    assert sorted(stored) == ["kept.txt", "late.txt", "notes.txt", "refused.txt"]
    assert "second version" in stored["notes.txt"] and "never indexed" in stored["late.txt"]  # finished
    assert "first version" in stored["kept.txt"] and "first version" in stored["refused.txt"]  # rolled back
    assert sorted(p.name for p in uploads.iterdir()) == sorted(
        ["notes.txt", "kept.txt", "refused.txt", "late.txt", busy.name])
    assert (uploads / "kept.txt").read_text() == old["kept.txt"]  # the old versions' files are back
    assert (uploads / "refused.txt").read_text() == old["refused.txt"]
    assert services.store.pending_batches() == []
    summary = recovery.summary()
    assert "indexed: late.txt, notes.txt" in summary and "deletions finished: gone.txt" in summary
    assert "rolled back: fresh.txt, kept.txt, refused.txt" in summary
    # The next start, once that other process is gone too: its copy is removed, and nothing else is done.
    assert library.recover().summary() == "rolled back: busy.txt"
    assert sorted(p.name for p in uploads.iterdir()) == ["kept.txt", "late.txt", "notes.txt", "refused.txt"]


@pytest.mark.heavy
@pytest.mark.browser
def test_kill_9_during_an_upload_then_the_next_start_finishes_it(tmp_path, embedder, browser):  # noqa: F811
    from gradio_client import Client

    folder = tmp_path / "chroma-server"
    folder.mkdir()
    chroma, chroma_port = start_chroma_server(folder)
    data, port, log = tmp_path / "data", free_port(), tmp_path / "ui.log"
    env = ui_env(data, seed_corpus(tmp_path / "corpus"), port, RAG_CHROMA_HOST="127.0.0.1",
                 RAG_CHROMA_PORT=str(chroma_port), RAG_COLLECTION="killed")
    store = None
    report = tmp_path / "orbital-survey.txt"  # long enough that indexing it takes seconds
    report.write_text("Orbital survey of the Tessaly belt\n\n" + "\n\n".join(
        f"Section {i}: the survey craft Meridian-{i} mapped {1000 + 37 * i} asteroids of the Tessaly belt, "
        f"among them the carbon-rich body T-{i} whose orbit crosses that of the moon Vessa every {i + 3} years. "
        "Engineers logged the spectra, the rotation periods and the albedo of each body for the archive."
        for i in range(400)) + "\n", encoding="utf-8")
    proc = start_ui(env, log)
    try:
        store = Store(make_settings(data, chroma_host="127.0.0.1", chroma_port=chroma_port, collection="killed"),
                      embedder)
        page = open_page(browser, f"http://127.0.0.1:{port}")
        page.get_by_role("tab", name="Articles").click()
        page.locator("#upload input[type=file]").set_input_files([str(report)])
        deadline = time.monotonic() + 120  # until the upload's batch is open: it is being indexed
        while not any(report.name in b.article_ids for b in store.pending_batches()):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
        page.context.close()
        assert not store.get_articles([report.name]), "the upload finished before the kill: make it longer"
        assert (data / "uploads" / report.name).is_file()

        proc = start_ui(env, log)  # the next start finishes the upload
        records = check_index(store, embedder)  # committed whole, nothing pending or left over
        assert report.name in records and records[report.name].chunks > 100
        assert f"Uploads folder: 1 interrupted ingestion batch(es) cleaned up; indexed: {report.name}" in (
            log.read_text())
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        text, _ = client.predict("How many asteroids did the survey craft Meridian-12 map?", api_name="/ask")
        assert "1444 asteroids" in text
    finally:
        stop_process(proc)
        if store is not None:
            store.close()
        stop_process(chroma)


# --- the Chroma server going away under a running app -----------------------------------------------------------
@pytest.mark.heavy
def test_chroma_server_stopping_is_a_clear_message_in_the_chat_and_the_app_recovers(tmp_path, embedder):
    folder = tmp_path / "chroma-server"
    folder.mkdir()
    chroma, port = start_chroma_server(folder)
    try:
        settings = make_settings(tmp_path / "data", chroma_host="127.0.0.1", chroma_port=port, collection="away",
                                 corpus_dir=seed_corpus(tmp_path / "corpus"))
        services = open_services(settings, embedder=embedder)
        services.ensure_corpus(progress=False)
        ask = AskCallbacks(services)

        def respond():
            *_, last = ask.respond(QUESTION, [], [], [], "extractive", 5)
            return last

        assert MAJORITY in respond()[1][-1]["content"]
        stop_process(chroma)
        started = time.monotonic()
        last = respond()
        assert time.monotonic() - started < 10
        message = last[1][-1]["content"]
        assert 'class="answer error"' in message and "Traceback" not in message
        assert f"The Chroma server http://127.0.0.1:{port}" in message and "is not reachable" in message, message
        assert last[0] == QUESTION  # back in the box, to ask again
        started = time.monotonic()
        with pytest.raises(gr.Error, match=rf"The Chroma server http://127\.0\.0\.1:{port}.* is not reachable"):
            ask.api_ask(QUESTION)  # the /ask API says the same
        assert time.monotonic() - started < 10

        chroma, _ = start_chroma_server(folder, port)  # back on the same port and data: used again by itself
        assert MAJORITY in respond()[1][-1]["content"]
        text, _ = ask.api_ask(QUESTION)
        assert MAJORITY in text
    finally:
        stop_process(chroma)
