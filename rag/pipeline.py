"""The one code path behind the UI, the CLI and evaluation: question -> retrieval -> answer -> checked citations."""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Optional, Sequence, Union

from rag.answer import extract_answer
from rag.citations import check_citations
from rag.errors import InvalidQuestion, LLMError
from rag.prompt import CONDENSE_PROMPT, SYSTEM_PROMPT, fit_passages, user_prompt
from rag.retrieve import HybridRetriever
from rag.settings import Settings, get_settings
from rag.store import Embedder, Store, chunk_id
from rag.types import Answer

log = logging.getLogger(__name__)

# A conversation: (question, answer text) pairs, or Gradio-style {"role", "content"} messages.
History = Sequence[Union[tuple[str, str], dict]]
_FOLLOW_UP = re.compile(
    r"^\s*(?:and|but|also|so|what about|how about|then)\b|\b(?:it|its|they|them|their|he|she|his|her|this|that|"
    r"these|those|there|the company|the firm|the venture)\b",
    re.I,
)


class Pipeline:
    """Loads the models and opens the index once; ``ask`` is safe to call from several threads."""

    def __init__(self, settings: Optional[Settings] = None, *, llm=None, embedder: Optional[Embedder] = None):
        self.settings = settings or get_settings()
        self.embedder = embedder or Embedder(self.settings)
        self.store = Store(self.settings, self.embedder)
        self.retriever = HybridRetriever(self.store, self.settings)
        self._llm = llm
        self._llm_lock = threading.Lock()
        self._ingestor = None

    # --- plumbing -----------------------------------------------------------------------------------
    @property
    def llm(self):
        """The configured LlamaIndex LLM (built on first use), or None in extractive-only set-ups."""
        if self._llm is None and self.settings.llm != "none":
            with self._llm_lock:
                if self._llm is None:
                    from rag.llms import build_llm

                    self._llm = build_llm(self.settings)
        return self._llm

    @property
    def ingestor(self):
        """An Ingestor writing into this pipeline's index (shares the loaded embedder)."""
        if self._ingestor is None:
            from ingest.pipeline import Ingestor

            self._ingestor = Ingestor(self.store, self.settings)
        return self._ingestor

    def ensure_corpus(self, progress: bool = True):
        """Ingest the default corpus when the index is empty; returns the IngestReport or None."""
        if self.store.articles.count() == 0 and self.settings.corpus_dir.is_dir():
            log.info("empty index: ingesting the default corpus from %s", self.settings.corpus_dir)
            return self.ingestor.ingest([self.settings.corpus_dir], progress=progress)
        return None

    def warm_up(self) -> None:
        """Build the BM25 index and run the encoder once, so the first question is fast."""
        self.retriever.bm25()
        self.embedder.embed_query("warm up")

    # --- asking -------------------------------------------------------------------------------------
    def ask(
        self, question: str, *, top_k: Optional[int] = None, mode: Optional[str] = None,
        history: Optional[History] = None,
    ) -> Answer:
        """Answer ``question`` from the index (``history`` makes it a follow-up in a conversation)."""
        answer = None
        for item in self._run(question, top_k=top_k, mode=mode, history=history, stream=False):
            answer = item
        return answer

    def ask_stream(
        self, question: str, *, top_k: Optional[int] = None, mode: Optional[str] = None,
        history: Optional[History] = None,
    ) -> Iterator[Union[str, Answer]]:
        """Yield the answer's text deltas as the LLM produces them, then the final checked ``Answer``.

        In extractive mode the first and only delta is the whole answer text.
        """
        return self._run(question, top_k=top_k, mode=mode, history=history, stream=True)

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

    # --- the stages ---------------------------------------------------------------------------------
    def _run(self, question, *, top_k, mode, history, stream) -> Iterator[Union[str, Answer]]:
        started = time.perf_counter()
        question, notes = self._clean_question(question)
        mode = mode or self.settings.answer_mode
        if top_k is not None:
            top_k = min(max(int(top_k), 1), 50)
        if mode not in ("extractive", "llm"):
            raise InvalidQuestion(f"unknown answer mode {mode!r}; use 'extractive' or 'llm'")
        if mode == "llm" and self.llm is None:
            raise LLMError("LLM answer mode needs an LLM: set RAG_LLM to llamacpp, openai or ollama")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone = self.condense(question, history) if history else question
        timings["condense"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        # One version check serves retrieval and sentence scoring. It runs before the encoder: right after it,
        # the encoder's threads still hold the CPU and this round trip to Chroma takes several times longer.
        bm25 = self.retriever.bm25()
        q_vec = self.embedder.embed_query(standalone)
        passages, _ = self.retriever.retrieve(standalone, top_k=top_k, query_embedding=q_vec, bm25=bm25)
        records = self.store.get_articles({p.article_id for p in passages}, with_text=True)
        # An article deleted or replaced since retrieval must not be quoted at stale offsets.
        passages = [
            p for p in passages
            if p.article_id in records and p.chunk_id.split("#")[-2] == records[p.article_id].sha256[:16]
        ]
        articles = {r.article_id: r.text or "" for r in records.values()}
        timings["retrieve"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        extractive = extract_answer(
            standalone, passages, articles, embedder=self.embedder,
            bm25=bm25, threshold=self.settings.abstain_threshold, question_embedding=q_vec,
            sentence_vectors=lambda keys: self._stored_sentence_vectors(keys, records),
            sentences={r.article_id: r.sentences for r in records.values()},
        )
        timings["rerank"] = time.perf_counter() - t0
        answer = Answer(
            question=question, text=extractive.text, citations=extractive.citations, passages=passages,
            abstained=extractive.abstained, mode="extractive", timings=timings, notes=notes,
            retrieval_query=standalone, evidence_score=extractive.evidence_score,
        )
        if extractive.abstained:
            answer.notes.append("No passage answers the question; the closest passages are shown as related.")
        if extractive.abstained and extractive.clash:
            answer.notes.append(f"The closest passage is about {extractive.clash}.")
        if mode == "llm" and not extractive.abstained:
            yield from self._llm_answer(answer, articles, stream)
        elif stream:
            yield answer.text
        timings["total"] = time.perf_counter() - started
        yield answer

    def _stored_sentence_vectors(self, keys: list[tuple[str, int]], records: dict) -> dict:
        """Vectors the index stores for sentences given as (article id, start); ``records``: their articles."""
        chunks = []
        for article_id in {article_id for article_id, _ in keys}:
            record = records[article_id]
            holder = {start: chunk for start, _, chunk in record.sentences or []}
            wanted = {holder.get(start, -1) for a, start in keys if a == article_id}
            chunks += [chunk_id(article_id, record.sha256, chunk) for chunk in sorted(wanted) if chunk >= 0]
        return self.store.sentence_vectors(chunks)

    def _llm_answer(self, answer: Answer, articles: dict[str, str], stream: bool) -> Iterator[str]:
        """Replace ``answer``'s text and citations by the LLM's, checked; fall back to extractive on failure."""
        from llama_index.core.llms import ChatMessage

        t0 = time.perf_counter()
        passages = fit_passages(
            answer.passages, answer.retrieval_query, self.settings.llm_context_window, self.settings.llm_max_tokens
        )
        if len(passages) < len(answer.passages):
            answer.notes.append(f"{len(answer.passages) - len(passages)} passage(s) left out to fit the LLM's context.")
        messages = [
            ChatMessage(role="system", content=SYSTEM_PROMPT),
            ChatMessage(role="user", content=user_prompt(answer.retrieval_query, passages)),
        ]
        text = ""
        try:
            if not passages:
                raise LLMError("the passages do not fit the LLM's context window")
            if stream:
                for chunk in self.llm.stream_chat(messages):
                    delta = chunk.delta or ""
                    text += delta
                    if delta:
                        yield delta
            else:
                text = self.llm.chat(messages).message.content or ""
        except Exception as exc:
            from rag.llms import as_llm_error

            error = as_llm_error(exc, self.settings)
            answer.timings["generate"] = time.perf_counter() - t0
            if self.settings.llm_fallback != "extractive":
                raise error from exc
            answer.notes.append(f"LLM failed ({error}); the extractive answer is shown instead.")
            if stream:
                yield "\n\n" + answer.text if text else answer.text
            return
        answer.timings["generate"] = time.perf_counter() - t0
        checked = check_citations(text, passages, articles, self.embedder, self.retriever.tokenizer)
        if checked.invalid_markers:
            answer.notes.append(f"Removed citation markers that point to no passage: {checked.invalid_markers}.")
        if not checked.citations:
            answer.notes.append("The LLM cited no valid passage; the extractive answer is shown instead.")
            if stream:
                yield "\n\n" + answer.text
            return
        answer.mode = "llm"
        answer.text = checked.text
        answer.citations = checked.citations
        answer.unsupported = checked.unsupported
        if checked.unsupported:
            answer.notes.append(f"{len(checked.unsupported)} sentence(s) are not supported by the passages they cite.")

    def _clean_question(self, question) -> tuple[str, list[str]]:
        if not isinstance(question, str):
            raise InvalidQuestion("The question must be text.")
        # Control and format characters (NUL, zero-width spaces, direction marks) are dropped: invisible, they
        # would otherwise make an empty-looking question into one.
        question = " ".join("".join(ch for ch in question if unicodedata.category(ch) not in ("Cc", "Cf")
                                    or ch.isspace()).split())
        if not question:
            raise InvalidQuestion("Please type a question.")
        notes = []
        limit = self.settings.max_question_chars
        if len(question) > limit:
            question = question[:limit].rsplit(" ", 1)[0] or question[:limit]
            notes.append(f"The question was longer than {limit} characters and was shortened.")
        return question, notes

    def condense(self, question: str, history: History) -> str:
        """A standalone version of a follow-up question, for retrieval.

        With an LLM, the LLM rewrites it. Without one, a question that refers back ("And how much does BAIC
        hold?") gets the previous question's subject terms appended.
        """
        turns = _turns(history)
        if not turns:
            return question
        if self.llm is not None:
            try:
                transcript = "\n".join(f"User: {q}\nAssistant: {a}" for q, a in turns[-3:])
                rewritten = self.llm.complete(CONDENSE_PROMPT.format(history=transcript, question=question)).text
                rewritten = " ".join(rewritten.strip().split("\n")[0].split())
                if 8 <= len(rewritten) <= 2 * self.settings.max_question_chars:
                    return rewritten
            except Exception as exc:  # a failed rewrite falls back to the heuristic below
                log.warning("could not condense the follow-up question with the LLM: %s", exc)
        previous = turns[-1][0]
        if not _FOLLOW_UP.search(question) and len(question.split()) > 8:
            return question
        own = {w.lower() for w in re.findall(r"\w+", question)}
        stop = self.retriever.tokenizer.stopwords
        carried = [w for w in re.findall(r"[\w'-]+", previous) if w.lower() not in own and w.lower() not in stop]
        carried = [w for w in carried if w.lower() not in {"who", "what", "which", "how", "when", "where", "why"}]
        return f"{question} ({' '.join(dict.fromkeys(carried))})" if carried else question


def _turns(history: History) -> list[tuple[str, str]]:
    """(question, answer) pairs from tuples or role/content messages."""
    turns: list[tuple[str, str]] = []
    pending: Optional[str] = None
    for item in history or []:
        if isinstance(item, dict):
            content = item.get("content")
            content = content if isinstance(content, str) else str(content or "")
            if item.get("role") == "user":
                pending = content
            elif item.get("role") == "assistant" and pending is not None:
                turns.append((pending, content))
                pending = None
        else:
            q, a = item
            turns.append((str(q), str(a or "")))
    if pending is not None:
        turns.append((pending, ""))
    return turns


# --- the module-level API (a lazily built default pipeline, replaceable for tests) ---------------------
_default: Optional[Pipeline] = None
_default_lock = threading.Lock()


def default_pipeline() -> Pipeline:
    """The process-wide Pipeline built from default settings (the default corpus ingested if empty)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                pipeline = Pipeline()
                pipeline.ensure_corpus(progress=False)
                _default = pipeline
    return _default


def set_default_pipeline(pipeline: Optional[Pipeline]) -> None:
    """Replace (or with None, forget) the pipeline behind ``ask``/``ask_many``/``chat``."""
    global _default
    _default = pipeline


def ask(question: str, **kwargs) -> Answer:
    """Answer a question with the default pipeline."""
    return default_pipeline().ask(question, **kwargs)


def ask_many(questions: Iterable[str], **kwargs) -> list[Answer]:
    """Answer many questions with the default pipeline."""
    return default_pipeline().ask_many(questions, **kwargs)


def ask_stream(question: str, **kwargs) -> Iterator[Union[str, Answer]]:
    """Stream an answer with the default pipeline (text deltas, then the Answer)."""
    return default_pipeline().ask_stream(question, **kwargs)


def chat(question: str, history: Optional[History] = None, **kwargs) -> Answer:
    """Answer a follow-up question with the default pipeline."""
    return default_pipeline().chat(question, history, **kwargs)
