"""Whether a process that left something behind (a pending ingestion batch, a staged upload) is still running."""

from __future__ import annotations

import os
from pathlib import Path


def pid_gone(pid: int) -> bool:
    """True when no process has this pid (in this pid namespace); False when one has, or it cannot be told."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user
        return False
    return False


def process_started(pid: int) -> int:
    """When process ``pid`` started, in clock ticks since boot (0 when it cannot be read: not Linux, or gone).

    With the pid it names one process for good: a later process given the same pid started later.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name before ")" may hold spaces
    except (OSError, ValueError, IndexError):
        return 0
