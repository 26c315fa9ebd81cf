"""Extractive mode on the dev question sets over whole corpora: BBC (2,225 articles) and RealTime QA (2,396).

The index is cached outside the repository (``RAG_EVAL_CACHE``, keyed by the corpus and the ingestion code),
so only the first run after a change to either builds it. The corpus is found through ``RAG_EVAL_DATA``.

The floors asserted here are regression guards at the level measured when they were written; the README's
quality section has the figures. LLM mode is in test_quality_llm.py.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_settings, require_eval_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def full_pipeline(tmp_path_factory, embedder, bbc_dir):
    from rag.app import open_services
    from rag.eval.index_cache import cached_index

    settings = cached_index(bbc_dir, make_settings(tmp_path_factory.mktemp("unused")), progress=False, embedder=embedder)
    services = open_services(settings, embedder=embedder)
    assert services.store.article_count() >= 2225
    return services.pipeline


@pytest.fixture(scope="session")
def dev_report(full_pipeline):
    from rag.eval import evaluate, load_questions

    questions, problems = load_questions(require_eval_data("bbc_dev_qa.jsonl"))
    assert not problems and len(questions) == 46
    return evaluate(full_pipeline, questions, progress=False)


def test_retrieval_and_citation_floors(dev_report):
    overall = dev_report["summary"]["overall"]
    print(json.dumps(overall, indent=1))
    assert overall["errors"] == 0
    assert overall["hit@5"] >= 0.98  # the bar
    assert overall["first_citation_gold"] >= 0.775  # a regression floor (0.825 measured): the bar is 0.90 (not met)
    assert overall["citation_precision"] >= 0.62


def test_answer_floors(dev_report):
    overall = dev_report["summary"]["overall"]
    assert overall["contains"] >= 0.80  # the bar


def test_abstention_floors(dev_report):
    overall = dev_report["summary"]["overall"]
    assert overall["false_abstention"] <= 0.05  # the bar: no more than 5% of answerable questions
    assert overall["abstain_accuracy"] >= 0.83  # the bar: at least 5 of the 6 (0.8333)


def test_short_answers_are_spans_of_the_first_citation(dev_report):
    """A span of the first citation, or a name the quote shortens, given in full (rag.query.names)."""
    rows = [r for r in dev_report["questions"] if r["short_answer"]]
    assert len(rows) >= 20
    for r in rows:
        quote, short = r["citations"][0]["quote"], r["short_answer"]
        assert short in quote or any(word in quote for word in short.split()), (short, quote)
    assert dev_report["summary"]["overall"]["em"] >= 0.45  # a regression floor (0.500 measured; 0 with sentences)


def test_every_quote_is_an_exact_span(full_pipeline, dev_report):
    store = full_pipeline.store
    for row in dev_report["questions"]:
        for c in row["citations"]:
            text = store.get_articles([c["article_id"]], with_text=True)[c["article_id"]].text
            assert text[c["start_char_idx"] : c["end_char_idx"]] == c["quote"]


# --- RealTime QA: the second evaluation corpus (2,396 American news articles of 2022) ----------------------
@pytest.fixture(scope="session")
def rtqa_report(tmp_path_factory, embedder):
    from rag.app import open_services
    from rag.eval import evaluate, load_questions
    from rag.eval.index_cache import cached_index

    corpus = require_eval_data("realtimeqa", "articles")
    settings = cached_index(corpus, make_settings(tmp_path_factory.mktemp("unused")), progress=False, embedder=embedder)
    questions, problems = load_questions(require_eval_data("realtimeqa", "qa_dev.jsonl"))
    assert not problems and len(questions) == 144
    return evaluate(open_services(settings, embedder=embedder).pipeline, questions, progress=False)


def test_realtimeqa_extractive_floors(rtqa_report):
    overall = rtqa_report["summary"]["overall"]
    print(json.dumps(overall, indent=1))
    assert overall["errors"] == 0
    # Regression floors a little under the figures measured when they were set (README, Quality).
    assert overall["contains"] >= RTQA_FLOORS["contains"]
    assert overall["first_citation_ok"] >= RTQA_FLOORS["first_citation_ok"]
    assert overall["abstain_accuracy"] >= RTQA_FLOORS["abstain_accuracy"]
    assert overall["false_abstention"] <= RTQA_FLOORS["false_abstention"]


# Each question asked as of its question_date, publish dates from the corpus's manifest. Measured: contains
# 0.638, first citation from a gold article or quoting a gold answer 0.851, unanswerable abstained 0.86,
# answerable wrongly abstained 0.000 (issue #14's bars: 0.60, 0.75, 0.60, 0.15).
RTQA_FLOORS = {"contains": 0.62, "first_citation_ok": 0.80, "abstain_accuracy": 0.84, "false_abstention": 0.04}


def test_an_answer_from_an_article_that_never_names_the_company_asked_about_is_not_given(full_pipeline):
    """On all 2,225 BBC articles, Sainsbury's profit is best matched by another company's results in the same
    words; that article never mentions Sainsbury, so the answer abstains and says so. The Liberal Democrats,
    named in about 1 in 16 articles (often as "Lib Dems"), are a topic and not checked."""
    near_miss = full_pipeline.ask("What pre-tax profit did Sainsbury's report for the year to March 2005?",
                                  mode="extractive")
    assert near_miss.abstained and "never mentions \u201cSainsbury\u201d" in near_miss.abstain_reason, near_miss
    topic = full_pipeline.ask("Which BT executive did the Liberal Democrats appoint as director of general election "
                              "communications?", mode="extractive")
    assert not topic.abstained, topic.abstain_reason
