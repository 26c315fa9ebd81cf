"""Server mode: several processes sharing one index on a real Chroma server (``chroma run``).

The server runs as its own process; ingestion runs in other processes (``python -m ingest``), and the
answering pipeline in this one, all through Chroma's HTTP client. What the pipeline sees must follow every
write of the other processes (BM25 rebuilt on the shared version token), and two writers at once must leave
a consistent index.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rag import Pipeline
from tests.conftest import free_port, make_settings, stop_process
from tests.ingest_helpers import check_index, corpus_variants, paragraph, write

pytestmark = pytest.mark.heavy  # a real `chroma run` server process and ingest processes

CHROMA_CLI = Path(sys.executable).with_name("chroma")


def start_chroma_server(folder: Path, port: int = 0) -> tuple[subprocess.Popen, int]:
    """A Chroma server process on loopback (a free port unless given), persisting under ``folder``, once it
    answers."""
    if not CHROMA_CLI.exists():
        pytest.fail(f"the chroma command-line tool is missing beside {sys.executable}")
    port = port or free_port()
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [str(CHROMA_CLI), "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=2):
                return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chroma server did not start:\n{(folder / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    """The port of a Chroma server process shared by this module's tests."""
    proc, port = start_chroma_server(tmp_path_factory.mktemp("chroma-server"))
    yield port
    stop_process(proc)


@pytest.fixture
def server_settings(chroma_server, tmp_path, request):
    """Settings pointing at the server, with a collection of this test's own."""
    name = "t" + hashlib.sha1(request.node.name.encode()).hexdigest()[:12]
    return make_settings(tmp_path / "data", chroma_host="127.0.0.1", chroma_port=chroma_server, collection=name)


def server_env(subprocess_env, settings) -> dict:
    """Environment for a ``python -m ingest`` child using the server and collection of ``settings``."""
    return subprocess_env(
        settings.data_dir, RAG_CHROMA_HOST=settings.chroma_host, RAG_CHROMA_PORT=str(settings.chroma_port),
        RAG_COLLECTION=settings.collection, RAG_INGEST_GROUP_CHUNKS="16",
    )


def run_ingest(subprocess_env, settings, *args: str) -> subprocess.CompletedProcess:
    """``python -m ingest`` in its own process, against the server of ``settings``."""
    return subprocess.run([sys.executable, "-m", "ingest", "--quiet", *args],
                          env=server_env(subprocess_env, settings), capture_output=True, text=True, timeout=300)


def test_app_process_follows_another_process_s_writes(server_settings, subprocess_env, embedder, tmp_path):
    src = tmp_path / "src"
    write(src / "harbour.txt", "Harbour expansion approved\n\nThe port authority approved a harbour expansion "
          "that will add four new berths for container ships by 2027. " + paragraph("harbour", 6))
    write(src / "orchard.txt", "Orchard harvest record\n\nApple growers in the valley picked a record 91,000 "
          "tonnes this autumn, the growers' association said. " + paragraph("orchard", 6))
    done = run_ingest(subprocess_env, server_settings, str(src))
    assert done.returncode == 0, done.stderr[-2000:]

    pipeline = Pipeline(server_settings, embedder=embedder)
    answer = pipeline.ask("How many tonnes did apple growers pick this autumn?")
    assert not answer.abstained and answer.citations[0].article_id == "orchard.txt"
    assert "91,000" in answer.citations[0].quote

    # Another process replaces one article and deletes the other; this pipeline keeps running.
    write(src / "harbour.txt", "Harbour expansion cancelled\n\nThe port authority cancelled the harbour "
          "expansion after the shipping line Nordvik withdrew its funding of 240 million euros. "
          + paragraph("harbour", 6))
    done = run_ingest(subprocess_env, server_settings, str(src / "harbour.txt"))
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_ingest(subprocess_env, server_settings, "--delete", "orchard.txt")
    assert done.returncode == 0, done.stderr[-2000:]

    answer = pipeline.ask("Which shipping line withdrew its funding for the harbour expansion?")
    assert not answer.abstained
    cited = answer.citations[0]
    assert cited.article_id == "harbour.txt" and "Nordvik" in cited.quote
    text = pipeline.store.get_articles(["harbour.txt"], with_text=True)["harbour.txt"].text
    assert text[cited.start_char_idx:cited.end_char_idx] == cited.quote
    gone = pipeline.ask("How many tonnes did apple growers pick this autumn?")
    assert all(p.article_id != "orchard.txt" for p in gone.passages)
    assert all("four new berths" not in p.text for p in gone.passages)  # the replaced version is gone too
    assert sorted(check_index(pipeline.store, embedder)) == ["harbour.txt"]


