"""Opening Chroma: an HTTP client for a server or a database folder on disk, with clear errors for a server
that cannot be reached or a folder that is not a Chroma index, and retries while a server is away. A read-only
index folder is answered from a temporary copy, and writes to it are refused with a clear error."""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from rag.core.errors import IndexProblem, IndexUnavailable
from rag.core.settings import Settings

log = logging.getLogger(__name__)

CHROMA_DB = "chroma.sqlite3"  # the file an embedded Chroma index keeps its records in
RETRY_FIRST_WAIT = 0.25  # seconds before the first retry of an unreachable server; doubled each time
BYTES_PER_MB = 1_000_000


def server_url(settings: Settings) -> str:
    """The Chroma server's address, as the user configured it."""
    return f"http://{settings.chroma_host}:{settings.chroma_port}"


def rebuild_advice(settings: Settings) -> str:
    """How to start again with an empty index at the place ``settings`` name."""
    if settings.chroma_host:
        where = f"use another RAG_COLLECTION (or delete the collections {settings.collection}_* on the server)"
    else:
        where = f"move the folder {settings.chroma_dir} away (or use another RAG_DATA_DIR or RAG_COLLECTION)"
    return (f"To rebuild the index, {where}, then ingest again: python -m ingest PATH, or start the app, which "
            "ingests the default corpus into an empty index.")


def open_client(settings: Settings):
    """A Chroma client: an HTTP client when ``chroma_host`` is set, otherwise a PersistentClient on disk.

    Raises :class:`IndexUnavailable` when the server cannot be reached and :class:`IndexProblem` when the
    folder is not a Chroma database (another program's file, or a damaged one).
    """
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if settings.chroma_host:
        try:
            return chromadb.HttpClient(host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings)
        except Exception as exc:  # chromadb says ValueError("Could not connect ...") or an httpx error
            raise IndexUnavailable(f"The Chroma server {server_url(settings)} is not reachable ({exc}). "
                                   "Start it (chroma run ...) or unset RAG_CHROMA_HOST.") from exc
    folder = settings.chroma_dir
    if folder.exists() and not folder.is_dir():
        raise IndexProblem(f"{folder} is a file, not an index folder. {rebuild_advice(settings)}")
    _check_chroma_database(folder / CHROMA_DB, settings)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IndexProblem(f"The index folder {folder} cannot be created ({exc.strerror}). Make its folder "
                           "writable, or set RAG_DATA_DIR to a writable folder.") from exc
    if is_read_only(folder):
        folder = _read_only_copy(folder)
    try:
        return chromadb.PersistentClient(path=str(folder), settings=chroma_settings)
    except Exception as exc:  # a damaged database: chromadb's own errors say only "not a database" or similar
        raise IndexProblem(f"The index at {folder} cannot be opened ({type(exc).__name__}: {exc}). "
                           f"{rebuild_advice(settings)}") from exc


def is_read_only(folder: Path) -> bool:
    """Whether the index folder (or its database file) cannot be written: a read-only mount binds even root."""
    db = folder / CHROMA_DB
    return not os.access(folder, os.W_OK) or (db.exists() and not os.access(db, os.W_OK))


def _read_only_copy(folder: Path) -> Path:
    """A temporary copy of a read-only index folder, removed at exit: Chroma cannot open even for reading a
    folder it cannot write (it writes to its database at start). Writes are refused (:func:`check_writable`)."""
    copy = Path(tempfile.mkdtemp(prefix="newsrag-readonly-"))
    atexit.register(shutil.rmtree, copy, ignore_errors=True)
    try:
        shutil.copytree(folder, copy / "chroma")
    except OSError as exc:
        raise IndexProblem(f"The index folder {folder} is read-only, and a copy to answer from could not be made "
                           f"in {copy} ({exc}). Make {folder} writable.") from exc
    log.info("the index folder %s is read-only: answering from a copy in %s", folder, copy)
    return copy / "chroma"


def _check_chroma_database(path, settings: Settings) -> None:
    """Refuse an SQLite file that is not Chroma's (Chroma would add its tables to another program's database)."""
    import sqlite3

    if not path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise IndexProblem(f"The index at {path.parent} is damaged: {path.name} is not a database ({exc}). "
                           f"{rebuild_advice(settings)}") from exc
    if tables and "collections" not in tables:
        raise IndexProblem(f"{path.parent} holds a database of another program, not a Chroma index. "
                           f"{rebuild_advice(settings)}")


def _unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the Chroma server could not be reached (as opposed to a refused request)."""
    import httpx

    return isinstance(exc, (httpx.TransportError, ConnectionError))


# The Store methods that write to the database (each one Chroma request of at most one batch of records).
WRITES = frozenset({
    "bump_version", "put_articles", "update_article_metadata", "delete_articles", "add_chunks", "delete_chunks_of",
    "put_sentences", "put_pending", "delete_pending",
})


def check_writable(settings: Settings) -> None:
    """Refuse a write to an embedded index whose folder is read-only (the index still answers from a copy)."""
    if not settings.chroma_host and is_read_only(settings.chroma_dir):
        raise IndexProblem(
            f"The index folder {settings.chroma_dir} is read-only: nothing was written; the index still answers. "
            "Make it writable (or set RAG_DATA_DIR to a writable folder) and run the same ingestion again."
        )


def check_free_space(settings: Settings) -> None:
    """Refuse a write to an embedded index whose disk has less than ``min_free_mb`` free.

    Chroma does not fail cleanly on a full disk: seen here, a write that fills it hangs, or fails and leaves the
    next read hanging. Stopping before it keeps the index as it was, and answering from it keeps working.
    """
    if settings.chroma_host:
        return  # the server's disk is not ours to measure
    folder = settings.chroma_dir
    free = shutil.disk_usage(folder if folder.exists() else folder.parent).free / BYTES_PER_MB
    if free < settings.min_free_mb:
        raise IndexProblem(
            f"Only {free:.0f} MB of disk space is free at {folder}; writing to the index needs at least "
            f"{settings.min_free_mb:g} MB (RAG_MIN_FREE_MB). Nothing more was written; the index still answers. "
            "Free some space and run the same ingestion again to finish it."
        )


def retrying(method):
    """Run a Store method again when the Chroma server could not be reached, waiting 0.25 s, 0.5 s, 1 s ...
    (``chroma_retries`` times); then raise :class:`IndexUnavailable` naming the server. A server that comes back
    is used again by the next call: the HTTP client reconnects by itself. A method that writes first checks
    the folder is writable and its disk has room (:func:`check_writable`, :func:`check_free_space`)."""
    writes = method.__name__ in WRITES

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        if writes:
            check_writable(self.settings)
            check_free_space(self.settings)
        retries = self.settings.chroma_retries
        for attempt in range(retries + 1):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if not _unreachable(exc):
                    raise
                if attempt == retries:
                    raise IndexUnavailable(
                        f"The Chroma server {server_url(self.settings)} is not reachable ({exc}); tried "
                        f"{retries + 1} times. Nothing stored is lost: the app uses it again as soon as it is back."
                    ) from exc
                log.warning("Chroma server unreachable (%s); retrying", exc)
                time.sleep(RETRY_FIRST_WAIT * 2**attempt)

    return call
