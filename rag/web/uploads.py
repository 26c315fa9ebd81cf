"""The uploads folder's crash safety: a file that an upload or a deletion is about to change is first staged under
a hidden name saying what was under way (ingestion skips hidden files), so that the next start of the app finishes
or rolls back whatever a killed process left (:func:`recover`).

A staged name is ``.<file name>.<pid>-<token>.<kind>``: ``part`` (an upload being copied in), ``previous`` (the
stored version an upload replaces, kept until the new one is indexed) or ``deleted`` (an uploaded article being
deleted). No Gradio; ``services`` is a :class:`rag.app.Services` (its store, ingestor and settings).
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rag.core.processes import pid_gone

PART, PREVIOUS, DELETED = "part", "previous", "deleted"
QUARANTINE_DIR = "quarantine"  # files that crashed or killed ingestion (ingest.quarantine.QUARANTINE_DIR)
STAGED = re.compile(r"\A\.(?P<name>.+)\.(?P<pid>\d++)-[0-9a-f]{32}\.(?P<kind>part|previous|deleted)\Z")


def staged_path(folder: Path, name: str, kind: str) -> Path:
    """A new hidden path in ``folder`` for the file ``name`` staged as ``kind`` by this process."""
    return folder / f".{name}.{os.getpid()}-{uuid.uuid4().hex}.{kind}"


def _writer_gone(pid: int) -> bool:
    """Whether the process that staged a file is gone (this process's own files count as gone: it is starting)."""
    return pid == os.getpid() or pid_gone(pid)


@dataclass
class Recovery:
    """What :func:`recover` did, in words for the start-up output ("" when there was nothing to do)."""

    repaired: int = 0  # interrupted ingestion batches cleaned up
    indexed: list[str] = field(default_factory=list)  # files of the folder that were not (wholly) indexed
    rolled_back: list[str] = field(default_factory=list)  # uploads whose file never arrived or was refused
    deleted: list[str] = field(default_factory=list)  # deletions finished
    quarantined: list[str] = field(default_factory=list)  # "name: reason" of files set aside (ingest.quarantine)

    def summary(self) -> str:
        """One line, or "" when nothing was left to recover."""
        parts = [f"{self.repaired} interrupted ingestion batch(es) cleaned up"] if self.repaired else []
        for label, names in (("indexed", self.indexed), ("rolled back", self.rolled_back),
                             ("deletions finished", self.deleted), ("quarantined", self.quarantined)):
            if names:
                parts.append(f"{label}: {', '.join(sorted(set(names)))}")
        return "; ".join(parts)


def leftovers(folder: Path) -> list[tuple[Path, str, str]]:
    """(path, file name, kind) of the staged files in ``folder`` whose writing process is gone."""
    found = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        m = STAGED.fullmatch(path.name)
        if m and path.is_file() and _writer_gone(int(m.group("pid"))):
            found.append((path, m.group("name"), m.group("kind")))
    return found


def recover(services, folder: Path) -> Recovery:
    """Finish or roll back the uploads and deletions a killed process left in ``folder``, then index the folder.

    Ingestion's own repair removes the chunks of batches cut short; every upload whose file arrived is then
    ingested again (a file already indexed costs one hash), so an upload cut short while indexing is finished.
    A copy cut short is removed, and a replaced version comes back when its replacement did not arrive or is
    refused. A file that a process died reading, or whose reading fails unexpectedly now, is moved to the folder's
    ``quarantine/`` instead (:mod:`ingest.quarantine`) and never read again. Call it before serving, with no other
    writer of this folder in this process.
    """
    done = Recovery(repaired=services.ingestor.repair())
    done.quarantined += services.ingestor.sweep_quarantine(folder)
    staged = leftovers(folder)
    backups: dict[str, Path] = {}
    for path, name, kind in staged:
        dest = folder / name
        if kind == PART:
            path.unlink(missing_ok=True)
            done.rolled_back.append(name)
        elif kind == DELETED:
            record = services.store.get_articles([name]).get(name)
            if not dest.exists() and record is not None and Path(record.root or "/").resolve() == folder.resolve():
                services.ingestor.delete(name)
            path.unlink(missing_ok=True)
            done.deleted.append(name)
        elif dest.exists():  # the new version arrived: it stays if it is indexed below
            backups[name] = path
        else:
            os.replace(path, dest)
            done.rolled_back.append(name)
    if folder.is_dir() and any(p for p in folder.iterdir() if p.name != QUARANTINE_DIR):
        report = services.ingestor.ingest([folder], progress=False, quarantine=folder)
        done.repaired += report.repaired
        done.quarantined += report.quarantined
        refused = {Path(s.path).name for s in report.skipped}
        for name, backup in backups.items():
            if name in refused:
                os.replace(backup, folder / name)
                done.rolled_back.append(name)
            else:
                backup.unlink(missing_ok=True)
        done.indexed += report.added + report.updated + [a for a in backups if a not in refused]
    return done
