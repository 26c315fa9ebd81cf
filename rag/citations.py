"""Checking an LLM's ``[n]`` citation markers against the passages it was given.

Markers that point to no passage are removed; each answer sentence is checked against the passages it
cites (share of its content words found in the passage, or embedding similarity) and flagged when the
support is weak; each valid marker becomes a Citation whose quote is the cited passage's sentence closest
to the claim, an exact span of the article.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from rag.retrieve import Tokenizer
from rag.sentences import sentence_spans
from rag.store import Embedder
from rag.types import Citation, Passage, SentenceCheck

MARKER = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\]")
OVERLAP_SUPPORT = 0.5  # share of the sentence's content words found in the passage
SIMILARITY_SUPPORT = 0.55  # or cosine similarity between sentence and passage sentence


@dataclass
class CheckedAnswer:
    text: str  # the answer with invalid markers removed and valid ones renumbered in order of appearance
    citations: list[Citation]
    sentences: list[SentenceCheck]
    invalid_markers: list[int]

    @property
    def unsupported(self) -> list[SentenceCheck]:
        return [s for s in self.sentences if s.citations and not s.supported]


def markers_in(text: str) -> list[int]:
    """Every marker number in ``text``, in order (``[1, 3]`` counts as 1 and 3)."""
    return [int(n) for m in MARKER.finditer(text) for n in re.split(r"\s*,\s*", m.group(1))]


def _answer_sentences(text: str) -> list[str]:
    # Split after the markers that close a sentence: "... 51% [1]. BAIC ..." -> two sentences.
    return [text[s:e] for s, e in sentence_spans(text)]


def check_citations(
    answer: str, passages: list[Passage], articles: dict[str, str], embedder: Embedder, tokenizer: Tokenizer
) -> CheckedAnswer:
    """Validate ``answer``'s markers against ``passages`` (numbered from 1)."""
    invalid = sorted({n for n in markers_in(answer) if not 1 <= n <= len(passages)})

    def keep_valid(match: re.Match) -> str:
        valid = [n for n in (int(x) for x in re.split(r"\s*,\s*", match.group(1))) if 1 <= n <= len(passages)]
        return "[" + ", ".join(str(n) for n in valid) + "]" if valid else ""

    cleaned = re.sub(r"\s+([.,;:!?])", r"\1", MARKER.sub(keep_valid, answer)).strip()
    # Renumber citations in order of first appearance: the UI lists [1], [2], ... in reading order.
    # Removing "[7]" from "[[7]9]" can expose a new marker: repeat until nothing changes.
    while True:
        again = MARKER.sub(keep_valid, cleaned)
        if again == cleaned:
            break
        cleaned = again
    renumber: dict[int, int] = {}
    for n in markers_in(cleaned):
        renumber.setdefault(n, len(renumber) + 1)
    cleaned = MARKER.sub(
        lambda m: "[" + ", ".join(str(renumber[int(x)]) for x in re.split(r"\s*,\s*", m.group(1))) + "]", cleaned
    )
    by_new = {new: passages[old - 1] for old, new in renumber.items()}
    sentences: list[SentenceCheck] = []
    best_quote: dict[int, tuple[float, int, int, str]] = {}
    for sentence in _answer_sentences(cleaned):
        cited = list(dict.fromkeys(markers_in(sentence)))
        claim = MARKER.sub("", sentence).strip()
        if not cited or not claim:
            sentences.append(SentenceCheck(sentence, cited, supported=not cited, support=0.0))
            continue
        claim_terms = set(tokenizer(claim))
        claim_vec = embedder.encode([claim])[0]
        best_overlap = best_sim = 0.0
        for n in cited:
            passage = by_new[n]
            text = articles.get(passage.article_id, passage.text)
            spans = [
                (s, e) for s, e in sentence_spans(text, passage.start_char_idx, passage.end_char_idx)
            ] or [(passage.start_char_idx, passage.end_char_idx)]
            overlap = len(claim_terms & set(tokenizer(passage.text))) / len(claim_terms) if claim_terms else 0.0
            vectors = embedder.encode([text[s:e] for s, e in spans])
            sims = vectors @ np.asarray(claim_vec)
            i = int(np.argmax(sims))
            best_overlap, best_sim = max(best_overlap, overlap), max(best_sim, float(sims[i]))
            if float(sims[i]) > best_quote.get(n, (-1.0,))[0]:
                s, e = spans[i]
                best_quote[n] = (float(sims[i]), s, e, text[s:e])
        supported = best_overlap >= OVERLAP_SUPPORT or best_sim >= SIMILARITY_SUPPORT
        support = max(best_overlap, best_sim)
        sentences.append(SentenceCheck(sentence, cited, supported=supported, support=round(support, 4)))
    citations = []
    for new in sorted(by_new):
        passage = by_new[new]
        score, s, e, quote = best_quote.get(
            new, (0.0, passage.start_char_idx, passage.end_char_idx, passage.text)
        )
        citations.append(
            Citation(
                n=new, article_id=passage.article_id, title=passage.title, source=passage.source, quote=quote,
                start_char_idx=s, end_char_idx=e, score=round(score, 4), page=passage.page,
                passage_index=passages.index(passage),
            )
        )
    return CheckedAnswer(cleaned, citations, sentences, invalid)
