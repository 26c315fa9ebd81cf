"""Short answers given as the article names them in full (rag.query.names): real sentences of the kinds news
stories are written in, the first mention in full and a short form after it."""

from __future__ import annotations

import pytest

from rag.query.names import full_name

STORY = (
    "Biden Tests Positive For Covid Again\n\n"
    "WASHINGTON (CNN) President Joe Biden tested positive for Covid-19 on Thursday, the White House said. "
    "The president has mild symptoms. When Biden spoke on Friday, he said he felt fine.\n\n"
    "In sport, the Colorado Avalanche won the Stanley Cup. The Avalanche beat Tampa Bay in six games.\n\n"
    "JetBlue Airways agreed to buy Spirit Airlines. JetBlue CEO Robin Hayes said the deal was fair, and Hayes "
    "added that JetBlue would keep low fares.\n\n"
    "Bookmakers Ladbrokes said the odds had shortened. Ladbrokes took many bets. The German Marlene Weingartner "
    "lost the match, and Weingartner left early. Floods hit West Virginia, and Virginia declared an emergency; "
    "the Virginia Department of Health opened shelters. Hall of Famer Willie Mays watched as Mays often does.\n"
)


def _expand(short: str, text: str = STORY, near: tuple[int, int] = (0, 0), question: str = "") -> str | None:
    span = full_name(short, text, near, question)
    return text[span[0] : span[1]] if span else None


@pytest.mark.parametrize("short, full", [
    ("Biden", "President Joe Biden"),              # given name and title before a surname
    ("Avalanche", "Colorado Avalanche"),           # a team's city
    ("The Avalanche", "Colorado Avalanche"),       # "The" aside
    ("JetBlue", "JetBlue Airways"),                # a company's kind after its short name
    ("Hayes", "Robin Hayes"),                      # not "JetBlue CEO Robin Hayes": the role is no part of the name
    ("Weingartner", "Marlene Weingartner"),        # a nationality before a name is no part of it
    ("Mays", "Willie Mays"),                       # "Famer" is the tail of "Hall of Famer"
    ("Spirit", "Spirit Airlines"),                 # the kind ends the run
])
def test_a_short_name_is_given_as_the_article_names_it_in_full(short, full):
    assert _expand(short) == full


@pytest.mark.parametrize("short", [
    "Virginia",         # "West Virginia" is another place, "Virginia Department" another thing
    "Tampa",            # "Tampa Bay" adds no company kind
    "Robin Hayes",      # two words: already a name in full
    "climate change",   # not a name
    "Thursday",         # a day
    "Covid",            # only in the title-case headline ("Biden Tests Positive For Covid Again"), not read
])
def test_what_is_not_shortened_or_not_a_name_stays_as_it_is(short):
    assert _expand(short) is None


def test_a_word_the_question_asks_for_is_no_part_of_the_name():
    """ "Bookmakers" opens its sentence and the article writes it nowhere else: the question's "bookmaker"
    shows it is a common word."""
    assert _expand("Ladbrokes") == "Bookmakers Ladbrokes"
    assert _expand("Ladbrokes", question="Which bookmaker made her the favourite?") is None


def test_the_run_in_the_answers_own_sentence_wins_over_the_articles_first():
    text = ("Jill Biden visited Kyiv on Sunday. Later, President Joe Biden said the trip went well. "
            "Biden praised the first lady.")
    second = text.index("Later")
    assert _expand("Biden", text) == "Jill Biden"  # the article's first mention
    assert _expand("Biden", text, (second, text.index("Biden praised"))) == "President Joe Biden"


@pytest.mark.parametrize("question, names", [
    ("What pre-tax profit did Marks & Spencer report for the year to April 2005?", ["Marks", "Spencer"]),
    # a sentence's and a quote's first word, days, months, nationalities and two-letter names are not names
    ("Far-right pundit Alex Jones was in court. Which Sandy Hook lawsuit was heard on Monday?",
     ["Alex", "Jones", "Sandy", "Hook"]),
    ("Which actress, best known as Jessica Fletcher in \u201cMurder, She Wrote,\u201d died?",
     ["Jessica", "Fletcher", "She", "Wrote"]),
    ("Where did Swedish player Joachim Johansson win in the US in February?", ["Joachim", "Johansson"]),
    ("Who holds the majority stake in the CATL joint venture?", ["CATL"]),
    ("Who holds the majority stake?", []),
    ("WHO HOLDS THE MAJORITY STAKE IN CATL?", []),  # written in capitals: the case shows no names
])
def test_question_names_are_its_capitalised_words_that_name_something(question, names):
    from rag.query.bm25 import Tokenizer
    from rag.query.subject import question_names

    assert question_names(question, Tokenizer().stopwords) == names
