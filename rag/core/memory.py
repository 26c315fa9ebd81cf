"""Giving memory the process has freed back to the operating system.

glibc's allocator keeps memory that Python has freed for reuse instead of returning it, and a rebuild of the
in-memory keyword index frees and reallocates a few hundred MB at a time: over a stream of uploads the
server's resident size kept growing (README, Speed) although nothing was leaked. ``malloc_trim`` returns the
free pages. No library wraps it, so it is called here through ctypes; elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache
from typing import Callable, Optional


@lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> bool:
    """Return the allocator's free memory to the operating system; whether that could be asked (glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
