"""The crash-safe batch journal of ingestion: a pending record names the articles of every write while it runs.

A write begins by recording its batch (:meth:`Journal.begin`) and ends by removing the record
(:meth:`Journal.end`); a record that outlives its writer marks a batch whose uncommitted chunks must be removed
(``Ingestor.repair``). Whether the writer is gone is decided by :func:`batch_is_stale`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Iterator

from rag.core.processes import pid_gone, process_started
from rag.index.store import PendingBatch, Store

PENDING_PREFIX = "pending:"
STALE_PENDING_SECONDS = 3600  # a pending batch of another host (or of a reused pid) is abandoned after this long


def writer_host() -> str:
    """Where a process id means this process: the host name, plus the boot and the process-id namespace
    (containers that share a host name do not share process ids, so their pids must not be compared)."""
    parts = [socket.gethostname()]
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8])
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    except OSError:  # not Linux: the host name alone
        pass
    return "/".join(parts)


def batch_is_stale(
    batch: PendingBatch, *, host: str, in_flight: set[str], failed: set[str], now: float
) -> bool:
    """Whether the writer of ``batch`` is gone: its process is dead (or its pid now belongs to a process that
    started later), it is a write of this journal that failed (``failed``, not among ``in_flight``), or it is
    too old (any host).

    A batch of this very process that the journal asking did not write (another Ingestor in this process) may
    still be being written: only its age can abandon it.
    """
    if batch.host == host and not _same_process_alive(batch):
        return True
    if batch.host == host and batch.pid == os.getpid():
        if batch.pending_id in in_flight:
            return False
        if batch.pending_id in failed:
            return True
    return now - batch.at > STALE_PENDING_SECONDS


def _same_process_alive(batch: PendingBatch) -> bool:
    """Whether the process that wrote ``batch`` (on this host) may still be running."""
    if batch.pid != os.getpid() and pid_gone(batch.pid):
        return False
    started = process_started(batch.pid)
    return not (batch.started and started and started != batch.started)  # a reused pid: the writer is gone


class Journal:
    """The pending records of one writer of ``store``. Safe to share between threads (the writer thread ends
    batches the encoding thread began)."""

    def __init__(self, store: Store):
        self.store = store
        self._in_flight: set[str] = set()  # batches being written now
        self._failed: set[str] = set()  # batches whose write stopped part-way: repaired on the next run
        self._lock = threading.Lock()

    @cached_property
    def host(self) -> str:
        """This process's :func:`writer_host`, read once."""
        return writer_host()

    def begin(self, article_ids: list[str]) -> str:
        """Write the pending record naming ``article_ids`` (step 1 of every write); returns its id."""
        pending_id = f"{PENDING_PREFIX}{self.host}:{os.getpid()}:{time.time_ns()}"
        with self._lock:
            self._in_flight.add(pending_id)
        self.store.put_pending(PendingBatch(
            pending_id, list(article_ids), self.host, os.getpid(), time.time(), process_started(os.getpid())
        ))
        return pending_id

    def end(self, pending_id: str) -> None:
        """Remove the pending record of a batch that is complete (or of which nothing was written)."""
        try:
            self.store.delete_pending(pending_id)
        except BaseException:
            self.abandon(pending_id)
            raise
        with self._lock:
            self._in_flight.discard(pending_id)

    def abandon(self, pending_id: str) -> None:
        """Leave a batch whose write failed part-way to the next :meth:`stale_batches` (its record stays)."""
        with self._lock:
            self._in_flight.discard(pending_id)
            self._failed.add(pending_id)

    @contextmanager
    def batch(self, article_ids: list[str]) -> Iterator[str]:
        """A write under a pending record: removed when the write completes, left for repair when it fails."""
        pending_id = self.begin(article_ids)
        try:
            yield pending_id
        except BaseException:
            self.abandon(pending_id)
            raise
        self.end(pending_id)

    def stale_batches(self) -> list[PendingBatch]:
        """The pending batches whose writers are gone (see :func:`batch_is_stale`)."""
        batches = self.store.pending_batches()
        now = time.time()
        with self._lock:
            self._failed &= {b.pending_id for b in batches}  # another process may have repaired some
            in_flight, failed = set(self._in_flight), set(self._failed)
        return [b for b in batches if batch_is_stale(b, host=self.host, in_flight=in_flight, failed=failed, now=now)]

    def forget(self, pending_id: str) -> None:
        """Remove the record of a batch that was repaired."""
        self.store.delete_pending(pending_id)
        with self._lock:
            self._failed.discard(pending_id)
