"""The time and source scope of a question: what may be cited (hard filters) and what is preferred.

- Never cited: articles published after ``as_of`` (default: today), before ``since`` or after ``until``, or
  from outlets outside ``sources``. An article without a publish date is kept for ``as_of`` (nothing says it
  is later) but not under an explicit ``since``/``until`` (nothing says it is inside).
- Preferred: articles published in the window of the question's time words ("this week": the 8 days up to
  ``as_of``), and otherwise recent ones: news questions are about recent news. A preference scales a
  passage's rerank score relative to the best-placed candidate, so it reorders candidates without moving the
  evidence scale the abstention thresholds were fitted on when all candidates are alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Iterable, Optional

from rag.core.calibration import OUT_OF_WINDOW_WEIGHT, RECENT_DAYS, STALE_WEIGHT
from rag.core.errors import InvalidQuestion
from rag.core.timewords import DateLike, Window, parse_date, question_window
from rag.core.types import Passage


@dataclass(frozen=True)
class Scope:
    """Filters and preferences of one question (see the module docstring)."""

    as_of: date
    since: Optional[date] = None
    until: Optional[date] = None
    sources: frozenset[str] = field(default_factory=frozenset)  # outlet names, lower-cased; empty: all
    window: Optional[Window] = None  # what the question's time words point to

    def allows(self, published: Optional[date], site: str) -> bool:
        """Whether an article published on ``published`` (None: unknown) by ``site`` may be cited."""
        if self.sources and site.lower() not in self.sources:
            return False
        if published is None:
            return self.since is None and self.until is None
        if published > self.as_of:
            return False
        return (self.since is None or published >= self.since) and (self.until is None or published <= self.until)

    @property
    def filters(self) -> bool:
        """Whether anything narrows what may be cited beyond "not after as_of"."""
        return bool(self.sources) or self.since is not None or self.until is not None

    def preference(self, published: Optional[date]) -> float:
        """How much this scope prefers an article published on ``published``: 1.0 when in the window (or recent,
        without one) or undated, less otherwise."""
        if published is None:
            return 1.0
        if self.window is not None:
            return 1.0 if published in self.window else OUT_OF_WINDOW_WEIGHT
        return 1.0 if self.as_of - published <= timedelta(days=RECENT_DAYS) else STALE_WEIGHT

    def in_window(self, published: str) -> Optional[bool]:
        """Whether an article published on ``published`` (ISO; "" when unknown) lies in the window of the
        question's time words; None without time words or when undated (nothing says either way)."""
        day = published_date(published)
        return None if self.window is None or day is None else day in self.window

    def answerable_from(self, passages: list[Passage]) -> Optional[set[int]]:
        """Indexes of ``passages`` the answer may come from: for a question whose time words point to a window
        ("this week"), those of articles published in it (and undated ones), when any is known to be in it;
        None (all of them) otherwise.

        A story published before the week asked about cannot report that week's news, yet it often matches
        the question's words best (last winter's box-office hit for "which movie tops the box office this
        week"). Retrieval only prefers the window, so the other passages are still shown as related.
        """
        where = [self.in_window(p.published) for p in passages]
        if True not in where:
            return None
        return {i for i, inside in enumerate(where) if inside is not False}

    def describe(self) -> str:
        """The scope in words, for the answer ("" when nothing narrows or prefers)."""
        parts = []
        if self.window is not None:
            parts.append(f"preferring articles published {self.window.start} to {self.window.end} "
                         f"(\u201c{self.window.words}\u201d)")
        if self.since or self.until:
            parts.append(f"published {self.since or '…'} to {self.until or self.as_of}")
        if self.sources:
            parts.append("from " + ", ".join(sorted(self.sources)))
        return "; ".join(parts)


def build_scope(
    question: str, as_of: DateLike = None, since: DateLike = None, until: DateLike = None,
    sources: Optional[Iterable[str]] = None,
) -> Scope:
    """The scope of ``question`` asked as of ``as_of`` (default today), with optional explicit filters.

    Raises InvalidQuestion for a date that cannot be read or a ``since`` after ``until``.
    """
    try:
        day = parse_date(as_of) or date.today()
        since_day, until_day = parse_date(since), parse_date(until)
    except ValueError as exc:
        raise InvalidQuestion(str(exc)) from exc
    if since_day and until_day and since_day > until_day:
        raise InvalidQuestion(f"since ({since_day}) is after until ({until_day})")
    names = frozenset(s.strip().lower() for s in (sources or []) if s and s.strip())
    try:
        window = question_window(question, day)
    except (OverflowError, ValueError) as exc:  # "last week" as of 0001-01-03: before the calendar begins
        raise InvalidQuestion(f"the question's time words cannot be counted back from {day}") from exc
    return Scope(day, since_day, until_day, names, window)


def published_date(published: str) -> Optional[date]:
    """A stored publish date (``ArticleRecord.published``, ``Passage.published``: ISO, "" when unknown) as a
    date; None when unknown."""
    try:
        return parse_date(published)
    except ValueError:  # ingestion stores ISO dates only; anything else counts as undated
        return None
