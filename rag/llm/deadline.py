"""Streams abandoned once they have run for longer than their timeout in all (the HTTP backends' streams).

The HTTP clients' timeouts bound connecting and each read, not a whole stream: a server that keeps sending
slowly would hold a question forever without this deadline.
"""

from __future__ import annotations

import time
from typing import ClassVar, Iterable, Iterator


def with_deadline(items: Iterable, timeout: float, what: str) -> Iterator:
    """Pass ``items`` through, raising TimeoutError once ``timeout`` seconds have passed since the first call."""
    deadline = time.monotonic() + timeout
    iterator = iter(items)
    try:
        for item in iterator:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not finish within {timeout:g} s")
            yield item
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class StreamDeadline:
    """Mixin for a LlamaIndex LLM (listed before it) whose streams are abandoned after ``stream_timeout()``
    seconds in all; ``server`` names what did not finish, in the TimeoutError."""

    server: ClassVar[str] = "the LLM server"

    def stream_timeout(self) -> float:
        """Seconds a whole stream may take."""
        raise NotImplementedError

    def stream_chat(self, messages, **kwargs):
        """The LLM's ``stream_chat``, abandoned once it runs past ``stream_timeout()``."""
        return with_deadline(super().stream_chat(messages, **kwargs), self.stream_timeout(), self.server)

    def stream_complete(self, prompt, formatted=False, **kwargs):
        """The LLM's ``stream_complete``, abandoned once it runs past ``stream_timeout()``."""
        return with_deadline(
            super().stream_complete(prompt, formatted=formatted, **kwargs), self.stream_timeout(), self.server
        )
