"""The one code path behind the UI, the CLI and evaluation, as named stages:

clean the question -> condense a follow-up -> retrieve (dense + BM25, fused) -> rerank -> extract (score
sentences, decide abstention) -> in LLM mode, read and check (:mod:`rag.query.llm_answer`) -> Answer.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Iterable, Iterator, Optional, Union

from rag.core.errors import InvalidQuestion, LLMError
from rag.core.settings import MAX_TOP_K, Settings, get_settings
from rag.core.text import NO_ANSWER
from rag.core.timewords import DateLike
from rag.core.turns import Waiting
from rag.core.types import Answer, Passage, Reading
from rag.index.embedder import Embedder
from rag.index.store import ArticleRecord, Store, chunk_id, chunk_is_current
from rag.query.answer import ExtractiveResult, extract_answer
from rag.query.bm25 import BM25Index
from rag.query.conversation import History, condense
from rag.query.llm_answer import LLMAnswerer, abstain
from rag.query.rerank import Reranker
from rag.query.retrieve import HybridRetriever
from rag.query.scope import Scope, build_scope
from rag.query.subject import unmentioned_name, unmentioned_reason

log = logging.getLogger(__name__)

MODES = ("extractive", "llm")


@dataclass
class Evidence:
    """What retrieval found for one question: the reranked passages and the current records of their articles."""

    passages: list[Passage]
    records: dict[str, ArticleRecord]  # with text
    bm25: BM25Index
    question_embedding: list[float]

    @property
    def articles(self) -> dict[str, str]:
        """Article id -> full text, for exact spans."""
        return {r.article_id: r.text or "" for r in self.records.values()}


class Pipeline:
    """Loads the models and opens the index once; ``ask`` is safe to call from several threads."""

    def __init__(
        self, settings: Optional[Settings] = None, *, store: Optional[Store] = None, llm=None,
        embedder: Optional[Embedder] = None,
    ):
        self.settings = settings or get_settings()
        self.store = store or Store(self.settings, embedder or Embedder(self.settings))
        self.embedder = self.store.embedder
        self.retriever = HybridRetriever(self.store, self.settings)
        self.reranker = Reranker(self.store)
        self.reader = LLMAnswerer(self.settings, lambda: self.llm, self.retriever.tokenizer.stem)
        self._llm = llm
        self._llm_lock = threading.Lock()

    @property
    def llm(self):
        """The configured LlamaIndex LLM (built on first use), or None in extractive-only set-ups."""
        if self._llm is None and self.settings.llm != "none":
            with self._llm_lock:
                if self._llm is None:
                    from rag.llm import build_llm

                    self._llm = build_llm(self.settings)
        return self._llm

    def warm_up(self) -> None:
        """Build the BM25 index, run the encoder once and, in LLM mode, load the model: the first question is
        then as fast as the next."""
        self.retriever.bm25()
        self.embedder.embed_query("warm up")
        if self.settings.answer_mode == "llm":
            try:
                self.llm  # noqa: B018 (builds and loads it)
            except Exception as exc:  # the first question reports it, with the extractive fallback
                log.warning("could not load the LLM at start: %s", exc)

    def refresh(self) -> None:
        """Bring the keyword index up to the latest write now. A writer in this process calls it after each
        write: questions asked meanwhile answer from the previous version, and the next one sees the write."""
        self.retriever.bm25(wait=True)

    # --- asking -------------------------------------------------------------------------------------
    def ask(
        self, question: str, *, top_k: Optional[int] = None, mode: Optional[str] = None,
        history: Optional[History] = None, as_of: DateLike = None, since: DateLike = None,
        until: DateLike = None, sources: Optional[Iterable[str]] = None,
    ) -> Answer:
        """Answer ``question`` from the index (``history`` makes it a follow-up in a conversation).

        ``as_of`` (default today): the date the question is asked as of; no article published later is cited
        and time words ("this week") count back from it. ``since``/``until``: only articles published in
        those dates; ``sources``: only articles of these outlets. Dates: ``date`` objects or ``YYYY-MM-DD``.
        """
        scope = dict(as_of=as_of, since=since, until=until, sources=sources)
        answer = None
        for item in self._run(question, top_k=top_k, mode=mode, history=history, stream=False, scope=scope):
            answer = item
        return answer

    def ask_stream(
        self, question: str, *, top_k: Optional[int] = None, mode: Optional[str] = None,
        history: Optional[History] = None, as_of: DateLike = None, since: DateLike = None,
        until: DateLike = None, sources: Optional[Iterable[str]] = None,
    ) -> Iterator[Union[Reading, Waiting, str, Answer]]:
        """Yield, in LLM mode, a :class:`Reading` with the passages the model is given, a :class:`Waiting` each
        second while other questions hold the model, then the answer's text as the model writes it, then the
        final checked ``Answer``.

        In extractive mode the first and only delta is the whole answer text. The scope arguments are those
        of :meth:`ask`.
        """
        scope = dict(as_of=as_of, since=since, until=until, sources=sources)
        return self._run(question, top_k=top_k, mode=mode, history=history, stream=True, scope=scope)

    def ask_many(self, questions: Iterable[str], *, workers: int = 1, **kwargs) -> list[Answer]:
        """Answers to many questions, in order (``workers`` > 1 answers them in parallel threads)."""
        questions = list(questions)
        if workers <= 1:
            return [self.ask(q, **kwargs) for q in questions]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda q: self.ask(q, **kwargs), questions))

    def chat(self, question: str, history: Optional[History] = None, **kwargs) -> Answer:
        """Answer a follow-up question in the context of ``history``."""
        return self.ask(question, history=history or [], **kwargs)

    def condense(self, question: str, history: History) -> str:
        """A standalone version of a follow-up question, for retrieval (see :func:`rag.query.conversation.condense`)."""
        llm, options = self.llm, dict(stopwords=self.retriever.tokenizer.stopwords,
                                      max_chars=self.settings.max_question_chars)
        if llm is None:
            return condense(question, history, llm=None, **options)
        with self.reader.turns.join() as ticket:  # in line with the questions being answered
            free = ticket.wait(self.settings.llm_timeout)
            return condense(question, history, llm=llm if free else None, **options)

    # --- the stages ---------------------------------------------------------------------------------
    def _run(
        self, question, *, top_k, mode, history, stream, scope
    ) -> Iterator[Union[Reading, Waiting, str, Answer]]:
        started = time.perf_counter()
        question, notes = clean_question(question, self.settings.max_question_chars)
        mode = self._mode(mode)
        top_k = min(max(int(top_k), 1), MAX_TOP_K) if top_k is not None else self.settings.top_k
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone = self.condense(question, history) if history else question
        timings["condense"] = time.perf_counter() - t0
        scope = build_scope(standalone, **scope)
        evidence = self.retrieve(standalone, top_k, timings, scope)
        t0 = time.perf_counter()
        extractive = self.extract(standalone, evidence, scope)
        timings["extract"] = time.perf_counter() - t0
        answer = Answer(
            question=question, text=extractive.text, citations=extractive.citations, passages=evidence.passages,
            abstained=extractive.abstained, short_answer=extractive.short_answer, mode="extractive",
            timings=timings, notes=notes,
            retrieval_query=standalone, evidence_score=extractive.evidence_score,
            as_of=scope.as_of.isoformat(), time_scope=scope.describe(),
        )
        if extractive.abstained:
            answer.abstain_reason = NO_ANSWER
            if extractive.clash:
                answer.abstain_reason += f" The closest passage is about {extractive.clash}."
        newest = evidence.bm25.newest_in_scope(scope)
        if newest is not None:
            # Nothing indexed was published in the days the question asks about ("this week", asked in 2025 of
            # a 2022 archive): no article can report them, however well an older one matches the words.
            abstain(answer, empty_window_reason(scope, newest))
        reading = mode == "llm" and newest is None
        if reading:
            yield from self.reader.answer(answer, extractive, evidence.articles, stream)
        if not answer.abstained and answer.citations:
            # The question's most specific name is missing from the article the answer comes from: a near miss.
            name = unmentioned_name(standalone, answer.citations[0].article_id, evidence.bm25)
            if name is not None:
                abstain(answer, unmentioned_reason(name, evidence.bm25))
        if stream and not reading:
            yield answer.text
        timings["total"] = time.perf_counter() - started
        yield answer

    def _mode(self, mode: Optional[str]) -> str:
        mode = mode or self.settings.answer_mode
        if mode not in MODES:
            raise InvalidQuestion(f"unknown answer mode {mode!r}; use 'extractive' or 'llm'")
        if mode == "llm" and self.llm is None:
            raise LLMError("LLM answer mode needs an LLM: set RAG_LLM to llamacpp, openai or ollama")
        return mode

    def retrieve(self, question: str, top_k: int, timings: dict[str, float], scope: Optional[Scope] = None) -> Evidence:
        """The retrieve and rerank stages: the ``top_k`` best passages of current article versions that
        ``scope`` lets be cited."""
        t0 = time.perf_counter()
        # One version check serves retrieval and sentence scoring. It runs before the encoder: right after it,
        # the encoder's threads still hold the CPU and this round trip to Chroma takes several times longer.
        bm25 = self.retriever.bm25()
        q_vec = self.embedder.embed_query(question)
        timings["embed"] = time.perf_counter() - t0
        depth = max(top_k, self.settings.rerank_depth)
        fused = self.retriever.retrieve(question, q_vec, bm25, depth, timings, scope)
        t0 = time.perf_counter()
        passages = self.reranker.rerank(question, q_vec, fused, bm25, scope)[:top_k]
        records = self.store.get_articles({p.article_id for p in passages}, with_text=True)
        # An article deleted or replaced since retrieval must not be quoted at stale offsets.
        passages = [p for p in passages if p.article_id in records and chunk_is_current(p.chunk_id, records[p.article_id])]
        timings["rerank"] = time.perf_counter() - t0
        timings["retrieve"] = sum(timings[k] for k in ("embed", "dense", "bm25", "fuse", "rerank"))
        return Evidence(passages, records, bm25, q_vec)

    def extract(self, question: str, evidence: Evidence, scope: Optional[Scope] = None) -> ExtractiveResult:
        """The extract stage: score the passages' sentences and decide whether they answer; with ``scope``, only
        from the passages it lets answer (a "this week" question: that week's articles, when any is among them).
        In LLM mode the model reads the best of these sentences."""
        records = evidence.records
        return extract_answer(
            question, evidence.passages, evidence.articles, embedder=self.embedder, bm25=evidence.bm25,
            threshold=self.settings.abstain_threshold, question_embedding=evidence.question_embedding,
            sentence_vectors=lambda keys: self._stored_sentence_vectors(keys, records),
            sentences={r.article_id: r.sentences for r in records.values()},
            only=scope.answerable_from(evidence.passages) if scope is not None else None,
        )

    def _stored_sentence_vectors(self, keys: list[tuple[str, int]], records: dict[str, ArticleRecord]) -> dict:
        """Vectors the index stores for sentences given as (article id, start); ``records``: their articles."""
        chunks = []
        for article_id in {article_id for article_id, _ in keys}:
            record = records[article_id]
            holder = {start: chunk for start, _, chunk in record.sentences}
            wanted = {holder.get(start, -1) for a, start in keys if a == article_id}
            chunks += [chunk_id(article_id, record.sha256, chunk) for chunk in sorted(wanted) if chunk >= 0]
        return self.store.sentence_vectors(chunks)


def empty_window_reason(scope: Scope, newest: date) -> str:
    """Why a question whose time words point to days no indexed article was published in is not answered."""
    window = scope.window
    return (f"No indexed article was published {window.start} to {window.end}, the days \u201c{window.words}\u201d "
            f"points to as of {scope.as_of}; the newest one that may be cited is from {newest}. Ask as of an "
            "earlier date to read the question from then. The closest passages are shown as related.")


def clean_question(question, max_chars: int) -> tuple[str, list[str]]:
    """The question with invisible characters dropped and spaces collapsed, cut to ``max_chars`` (with a note)."""
    if not isinstance(question, str):
        raise InvalidQuestion("The question must be text.")
    # Control and format characters (NUL, zero-width spaces, direction marks) are dropped: invisible, they
    # would otherwise make an empty-looking question into one.
    question = " ".join("".join(ch for ch in question if unicodedata.category(ch) not in ("Cc", "Cf")
                                or ch.isspace()).split())
    if not question:
        raise InvalidQuestion("Please type a question.")
    notes = []
    if len(question) > max_chars:
        question = question[:max_chars].rsplit(" ", 1)[0] or question[:max_chars]
        notes.append(f"The question was longer than {max_chars} characters and was shortened.")
    return question, notes
