"""Reranking: order fused candidates by meaning and by how much of the question's keywords they hold.

Rank fusion ignores how good each hit is; news questions name several specific entities, and the passage
holding most of them (weighted by rarity) is usually the one that answers. The weighting is calibrated
(``rag.core.calibration.DENSE_WEIGHT``) and the evidence thresholds depend on it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from rag.core.calibration import DENSE_WEIGHT
from rag.core.types import Passage
from rag.index.store import Store
from rag.query.bm25 import BM25Index
from rag.query.scope import Scope


class Reranker:
    """Scores passages as ``DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * idf-weighted keyword coverage``."""

    def __init__(self, store: Store):
        self.store = store

    def rerank(
        self, query: str, query_embedding: list[float], passages: list[Passage], bm25: BM25Index,
        scope: Optional[Scope] = None,
    ) -> list[Passage]:
        """``passages`` (rows of ``bm25``'s index) with ``coverage`` and ``score`` set, best first; ``scope``'s
        time preference scales each score relative to the best-placed candidate's."""
        if not passages:
            return passages
        missing = [p.chunk_id for p in passages if p.dense_score is None]  # found by BM25 only
        if missing:
            q = np.asarray(query_embedding)
            sims = {i: float(np.dot(e, q)) for i, e in self.store.chunk_embeddings(missing).items()}
            for p in passages:
                if p.dense_score is None and p.chunk_id in sims:
                    p.dense_score = round(sims[p.chunk_id], 4)
        terms = bm25.tokenizer(query)
        for p in passages:
            p.coverage = round(bm25.coverage(terms, bm25.chunk_terms[p.chunk_id]), 4)
            p.score = round(DENSE_WEIGHT * (p.dense_score or 0.0) + (1 - DENSE_WEIGHT) * p.coverage, 4)
        if scope is not None:
            preference = {p.chunk_id: scope.preference(bm25.published.get(p.article_id)) for p in passages}
            best = max(preference.values())
            for p in passages:
                p.score = round(p.score * preference[p.chunk_id] / best, 4)
        return sorted(passages, key=lambda p: -p.score)
