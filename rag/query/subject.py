"""The names a question uses, and whether the article an answer comes from mentions the rarest of them.

A question that names something ("What profit did Marks & Spencer report…", "…at Glastonbury Festival?")
asks about it. An answer taken from an article that never mentions the most specific name of the question
answers another question, however well its sentence matches the other words ("pre-tax profit", "the year to
April"): a near miss the retrieval evidence cannot tell from a right answer.

Written by hand: a named-entity recogniser would find the names better, but no model for one can be
installed here (spaCy's is issue #14's blocker). Capitalised words are what news questions write names with.
"""

from __future__ import annotations

import re
from typing import Optional

from rag.core.text import WORD
from rag.query.bm25 import BM25Index
from rag.query.names import CALENDAR, NATIONALITIES

_SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|[\"\u201c(\u2018]\s*)$")
# A question written mostly in capitals (a headline, a shout) shows no names by its case.
_MOST_CAPITALISED = 0.6
# A name more than 1 in 100 articles mention is a topic (a party, a country, a product line) that articles name
# in several ways ("Liberal Democrats", "the Lib Dems"), not the one thing a question is about. The dev sets
# cannot fit it: every share up to 2.7% gives the same answers on both (see the README).
SPECIFIC_SHARE = 0.01


def question_names(question: str, stopwords: frozenset[str]) -> list[str]:
    """Capitalised words of ``question`` that name something, in order: not a sentence's or a quote's first
    word, not a stop word, day, month or nationality ("Swedish" is written "Sweden" as often), and at least
    three letters (two-letter names are written many ways: US, U.S., America). None for a question written
    mostly in capitals."""
    words = [m for m in WORD.finditer(question) if m.group(0)[0].isalpha()]
    if not words or sum(m.group(0)[0].isupper() for m in words) > _MOST_CAPITALISED * len(words):
        return []
    names = []
    for m in words:
        word = m.group(0)
        lower = word.lower()
        if (not word[0].isupper() or len(word) < 3 or lower in stopwords or lower in CALENDAR
                or lower in NATIONALITIES or _SENTENCE_START.search(question[: m.start()])):
            continue
        names.append(word)
    return names


def unmentioned_name(question: str, article_id: str, bm25: BM25Index) -> Optional[str]:
    """The question's rarest name (the fewest indexed articles mention it) when it is specific (at most
    ``SPECIFIC_SHARE`` of the articles, or one, mention it) and the article ``article_id`` (its title, text
    and outlet) never mentions it, else None."""
    tokenizer = bm25.tokenizer
    names = question_names(question, tokenizer.stopwords)
    if not names or article_id not in bm25.article_terms:  # an article this index version lacks: nothing known
        return None
    rarest = min(names, key=lambda word: _articles_naming(word, bm25))
    if _articles_naming(rarest, bm25) > max(1.0, SPECIFIC_SHARE * len(bm25.article_terms)):
        return None
    term = tokenizer.stem(rarest.lower())
    mentioned = term in bm25.article_terms[article_id] or term in tokenizer(bm25.site.get(article_id, ""))
    return None if mentioned else rarest


def _articles_naming(word: str, bm25: BM25Index) -> int:
    return bm25.article_df.get(bm25.tokenizer.stem(word.lower()), 0)


def unmentioned_reason(name: str, bm25: BM25Index) -> str:
    """Why an answer from an article that never mentions ``name`` is not given."""
    if _articles_naming(name, bm25) == 0:
        return (f"No indexed article mentions \u201c{name}\u201d, which the question names. "
                "The closest passages are shown as related.")
    return (f"The best answer found comes from an article that never mentions \u201c{name}\u201d, which the "
            "question names, so it answers another question. The closest passages are shown as related.")
