"""The pure parts of ingestion: discovery, the journal's staleness rule, orphaned duplicates."""

from __future__ import annotations

import os
from pathlib import Path

from rag.index.store import PendingBatch
from tests.ingest_helpers import write


def test_discover_lists_supported_files_once_and_reports_the_rest(tmp_path):
    from ingest.discovery import article_id_for, discover, folder_roots

    src = tmp_path / "src"
    for name in ("a.txt", "sub/b.md", "sub/deeper/c.HTML", ".hidden/d.txt", ".e.txt", "f.pptx", "noext",
                 "manifest.jsonl", "sub/manifest.jsonl", "meta.jsonl"):
        write(src / name, "x")
    single = write(tmp_path / "single.pdf", b"%PDF")
    found, skipped = discover([src, src / "a.txt", single, single, tmp_path / "missing"],
                              exclude={(src / "meta.jsonl").resolve()})
    assert [(file.relative_to(root).as_posix(), root) for file, root in found] == [
        ("a.txt", src), ("sub/b.md", src), ("sub/deeper/c.HTML", src), ("single.pdf", tmp_path),
    ]  # a file given by itself is rooted at its own folder; one reached twice is listed once
    # Manifests in the folders and the one given for the run (``exclude``) are neither articles nor skipped.
    assert [(Path(s.path).name, s.reason) for s in skipped] == [
        ("f.pptx", "unsupported file type .pptx"), ("noext", "unsupported file type (none)"),
        ("missing", "path does not exist"),
    ]
    assert article_id_for(src / "sub" / "b.md", src) == "sub/b.md"
    assert folder_roots([src, single, tmp_path / "missing"]) == {str(src)}


def test_pending_batch_is_stale_only_when_its_writer_is_gone():
    from ingest.journal import STALE_PENDING_SECONDS, batch_is_stale
    from rag.core.processes import process_started

    now = 1_000_000.0

    def stale(host: str, pid: int, age: float, in_flight=(), failed=(), started=0) -> bool:
        batch = PendingBatch("pending:1", ["x.txt"], host, pid, now - age, started)
        return batch_is_stale(batch, host="here", in_flight=set(in_flight), failed=set(failed), now=now)

    old = STALE_PENDING_SECONDS + 1
    assert not stale("elsewhere", os.getpid(), 10) and stale("elsewhere", os.getpid(), old)  # only age counts
    assert not stale("here", os.getppid(), 10) and stale("here", os.getppid(), old)  # a live process of this host
    # This process: its own writes are judged by what it knows of them, whatever their age.
    assert not stale("here", os.getpid(), old, in_flight={"pending:1"})
    assert stale("here", os.getpid(), 10, failed={"pending:1"})
    # Of this process but not this journal's (another Ingestor in this process): by age.
    me, parent = process_started(os.getpid()), process_started(os.getppid())
    assert not stale("here", os.getpid(), 10, started=me) and stale("here", os.getpid(), old, started=me)
    # A pid now held by a process that started later than the writer (a restarted container, pid reuse):
    # the writer is gone, however young the batch.
    assert stale("here", os.getpid(), 10, started=me - 1) and stale("here", os.getppid(), 10, started=parent - 1)
    assert not stale("here", os.getppid(), 10, started=parent)


def test_orphaned_duplicates_are_those_whose_stored_copy_is_gone_changed_or_a_copy():
    from ingest.ingestor import orphaned_duplicates
    from rag.index.store import ArticleRecord

    def record(article_id: str, sha: str, duplicate_of: str = "") -> ArticleRecord:
        return ArticleRecord(article_id=article_id, title="t", source="s", sha256=sha, chunks=0, ingested_at="",
                             duplicate_of=duplicate_of)

    records = {r.article_id: r for r in [
        record("a", "1"), record("b", "1", "a"),  # a stored copy: fine
        record("c", "2", "gone"),  # its copy was deleted
        record("d", "3"), record("e", "4", "d"),  # its copy changed
        record("f", "5", "g"), record("g", "5", "h"),  # its copy is itself a duplicate (of a deleted one)
    ]}
    orphans = orphaned_duplicates(records)
    assert {sha: sorted(r.article_id for r in rs) for sha, rs in orphans.items()} == {
        "2": ["c"], "4": ["e"], "5": ["f", "g"],
    }
