"""Dates in questions and settings: parsing a date a person or a file gives, and resolving relative time words
("this week", "last month", "yesterday", "recently") against the date a question is asked as of.

Written by hand: the date parsers at hand (dateutil, trafilatura's htmldate) read absolute dates, not the
relative phrases of a news question, and the windows here are what retrieval prefers, not exact facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Optional, Union

from rag.core.text import DAY_PATTERN

DateLike = Union[date, datetime, str, None]


@dataclass(frozen=True)
class Window:
    """Publish dates a question's time words point to: ``start`` to ``end`` inclusive, named by ``words``."""

    start: date
    end: date
    words: str
    vague: bool = False  # "recently", "latest": a preference for recent news, not days the question names

    def __contains__(self, day: date) -> bool:
        return self.start <= day <= self.end


def parse_date(value: DateLike) -> Optional[date]:
    """A calendar date from a date, a datetime or text (``2022-06-17``, ``2022/06/17``, ``20220617``, an ISO
    datetime with a zone); None for empty input. Raises ValueError naming the value when it is not a date."""
    if value is None or isinstance(value, datetime):
        return value.date() if value is not None else None
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not text:
        return None
    match = re.fullmatch(r"(\d{4})[-/.]?(\d{2})[-/.]?(\d{2})(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?", text)
    if match:
        try:
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            pass
    raise ValueError(f"not a date: {text[:40]!r} (expected YYYY-MM-DD)")


# Words that prefer recent news without naming days: a question may use them of the newest story it knows.
_VAGUE = re.compile(r"\b(?:recently|recent|latest|newly|just)\b", re.I)
# Relative time words, most specific first, with how many days back from the as-of date each reaches. The
# reach includes a day of slack: a story is often published the day after the event it reports.
_WORDS: list[tuple[re.Pattern, int]] = [
    (re.compile(r"\b(?:today|tonight|this morning)\b", re.I), 1),
    (re.compile(r"\byesterday\b", re.I), 2),
    (re.compile(rf"\b(?:this|last|past)\s+(?:{DAY_PATTERN})\b|\bon\s+(?:{DAY_PATTERN})\b", re.I), 8),
    (re.compile(r"\b(?:this|the past|the last)\s+(?:week|weekend)\b|\bthis past week\b|\bin recent days\b", re.I), 8),
    (re.compile(r"\blast\s+(?:week|weekend)\b", re.I), 15),
    (re.compile(r"\b(?:this|the past|the last)\s+month\b", re.I), 32),
    (re.compile(r"\blast\s+month\b", re.I), 62),
    (_VAGUE, 32),
]
_THIS_YEAR = re.compile(r"\bthis\s+year\b", re.I)
_LAST_YEAR = re.compile(r"\blast\s+year\b", re.I)


def question_window(question: str, as_of: date) -> Optional[Window]:
    """The publish dates the question's time words point to, counted back from ``as_of``; None without any."""
    for pattern, days in _WORDS:
        match = pattern.search(question)
        if match:
            return Window(as_of - timedelta(days=days), as_of, match.group(0).lower(), pattern is _VAGUE)
    if _THIS_YEAR.search(question):
        return Window(date(as_of.year, 1, 1), as_of, "this year")
    if _LAST_YEAR.search(question):
        return Window(date(as_of.year - 1, 1, 1), as_of, "last year")
    return None
