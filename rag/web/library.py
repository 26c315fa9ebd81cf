"""The indexed articles as the web UI manages them: the list, checked uploads into ``<data_dir>/uploads``,
and deletion. No Gradio: the UI passes its files and progress callback in and shows what comes back.

``services`` is the :class:`rag.app.Services` of the index (its store, ingestor and settings).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import unicodedata
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Sequence

from rag.web.render import esc, short
from rag.web.uploads import DELETED, PART, PREVIOUS, Recovery, recover, staged_path

log = logging.getLogger(__name__)

MAX_LISTED = 500  # articles shown in the list / delete menu at once (the search box narrows it)
COLUMNS = ("Title", "Published", "Site", "Source", "Chunks", "Ingested (UTC)", "ID")  # the article table
# The orders the article list can be sorted in; the first is the default. Articles without a publish date (or
# outlet) come after the others when sorting by it.
NEWEST_INGESTED, NEWEST_PUBLISHED, OLDEST_PUBLISHED, BY_TITLE, BY_SITE = ORDERS = (
    "Recently ingested", "Newest published", "Oldest published", "Title", "Site",
)
UPLOAD_NAME = re.compile(r"[^\W_][\w .,()+&'@-]{0,119}")
RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}

Result = tuple[bool, str, str]  # (accepted, file name, message as HTML) for each uploaded file


class Listing(NamedTuple):
    """What the article list shows: table rows (:data:`COLUMNS`), the delete menu's (label, id) choices, the
    counts, and the distinct outlets of every indexed article (the Ask tab's source filter)."""

    rows: list[list[str]]
    choices: list[tuple[str, str]]
    total: int
    matching: int
    shown: int
    sites: list[str]


def sort_records(records: list, order: str) -> list:
    """``records`` in ``order`` (one of :data:`ORDERS`; anything else: the default); ties by title."""
    if order not in ORDERS[1:]:
        return sorted(records, key=lambda r: (r.ingested_at, r.title.lower()), reverse=True)
    records = sorted(records, key=lambda r: (r.title or r.article_id).lower())
    if order == BY_TITLE:
        return records
    if order == BY_SITE:
        return sorted(records, key=lambda r: (not r.site, r.site.lower()))
    dated = sorted((r for r in records if r.published), key=lambda r: r.published, reverse=order == NEWEST_PUBLISHED)
    return dated + [r for r in records if not r.published]


def distinct_sites(records: list) -> list[str]:
    """The outlets of ``records``, each once (compared case-insensitively, as the source filter matches them)."""
    sites: dict[str, str] = {}
    for r in records:
        if r.site.strip():
            sites.setdefault(r.site.strip().lower(), r.site.strip())
    return sorted(sites.values(), key=str.lower)


def check_upload_name(raw: str, accepted: Sequence[str]) -> tuple[Optional[str], str]:
    """A safe file name for an upload (paths stripped), or None and the reason it is refused.

    ``accepted``: the file suffixes ingestion reads (``rag.app.ACCEPTED_SUFFIXES``).
    """
    name = unicodedata.normalize("NFC", (raw or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    suffix = Path(name).suffix.lower()
    if not name:
        return None, "the file has no name"
    if suffix not in accepted:
        return None, f"unsupported file type {esc(suffix or '(none)')}; accepted: {', '.join(accepted)}"
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        return None, "the file name contains control characters"
    if name.startswith(".") or not UPLOAD_NAME.fullmatch(name) or ".." in name:
        return None, ("unusual file name; use letters, digits, spaces and . , ( ) + & ' @ - only "
                      "(at most 120 characters, not starting with a dot)")
    if Path(name).stem.lower().split(".")[0] in RESERVED_NAMES:
        return None, "reserved file name"
    return name, ""


def _restore(backup: Path, dest: Path, existed: bool) -> None:
    """Put back the previously stored upload (or remove the new file when there was none)."""
    if existed and backup.exists():
        os.replace(backup, dest)
    elif not existed:
        dest.unlink(missing_ok=True)


class Library:
    """Lists, adds and deletes the articles of one index; writes run one at a time."""

    def __init__(self, services, accepted: Sequence[str]):
        self.services = services
        self.settings = services.settings
        self.accepted = tuple(accepted)
        self.uploads_dir = self.settings.uploads_dir.resolve()
        self.write_lock = threading.Lock()

    def recover(self) -> Recovery:
        """Finish or roll back the uploads and deletions a killed process left (see :func:`rag.web.uploads.recover`);
        at start, before serving."""
        with self.write_lock:
            return recover(self.services, self.uploads_dir)

    # --- listing -------------------------------------------------------------------------------------------
    def listing(self, query: str = "", order: str = NEWEST_INGESTED) -> Listing:
        """The article list: the articles matching ``query`` (title, source, outlet or id) in ``order``."""
        total = self.services.store.article_count()
        everything = self.services.store.all_articles()
        q = (query or "").strip().lower()
        records = [r for r in everything if q in f"{r.title}\n{r.source}\n{r.site}\n{r.article_id}".lower()]
        shown = sort_records(records, order)[:MAX_LISTED]
        rows = []
        for r in shown:
            chunks = f"0 (duplicate of {r.duplicate_of})" if r.duplicate_of else str(r.chunks)
            source = r.url or Path(r.source).name or r.source
            rows.append([r.title or r.article_id, r.published, r.site, source, chunks,
                         (r.ingested_at or "").replace("T", " ")[:16], r.article_id])
        choices = [(f"{short(r.title or r.article_id)} — {r.article_id}", r.article_id) for r in shown]
        return Listing(rows, choices, total, len(records), len(shown), distinct_sites(everything))

    def articles_json(self) -> str:
        """Every indexed article (id, title, source, url, published, site, author, chunks, ingested_at,
        duplicate_of) as JSON."""
        return json.dumps([
            {"article_id": r.article_id, "title": r.title, "source": r.source, "url": r.url,
             "published": r.published, "site": r.site, "author": r.author, "chunks": r.chunks,
             "ingested_at": r.ingested_at, "duplicate_of": r.duplicate_of}
            for r in self.services.store.all_articles()
        ], ensure_ascii=False)

    # --- uploads -------------------------------------------------------------------------------------------
    def upload(self, files: list[tuple[Path, str]], progress: Callable) -> list[Result]:
        """Check uploads ((path, original name) pairs), copy the accepted ones into the uploads folder and
        ingest them; ``progress`` is called like ``gr.Progress``. More than ``max_upload_files`` at once are all
        refused, before any is read."""
        if len(files) > self.settings.max_upload_files:
            reason = (f"{len(files):,} files in one upload; the limit is {self.settings.max_upload_files:,} "
                      "(RAG_MAX_UPLOAD_FILES): nothing was added")
            return [(False, f"{len(files):,} files", reason)]
        with self.write_lock:
            self.uploads_dir.mkdir(parents=True, exist_ok=True)
            existing = {r.article_id: r for r in self.services.store.all_articles()}
            progress(0, desc="Checking files")
            results, accepted = self._check(files)
            for i, (name, path) in enumerate(accepted):
                progress((i, len(accepted)), desc=f"Indexing {name}", unit="files")
                added = self._add(name, path, existing)
                results += added
                if added[0][0]:  # the index changed: later names are checked against it
                    existing = {r.article_id: r for r in self.services.store.all_articles()}
            if accepted:  # the keyword index catches up here, so questions never wait for it
                progress(0.99, desc="Updating the search index")
                self.services.pipeline.refresh()
            progress(1.0, desc="Done")
        return results

    def _check(self, files: list[tuple[Path, str]]) -> tuple[list[Result], list[tuple[str, Path]]]:
        """The refused files' results, and the (safe name, path) of the accepted ones."""
        limit = int(self.settings.max_upload_mb * 1_000_000)
        results: list[Result] = []
        accepted: list[tuple[str, Path]] = []
        for path, original in files:
            name, reason = check_upload_name(original, self.accepted)
            if name is None:
                results.append((False, original, reason))
                continue
            try:
                size = path.stat().st_size
            except OSError:
                results.append((False, name, "the upload could not be read"))
                continue
            if size > limit:
                results.append((False, name, f"file too large ({size / 1e6:.1f} MB; the limit is "
                                             f"{self.settings.max_upload_mb:g} MB)"))
                continue
            if size == 0:
                results.append((False, name, "empty file"))
                continue
            accepted.append((name, path))
        return results, accepted

    def _unique_name(self, name: str, existing: dict) -> str:
        """``name``, or ``stem-2.ext``... when an article from elsewhere already has that id."""
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, i = name, 1
        while candidate in existing and Path(existing[candidate].root or "/").resolve() != self.uploads_dir:
            i += 1
            candidate = f"{stem}-{i}{suffix}"
        return candidate

    def _add(self, name: str, path: Path, existing: dict) -> list[Result]:
        """Store one accepted upload under a free name and ingest it; a refused one leaves no trace."""
        final = self._unique_name(name, existing)
        dest = self.uploads_dir / final
        existed = dest.exists()
        tmp = staged_path(self.uploads_dir, final, PART)
        backup = staged_path(self.uploads_dir, final, PREVIOUS)
        try:
            shutil.copyfile(path, tmp)
            if existed:  # kept until the new version is indexed: a rejected one must not destroy it
                os.replace(dest, backup)
            os.replace(tmp, dest)
            report = self.services.ingestor.ingest([dest], progress=False, quarantine=self.uploads_dir)
        except Exception as exc:
            log.exception("ingesting upload %s failed", final)
            tmp.unlink(missing_ok=True)
            _restore(backup, dest, existed)
            return [(False, name, f"could not be indexed ({type(exc).__name__})")]
        if report.skipped:
            _restore(backup, dest, existed)
            return [(False, name, esc(report.skipped[0].reason))]
        backup.unlink(missing_ok=True)
        renamed = f" (saved as {esc(final)})" if final != name else ""
        return [(True, name, self._outcome(report, final, existing) + renamed)] + [
            (True, name, f"note: {esc(warning)}") for warning in report.warnings
        ]

    def _outcome(self, report, final: str, existing: dict) -> str:
        """What ingesting one upload did, in words (HTML)."""
        if report.duplicates:
            _, canonical = report.duplicates[0]
            other = existing.get(canonical)
            return (f"identical to “{esc(other.title if other else canonical)}”, "
                    "already indexed; recorded as a duplicate")
        if report.updated:
            return "updated"
        if report.unchanged:
            return "already indexed, unchanged"
        record = self.services.store.get_articles([final]).get(final)
        title = f" as “{esc(record.title)}”" if record and record.title else ""
        chunks = f", {record.chunks} passages" if record else ""
        return f"added{title}{chunks}"

    # --- deletion ------------------------------------------------------------------------------------------
    def delete(self, article_id: str) -> str:
        """Delete one article (and its copy in the uploads folder, if it was uploaded); the status as HTML."""
        with self.write_lock:
            record = self.services.store.get_articles([article_id]).get(article_id)
            copy = (self.uploads_dir / article_id).resolve()
            uploaded = record is not None and record.root and Path(record.root).resolve() == self.uploads_dir
            staged = None
            if uploaded and copy.parent == self.uploads_dir and copy.is_file():
                # Moved aside first: a process killed before the index forgets it must not bring it back on start.
                staged = staged_path(self.uploads_dir, article_id, DELETED)
                os.replace(copy, staged)
            deleted = False
            try:
                deleted = self.services.ingestor.delete(article_id)
            finally:
                if staged is not None and deleted:
                    staged.unlink(missing_ok=True)
                elif staged is not None:  # the article stays: so does its file
                    os.replace(staged, copy)
            if deleted:
                self.services.pipeline.refresh()
        if deleted:
            message = f"Deleted “{esc(record.title if record else article_id)}” ({esc(article_id)})."
        else:
            message = f"{esc(article_id)} is not in the index (already deleted?)."
        return f'<p class="upload-status" role="status">{message}</p>'
