"""Opening Chroma: an HTTP client for a server or a database folder on disk, with clear errors for a server
that cannot be reached or a folder that is not a Chroma index, and retries while a server is away."""

from __future__ import annotations

import contextlib
import functools
import logging
import time

from rag.core.errors import IndexProblem, IndexUnavailable
from rag.core.settings import Settings

log = logging.getLogger(__name__)

CHROMA_DB = "chroma.sqlite3"  # the file an embedded Chroma index keeps its records in
RETRY_FIRST_WAIT = 0.25  # seconds before the first retry of an unreachable server; doubled each time


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
        return chromadb.PersistentClient(path=str(folder), settings=chroma_settings)
    except Exception as exc:  # a damaged database: chromadb's own errors say only "not a database" or similar
        raise IndexProblem(f"The index at {folder} cannot be opened ({type(exc).__name__}: {exc}). "
                           f"{rebuild_advice(settings)}") from exc


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


def retrying(method):
    """Run a Store method again when the Chroma server could not be reached, waiting 0.25 s, 0.5 s, 1 s ...
    (``chroma_retries`` times); then raise :class:`IndexUnavailable` naming the server. A server that comes back
    is used again by the next call: the HTTP client reconnects by itself."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
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
