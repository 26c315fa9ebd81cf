"""Grounding the reader model's reply: finding its phrase, word for word (or loosely), in the passages it was
given, and the sentence that holds it, which becomes the citation. A phrase found nowhere, or only inside text
that gives instructions to an assistant, is not grounded.

Written by hand: no library maps a model's phrase back to an exact article span while tolerating case, quote
style, spacing, inflection and numbers written as words.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Optional

from rag.core.sentences import sentence_spans
from rag.core.types import Passage
from rag.query.reader import ReaderReply


_FOLD = {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-", "\u00a0": " "}


def _folded(text: str) -> tuple[str, list[int]]:
    """``text`` case-folded with quotes, dashes and runs of spaces unified, and each folded character's
    offset in ``text`` (so a match in the folded text maps back to an exact span)."""
    chars: list[str] = []
    offsets: list[int] = []
    previous_space = False
    for i, ch in enumerate(text):
        ch = _FOLD.get(ch, ch)
        if ch.isspace():
            if previous_space:
                continue
            ch, previous_space = " ", True
        else:
            previous_space = False
        for folded in unicodedata.normalize("NFKC", ch).casefold():
            chars.append(folded)
            offsets.append(i)
    return "".join(chars), offsets


def find_phrase_all(text: str, phrase: str, start: int = 0, end: Optional[int] = None) -> list[tuple[int, int]]:
    """Every exact span of ``phrase`` in ``text[start:end]``, ignoring case, quote style and spacing.

    The phrase must begin and end at word boundaries ("Nato" is not found inside "senator").
    """
    end = len(text) if end is None else end
    needle, _ = _folded(" ".join(phrase.split()))
    if not needle.strip():
        return []
    hay, offsets = _folded(text[start:end])
    left = r"(?<!\w)" if needle[0].isalnum() else ""
    right = r"(?!\w)" if needle[-1].isalnum() else ""
    return [(start + offsets[m.start()], start + offsets[m.end() - 1] + 1)
            for m in re.finditer(left + re.escape(needle) + right, hay)]


def find_phrase(text: str, phrase: str, start: int = 0, end: Optional[int] = None) -> Optional[tuple[int, int]]:
    """The first span :func:`find_phrase_all` finds, or None."""
    spans = find_phrase_all(text, phrase, start, end)
    return spans[0] if spans else None


_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset(
    "a an the of in on at to for from by with and or is are was were be been has have had do does did what which "
    "who whom whose when where why how this that these those it its as into than then there their they he she "
    "his her after before about over under said says".split()
)


def _content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.casefold()) if w not in _STOP}


LOOSE_SPREAD = 2.0  # a loose match may spread over at most this many times the phrase's words (plus 2)
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
# A place name found as the start of its people's name or adjective ("Europe" in "European", "Japan" in
# "Japanese", "Iraq" in "Iraqi"): the endings that may follow it, and the shortest name that may be so found.
DERIVED_ENDINGS = ("n", "an", "ian", "ese", "i", "ish")
MIN_DERIVED_NAME = 4


def _loose_key(word: str, stem: Callable[[str], str]) -> str:
    """How a word is compared in a loose match: its stem, a number word as its digits ("six" and "6")."""
    word = word.casefold()
    return _NUMBER_WORDS.get(word, stem(word))


def _loose_same(wanted: tuple[str, str], word: str, key: str) -> bool:
    """Whether a passage word (``word``, its key ``key``) stands for a phrase word (its key, and the word itself
    when it is a name that may be found inside a longer one): the same key, or a name followed by one of
    :data:`DERIVED_ENDINGS`."""
    wanted_key, name = wanted
    if key == wanted_key:
        return True
    folded = word.casefold()
    return bool(name) and word[:1].isupper() and folded.startswith(name) and folded[len(name):] in DERIVED_ENDINGS


def find_loose(text: str, phrase: str, start: int, end: int, stem: Callable[[str], str],
               derived: bool = True) -> list[tuple[int, int]]:
    """Spans where every content word of ``phrase`` occurs (compared by stem, number words as digits and, with
    ``derived``, a place name inside its people's name: :data:`DERIVED_ENDINGS`) close together within one
    sentence of ``text[start:end]``: "cutting subsidies to help the poor" for "Cut subsidies to help poor", "six
    months" for "6 months", "European" for "Europe".

    A small model often rewords or shortens what it copies; the span returned is always the article's own
    text from the first to the last matched word, so what is shown is still an exact quote.
    """
    words_of_phrase = _WORD.findall(phrase)
    content = [w for w in words_of_phrase if w.casefold() not in _STOP] or words_of_phrase
    names = [w.casefold() if derived and w[:1].isupper() and len(w) >= MIN_DERIVED_NAME else "" for w in content]
    wanted = [(_loose_key(w, stem), name) for w, name in zip(content, names)]
    if not wanted:
        return []
    limit = int(LOOSE_SPREAD * len(words_of_phrase)) + 2
    spans = []
    for s, e in sentence_spans(text, start, end):
        words = [(m.start() + s, m.end() + s, m.group(0), _loose_key(m.group(0), stem))
                 for m in _WORD.finditer(text[s:e])]
        best = None
        for i, (first, _, word, key) in enumerate(words):
            if not any(_loose_same(w, word, key) for w in wanted):
                continue
            missing = set(wanted)
            for j in range(i, min(len(words), i + limit)):
                missing = {w for w in missing if not _loose_same(w, words[j][2], words[j][3])}
                if not missing:
                    if best is None or j - i < best[0]:
                        best = (j - i, first, words[j][1])
                    break
        if best:
            spans.append((best[1], best[2]))
    return spans


@dataclass
class Grounding:
    """Where the model's phrase was found: the passage, the phrase's exact span and its sentence's span."""

    passage_index: int  # 0-based index into the passages the model was given
    start: int
    end: int
    sentence_start: int
    sentence_end: int
    moved: bool  # found in another passage than the one the model named
    loose: bool = False  # matched word by word (stems, close together), not as one exact phrase
    shown: str = ""  # the short answer to show when not the span: the model's name, found as part of a longer word

    def phrase(self, text: str) -> str:
        """The words the phrase matched in ``text`` (the text it was grounded in), or the model's own where
        ``shown`` says so: the short answer."""
        return self.shown or text[self.start : self.end]


def ground(reply: ReaderReply, passages: list[Passage], articles: dict[str, str], question: str = "",
           stem: Optional[Callable[[str], str]] = None) -> Optional[Grounding]:
    """Find ``reply.phrase`` in the passage the model named, else in the other windows of its article (in any
    passage when it named none); None when in none of them.

    An exact match (case, quotes and spacing aside) anywhere in the passages wins, then one in a passage's
    title (the headline the model is shown above it); with ``stem``, a loose match (:func:`find_loose`) is
    tried after that, one with names found inside longer words ("Europe" in "European") last. When the phrase
    occurs several times in a passage, the occurrence whose sentence shares most words with the question is
    taken (its sentence is the citation).
    """
    if reply.not_found or not reply.phrase:
        return None
    found = _ground(reply, passages, articles, question, find_phrase_all)
    if found is None:
        found = _ground_in_title(reply, passages, articles)
    if found is None and stem is not None:
        found = _ground(reply, passages, articles, question,
                        lambda t, p, a, b: find_loose(t, p, a, b, stem, derived=False))
        if found is None:
            found = _ground(reply, passages, articles, question, lambda t, p, a, b: find_loose(t, p, a, b, stem))
            if found is not None:  # "European" for "Europe": the article's word is not the answer, the name is
                found.shown = reply.phrase
        if found is not None:
            found.loose = True
    return found


TITLE_REACH = 400  # how far into an article's text its headline is looked for

# Text that addresses the reader model instead of reporting news (a prompt injection in an article): a phrase
# found only in such a paragraph is not taken as the answer, whatever the model was talked into.
INSTRUCTIONS = re.compile(
    r"\b(?:ignore|disregard|forget)\b[^.!?\n]{0,40}\b(?:instructions|prompts?|your rules)\b"
    r"|\bif you are an? (?:AI|language model|assistant|chatbot|LLM)\b"
    r"|\b(?:assistants?|AIs?|language models?|chatbots?|LLMs?) reading this\b"
    r"|^[^\w\n]*+system\s*+:"  # on its own line (not crossing line ends: linear over runs of blank lines)
    r"|(?:<<<|\u2039\u2039\u2039)\s*+(?:END|PASSAGE)\b",  # a fence of the reader's prompt, as written or neutralised
    re.I | re.M,
)


def instructs(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` stands in a paragraph that gives instructions to an assistant."""
    before, after = text.rfind("\n\n", 0, start), text.find("\n\n", end)
    return INSTRUCTIONS.search(text, before + 2 if before >= 0 else 0, after if after >= 0 else len(text)) is not None


def injected(reply: ReaderReply, passages: list[Passage], articles: dict[str, str]) -> bool:
    """Whether the model's phrase occurs in the passages only inside instructions to an assistant."""
    spans = []
    for p in passages:
        text = articles.get(p.article_id) or ""
        spans += [(text, s, e) for s, e in find_phrase_all(text, reply.phrase or "", p.start_char_idx, p.end_char_idx)]
    return bool(spans) and all(instructs(text, s, e) for text, s, e in spans)


def find_anywhere(reply: ReaderReply, passages: list[Passage], articles: dict[str, str]) -> bool:
    """Whether the model's phrase occurs word for word in any of the passages (whichever it named)."""
    return any(find_phrase_all(grounding_text(p, articles), reply.phrase or "", p.start_char_idx, p.end_char_idx)
               for p in passages)


def _ground_in_title(reply: ReaderReply, passages: list[Passage], articles: dict[str, str]) -> Optional[Grounding]:
    """The phrase found in the headline of a passage's article, where the article's text begins with it (a
    small model often copies the answer from the "Title:" line): the headline is then the cited sentence."""
    named, order = _search_order(reply, passages)
    for i in order:
        title, text = passages[i].title.strip(), articles.get(passages[i].article_id)
        start = text.find(title, 0, TITLE_REACH) if text and title else -1
        found = find_phrase_all(text, reply.phrase, start, start + len(title)) if start >= 0 else []
        found = [(s, e) for s, e in found if not instructs(text, s, e)]
        if found:
            (s, e), *_ = found
            return Grounding(i, s, e, start, start + len(title), moved=i != named)
    return None


def _search_order(reply: ReaderReply, passages: list[Passage]) -> tuple[Optional[int], list[int]]:
    """The passage the model named (0-based, None when it named none or a wrong number), and the passages to look
    for its phrase in, in order: the named one, then the other windows of its article, never another article's
    (the phrase is that article's claim: another article's sentence must not be cited for it); all of them when
    it named none."""
    named = reply.passage - 1 if reply.passage and 1 <= reply.passage <= len(passages) else None
    if named is None:
        return None, list(range(len(passages)))
    article = passages[named].article_id
    return named, [named] + [i for i, p in enumerate(passages) if i != named and p.article_id == article]


def grounding_text(passage: Passage, articles: dict[str, str]) -> str:
    """The text a phrase is grounded in for ``passage``: its article's, or, with no stored article text to quote
    from, the passage itself at its article offsets."""
    text = articles.get(passage.article_id)
    if text is None or text[passage.start_char_idx : passage.end_char_idx] != passage.text:
        text = " " * passage.start_char_idx + passage.text
    return text


def _ground(reply, passages, articles, question, finder) -> Optional[Grounding]:
    named, order = _search_order(reply, passages)
    asked = _content_words(question)
    for i in order:
        passage = passages[i]
        text = grounding_text(passage, articles)
        found = finder(text, reply.phrase, passage.start_char_idx, passage.end_char_idx)
        found = [(s, e) for s, e in found if not instructs(text, s, e)]  # never an injected instruction's words
        if not found:
            continue
        sentences = sentence_spans(text, passage.start_char_idx, passage.end_char_idx)
        best = None
        for s, e in found:
            covering = [(a, b) for a, b in sentences if b > s and a < e]
            holder = (min(a for a, _ in covering), max(b for _, b in covering)) if covering else (s, e)
            overlap = len(asked & _content_words(text[holder[0] : holder[1]]))
            if best is None or overlap > best[0]:
                best = (overlap, s, e, holder)
        _, s, e, holder = best
        return Grounding(i, s, e, holder[0], holder[1], moved=i != named)
    return None
