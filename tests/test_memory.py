"""Freed memory goes back to the operating system (``rag.core.memory``), and a keyword-index rebuild asks for it."""

from __future__ import annotations

import gc
import logging
import shutil
import sys

import pytest

from rag.core.memory import release_freed_memory
from rag.core.settings import PROJECT_ROOT

SEED_ID = "catl-baic-xiaomi-battery-jv.txt"


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_memory_freed_by_python_is_given_back():
    """300 MB of 2 KB buffers (allocated by malloc, not Python's small-object arenas), freed: glibc keeps the pages
    until asked; asked, the resident size falls back."""
    release_freed_memory()
    before = rss_mb()
    buffers = [bytearray(2048) for _ in range(150_000)]
    pin = bytearray(2048)  # above them on the heap: freeing them cannot shrink the heap from its top
    grown = rss_mb()
    del buffers
    gc.collect()
    kept = rss_mb()
    assert release_freed_memory()
    released = rss_mb()
    assert grown - before > 250, (before, grown)
    assert kept - released > 200, (kept, released)  # what Python freed was still resident until then
    assert len(pin) == 2048


def test_a_keyword_index_rebuild_gives_freed_memory_back(tmp_path, embedder, caplog, monkeypatch):
    """Each BM25 rebuild (after every write) ends by giving the memory the previous index held back."""
    import rag.query.retrieve as retrieve
    from rag.app import open_services
    from tests.conftest import make_settings

    services = open_services(make_settings(tmp_path / "data"), embedder=embedder)
    shutil.copy(PROJECT_ROOT / "corpus" / SEED_ID, tmp_path / SEED_ID)
    services.ingestor.ingest([tmp_path / SEED_ID], progress=False)
    retriever = services.pipeline.retriever
    retriever.bm25(wait=True)
    calls = []
    monkeypatch.setattr(retrieve, "release_freed_memory", lambda: calls.append(1) or True)
    services.store.bump_version()
    with caplog.at_level(logging.INFO, logger="rag.query.retrieve"):
        retriever.bm25(wait=True)
    assert calls == [1] and "BM25 index rebuilt" in caplog.text
