"""Faults of the index: a damaged, foreign or other-layout index folder is refused at open with a message that
says how to rebuild; a Chroma server that goes away gives a clear error naming it after retries, and is used
again by itself when it comes back, with nothing lost."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time

import pytest

from rag.app import open_services
from rag.core.errors import IndexProblem, IndexUnavailable, RagError
from tests.conftest import free_port, make_settings, stop_process

REBUILD = "To rebuild the index"


def chroma_file(data_dir):
    folder = data_dir / "chroma"
    folder.mkdir(parents=True)
    return folder / "chroma.sqlite3"


def test_random_bytes_are_a_damaged_index(tmp_path, embedder):
    chroma_file(tmp_path).write_bytes(random.Random(1).randbytes(64_000))
    with pytest.raises(IndexProblem, match="damaged") as caught:
        open_services(make_settings(tmp_path), embedder=embedder)
    assert REBUILD in str(caught.value) and str(tmp_path / "chroma") in str(caught.value)


def test_another_programs_database_is_not_written_into(tmp_path, embedder):
    path = chroma_file(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    before = path.read_bytes()
    with pytest.raises(IndexProblem, match="database of another program") as caught:
        open_services(make_settings(tmp_path), embedder=embedder)
    assert REBUILD in str(caught.value)
    assert path.read_bytes() == before  # nothing was added to it


def test_a_file_where_the_index_folder_should_be(tmp_path, embedder):
    (tmp_path / "chroma").write_text("not a folder")
    with pytest.raises(IndexProblem, match="is a file, not an index folder"):
        open_services(make_settings(tmp_path), embedder=embedder)


def _rewrite_layout(data_dir, metadata):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=ChromaSettings(anonymized_telemetry=False))
    meta = client.get_collection("news_meta")
    if metadata is None:
        meta.delete(ids=["index_layout"])
    else:
        meta.upsert(ids=["index_layout"], embeddings=[[1.0]], metadatas=[metadata])
    client.clear_system_cache()


def test_an_index_of_another_layout_says_rebuild(tmp_path, embedder, test_corpus):
    settings = make_settings(tmp_path)
    services = open_services(settings, embedder=embedder)
    services.ingestor.ingest([test_corpus / "business"], progress=False)
    services.store.close()
    _rewrite_layout(tmp_path, {"layout": 99})
    with pytest.raises(IndexProblem, match="has layout 99, but this version reads layout 1") as caught:
        open_services(settings, embedder=embedder)
    assert REBUILD in str(caught.value)
    _rewrite_layout(tmp_path, None)  # an index written before layouts were recorded
    with pytest.raises(IndexProblem, match="earlier development version"):
        open_services(settings, embedder=embedder)


def test_the_cli_reports_a_damaged_index_in_one_line(tmp_path, subprocess_env):
    chroma_file(tmp_path / "data").write_bytes(b"\x00garbage" * 1000)
    done = subprocess.run([sys.executable, "-m", "rag", "ask", "Who won?", "--index", str(tmp_path / "data")],
                          env=subprocess_env(tmp_path / "data"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and REBUILD in done.stderr, done.stderr


def test_no_server_at_start_is_a_clear_error(tmp_path, embedder):
    settings = make_settings(tmp_path, chroma_host="127.0.0.1", chroma_port=free_port())
    started = time.monotonic()
    with pytest.raises(IndexUnavailable, match=r"The Chroma server http://127\.0\.0\.1:\d+ is not reachable"):
        open_services(settings, embedder=embedder)
    assert time.monotonic() - started < 10


@pytest.mark.heavy
def test_a_server_that_goes_away_is_named_and_used_again_when_back(tmp_path, embedder, test_corpus):
    from tests.test_chroma_server import start_chroma_server

    proc, port = start_chroma_server(tmp_path)
    try:
        settings = make_settings(tmp_path / "data", chroma_host="127.0.0.1", chroma_port=port, chroma_retries=2)
        services = open_services(settings, embedder=embedder)
        services.ingestor.ingest([test_corpus / "business"], progress=False)
        question = "Which company agreed to buy Castellan?"
        before = services.pipeline.ask(question, mode="extractive")
        stop_process(proc)
        started = time.monotonic()
        with pytest.raises(RagError, match=rf"The Chroma server http://127\.0\.0\.1:{port} is not reachable"):
            services.pipeline.ask(question, mode="extractive")
        assert time.monotonic() - started < 10
        proc, _ = start_chroma_server(tmp_path, port)
        again = services.pipeline.ask(question, mode="extractive")
        assert again.text == before.text and again.citations == before.citations
        assert services.store.article_count() == len(services.store.all_articles()) > 0
    finally:
        stop_process(proc)
