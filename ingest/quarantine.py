"""Files that crashed or killed ingestion, set aside so that they are never read again by themselves.

A folder that is ingested again at every start (the web UI's uploads) must not hold a file that takes the process
down: one hostile upload would then crash the app at each restart. While a file of such a folder is read, a hidden
marker ``.reading.<pid>`` in the folder names it; the marker is removed once the file is read, whatever the
outcome. A marker whose process is gone means that process died reading the file (killed, out of memory), and
:meth:`Quarantine.sweep` moves the file to ``<folder>/quarantine/``, beside a ``<name>.reason.txt`` saying why. A
file whose reading raises an unexpected error (MemoryError, a loader bug) goes there at once.
Nothing there is ingested again unless someone moves it back.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ingest.metadata import one_line
from rag.core.processes import pid_gone

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
MARKER_PREFIX = ".reading."
KILLED = "the process stopped while reading this file (killed, or out of memory)"


@dataclass
class Quarantined:
    """A file set aside: its name in the quarantine folder and why."""

    name: str
    reason: str


class Quarantine:
    """The reading markers and the quarantine folder of one ingested ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()
        self.dir = self.folder / QUARANTINE_DIR

    @contextmanager
    def reading(self, file: Path) -> Iterator[None]:
        """Mark ``file`` as being read by this process for the duration of the block (unmarked where the folder
        cannot be written: a read-only data folder is still read)."""
        marker = self.folder / f"{MARKER_PREFIX}{os.getpid()}"
        try:
            marker.write_text(json.dumps({"file": str(Path(file).resolve()), "pid": os.getpid()}))
        except OSError as exc:
            log.debug("no reading marker in %s: %s", self.folder, exc)
        try:
            yield
        finally:
            marker.unlink(missing_ok=True)

    def put(self, file: Path, reason: str) -> Quarantined:
        """Move ``file`` into the quarantine folder (under a free name) with a note of ``reason``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        file = Path(file)
        target, i = self.dir / file.name, 1
        while target.exists():
            i += 1
            target = self.dir / f"{file.stem}-{i}{file.suffix}"
        os.replace(file, target)
        reason = one_line(reason)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        Path(f"{target}.reason.txt").write_text(f"{file.name}: {reason} ({stamp})\n", encoding="utf-8")
        log.warning("moved %s to %s: %s", file.name, self.dir, reason)
        return Quarantined(target.name, reason)

    def sweep(self) -> list[Quarantined]:
        """Quarantine the files that processes now gone were reading when they died (call before ingesting the
        folder); this process's own markers count as left by a dead process: it is starting."""
        moved: list[Quarantined] = []
        for marker in sorted(self.folder.glob(f"{MARKER_PREFIX}*")) if self.folder.is_dir() else []:
            pid_text = marker.name[len(MARKER_PREFIX):]
            pid = int(pid_text) if pid_text.isdigit() else 0
            if pid and pid != os.getpid() and not pid_gone(pid):
                continue  # another live process is reading
            try:
                file = Path(json.loads(marker.read_text())["file"])
            except (OSError, ValueError, KeyError, TypeError):
                file = None
            if file is not None and file.parent == self.folder and file.is_file():
                moved.append(self.put(file, KILLED))
            marker.unlink(missing_ok=True)
        return moved

    def holds(self, path: Path) -> bool:
        """Whether ``path`` lies in the quarantine folder (not to be ingested)."""
        return Path(path).resolve().is_relative_to(self.dir)
