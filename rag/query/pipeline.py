"""The one code path behind the UI, the CLI and evaluation: question -> retrieval -> answer -> checked citations."""

from __future__ import annotations

import logging
import re
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Optional, Sequence, Union

from rag.core.text import ABSTAIN_TEXT
from rag.query.answer import extract_answer
from rag.core.errors import InvalidQuestion, LLMError
from rag.query.prompt import CONDENSE_PROMPT, fit_passages
from rag.query.reader import READER_SYSTEM, ground, parse_reply, partial_phrase, reader_prompt, reader_windows
from rag.query.retrieve import HybridRetriever
from rag.core.settings import Settings, get_settings
from rag.index.embedder import Embedder
from rag.index.store import Store, chunk_id
from rag.core.types import Answer, Citation, Reading

log = logging.getLogger(__name__)

NO_ANSWER = "No passage answers the question; the closest passages are shown as related."

# A conversation: (question, answer text) pairs, or Gradio-style {"role", "content"} messages.
History = Sequence[Union[tuple[str, str], dict]]
_FOLLOW_UP = re.compile(
    r"^\s*(?:and|but|also|so|what about|how about|then)\b|\b(?:it|its|they|them|their|he|she|his|her|this|that|"
    r"these|those|there|the company|the firm|the venture)\b",
    re.I,
)


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
                    from rag.llm.backends import build_llm

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
    ) -> Iterator[Union[Reading, str, Answer]]:
        """Yield, in LLM mode, a :class:`Reading` with the passages the model is given, then the answer's text
        as the model writes it, then the final checked ``Answer``.

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
            answer.abstain_reason = NO_ANSWER
        if extractive.abstained and extractive.clash:
            answer.abstain_reason += f" The closest passage is about {extractive.clash}."
        if mode == "llm":
            yield from self._llm_answer(answer, extractive, articles, stream)
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

    def _llm_answer(self, answer: Answer, extractive, articles: dict[str, str], stream: bool) -> Iterator[str]:
        """Answer with the LLM reader (:mod:`rag.query.reader`): a short phrase it names, checked against the passages.

        Abstains without a model call when the retrieval evidence is too weak (or about another period); the
        model's reply is then judged by :meth:`_judge_reply`. On an LLM failure the extractive answer is kept,
        with a note.
        """
        from llama_index.core.llms import ChatMessage

        settings = self.settings
        if extractive.clash or extractive.evidence_score < settings.llm_abstain_threshold:
            self._abstain(answer, answer.abstain_reason or NO_ANSWER)
            if stream:
                yield answer.text
            return
        t0 = time.perf_counter()
        windows = reader_windows(extractive.candidates, answer.passages, articles, settings.llm_passages)
        passages = fit_passages(
            [w for w, _ in windows], READER_SYSTEM + answer.retrieval_query, settings.llm_context_window,
            settings.llm_max_tokens,
        )
        origins = [origin for _, origin in windows[: len(passages)]]
        messages = [
            ChatMessage(role="system", content=READER_SYSTEM),
            ChatMessage(role="user", content=reader_prompt(answer.retrieval_query, passages)),
        ]
        if stream:
            yield Reading(answer.question, passages)
        shown = ""  # the answer phrase streamed so far
        try:
            if not passages:
                raise LLMError("the passages do not fit the LLM's context window")
            if stream:
                reply_text = ""
                for chunk in self.llm.stream_chat(messages):
                    reply_text += chunk.delta or ""
                    phrase = partial_phrase(reply_text)  # the answer phrase as it is written, for the UI
                    if phrase.startswith(shown) and len(phrase) > len(shown):
                        yield phrase[len(shown):]
                        shown = phrase
            else:
                reply_text = self.llm.chat(messages).message.content or ""
        except Exception as exc:
            from rag.llm.backends import as_llm_error

            error = as_llm_error(exc, settings)
            answer.timings["generate"] = time.perf_counter() - t0
            if settings.llm_fallback != "extractive":
                raise error from exc
            answer.notes.append(f"LLM failed ({error}); the extractive answer is shown instead.")
            if stream:
                yield answer.text
            return
        answer.timings["generate"] = time.perf_counter() - t0
        answer.llm_reply = reply_text
        self._judge_reply(answer, extractive, reply_text, passages, origins, articles)
        if stream and not shown:  # a streamed phrase was a preview: the final Answer replaces it
            yield answer.text

    def _judge_reply(self, answer: Answer, extractive, reply_text: str, passages: list, origins: list[int],
                     articles: dict[str, str]) -> None:
        """Turn the model's reply into the answer: its phrase found in a passage is the answer; NOT FOUND
        abstains unless the evidence is strong; a phrase found nowhere is never shown (the calibrated rule of
        README, Quality)."""
        settings = self.settings
        reply = parse_reply(reply_text)
        grounding = ground(reply, passages, articles, answer.retrieval_query, self.retriever.tokenizer.stem)
        answer.mode = "llm"
        if reply.not_found and not extractive.abstained and extractive.evidence_score >= settings.llm_not_found_override:
            # A small model says NOT FOUND too readily: with evidence this strong the extractive answer stands.
            answer.mode = "extractive"
            answer.notes.append("The model found no answer in the passages, but the evidence is strong; "
                                "the extractive answer is shown instead.")
        elif reply.not_found:
            self._abstain(answer, "The model found no answer in the passages; the closest ones are shown as related.")
        elif grounding is None and not extractive.abstained:
            # The model named no phrase of the passages (often a list or a paraphrase): its words cannot be
            # checked, so the extractive answer, which stands on its own evidence, is shown instead.
            answer.mode = "extractive"
            answer.notes.append(f"The model's answer \u201c{reply.phrase[:200]}\u201d is in none of the passages; "
                                "the extractive answer is shown instead.")
        elif grounding is None:
            self._abstain(answer, f"The model's answer \u201c{reply.phrase[:200]}\u201d is in none of the passages, "
                                  "so it is not shown; the closest passages are shown as related.")
        else:
            self._grounded_answer(answer, passages, origins, articles, grounding)

    @staticmethod
    def _abstain(answer: Answer, reason: str) -> None:
        answer.abstained = True
        answer.abstain_reason = reason
        answer.text = ABSTAIN_TEXT
        answer.short_answer = None
        answer.citations = []

    @staticmethod
    def _grounded_answer(answer: Answer, passages: list, origins: list[int], articles: dict[str, str], g) -> None:
        """The displayed answer and its one citation, built from the exact span the model's phrase matched."""
        passage = passages[g.passage_index]
        text = articles[passage.article_id]  # the reader's windows are cut from these texts
        short, sentence = text[g.start : g.end], text[g.sentence_start : g.sentence_end]
        answer.abstained = False
        answer.abstain_reason = ""
        answer.short_answer = short
        answer.text = f"{sentence} [1]" if short == sentence else f"{short} \u2014 {sentence} [1]"
        answer.citations = [Citation(
            n=1, article_id=passage.article_id, title=passage.title, source=passage.source, quote=sentence,
            start_char_idx=g.sentence_start, end_char_idx=g.sentence_end, score=round(passage.score, 4),
            page=passage.page, passage_index=origins[g.passage_index],
        )]

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
