"""Hybrid retrieval: dense vectors from Chroma plus BM25 over the same chunks, merged by reciprocal rank fusion.

The in-memory BM25 index (``rag.query.bm25``) is rebuilt only when the index version token changes, so it
stays in step with every ingest, update and delete, also those made by other processes, without a rebuild per
question; while one thread rebuilds it, the others answer from the previous version. Only chunks committed
in that index version (whose content hash matches their article record when it was read) are returned, so a
half-written article is invisible; the caller re-reads the article records it quotes, which drops anything
deleted since. Reranking is the next stage (``rag.query.rerank``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from typing import Optional

import numpy as np

from rag.core.memory import release_freed_memory
from rag.core.settings import Settings
from rag.core.types import Passage
from rag.index.store import ChunkRecord, Store
from rag.query.bm25 import BM25Index, Tokenizer
from rag.query.scope import Scope

log = logging.getLogger(__name__)

MAX_FILTERED_FETCH = 4000  # the most neighbours a filtered dense search asks Chroma for


class HybridRetriever:
    """Dense + BM25 retrieval with rank fusion and near-duplicate collapsing. Safe to share between threads."""

    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings
        self.tokenizer = Tokenizer()
        self._bm25: Optional[BM25Index] = None
        self._version: Optional[str] = None
        self._lock = threading.Lock()

    # --- the BM25 side ------------------------------------------------------------------------------
    def bm25(self, wait: bool = False) -> BM25Index:
        """The BM25 index for the current index version (rebuilt when another write happened).

        While one thread rebuilds it, the others answer from the previous version instead of waiting (a
        rebuild reads every chunk: seconds on a large index, and a stream of uploads would otherwise stall
        every question behind one rebuild after another); that is consistent, because dense hits are kept
        only for chunks of the BM25 index's own version. ``wait``: block until it is current (a writer in
        this process calls that after its write, so that the next question sees what was written).
        """
        version = self.store.version()
        current = self._bm25
        if current is not None and version == self._version:
            return current
        if current is not None and not wait:
            if not self._lock.acquire(blocking=False):
                return current  # another thread is rebuilding it: the previous version meanwhile
        else:
            self._lock.acquire()
        try:
            version = self.store.version()
            if self._bm25 is None or version != self._version:
                started = time.perf_counter()
                records = self.store.all_articles()
                committed = [r for r in records if not r.duplicate_of]
                self._bm25 = BM25Index(self.store.committed_chunks(records), self.tokenizer, committed)
                self._version = version
                del records, committed, current  # the previous index goes unless a question still holds it
                release_freed_memory()  # else the allocator keeps the hundreds of MB a rebuild churns through
                log.info("BM25 index rebuilt: %d chunks in %.2f s", len(self._bm25.rows), time.perf_counter() - started)
            return self._bm25
        finally:
            self._lock.release()

    # --- retrieval ----------------------------------------------------------------------------------
    def retrieve(
        self, query: str, query_embedding: list[float], bm25: BM25Index, depth: int,
        timings: Optional[dict[str, float]] = None, scope: Optional[Scope] = None,
    ) -> list[Passage]:
        """The ``depth`` best fused candidates for ``query``, near-duplicates collapsed (for reranking), among
        the articles ``scope`` lets be cited.

        ``bm25``: the index of the current version (see :meth:`bm25`); ``timings`` gets the seconds of the
        dense, BM25 and fusion steps.
        """
        timings = {} if timings is None else timings
        n = max(self.settings.candidates, depth)
        t0 = time.perf_counter()
        allowed = bm25.allowed_rows(scope) if scope is not None else None
        dense = self._dense(query_embedding, n, bm25, allowed)
        t1 = time.perf_counter()
        sparse = [(bm25.rows[i], s) for i, s in bm25.search(query, n, allowed)]
        t2 = time.perf_counter()
        fused = self._fuse(dense, sparse, depth, bm25)
        timings.update(dense=t1 - t0, bm25=t2 - t1, fuse=time.perf_counter() - t2)
        return fused

    def _dense(
        self, embedding: list[float], n: int, bm25: BM25Index, allowed: Optional[np.ndarray] = None
    ) -> list[tuple[ChunkRecord, float]]:
        """The ``n`` nearest chunks among those committed in ``bm25``'s index version (their texts are already
        in memory; other chunks are not used) and, given ``allowed`` (a 0/1 mask of its rows), allowed.

        A filtered search asks Chroma for proportionally more neighbours and keeps the allowed ones: the
        filter is on article records held in memory, which Chroma's metadata filter would need copied onto
        every chunk (and rewritten when a manifest changes a date).
        """
        if allowed is None:
            nearest = self.store.dense_query(embedding, min(n, len(bm25.rows)))
            return [(bm25.row_of[i], similarity) for i, similarity in nearest if i in bm25.row_of]
        kept = int(allowed.sum())
        if kept == 0:
            return []
        fetch = min(len(bm25.rows), MAX_FILTERED_FETCH, math.ceil(n * len(bm25.rows) / kept))
        ok = {r.chunk_id for r, a in zip(bm25.rows, allowed) if a}
        nearest = self.store.dense_query(embedding, fetch)
        return [(bm25.row_of[i], similarity) for i, similarity in nearest if i in ok][:n]

    def _fuse(
        self, dense: list[tuple[ChunkRecord, float]], sparse: list[tuple[ChunkRecord, float]], top_k: int,
        bm25: BM25Index,
    ) -> list[Passage]:
        """Reciprocal rank fusion of the two rankings; a passage equal to a better one is collapsed into it."""
        # Both lists hold only chunks committed in the BM25 index's version (see _dense).
        k = self.settings.rrf_k
        fused: dict[str, dict] = {}
        for ranked, key in ((dense, "dense"), (sparse, "bm25")):
            for rank, (row, score) in enumerate(ranked):
                entry = fused.setdefault(row.chunk_id, {"row": row, "rrf": 0.0, "dense": None, "bm25": None})
                entry["rrf"] += 1.0 / (k + rank + 1)
                entry[key] = score
        order = sorted(fused.values(), key=lambda e: -e["rrf"])
        passages: list[Passage] = []
        by_text: dict[str, Passage] = {}
        for entry in order:
            row: ChunkRecord = entry["row"]
            key = _near_duplicate_key(_body_text(row))
            kept = by_text.get(key)
            if kept is None:
                passage = _passage(row, bm25, entry)
                by_text[key] = passage
                passages.append(passage)
                if len(passages) >= top_k:
                    break
            elif bm25.published_text(row.article_id) == kept.published and row.article_id < kept.article_id:
                # The same passage from another article (a near-duplicate copy): of copies published the same day
                # (or both undated), the first ingested (the first by path) stands for them all, whichever copy
                # ranked a hair higher, so the citation does not flip between copies with the ranking's noise.
                first = _passage(row, bm25, dict(entry, rrf=kept.score, dense=kept.dense_score, bm25=kept.bm25_score))
                first.duplicates = kept.duplicates + [kept.article_id]
                by_text[key] = passages[passages.index(kept)] = first
            else:
                kept.duplicates.append(row.article_id)
        return passages


def _passage(row: ChunkRecord, bm25: BM25Index, entry: dict) -> Passage:
    """The passage of ``row`` with its fused score (``entry``: rrf, dense and bm25 scores)."""
    return Passage(
        chunk_id=row.chunk_id,
        article_id=row.article_id,
        title=row.title,
        source=row.source,
        text=row.text,
        start_char_idx=row.start,
        end_char_idx=row.end,
        score=round(entry["rrf"], 6),
        page=row.page,
        published=bm25.published_text(row.article_id),
        site=bm25.site.get(row.article_id, ""),
        dense_score=None if entry["dense"] is None else round(entry["dense"], 4),
        bm25_score=None if entry["bm25"] is None else round(entry["bm25"], 4),
    )


def _body_text(row: ChunkRecord) -> str:
    """The chunk's text without the article's headline line: a story republished under another headline (BBC
    has dozens) is the same passage, and its first chunk should collapse like the others."""
    if row.start == 0 and row.title:
        first, newline, rest = row.text.partition("\n")
        if newline and rest.strip() and first.strip() == row.title.strip():
            return rest
    return row.text


def _near_duplicate_key(text: str) -> str:
    """Passages equal up to case, punctuation and spacing share this key."""
    normalised = " ".join(re.findall(r"\w+", text.lower()))
    return hashlib.sha1(normalised.encode()).hexdigest()
