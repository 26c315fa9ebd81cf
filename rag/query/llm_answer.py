"""The LLM stages of a question: give the reader model the windows around the likeliest sentences, then judge
its reply (a phrase checked against the passages, NOT FOUND, or a phrase found nowhere) into the Answer. A NOT
FOUND with strong retrieval evidence is asked again, the reply begun as "ANSWER:" (llama.cpp only).

The prompt and the reply parsing are in :mod:`rag.query.reader`, the grounding in :mod:`rag.query.grounding`;
the calibrated rule that combines the model's reply with the retrieval evidence is in :meth:`LLMAnswerer.judge`
(README, Quality).
"""

from __future__ import annotations

import time
from typing import Callable, Iterator, Optional, Union

from rag.core.errors import LLMError
from rag.core.settings import Settings
from rag.core.text import ABSTAIN_TEXT, NO_ANSWER
from rag.core.turns import Ticket, Turns, Waiting
from rag.core.types import Answer, Citation, Passage, Reading
from rag.query.answer import ExtractiveResult
from rag.query.names import full_name
from rag.query.prompt import fit_passages
from rag.query.grounding import Grounding, find_anywhere, find_phrase, ground, grounding_text, injected
from rag.query.reader import READER_SYSTEM, parse_reply, partial_phrase, reader_messages, reader_windows


WAIT_UPDATE_S = 1.0  # how often a streamed answer waiting for the model says where it stands
REPLY_START = "ANSWER:"  # what a reply asked again after NOT FOUND is made to begin with
REASKED = "--- asked again, the reply begun for it ---"  # between the two replies in Answer.llm_reply
REASK_NOTE = ("The model first found no answer; asked again for its best phrase, it named one that the passages "
              "hold, shown here.")
REASK_AGREED_NOTE = ("The model first found no answer; asked again for its best phrase, it named one that the "
                     "passages hold and the extractive answer also gives, shown here.")


