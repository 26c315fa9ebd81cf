"""Sentence vectors pooled from the token vectors the encoder already computed for each chunk.

Answering scores candidate sentences on meaning. Encoding them at question time costs more than the rest of
answering together, and encoding every sentence separately at ingest would double the encoder's work. The
encoder's contextual token vectors of the chunk holding a sentence, averaged over the sentence's tokens,
give its vector for free (the same mean pooling the model uses for whole texts). No library offers
sentence vectors from a chunk's forward pass, so this is written here.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Sequence

from ingest.chunking import Chunk
from rag.index.embedder import TokenVectors


def pool_sentence_vectors(
    sentences: Sequence[tuple[int, int]], chunks: Sequence[Chunk], tokens: Sequence[TokenVectors],
    prefix_chars: Sequence[int],
) -> list[tuple[int, int, int, "object"]]:
    """(start, end, chunk index, vector) for each of the ``sentences`` (spans of the article text the chunks
    were cut from); chunk index -1 and vector None for a sentence that got none.

    ``tokens[i]`` are the token vectors of the text the encoder saw for ``chunks[i]``: ``prefix_chars[i]``
    characters (the title line) followed by the chunk's text. A sentence is pooled in the first chunk that
    holds all of it, else in the one holding most of it (a sentence longer than a chunk); a sentence with
    no token inside any chunk gets no vector (answering then encodes it itself).
    """
    result = []
    starts = [chunk.start for chunk in chunks]  # chunks come in text order
    for start, end in sentences:
        best, best_overlap = None, 0
        nearby = bisect_right(starts, start)  # chunks overlap by a little: the holder is among the last few
        for i in range(max(0, nearby - 3), min(len(chunks), nearby + 1)):
            chunk = chunks[i]
            overlap = min(end, chunk.end) - max(start, chunk.start)
            if chunk.start <= start and end <= chunk.end:
                best = i
                break
            if overlap > best_overlap:
                best, best_overlap = i, overlap
        vector = None
        if best is not None:
            chunk, shift = chunks[best], prefix_chars[best] - chunks[best].start
            vector = tokens[best].pool(max(start, chunk.start) + shift, min(end, chunk.end) + shift)
        result.append((start, end, chunks[best].index if vector is not None else -1, vector))
    return result
