"""Interrupted ingestion is repaired: a write failing mid-run, pending batches of other writers, and an ingest
process killed with SIGKILL mid-run; every repair leaves an index that passes :func:`check_index`."""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from ingest import Ingestor
from ingest.journal import PENDING_PREFIX
from rag.index.store import PendingBatch
from tests.ingest_helpers import check_index, corpus_variants, ingestor_for, paragraph, pending_ids, write


def test_failed_write_mid_run_is_repaired_by_the_next_run_in_the_same_process(store, embedder, tmp_path):
    """Chroma failing while a group is written (the writer thread) stops the run with that error; groups
    committed before it stay, and the next run of the same process repairs the half-written group."""
    src = tmp_path / "src"
    for n in range(6):
        write(src / f"{n}.txt", f"Story {n}\n\n" + paragraph(f"topic{n}", 12))
    # About one article a group: several groups, each written while the next encodes.
    ingestor = Ingestor(store, store.settings.model_copy(update={"ingest_group_chunks": 2}))
    real_put_articles = store.put_articles
    calls = []

    def failing_second_commit(records):
        calls.append([r.article_id for r in records])
        if len(calls) == 2:
            raise ConnectionError("chroma went away")
        return real_put_articles(records)

    store.put_articles = failing_second_commit
    try:
        with pytest.raises(ConnectionError, match="chroma went away"):
            ingestor.ingest([src], progress=False)
    finally:
        del store.put_articles
    committed = store.all_articles()
    assert [r.article_id for r in committed] == calls[0]
    half_written = calls[1]
    assert store.chunk_ids(half_written[0]), "the failed group wrote its chunks"
    # Only the failed group's batch stays open; the group encoded meanwhile was never written and is closed.
    assert [batch.article_ids for batch in store.pending_batches()] == [half_written]

    report = ingestor.ingest([src], progress=False)
    assert report.repaired == 1 and report.unchanged == len(calls[0])
    assert sorted(report.added) == sorted(f"{n}.txt" for n in range(6) if f"{n}.txt" not in calls[0])
    records = check_index(store, embedder)
    assert sorted(records) == sorted(f"{n}.txt" for n in range(6))


def test_pending_batches_of_other_writers_are_left_until_abandoned(store, embedder, tmp_path):
    """A pending batch is repaired when its writer is provably gone: a dead pid in this process namespace.
    A writer elsewhere (another machine, or a container with the same host name) is only judged by age."""
    import socket

    from ingest.journal import STALE_PENDING_SECONDS, writer_host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def pending(host: str, age: float) -> str:
        pending_id = f"{PENDING_PREFIX}{host}:{dead.pid}:{time.time_ns()}"
        store.put_pending(PendingBatch(pending_id, ["x.txt"], host, dead.pid, time.time() - age))
        return pending_id

    pending(writer_host(), 0)  # this namespace, dead pid: repaired
    elsewhere_live = pending(f"{socket.gethostname()}/other-namespace", 60)  # kept: its pid means nothing here
    pending("other-machine", STALE_PENDING_SECONDS + 60)  # abandoned long ago: repaired
    assert ingestor_for(store).repair() == 2
    assert pending_ids(store) == [elsewhere_live]


@pytest.mark.heavy
def test_kill_9_mid_ingest_then_rerun_is_consistent(tmp_path, test_corpus, settings_factory, subprocess_env,
                                                    store_factory, embedder):
    src = tmp_path / "src"
    # About 135 files (five variants of each text article of the test corpus, byte-identical pairs included),
    # several hundred chunks: a dozen groups of 32, so the kill lands mid-run.
    files = corpus_variants(test_corpus, src, copies=5)
    settings = settings_factory("killed")
    env = subprocess_env(settings.data_dir, RAG_INGEST_GROUP_CHUNKS="32")
    proc = subprocess.Popen([sys.executable, "-m", "ingest", str(src)], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr = bytearray()

    def pump() -> None:
        while chunk := os.read(proc.stderr.fileno(), 4096):
            stderr.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    progress = re.compile(rb"embedding:\s*\d+%\|[^|\r\n]*\|\s*(\d+)/(\d+)")
    killed_at = None
    delay = random.uniform(0.05, 1.5)
    deadline = time.monotonic() + 150
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = [(int(a), int(b)) for a, b in progress.findall(bytes(stderr))]
            if done and 0 < done[-1][0] < done[-1][1]:  # at least one group committed, more to come
                # Somewhere in the next group: mostly while it is embedded, sometimes while it is written.
                time.sleep(delay)
                killed_at = done[-1]
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and killed_at is None:
            proc.kill()
        proc.wait(timeout=30)  # reaped: its pid is dead, so its pending batch counts as abandoned
        reader.join(timeout=5)
    assert killed_at is not None, f"ingest finished or stalled before it could be killed:\n{stderr.decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL

    store = store_factory(settings)
    committed = store.all_articles()
    assert 0 < len(committed) < len(files), "the kill should land after the first group and before the last"
    pending = pending_ids(store)
    # At most two batches were open: one being written while the next was encoded.
    assert all(p.startswith(PENDING_PREFIX) for p in pending) and len(pending) <= 2

    state = (f"killed {delay:.2f} s after {killed_at[0]}/{killed_at[1]} chunks: {len(committed)} articles "
             f"committed, {sum(r.chunks for r in committed)} committed chunks, {store.chunk_count()} chunks stored, "
             f"{len(pending)} pending batch")
    ingestor = Ingestor(store)
    report = ingestor.ingest([src], progress=False)
    assert report.repaired == len(pending), state
    assert report.unchanged == len(committed)
    assert len(report.added) + len(report.duplicates) == len(files) - len(committed)
    try:
        records = check_index(store, embedder)
    except AssertionError as exc:
        raise AssertionError(f"{state}: {exc}") from exc
    assert len(records) == len(files), state
    by_sha = {}
    for file in files:
        article_id = f"{file.parent.name}/{file.name}"
        assert records[article_id].sha256 == hashlib.sha256(file.read_bytes()).hexdigest()
        by_sha.setdefault(records[article_id].sha256, article_id)
    assert sum(1 for r in records.values() if not r.duplicate_of) == len(by_sha)

    again = ingestor.ingest([src], progress=False)
    assert again.chunks_written == 0 and again.unchanged == len(files) and again.repaired == 0