class LLMAnswerer:
    """Answers with the reader model; ``llm`` is called to get the (lazily built) LlamaIndex LLM. Questions
    take turns at the model, first come first served (``turns``: ``llm_concurrency`` at once)."""

    def __init__(self, settings: Settings, llm: Callable[[], object], stem: Callable[[str], str]):
        self.settings = settings
        self._llm = llm
        self._stem = stem
        self.turns = Turns(settings.llm_concurrency)

    def answer(
        self, answer: Answer, extractive: ExtractiveResult, articles: dict[str, str], stream: bool
    ) -> Iterator[Union[Reading, Waiting, str]]:
        """Fill ``answer`` from the model's reply; when streaming, yield a :class:`Reading` with the passages the
        model is given, a :class:`Waiting` every second while other questions hold the model, then the answer
        phrase as it is written, then (if that was not the final text) the text.

        Abstains without a model call when the retrieval evidence is too weak (or about another period). On an
        LLM failure the extractive answer is kept, with a note (unless ``llm_fallback`` is "none").
        """
        settings = self.settings
        if extractive.clash or extractive.evidence_score < settings.llm_abstain_threshold:
            abstain(answer, answer.abstain_reason or NO_ANSWER)
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
        if stream:
            yield Reading(answer.question, passages)
        shown: list[str] = []  # the answer phrase streamed so far, as one string
        ticket = self.turns.join()
        try:
            waited = yield from self._wait_for_turn(ticket, stream, answer.timings)
            if stream and waited:  # its turn now: the face goes back from "waiting" to "reading"
                yield Reading(answer.question, passages)
            t0 = time.perf_counter()
            messages = reader_messages(answer.retrieval_query, passages, answer.as_of) if passages else []
            reply_text = yield from self._generate(messages, stream, shown)
            reasked = None
            if parse_reply(reply_text).not_found and extractive.evidence_score >= min(
                settings.llm_reask_threshold, settings.llm_agree_threshold
            ):
                reasked = self._reask(messages)
        except Exception as exc:
            from rag.llm import as_llm_error

            error = as_llm_error(exc, settings)
            answer.timings["generate"] = time.perf_counter() - t0
            if settings.llm_fallback != "extractive":
                raise error from exc
            answer.notes.append(f"LLM failed ({error}); the extractive answer is shown instead.")
            if stream:
                yield answer.text
            return
        finally:
            ticket.release()
        answer.timings["generate"] = time.perf_counter() - t0
        answer.llm_reply = reply_text if reasked is None else f"{reply_text}\n{REASKED}\n{reasked}"
        self.judge(answer, extractive, reply_text, passages, origins, articles, reasked)
        if stream and not shown:  # a streamed phrase was a preview: the final Answer replaces it
            yield answer.text

    def _wait_for_turn(self, ticket: Ticket, stream: bool, timings: dict[str, float]) -> Iterator[Waiting]:
        """Block until ``ticket`` holds a turn at the model; when streaming, yield where it stands meanwhile.
        Returns whether it had to wait; raises LLMError after ``llm_timeout`` seconds in line."""
        t0 = time.perf_counter()
        timeout = self.settings.llm_timeout
        deadline = time.monotonic() + timeout
        try:
            if ticket.wait(0):
                return False
            while True:
                if stream:
                    yield ticket.status()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LLMError(f"the reader model stayed busy with other questions for {timeout:g} s")
                if ticket.wait(min(WAIT_UPDATE_S, remaining) if stream else remaining):
                    return True
        finally:
            timings["queue"] = time.perf_counter() - t0

    def _generate(self, messages: list, stream: bool, shown: list[str]) -> Iterator[str]:
        """Ask the model the reader's chat (:func:`reader_messages`; empty when no passage fit); yields the growing
        answer phrase when streaming (recorded in ``shown``); returns the reply."""
        if not messages:
            raise LLMError("the passages do not fit the LLM's context window")
        if not stream:
            return self._llm().chat(messages).message.content or ""
        reply_text = ""
        for chunk in self._llm().stream_chat(messages):
            reply_text += chunk.delta or ""
            phrase = partial_phrase(reply_text)  # the answer phrase as it is written, for the UI
            so_far = "".join(shown)
            if phrase.startswith(so_far) and len(phrase) > len(so_far):
                shown.append(phrase[len(so_far):])
                yield shown[-1]
        return reply_text

    def _reask(self, messages: list) -> Optional[str]:
        """The model's reply to the same chat when made to begin with "ANSWER:", or None where the backend
        cannot begin a reply (only llama.cpp can: a chat API closes an assistant message it is given).

        A 1.5B model says NOT FOUND too readily: when the retrieval evidence is strong, its best phrase is
        often right (README, Quality), and it is still shown only when it is found in a passage.
        """
        llm = self._llm()
        if not hasattr(llm, "continue_chat"):
            return None
        return llm.continue_chat(messages, REPLY_START)

    def judge(self, answer: Answer, extractive: ExtractiveResult, reply_text: str, passages: list[Passage],
              origins: list[int], articles: dict[str, str], reasked: Optional[str] = None) -> None:
        """Turn the model's reply into the answer: its phrase found in a passage is the answer; NOT FOUND
        gives way to the phrase the model names when asked again (``reasked``) if that is found in a passage
        (under ``llm_reask_threshold``, only if the extractive answer gives it too: :func:`agrees`), else
        abstains unless the evidence is strong; a phrase found nowhere is never shown (the calibrated rule
        of README, Quality)."""
        reply = parse_reply(reply_text)
        grounding = ground(reply, passages, articles, answer.retrieval_query, self._stem)
        answer.mode = "llm"
        strong = not extractive.abstained and extractive.evidence_score >= self.settings.llm_not_found_override
        if reply.not_found and reasked is not None:
            again = ground(parse_reply(reasked), passages, articles, answer.retrieval_query, self._stem)
            agreed = again is not None and agrees(again, passages, articles, extractive)
            evidence = extractive.evidence_score  # the whole rule here: ``answer`` re-asks from the lower threshold
            if again is not None and ((agreed and evidence >= self.settings.llm_agree_threshold)
                                      or evidence >= self.settings.llm_reask_threshold):
                answer.notes.append(REASK_AGREED_NOTE if agreed else REASK_NOTE)
                grounded_answer(answer, passages[again.passage_index], origins[again.passage_index], articles, again)
                return
        if reply.not_found and strong:
            # A small model says NOT FOUND too readily: with evidence this strong the extractive answer stands.
            answer.mode = "extractive"
            answer.notes.append("The model found no answer in the passages, but the evidence is strong; "
                                "the extractive answer is shown instead.")
        elif reply.not_found:
            abstain(answer, "The model found no answer in the passages; the closest ones are shown as related.")
        elif grounding is None:
            # The model named no phrase of the passages (often a list or a paraphrase), or one only an injected
            # instruction holds: its words cannot stand, so the extractive answer, which stands on its own
            # evidence, is shown instead (or it abstains).
            where = ("comes only from text in the passages that gives instructions to an assistant"
                     if injected(reply, passages, articles) else "is not in the article of the passage it names"
                     if reply.passage and find_anywhere(reply, passages, articles) else "is in none of the passages")
            if extractive.abstained:
                abstain(answer, f"The model's answer \u201c{reply.phrase[:200]}\u201d {where}, so it is not shown; "
                                "the closest passages are shown as related.")
            else:
                answer.mode = "extractive"
                answer.notes.append(f"The model's answer \u201c{reply.phrase[:200]}\u201d {where}; the extractive "
                                    "answer is shown instead.")
        else:
            grounded_answer(answer, passages[grounding.passage_index], origins[grounding.passage_index], articles,
                            grounding)


