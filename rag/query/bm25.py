"""BM25 over the committed chunks of one index version (``bm25s`` with a Snowball stemmer), and the tokenizer
that BM25, keyword coverage and answer scoring share."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date
from typing import Iterable, Optional

import numpy as np

from rag.core.text import QUESTION_WORDS, WORD
from rag.index.store import ArticleRecord, ChunkRecord
from rag.query.scope import Scope, published_date


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
        """The Snowball stem of a lower-cased word (memoised: news text repeats its words)."""
        stemmed = self._cache.get(word)
        if stemmed is None:
            stemmed = self._cache[word] = self._stem(word)
        return stemmed

    def __call__(self, text: str) -> list[str]:
        return [self.stem(w) for w in self.words(text)]


class BM25Index:
    """bm25s over the committed chunks of one index version, the document frequencies of its terms, and the
    publish date and outlet of each article (what a question's scope filters on)."""

    def __init__(self, rows: list[ChunkRecord], tokenizer: Tokenizer, articles: Iterable[ArticleRecord] = ()):
        import bm25s

        self.published: dict[str, Optional[date]] = {r.article_id: published_date(r.published) for r in articles}
        self.site: dict[str, str] = {r.article_id: r.site for r in articles}
        self.latest: Optional[date] = max(filter(None, self.published.values()), default=None)
        self.rows = rows
        self.tokenizer = tokenizer
        corpus = [tokenizer(f"{r.title} {r.text}") for r in rows]
        self.df: Counter = Counter()
        self.article_terms: dict[str, set[str]] = {}
        self.chunk_terms: dict[str, frozenset[str]] = {}  # chunk id -> its terms (title included)
        self.row_of: dict[str, ChunkRecord] = {row.chunk_id: row for row in rows}
        for row, tokens in zip(rows, corpus):
            terms = frozenset(tokens)
            self.df.update(terms)
            self.chunk_terms[row.chunk_id] = terms
            self.article_terms.setdefault(row.article_id, set()).update(terms)
        self.n_docs = max(1, len(rows))
        self.article_df: Counter = Counter(t for terms in self.article_terms.values() for t in terms)
        self.retriever = bm25s.BM25()
        if rows:
            self.retriever.index(corpus, show_progress=False)

    def published_text(self, article_id: str) -> str:
        """The article's publish date as ISO text ("" when unknown)."""
        day = self.published.get(article_id)
        return day.isoformat() if day else ""

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

    def search(self, query: str, k: int, allowed: Optional[np.ndarray] = None) -> list[tuple[int, float]]:
        """(row index, score) of the best ``k`` chunks for ``query`` (among the rows where ``allowed`` is 1)."""
        tokens = [t for t in self.tokenizer(query) if t in self.df]
        if not tokens or not self.rows:
            return []
        k = min(k, len(self.rows))
        ids, scores = self.retriever.retrieve(
            [tokens], k=k, show_progress=False, n_threads=1, weight_mask=allowed
        )
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if s > 0]

    def newest_in_scope(self, scope: Scope) -> Optional[date]:
        """When the question's time words name days ("this week", "yesterday"; not a vague "recently") in which
        no article that ``scope`` lets be cited was published, the newest such article's publish date; None
        otherwise (no such words, an article in the window, or an undated one, which might be: nothing then
        says the window is empty)."""
        if scope.window is None or scope.window.vague:
            return None
        newest = None
        for article, day in self.published.items():
            if not scope.allows(day, self.site.get(article, "")):
                continue
            if day is None or day in scope.window:
                return None
            newest = day if newest is None or day > newest else newest
        return newest

    def allowed_rows(self, scope: Scope) -> Optional[np.ndarray]:
        """A 0/1 mask of the rows ``scope`` lets be cited, or None when it lets every row be."""
        if not scope.filters and (self.latest is None or self.latest <= scope.as_of):
            return None  # nothing is published after as_of: no article needs looking at
        ok = {a: scope.allows(day, self.site.get(a, "")) for a, day in self.published.items()}
        if all(ok.values()):
            return None
        return np.fromiter((ok.get(r.article_id, True) for r in self.rows), dtype=np.float32, count=len(self.rows))
