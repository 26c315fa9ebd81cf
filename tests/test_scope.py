"""Dates and the time scope of a question: pure functions, tiny inputs."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from rag.core.calibration import OUT_OF_WINDOW_WEIGHT, STALE_WEIGHT
from rag.core.errors import InvalidQuestion
from rag.core.timewords import parse_date, question_window
from rag.query.scope import build_scope

AS_OF = date(2022, 6, 16)


@pytest.mark.parametrize("value", ["2022-06-17", "2022/06/17", "20220617", "2022-06-17T08:00:00Z",
                                   "2022-06-17T08:00:00+02:00", date(2022, 6, 17),
                                   datetime(2022, 6, 17, 8, tzinfo=timezone.utc)])
def test_dates_in_the_forms_people_and_files_give(value):
    assert parse_date(value) == date(2022, 6, 17)


@pytest.mark.parametrize("value", ["June 17", "2022-13-01", "17/06/2022", "soon"])
def test_a_value_that_is_not_a_date_is_refused_with_its_text(value):
    with pytest.raises(ValueError, match="not a date"):
        parse_date(value)


def test_empty_dates_are_none():
    assert parse_date(None) is None and parse_date("") is None and parse_date("  ") is None


@pytest.mark.parametrize("question, days, words", [
    ("Which team won the Stanley Cup this week?", 8, "this week"),
    ("What did the minister say yesterday?", 2, "yesterday"),
    ("Who resigned last week?", 15, "last week"),
    ("Which show was recently renewed?", 32, "recently"),
    ("What was announced on Tuesday?", 8, "on tuesday"),
    ("What rose last month?", 62, "last month"),
])
def test_time_words_count_back_from_the_as_of_date(question, days, words):
    window = question_window(question, AS_OF)
    assert window.end == AS_OF and (AS_OF - window.start).days == days and window.words == words
    assert window.vague == (words == "recently")  # names no days: only a preference for recent news


def test_years_and_no_time_words():
    assert question_window("Who won the league this year?", AS_OF).start == date(2022, 1, 1)
    assert question_window("Who won the league last year?", AS_OF).start == date(2021, 1, 1)
    assert question_window("Who holds the majority stake?", AS_OF) is None


def test_nothing_published_after_as_of_is_allowed():
    scope = build_scope("Who won?", as_of="2022-06-16")
    assert scope.allows(date(2022, 6, 16), "cnn") and scope.allows(date(2021, 1, 1), "cnn")
    assert not scope.allows(date(2022, 6, 17), "cnn")
    assert scope.allows(None, "")  # undated: nothing says it is later
    assert not scope.filters


def test_since_until_and_sources_filter():
    scope = build_scope("Who won?", as_of=AS_OF, since="2022-06-01", until="2022-06-10", sources=["CNN", " "])
    assert scope.filters and scope.sources == {"cnn"}
    assert scope.allows(date(2022, 6, 5), "cnn") and not scope.allows(date(2022, 6, 5), "usatoday")
    assert not scope.allows(date(2022, 5, 31), "cnn") and not scope.allows(date(2022, 6, 11), "cnn")
    assert not scope.allows(None, "cnn")  # undated: nothing says it is inside the dates asked for
    assert "2022-06-01" in scope.describe() and "cnn" in scope.describe()


def test_bad_scope_input_is_a_clear_error():
    with pytest.raises(InvalidQuestion, match="not a date"):
        build_scope("q", as_of="next Tuesday")
    with pytest.raises(InvalidQuestion, match="after until"):
        build_scope("q", since="2022-06-10", until="2022-06-01")


def test_preference_for_the_window_and_for_recent_news():
    week = build_scope("Who won this week?", as_of=AS_OF)
    assert week.preference(date(2022, 6, 12)) == 1.0
    assert week.preference(date(2022, 5, 1)) == OUT_OF_WINDOW_WEIGHT
    assert week.preference(None) == 1.0
    assert "this week" in week.describe()
    plain = build_scope("Who won?", as_of=AS_OF)
    assert plain.preference(date(2022, 6, 12)) == 1.0 and plain.preference(date(2022, 1, 1)) == STALE_WEIGHT
    assert plain.describe() == ""


def test_a_question_with_time_words_is_answered_from_its_window_when_an_article_is_in_it():
    from rag.core.types import Passage

    def passage(published: str) -> Passage:
        return Passage("c", "a.txt", "Title", "a.txt", "text", 0, 4, 0.5, published=published)

    week = build_scope("Who won this week?", as_of=AS_OF)
    old, new, undated = passage("2022-05-01"), passage("2022-06-12"), passage("")
    assert week.in_window("2022-06-12") is True and week.in_window("2022-05-01") is False
    assert week.in_window("") is None and week.in_window("not a date") is None
    assert week.answerable_from([old, new, undated]) == {1, 2}  # the old story is shown, not answered from
    assert week.answerable_from([old, undated]) is None  # none known to be in the week: all of them
    assert build_scope("Who won?", as_of=AS_OF).answerable_from([old, new]) is None  # no time words


def test_default_as_of_is_today():
    assert build_scope("Who won?").as_of == date.today()