def agrees(g: Grounding, passages: list[Passage], articles: dict[str, str], extractive: ExtractiveResult) -> bool:
    """Whether the phrase grounded as ``g`` is also in the extractive answer (its short answer or the sentences
    it quotes): two readers that pick their answers differently name the same thing.

    Only a re-asked phrase is judged by it: from evidence ``llm_agree_threshold`` on, such a phrase is shown
    when the extractive answer agrees with it, and from ``llm_reask_threshold`` on, whether or not it does
    (both fitted by ``bench/reader_calibration.py``; README, Quality).
    """
    if extractive.abstained:
        return False
    return find_phrase(extractive.text, g.phrase(grounding_text(passages[g.passage_index], articles))) is not None


def abstain(answer: Answer, reason: str) -> None:
    """Make ``answer`` an abstention for ``reason`` (its passages stay, shown as related)."""
    answer.abstained = True
    answer.abstain_reason = reason
    answer.text = ABSTAIN_TEXT
    answer.short_answer = None
    answer.citations = []


def grounded_answer(answer: Answer, passage: Passage, origin: int, articles: dict[str, str], g: Grounding) -> None:
    """The displayed answer and its one citation, built from the exact span the model's phrase matched in
    ``passage`` (a window cut from the retrieved passage number ``origin``)."""
    text = articles[passage.article_id]  # the reader's windows are cut from these texts
    short, sentence = g.phrase(text), text[g.sentence_start : g.sentence_end]
    if short == sentence:
        answer.text = f"{sentence} [1]"
    else:
        name = None if g.shown else full_name(short, text, (g.sentence_start, g.sentence_end), answer.question)
        if name is not None:  # "Biden" answered, the article names him "President Joe Biden"
            answer.notes.append(f"\u201c{short}\u201d is given in full as the article names it.")
            short = text[name[0] : name[1]]
        answer.text = f"{short} \u2014 {sentence} [1]"
    answer.abstained = False
    answer.abstain_reason = ""
    answer.short_answer = short
    answer.citations = [Citation(
        n=1, article_id=passage.article_id, title=passage.title, source=passage.source, quote=sentence,
        start_char_idx=g.sentence_start, end_char_idx=g.sentence_end, score=round(passage.score, 4),
        page=passage.page, passage_index=origin, published=passage.published, site=passage.site,
    )]
