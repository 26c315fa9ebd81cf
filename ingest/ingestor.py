"""Incremental, crash-safe ingestion into the Chroma index: what to add, replace, prune, delete and promote.

Write order for every batch of articles (what makes ``kill -9`` at any point safe):
1. a *pending* record naming the batch's article ids (:mod:`ingest.journal`),
2. the new chunks and sentence vectors (ids carry the content hash, so old and new versions never collide),
3. the article records: the commit point; queries only use chunks whose hash matches the record,
4. deletion of the articles' chunks and sentence vectors of any other hash, then of the pending record, then a
   version bump.
Steps 2 to 4 of new and changed articles are :mod:`ingest.writer`'s. A run that finds a pending record of a
dead process removes that batch's uncommitted chunks first (:meth:`Ingestor.repair`).
Deletions (and an article turning into a duplicate) run under a pending record too: record first, then chunks.
An unchanged file whose manifest entry (:mod:`ingest.manifest`) now states other metadata only has its record's
metadata rewritten: its text and chunks stay, nothing is embedded.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Optional, Sequence

from tqdm.auto import tqdm

from ingest.discovery import MISSING_PATH, article_id_for, discover, folder_roots
from ingest.journal import Journal
from ingest.loaders import Article, SkipFile, load_bytes, read_file, sha256_bytes
from ingest.metadata import one_line
from ingest.manifest import ManifestEntry, RunManifests, load_manifests
from ingest.quarantine import Quarantine
from ingest.report import IngestReport, SkippedFile
from ingest.writer import GroupWriter, Work, article_record
from rag.core.settings import Settings, get_settings
from rag.core.types import article_meta
from rag.index.embedder import Embedder
from rag.index.store import ArticleRecord, Store

log = logging.getLogger(__name__)

BYTES_PER_MB = 1_000_000


def orphaned_duplicates(records: dict[str, ArticleRecord]) -> dict[str, list[ArticleRecord]]:
    """Duplicates whose stored copy was deleted, changed or became a duplicate itself, by content hash."""
    orphans: dict[str, list[ArticleRecord]] = {}
    for r in records.values():
        target = records.get(r.duplicate_of) if r.duplicate_of else None
        if r.duplicate_of and (target is None or target.sha256 != r.sha256 or target.duplicate_of):
            orphans.setdefault(r.sha256, []).append(r)
    return orphans


class Ingestor:
    """Writes articles into one Store. Create with :func:`open_ingestor` or from a Pipeline's store."""

    def __init__(self, store: Store, settings: Optional[Settings] = None):
        self.store = store
        self.settings = settings or store.settings
        self.journal = Journal(store)
        self.writer = GroupWriter(store, self.settings, self.journal)

    # --- public operations -------------------------------------------------------------------------
    def ingest(
        self, paths: Sequence[Path | str], *, prune: bool = False, progress: bool = True,
        manifest: Optional[Path | str] = None, quarantine: Optional[Path] = None,
    ) -> IngestReport:
        """Add new, replace changed and (with ``prune``) remove vanished articles under ``paths``.

        ``manifest``: a JSON Lines file of the articles' metadata, its paths relative to the one folder in
        ``paths``; without it, a ``manifest.jsonl`` in a folder is used for that folder (see
        :mod:`ingest.manifest`). ManifestError, before anything is written, when a manifest cannot be read.
        ``quarantine``: a folder whose files are read under a marker: a file whose reading fails unexpectedly is
        moved to its ``quarantine/``, and nothing already there is read (:mod:`ingest.quarantine`).
        """
        started = time.perf_counter()
        if isinstance(paths, (str, os.PathLike)):  # one path, not a sequence of its characters
            paths = [paths]
        manifests = load_manifests(paths, manifest)
        report = IngestReport()
        try:
            guard = Quarantine(quarantine) if quarantine is not None else None
            self._ingest(paths, prune, progress, report, manifests, guard)
        finally:
            # Bump even after a failure part-way: groups committed before it must reach other processes' BM25.
            if report.changed():
                self.store.bump_version()
            report.seconds = time.perf_counter() - started
        return report

    def delete(self, article_id: str) -> bool:
        """Delete one article (its chunks and record); False when no such article is indexed."""
        if not self.store.get_articles([article_id]):
            return False
        self._delete_one(article_id)
        self._promote_orphaned_duplicates(IngestReport(), progress=False)
        self.store.bump_version()
        return True

    def sweep_quarantine(self, folder: Path) -> list[str]:
        """Move the files of ``folder`` that a process died reading to its ``quarantine/`` (call before ingesting
        ``folder`` with ``quarantine=folder``); "name (reason)" of each."""
        return [f"{q.name} ({q.reason})" for q in Quarantine(folder).sweep()]

    def repair(self) -> int:
        """Remove uncommitted chunks left by interrupted runs; returns how many batches were repaired."""
        repaired = 0
        for batch in self.journal.stale_batches():
            committed = self.store.get_articles(batch.article_ids)
            for article_id in batch.article_ids:
                record = committed.get(article_id)
                keep = record.sha256 if record and not record.duplicate_of else None
                self.store.delete_chunks_of(article_id, keep_sha=keep)
            self.journal.forget(batch.pending_id)
            repaired += 1
        if repaired:
            log.warning("cleaned up %d batch(es) left by an interrupted ingestion", repaired)
        return repaired

    # --- one run ------------------------------------------------------------------------------------
    def _ingest(
        self, paths: Sequence[Path | str], prune: bool, progress: bool, report: IngestReport,
        manifests: RunManifests, quarantine: Optional[Quarantine] = None,
    ) -> None:
        report.repaired = self.repair()
        files, report.skipped = discover(paths, exclude=manifests.given)
        if quarantine is not None:  # set aside for good: neither read nor reported
            files = [(f, root) for f, root in files if not quarantine.holds(f)]
            report.skipped = [s for s in report.skipped if not quarantine.holds(Path(s.path))]
        report.seen = len(files) + sum(1 for s in report.skipped if s.reason != MISSING_PATH)
        report.warnings += manifests.warnings + manifests.unmatched(files)
        existing = {r.article_id: r for r in self.store.all_articles()}
        relabelled: list[ArticleRecord] = []
        work, duplicate_records, seen_ids = self._read(
            files, existing, report, progress, manifests, relabelled, quarantine
        )
        if relabelled:  # metadata only: no journal needed, a record is rewritten whole or not at all
            self.store.update_article_metadata(relabelled)
            report.metadata_updated = [r.article_id for r in relabelled]
        # Duplicates of articles in this run are committed after their canonical copy.
        self.writer.write(work, report, progress)
        if duplicate_records:
            self._commit_plain_records(duplicate_records, previous=existing)
        if prune:
            roots = folder_roots(paths)
            gone = [r.article_id for r in existing.values() if r.root in roots and r.article_id not in seen_ids]
            for article_id in gone:
                self._delete_one(article_id)
            report.pruned = gone
        self._promote_orphaned_duplicates(report, progress)

    def _read(
        self, files: list[tuple[Path, Path]], existing: dict[str, ArticleRecord], report: IngestReport, progress: bool,
        manifests: RunManifests, relabelled: list[ArticleRecord], quarantine: Optional[Quarantine] = None,
    ) -> tuple[list[Work], list[ArticleRecord], set[str]]:
        """Load the new and changed files: the articles to embed, the duplicate records to commit (a copy of a
        stored or earlier article), and every article id seen; the stored records of unchanged files whose
        manifest entry states new metadata go to ``relabelled``."""
        canonical_by_sha = {r.sha256: r.article_id for r in existing.values() if not r.duplicate_of}
        work: list[Work] = []
        duplicate_records: list[ArticleRecord] = []
        seen_ids: set[str] = set()
        for file, root in tqdm(files, desc="reading", unit="file", disable=not progress):
            article_id = article_id_for(file, root)
            if article_id in seen_ids:  # e.g. two explicit files a/x.txt and b/x.txt: both would be "x.txt"
                reason = f"another file in this run has the article id {article_id!r}"
                report.skipped.append(SkippedFile(str(file), reason))
                continue
            seen_ids.add(article_id)
            old = existing.get(article_id)
            entry = manifests.entry(root, article_id)
            guard = quarantine if quarantine is not None and file.parent == quarantine.folder else None
            article = self._load(file, root, article_id, old, report, entry, relabelled, guard)
            if article is None:
                continue
            report.warnings += article.warnings
            canonical = canonical_by_sha.get(article.sha256)
            if canonical is not None and canonical != article_id:
                duplicate_records.append(
                    article_record(article_id, article, str(root), chunks=0, duplicate_of=canonical)
                )
                report.duplicates.append((article_id, canonical))
                continue
            canonical_by_sha[article.sha256] = article_id
            work.append(Work(article_id, article, str(root), is_update=old is not None))
        return work, duplicate_records, seen_ids

    def _load(
        self, file: Path, root: Path, article_id: str, old: Optional[ArticleRecord], report: IngestReport,
        entry: Optional[ManifestEntry], relabelled: list[ArticleRecord], quarantine: Optional[Quarantine] = None,
    ) -> Optional[Article]:
        """The article in ``file`` with what its manifest ``entry`` states; None when it is unchanged since ``old``
        (counted, or added to ``relabelled`` when ``entry`` states new metadata) or unusable (reported; with
        ``quarantine``, read under its marker, and moved there when reading fails unexpectedly)."""
        try:
            data = read_file(file, int(self.settings.max_file_mb * BYTES_PER_MB))
            if old is not None and old.sha256 == sha256_bytes(data):
                record = entry.relabelled(old) if entry is not None else None
                if record is None:
                    report.unchanged += 1
                else:
                    relabelled.append(record)
                return None
            if old is not None and old.root and old.root != str(root) and Path(old.source).exists():
                raise SkipFile(
                    f"article id {article_id!r} is already used by {old.source}; ingest both from a common "
                    "parent folder, or delete that article first"
                )
            with quarantine.reading(file) if quarantine is not None else nullcontext():
                article = load_bytes(data, file, source=str(file), max_pdf_pages=self.settings.max_pdf_pages,
                                     max_text_chars=self.settings.max_text_chars)
            if entry is not None:
                entry.apply(article)
            return article
        except SkipFile as exc:
            report.skipped.append(SkippedFile(str(file), str(exc)))
        except Exception as exc:  # a loader bug (or MemoryError) must not stop the run; the file is reported
            log.exception("unexpected error loading %s", file)
            reason = one_line(f"unexpected error: {type(exc).__name__}" + (f": {exc}" if str(exc) else ""))
            if quarantine is not None:
                try:
                    moved = quarantine.put(file, reason)
                    report.quarantined.append(moved.name)
                    reason += f"; moved to {quarantine.dir.name}/{moved.name}"
                except OSError as exc:  # a read-only folder: reported, left where it is
                    log.warning("could not quarantine %s: %s", file, exc)
            report.skipped.append(SkippedFile(str(file), reason))
        return None

    # --- records without new chunks -------------------------------------------------------------------
    def _commit_plain_records(self, records: list[ArticleRecord], previous: dict[str, ArticleRecord]) -> None:
        """Commit chunk-less records (duplicates); a former canonical article loses its chunks.

        Under a pending record, so that a run killed between the two steps leaves no chunks behind (repair
        deletes the chunks of an article whose record is a duplicate).
        """
        with self.journal.batch([r.article_id for r in records]):
            self.store.put_articles(records)
            for record in records:
                old = previous.get(record.article_id)
                if old is not None and not old.duplicate_of:
                    self.store.delete_chunks_of(record.article_id)

    def _delete_one(self, article_id: str) -> None:
        # Record first, then chunks, under a pending record: a kill in between leaves chunks that repair removes,
        # never a record without chunks that an unchanged file would then keep forever.
        with self.journal.batch([article_id]):
            self.store.delete_articles([article_id])
            self.store.delete_chunks_of(article_id)

    def _promote_orphaned_duplicates(self, report: IngestReport, progress: bool) -> None:
        """Duplicates whose stored copy was deleted or changed: the first becomes the stored copy."""
        records = {r.article_id: r for r in self.store.all_articles()}
        orphans = orphaned_duplicates(records)
        if not orphans:
            return
        canonical_by_sha = {r.sha256: r.article_id for r in records.values() if not r.duplicate_of}
        work, repointed = [], []
        for sha, group in orphans.items():
            group.sort(key=lambda r: r.article_id)
            head = canonical_by_sha.get(sha)
            if head is None:
                full = self.store.get_articles([group[0].article_id], with_text=True)[group[0].article_id]
                article = Article(text=full.text or "", **article_meta(full))
                work.append(Work(full.article_id, article, full.root, is_update=True))
                head = full.article_id
                group = group[1:]
            for r in group:
                r.duplicate_of = head
                repointed.append(r)
        self.writer.write(work, report, progress)
        if repointed:
            texts = self.store.get_articles([r.article_id for r in repointed], with_text=True)
            for r in repointed:
                r.text = texts[r.article_id].text
            self.store.put_articles(repointed)


# --- convenience functions (the Python API) -------------------------------------------------------------
def open_ingestor(settings: Optional[Settings] = None) -> Ingestor:
    """Load the embedder and open the index named by ``settings``."""
    settings = settings or get_settings()
    return Ingestor(Store(settings, Embedder(settings)), settings)


def ingest_paths(
    paths: Sequence[Path | str], settings: Optional[Settings] = None, *, prune: bool = False, progress: bool = True,
    manifest: Optional[Path | str] = None,
) -> IngestReport:
    """Ingest files and folders into the index of ``settings`` (see :meth:`Ingestor.ingest`)."""
    return open_ingestor(settings).ingest(paths, prune=prune, progress=progress, manifest=manifest)


def delete_article(article_id: str, settings: Optional[Settings] = None) -> bool:
    """Delete one article by id; False when it is not indexed."""
    return open_ingestor(settings).delete(article_id)


def list_articles(settings: Optional[Settings] = None) -> list[ArticleRecord]:
    """Every indexed article (id, title, source, chunks, when ingested, duplicate_of)."""
    settings = settings or get_settings()
    return Store(settings, Embedder(settings)).all_articles()
