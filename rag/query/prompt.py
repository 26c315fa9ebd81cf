"""Prompt building blocks: numbered, fenced passages that fit the context window, and the follow-up rewrite.

Article text is data, never instructions: each passage sits inside a fence whose marker the passage text
cannot contain (any occurrence is neutralised), and the reader's rules (rag/reader.py) say that text inside
fences is quoted material to be ignored as instructions.
"""

from __future__ import annotations

from rag.core.types import Passage

FENCE_OPEN = "<<<PASSAGE {n}>>>"
FENCE_CLOSE = "<<<END {n}>>>"
CHARS_PER_TOKEN = 3.5  # conservative estimate for English news text with a BPE tokenizer


def neutralise(text: str) -> str:
    """``text`` with fence markers made harmless, so article text cannot close or open a passage fence."""
    return text.replace("<<<", "‹‹‹").replace(">>>", "›››")


def estimate_tokens(text: str) -> int:
    """Rough token count used to keep prompts inside the model's context window."""
    return int(len(text) / CHARS_PER_TOKEN) + 1


def fit_passages(passages: list[Passage], fixed: str, context_window: int, max_tokens: int) -> list[Passage]:
    """The leading passages that fit the window next to ``fixed`` (the rules and the question) and the
    answer budget."""
    budget = context_window - max_tokens - estimate_tokens(fixed) - 64
    kept: list[Passage] = []
    for passage in passages:
        cost = estimate_tokens(passage.title + passage.text) + 16
        if cost > budget:
            break
        kept.append(passage)
        budget -= cost
    return kept


def passages_block(passages: list[Passage]) -> str:
    """The passages as numbered fenced blocks, each with its title and (when known) its publish date."""
    blocks = []
    for n, p in enumerate(passages, 1):
        dated = f"Published: {p.published}\n" if p.published else ""
        blocks.append(
            f"{FENCE_OPEN.format(n=n)}\nTitle: {neutralise(p.title)}\n{dated}{neutralise(p.text)}\n"
            f"{FENCE_CLOSE.format(n=n)}"
        )
    return "\n\n".join(blocks)


CONDENSE_PROMPT = (
    "Rewrite the last question of this conversation as one standalone question that can be understood "
    "without the conversation. Reply with the question only.\n\n{history}\nLast question: {question}\n"
    "Standalone question:"
)
