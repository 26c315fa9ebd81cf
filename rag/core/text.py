"""Text knowledge shared by retrieval, answering, evaluation and the UI: one copy of each word list and pattern."""

from __future__ import annotations

import re

# What an answer says when the indexed articles do not answer the question.
ABSTAIN_TEXT = "The indexed articles do not answer this question."
# Why it abstained, when no passage answers (the passages are still shown, as related reading).
NO_ANSWER = "No passage answers the question; the closest passages are shown as related."

MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)
MONTH_ABBREVIATIONS = ("jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec")
MONTH_PATTERN = "|".join(MONTHS + MONTH_ABBREVIATIONS)  # an alternation for regular expressions
DAY_PATTERN = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
NUMBER_WORD_PATTERN = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    "thousand|million|billion|trillion|dozen|half|quarter"
)
YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")  # a year of the 19th to 21st century

# A word as BM25 and keyword scoring see it: letters and digits, numbers kept whole (1.75bn, 3,000).
WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*", re.I)
# Words that shape a question but never match its answer's passage.
QUESTION_WORDS = frozenset(
    "what which who whom whose when where why how did does do many much according roughly approximately".split()
)

# A citation marker in answer text: [1], [2, 3]. Group 1 holds the numbers.
MARKER = re.compile(r"\[\s*(\d{1,3}(?:\s*,\s*\d{1,3})*)\s*\]")
_MARKER_WITH_SPACE = re.compile(r"(?<!\s)\s*+" + MARKER.pattern)  # from a run's start only: linear over spaces


def marker_numbers(match: re.Match) -> list[int]:
    """The citation numbers of a :data:`MARKER` match."""
    return [int(n) for n in re.findall(r"\d+", match.group(1))]


def strip_markers(text: str) -> str:
    """``text`` without its citation markers (and the space before each)."""
    return _MARKER_WITH_SPACE.sub("", text).strip()