def test_two_processes_ingesting_at_once_leave_one_consistent_index(
    server_settings, subprocess_env, embedder, tmp_path, test_corpus
):
    # One process ingests the business and tech stories, the other the rest (the byte-identical pair is in
    # sport/ and politics/, so within one process): two variants of each text article, about 25 files each.
    halves = [("business", "tech"), ("sport", "politics", "entertainment")]
    folders = [tmp_path / f"part{i}" for i in range(len(halves))]
    files = [f for folder, categories in zip(folders, halves) for f in corpus_variants(test_corpus, folder, 2, categories)]
    assert all(20 <= len(list(folder.rglob("*.*"))) <= 40 for folder in folders)
    env = server_env(subprocess_env, server_settings)
    procs = [
        subprocess.Popen([sys.executable, "-m", "ingest", "--quiet", str(folder)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for folder in folders
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]

    pipeline = Pipeline(server_settings, embedder=embedder)
    records = check_index(pipeline.store, embedder)
    assert len(records) == len(files)
    assert {a.split("/")[0] for a in records} == {"business", "tech", "sport", "politics", "entertainment"}
    for story in ("business/halden-air-strike", "sport/dunmore-marathon"):
        article_id = f"{story}-0.txt"
        record = pipeline.store.get_articles([article_id], with_text=True)[article_id]
        answer = pipeline.ask(record.title)
        # Either variant: their identical passages are collapsed into one.
        assert answer.passages[0].article_id in {article_id, f"{story}-1.txt"}


def test_server_going_away_mid_ingest_is_one_clear_error_then_a_rerun_finishes(
    subprocess_env, embedder, tmp_path, test_corpus
):
    folder = tmp_path / "server"
    folder.mkdir()
    proc, port = start_chroma_server(folder)
    src = tmp_path / "src" / "articles"
    # Three variants of each text article of the test corpus (about 80 files, a dozen groups of 16 chunks):
    # the server is stopped after the first group, well before the last.
    files = corpus_variants(test_corpus, src, copies=3)
    settings = make_settings(tmp_path / "data", chroma_host="127.0.0.1", chroma_port=port, collection="gone")
    ingest = subprocess.Popen([sys.executable, "-m", "ingest", "--quiet", str(src.parent)],
                              env=server_env(subprocess_env, settings), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        store = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ingest.poll() is None:  # until the first group is committed
            try:
                store = store or Pipeline(settings, embedder=embedder).store
                if store.article_count() > 0:
                    break
            except Exception:
                pass  # the collection is not there yet
            time.sleep(0.2)
        stop_process(proc)  # the server goes away mid-run
        out, err = ingest.communicate(timeout=300)
    finally:
        if ingest.poll() is None:
            ingest.kill()
    assert ingest.returncode == 2, (out, err)
    assert "error: ingestion stopped" in err and "run the same command again" in err
    assert "Traceback" not in err

    # The same server back on its data: the re-run repairs the interrupted batch and finishes.
    proc, _ = start_chroma_server(folder, port)
    try:
        done = run_ingest(subprocess_env, settings, str(src.parent))
        assert done.returncode == 0, done.stderr[-2000:]
        records = check_index(Pipeline(settings, embedder=embedder).store, embedder)
        assert len(records) == len(files)
    finally:
        stop_process(proc)
