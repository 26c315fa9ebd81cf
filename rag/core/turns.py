"""First come, first served turns at one slow shared resource (the reader model), with the wait estimated.

Written by hand because a ``threading.Lock`` wakes its waiters in no particular order (under load some users
waited for two answers while others got three), and neither Gradio's queue nor llama-cpp-python says how long
a question waits for the model. A :class:`Ticket` keeps its place in the line whichever thread later waits on
it or releases it, which matters for a streamed answer: Gradio may run each step of a generator in another
worker thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional

SMOOTHING = 0.3  # weight of the latest turn's length in the running mean


@dataclass(frozen=True)
class Waiting:
    """Where a question stands in the line: questions ahead of it, and the estimated seconds until its turn
    (None until a first turn has been timed)."""

    ahead: int
    seconds: Optional[float]


class Turns:
    """A line of tickets of which the first ``slots`` hold a turn; the others wait in the order they came."""

    def __init__(self, slots: int = 1):
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self._line: deque[Ticket] = deque()
        self._cond = threading.Condition()
        self._mean_s: Optional[float] = None  # running mean of a turn's length

    def join(self) -> "Ticket":
        """A ticket at the end of the line (release it when done, also when abandoned)."""
        ticket = Ticket(self)
        with self._cond:
            self._line.append(ticket)
        return ticket

    def busy(self) -> int:
        """Tickets in the line, holding a turn or waiting for one."""
        with self._cond:
            return len(self._line)

    # --- for Ticket ---------------------------------------------------------------------------------
    def _position(self, ticket: "Ticket") -> int:
        try:
            return self._line.index(ticket)
        except ValueError:
            return -1

    def _estimate(self, position: int) -> Optional[float]:
        """Seconds until the ticket at ``position`` (at least ``slots``) gets a turn."""
        mean = self._mean_s
        if mean is None:
            return None
        now = time.monotonic()
        holders = list(self._line)[: self.slots]
        # the first turn running now ends in about (mean - its time so far); each turn ahead adds a mean
        remaining = [mean if t.started is None else max(0.0, mean - (now - t.started)) for t in holders]
        return min(remaining) + (position - self.slots) * mean / self.slots

    def _release(self, ticket: "Ticket") -> None:
        with self._cond:
            if self._position(ticket) < 0:
                return
            self._line.remove(ticket)
            if ticket.started is not None:
                took = time.monotonic() - ticket.started
                self._mean_s = took if self._mean_s is None else (1 - SMOOTHING) * self._mean_s + SMOOTHING * took
            self._cond.notify_all()


class Ticket:
    """One place in a :class:`Turns` line; a context manager that releases it."""

    def __init__(self, turns: Turns):
        self._turns = turns
        self.started: Optional[float] = None  # monotonic time its turn began

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until this ticket holds a turn or ``timeout`` seconds pass; True when it holds one."""
        turns = self._turns
        with turns._cond:
            ready = turns._cond.wait_for(lambda: 0 <= turns._position(self) < turns.slots, timeout)
            if ready and self.started is None:
                self.started = time.monotonic()
            return ready

    def status(self) -> Waiting:
        """Questions ahead of this one and the estimated wait (0 ahead once it holds a turn)."""
        turns = self._turns
        with turns._cond:
            position = turns._position(self)
            ahead = max(0, position - turns.slots + 1)
            return Waiting(ahead, 0.0 if ahead == 0 else turns._estimate(position))

    def release(self) -> None:
        """Leave the line (idempotent); the next ticket gets the turn."""
        self._turns._release(self)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
