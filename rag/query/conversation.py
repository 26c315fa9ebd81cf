"""Conversations: a follow-up question rewritten as a standalone one for retrieval."""

from __future__ import annotations

import logging
import re
from typing import Optional, Sequence, Union

from rag.query.prompt import CONDENSE_PROMPT

log = logging.getLogger(__name__)

# A conversation: (question, answer text) pairs, or Gradio-style {"role", "content"} messages.
History = Sequence[Union[tuple[str, str], dict]]
_FOLLOW_UP = re.compile(
    r"^\s*(?:and|but|also|so|what about|how about|then)\b|\b(?:it|its|they|them|their|he|she|his|her|this|that|"
    r"these|those|there|the company|the firm|the venture)\b",
    re.I,
)
TURNS_FOR_LLM = 3  # earlier turns the LLM sees when rewriting a follow-up
MIN_REWRITE_CHARS = 8  # a shorter LLM rewrite is not a question
SELF_CONTAINED_WORDS = 8  # a question longer than this without a referring word stands on its own
_WH_WORDS = {"who", "what", "which", "how", "when", "where", "why"}


def condense(question: str, history: History, *, llm, stopwords: frozenset[str], max_chars: int) -> str:
    """A standalone version of a follow-up question, for retrieval.

    With an LLM, the LLM rewrites it. Without one, a question that refers back ("And how much does BAIC
    hold?") gets the previous question's subject terms appended.
    """
    turns = _turns(history)
    if not turns:
        return question
    if llm is not None:
        try:
            transcript = "\n".join(f"User: {q}\nAssistant: {a}" for q, a in turns[-TURNS_FOR_LLM:])
            rewritten = llm.complete(CONDENSE_PROMPT.format(history=transcript, question=question)).text
            rewritten = " ".join(rewritten.strip().split("\n")[0].split())
            if MIN_REWRITE_CHARS <= len(rewritten) <= 2 * max_chars:
                return rewritten
        except Exception as exc:  # a failed rewrite falls back to the heuristic below
            log.warning("could not condense the follow-up question with the LLM: %s", exc)
    previous = turns[-1][0]
    if not _FOLLOW_UP.search(question) and len(question.split()) > SELF_CONTAINED_WORDS:
        return question
    own = {w.lower() for w in re.findall(r"\w+", question)}
    carried = [w for w in re.findall(r"[\w'-]+", previous) if w.lower() not in own and w.lower() not in stopwords]
    carried = [w for w in carried if w.lower() not in _WH_WORDS]
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
