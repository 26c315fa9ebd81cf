"""Hybrid retrieval: dense vectors from Chroma plus BM25 over the same chunks, merged by reciprocal rank fusion.

BM25 comes from ``bm25s`` (with a Snowball stemmer). Its in-memory index is rebuilt only when the index
version token in Chroma changes, so it stays in step with every ingest, update and delete, also those made
by other processes, without a rebuild per question. Only chunks committed in that index version (whose
content hash matches their article record when it was read) are returned, so a half-written article is
invisible; the caller re-reads the article records it quotes, which drops anything deleted since.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np

from rag.core.settings import Settings
from rag.index.store import Store
from rag.core.types import Passage

log = logging.getLogger(__name__)

RERANK_DEPTH = 30  # fused candidates re-scored before the top_k are kept
DENSE_WEIGHT = 0.5  # rerank score = DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * keyword coverage
# Words that shape a question but never match its answer's passage.
QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how did does do many much according roughly approximately".split()
)
WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*", re.I)  # a word as BM25 and keyword scoring see it


@dataclass
class _ChunkRow:
    chunk_id: str
    text: str
    meta: dict


class Tokenizer:
    """Lower-casing, stop-word dropping, Snowball-stemming tokenizer shared by BM25 and keyword scoring."""

    def __init__(self):
        import Stemmer
        from bm25s.stopwords import STOPWORDS_EN

        self._stem = Stemmer.Stemmer("english").stemWord
        self.stopwords = frozenset(STOPWORDS_EN) | QUESTION_WORDS
        self._cache: dict[str, str] = {}

    def words(self, text: str) -> list[str]:
        """Lower-cased word tokens of ``text`` with stop words removed (numbers kept whole: 1.75bn, 3,000)."""
        return [t for t in (m.group(0).lower() for m in WORD.finditer(text)) if t not in self.stopwords]

    def stem(self, word: str) -> str:
        stemmed = self._cache.get(word)
        if stemmed is None:
            stemmed = self._cache[word] = self._stem(word)
        return stemmed

    def __call__(self, text: str) -> list[str]:
        return [self.stem(w) for w in self.words(text)]


class BM25Index:
    """bm25s over the committed chunks of one index version, plus the document frequencies of its terms."""

    def __init__(self, rows: list[_ChunkRow], tokenizer: Tokenizer):
        import bm25s

        # bm25s sets its logger to DEBUG when imported and would log every index build.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self.rows = rows
        self.tokenizer = tokenizer
        corpus = [tokenizer(f"{r.meta.get('title', '')} {r.text}") for r in rows]
        self.df: Counter = Counter()
        self.article_terms: dict[str, set[str]] = {}
        self.chunk_terms: dict[str, frozenset[str]] = {}  # chunk id -> its terms (title included)
        self.row_of: dict[str, _ChunkRow] = {row.chunk_id: row for row in rows}
        for row, tokens in zip(rows, corpus):
            terms = frozenset(tokens)
            self.df.update(terms)
            self.chunk_terms[row.chunk_id] = terms
            self.article_terms.setdefault(row.meta.get("article_id", ""), set()).update(terms)
        self.n_docs = max(1, len(rows))
        self.retriever = bm25s.BM25()
        if rows:
            self.retriever.index(corpus, show_progress=False)

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency of a stemmed term (unknown terms get the maximum)."""
        return math.log(1 + (self.n_docs - self.df.get(term, 0) + 0.5) / (self.df.get(term, 0) + 0.5))

    def question_weights(self, question_terms: list[str]) -> dict[str, float]:
        """The (stemmed) question terms weighted by idf, summing to 1."""
        weights = {t: self.idf(t) for t in set(question_terms)}
        total = sum(weights.values()) or 1.0
        return {t: w / total for t, w in weights.items()}

    def coverage(self, question_terms: list[str], text_terms: set[str]) -> float:
        """Idf-weighted share of the (stemmed) question terms present in ``text_terms``."""
        return sum(w for t, w in self.question_weights(question_terms).items() if t in text_terms)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(row index, score) of the best ``k`` chunks for ``query``."""
        tokens = [t for t in self.tokenizer(query) if t in self.df]
        if not tokens or not self.rows:
            return []
        k = min(k, len(self.rows))
        ids, scores = self.retriever.retrieve([tokens], k=k, show_progress=False, n_threads=1)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if s > 0]


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
    def bm25(self) -> BM25Index:
        """The BM25 index for the current index version (rebuilt when another write happened)."""
        version = self.store.version()
        if self._bm25 is not None and version == self._version:
            return self._bm25
        with self._lock:
            if self._bm25 is None or version != self._version:
                started = time.perf_counter()
                self._bm25 = BM25Index(self._committed_rows(), self.tokenizer)
                self._version = version
                log.info("BM25 index rebuilt: %d chunks in %.2f s", len(self._bm25.rows), time.perf_counter() - started)
        return self._bm25

    def _committed_rows(self) -> list[_ChunkRow]:
        committed = {r.article_id: r.sha256 for r in self.store.all_articles() if not r.duplicate_of}
        rows = []
        for page in self.store.all_chunks(include=("documents", "metadatas")):
            for chunk_id, text, meta in zip(page["ids"], page["documents"], page["metadatas"]):
                if committed.get(meta.get("article_id")) == meta.get("sha256"):
                    rows.append(_ChunkRow(chunk_id, text, meta))
        rows.sort(key=lambda r: r.chunk_id)  # deterministic order whatever Chroma returns
        return rows

    # --- retrieval ----------------------------------------------------------------------------------
    def retrieve(
        self, query: str, top_k: Optional[int] = None, query_embedding: Optional[list[float]] = None,
        bm25: Optional[BM25Index] = None,
    ) -> tuple[list[Passage], dict[str, float]]:
        """The ``top_k`` best passages for ``query`` and the seconds spent per step.

        ``bm25``: the index of the current version when the caller already holds it (saves a version check).
        """
        top_k = top_k or self.settings.top_k
        n = max(self.settings.candidates, top_k)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        if query_embedding is None:
            query_embedding = self.store.embedder.embed_query(query)
        t1 = time.perf_counter()
        timings["embed"] = t1 - t0
        bm25 = bm25 or self.bm25()
        dense = self._dense(query_embedding, n, bm25)
        t2 = time.perf_counter()
        timings["dense"] = t2 - t1
        sparse = [(bm25.rows[i], s) for i, s in bm25.search(query, n)]
        t3 = time.perf_counter()
        timings["bm25"] = t3 - t2
        fused = self._fuse(dense, sparse, max(top_k, RERANK_DEPTH))
        passages = self._rerank(query, query_embedding, fused, bm25)[:top_k]
        timings["fuse"] = time.perf_counter() - t3
        return passages, timings

    def _rerank(self, query: str, query_embedding: list[float], passages: list[Passage], bm25: BM25Index) -> list[Passage]:
        """Order fused candidates by meaning and by how much of the question's keywords they hold.

        Rank fusion ignores how good each hit is; news questions name several specific entities, and the
        passage holding most of them (weighted by rarity) is usually the one that answers.
        """
        if not passages:
            return passages
        missing = [p.chunk_id for p in passages if p.dense_score is None]
        if missing:
            got = self.store.chunks.get(ids=missing, include=["embeddings"])
            q = np.asarray(query_embedding)
            sims = {i: float(np.dot(np.asarray(e), q)) for i, e in zip(got["ids"], got["embeddings"])}
            for p in passages:
                if p.dense_score is None and p.chunk_id in sims:
                    p.dense_score = round(sims[p.chunk_id], 4)
        terms = self.tokenizer(query)
        for p in passages:
            p.coverage = round(bm25.coverage(terms, bm25.chunk_terms[p.chunk_id]), 4)  # passages are bm25 rows
            p.score = round(DENSE_WEIGHT * (p.dense_score or 0.0) + (1 - DENSE_WEIGHT) * p.coverage, 4)
        return sorted(passages, key=lambda p: -p.score)

    def _dense(self, embedding: list[float], n: int, bm25: BM25Index) -> list[tuple[_ChunkRow, float]]:
        """The ``n`` nearest chunks among those committed in ``bm25``'s index version.

        Chroma is asked for ids and distances only (a quarter of the time of also reading the texts back):
        the texts and metadata of committed chunks are already in memory, and other chunks are not used.
        """
        if not bm25.rows:
            return []
        got = self.store.chunks.query(
            query_embeddings=[embedding], n_results=min(n, len(bm25.rows)), include=["distances"]
        )
        return [
            (bm25.row_of[i], 1.0 - float(dist))
            for i, dist in zip(got["ids"][0], got["distances"][0]) if i in bm25.row_of
        ]

    def _fuse(
        self, dense: list[tuple[_ChunkRow, float]], sparse: list[tuple[_ChunkRow, float]], top_k: int
    ) -> list[Passage]:
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
            row: _ChunkRow = entry["row"]
            meta = row.meta
            key = _near_duplicate_key(row.text)
            if key in by_text:  # the same passage from another article (a near-duplicate copy)
                by_text[key].duplicates.append(meta["article_id"])
                continue
            passage = Passage(
                chunk_id=row.chunk_id,
                article_id=meta["article_id"],
                title=meta.get("title", ""),
                source=meta.get("source", ""),
                text=row.text,
                start_char_idx=int(meta["start"]),
                end_char_idx=int(meta["end"]),
                score=round(entry["rrf"], 6),
                page=int(meta.get("page", 0) or 0),
                dense_score=None if entry["dense"] is None else round(entry["dense"], 4),
                bm25_score=None if entry["bm25"] is None else round(entry["bm25"], 4),
            )
            by_text[key] = passage
            passages.append(passage)
            if len(passages) >= top_k:
                break
        return passages


def _near_duplicate_key(text: str) -> str:
    """Passages equal up to case, punctuation and spacing share this key."""
    normalised = " ".join(re.findall(r"\w+", text.lower()))
    return hashlib.sha1(normalised.encode()).hexdigest()
