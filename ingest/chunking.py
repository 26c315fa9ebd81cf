"""Article -> sentence-aware chunks that fit the embedder, each with an exact character span.

LlamaIndex's ``SentenceSplitter`` does the splitting, counting tokens with the embedding model's own
tokenizer so that no chunk (title included) exceeds the model's maximum sequence length. The splitter
locates chunks with a plain ``str.find``, which can return an earlier repeated passage; we re-locate
each chunk from the previous chunk's position so ``text[start:end] == chunk`` always holds.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable

from llama_index.core import Document
from llama_index.core.node_parser import SentenceSplitter

# Special tokens ([CLS], [SEP]) the encoder adds around every input.
SPECIAL_TOKENS = 2


@dataclass(frozen=True)
class Chunk:
    """A passage of an article: ``text == article_text[start:end]``."""

    index: int
    text: str
    start: int
    end: int
    page: int = 0  # 1-based page for PDFs, 0 otherwise


class Chunker:
    """Cuts article texts into chunks of at most ``chunk_tokens`` tokens (counted with ``tokenize``) with exact
    spans; one SentenceSplitter serves every article."""

    def __init__(self, *, tokenize: Callable[[str], list], chunk_tokens: int, chunk_overlap: int):
        self._splitter = SentenceSplitter(
            chunk_size=chunk_tokens,
            chunk_overlap=min(chunk_overlap, chunk_tokens // 4),  # more overlap than a quarter mostly repeats text
            tokenizer=tokenize,
            paragraph_separator="\n\n",
            include_metadata=False,
            include_prev_next_rel=False,
        )

    def __call__(self, text: str, page_starts: list[int] | None = None) -> list[Chunk]:
        """The chunks of ``text``; ``page_starts``: where each PDF page begins, to give chunks their page."""
        pieces = [node.get_content() for node in self._splitter.get_nodes_from_documents([Document(text=text)])]
        return _locate(text, pieces, page_starts)


def chunk_budget(max_seq_length: int, title_tokens: int, chunk_tokens: int) -> int:
    """Tokens available to a chunk's text once the title line and special tokens are embedded with it."""
    return max(16, min(chunk_tokens, max_seq_length - SPECIAL_TOKENS - title_tokens - 2))


def chunk_text(
    text: str,
    *,
    tokenize: Callable[[str], list],
    chunk_tokens: int,
    chunk_overlap: int,
    page_starts: list[int] | None = None,
) -> list[Chunk]:
    """Split ``text`` into chunks of at most ``chunk_tokens`` tokens with exact spans (see :class:`Chunker`)."""
    return Chunker(tokenize=tokenize, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap)(text, page_starts)


def _locate(text: str, pieces: list[str], page_starts: list[int] | None) -> list[Chunk]:
    """The splitter's pieces as chunks at their exact places in ``text``."""
    chunks: list[Chunk] = []
    cursor = 0  # chunks come in document order; overlap means the next one may start before the last end
    prev_end = 0
    for piece in pieces:
        if not piece.strip():
            continue
        start = text.find(piece, cursor)
        if start >= 0:
            # A repeated passage also matches earlier copies: take the last match that still begins within the
            # previous chunk (or at its end), so consecutive chunks advance and cover the whole text.
            later = text.find(piece, start + 1)
            while 0 <= later <= prev_end:
                start, later = later, text.find(piece, later + 1)
        if start < 0:
            start = text.find(piece)
        if start < 0:
            # The splitter normalised something (rare); fall back to locating the piece's first and last words.
            start, end = _approximate_span(text, piece, cursor)
        else:
            end = start + len(piece)
        page = bisect.bisect_right(page_starts, start) if page_starts else 0
        chunks.append(Chunk(index=len(chunks), text=text[start:end], start=start, end=end, page=page))
        cursor = start + 1
        prev_end = max(prev_end, end)
    return chunks


def _approximate_span(text: str, piece: str, cursor: int) -> tuple[int, int]:
    words = piece.split()
    head = " ".join(words[:3])
    tail = " ".join(words[-3:])
    start = text.find(words[0], cursor) if words else cursor
    start = text.find(head, cursor) if text.find(head, cursor) >= 0 else max(start, cursor)
    end_at = text.find(tail, start)
    end = end_at + len(tail) if end_at >= 0 else min(len(text), start + len(piece))
    return start, end
