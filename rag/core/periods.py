"""The time periods a text names (years and calendar quarters), to catch evidence about the wrong period.

News questions often pin a period ("net profit for the first three months of 2005") and the corpus often
holds a story about the same thing in another one ("... in the three months ending 30 September"). Such a
sentence matches the question on every keyword and in meaning, so only an explicit comparison of the
periods tells it apart. No library reads quarters out of financial prose, so this is written here; it is
deliberately narrow: only explicit years and quarters count, and a period is contradicted only when both
sides name one and they share nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.core.text import MONTH_PATTERN, MONTHS, YEAR

FIRST_REPORTING_YEAR = 1950  # earlier years in news text are history, never the period a figure is reported for
_ORDINAL = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4, "final": 4}
_COUNT = {"three": 1, "3": 1, "six": 2, "6": 2, "nine": 3, "9": 3}

_QUARTER = re.compile(r"\b(first|1st|second|2nd|third|3rd|fourth|4th|final)[ -]quarter\b", re.I)
_Q_NUMBER = re.compile(r"\bQ([1-4])\b")
_HALF = re.compile(r"\b(first|second)[ -]half\b", re.I)
_FIRST_MONTHS = re.compile(r"\bfirst (three|six|nine|3|6|9) months\b", re.I)
_MONTHS_TO = re.compile(
    rf"\b(three|six|nine|3|6|9)[ -]months? (?:to|ending|ended|through|until)(?: the end of)?(?: \d{{1,2}})? "
    rf"({MONTH_PATTERN})\b",
    re.I,
)
# A question about the period itself ("in which quarter ...", "when ...") asks for the period: never a clash.
_ASKS_FOR_PERIOD = re.compile(r"^\s*when\b|\b(?:what|which)\s+(?:year|quarter|month|date|period)\b", re.I)


def _month_quarter(name: str) -> int:
    name = name.lower()
    index = next(i for i, m in enumerate(MONTHS) if m.startswith(name[:3]))
    return index // 3 + 1


@dataclass
class Periods:
    """The years and calendar quarters (1-4) a text names."""

    years: set[int] = field(default_factory=set)
    quarters: set[int] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.years or self.quarters)


def periods_in(text: str) -> Periods:
    """Years and quarters named in ``text``: "Q3", "second quarter", "first half" (1 and 2), "first six
    months" (1 and 2), "three months to December" (4)."""
    found = Periods(years={int(y) for y in YEAR.findall(text) if int(y) >= FIRST_REPORTING_YEAR})
    for m in _QUARTER.finditer(text):
        found.quarters.add(_ORDINAL[m.group(1).lower()])
    for m in _Q_NUMBER.finditer(text):
        found.quarters.add(int(m.group(1)))
    for m in _HALF.finditer(text):
        found.quarters.update((1, 2) if m.group(1).lower() == "first" else (3, 4))
    for m in _FIRST_MONTHS.finditer(text):
        found.quarters.update(range(1, _COUNT[m.group(1).lower()] + 1))
    for m in _MONTHS_TO.finditer(text):
        last = _month_quarter(m.group(2))
        found.quarters.update(q for q in range(last - _COUNT[m.group(1).lower()] + 1, last + 1) if q >= 1)
    return found


def question_periods(question: str) -> Periods:
    """The periods a question pins, or none when the period is what it asks for."""
    if _ASKS_FOR_PERIOD.search(question):
        return Periods()
    return periods_in(question)


def years_clash(asked: Periods, named: Periods) -> bool:
    """Whether ``named`` (a sentence's periods) names years and none of those ``asked`` (the question's) pins."""
    return bool(asked.years and named.years and not asked.years & named.years)


def contradicts(asked: Periods, named: Periods) -> str:
    """A short reason when ``named`` (a sentence's periods) rules out ``asked`` (the question's), else ''."""
    if years_clash(asked, named):
        return f"{_fmt(sorted(named.years))}, not {_fmt(sorted(asked.years))}"
    if asked.quarters and named.quarters and not asked.quarters & named.quarters:
        return f"quarter {_fmt(sorted(named.quarters))}, not quarter {_fmt(sorted(asked.quarters))}"
    return ""


def published_in(asked: Periods, published: list[str]) -> bool:
    """Whether one of the ``published`` dates (ISO; "" when unknown) falls in a year ``asked`` pins."""
    return any(date[:4].isdigit() and int(date[:4]) in asked.years for date in published)


def matches(asked: Periods, named: Periods) -> bool:
    """Whether ``named`` (a sentence's periods) includes a year or quarter the question pins."""
    return bool(asked.years & named.years or asked.quarters & named.quarters)


def _fmt(values: list[int]) -> str:
    return "/".join(str(v) for v in values)
