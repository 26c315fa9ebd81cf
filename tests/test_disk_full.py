"""A disk that fills up during ingest: a clear error before Chroma runs out of room, and the index as it was
still answers. Uses a small tmpfs as the data folder (needs permission to mount one: skipped otherwise)."""

from __future__ import annotations

import subprocess
import time

import pytest

from rag.app import open_services
from rag.core.errors import IndexProblem
from tests.conftest import make_settings
from tests.ingest_helpers import paragraph, write

TMPFS_MB = 24


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a TMPFS_MB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): no small disk to fill")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_stops_ingest_cleanly_and_the_index_still_answers(small_disk, tmp_path, embedder, test_corpus):
    settings = make_settings(small_disk / "data", min_free_mb=TMPFS_MB - 8, ingest_group_chunks=16)
    services = open_services(settings, embedder=embedder)
    first = services.ingestor.ingest([test_corpus / "business"], progress=False)
    assert first.added and not first.skipped
    question = "Which company agreed to buy Castellan?"
    before = services.pipeline.ask(question, mode="extractive")
    assert before.citations

    big = tmp_path / "big"
    for i in range(30):
        write(big / f"harbour-{i}.txt", f"Harbour report {i}\n\n" + paragraph(f"harbour{i}", 300))
    started = time.monotonic()
    with pytest.raises(IndexProblem, match=r"MB of disk space is free .* needs at least 16 MB \(RAG_MIN_FREE_MB\)"):
        services.ingestor.ingest([big], progress=False)
    assert time.monotonic() - started < 300  # stopped, not hung

    after = services.pipeline.ask(question, mode="extractive")
    assert after.text == before.text and after.citations == before.citations
    stored = {r.article_id for r in services.store.all_articles()}
    assert set(first.added) <= stored  # nothing ingested before is lost
