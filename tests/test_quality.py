"""The whole dev question set on an index of all 2,225 BBC articles (slow: the index takes minutes to build).

The index is cached outside the repository (``RAG_EVAL_CACHE``, keyed by the corpus and the ingestion code),
so only the first run after a change to either builds it. The corpus is found through ``RAG_EVAL_DATA``.

The floors asserted here are regression guards at the level measured when they were written. The issue's
bars that are not yet met (first citation 90%, 5 of 6 abstentions) are listed in the README's quality
section; top-5 (98%), answer containment (80%) and false abstentions (at most 5%) are met.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import make_settings, require_eval_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def full_pipeline(tmp_path_factory, embedder, bbc_dir):
    from rag.eval_index import cached_index
    from rag.pipeline import Pipeline

    settings = cached_index(bbc_dir, make_settings(tmp_path_factory.mktemp("unused")), progress=False, embedder=embedder)
    pipeline = Pipeline(settings, embedder=embedder)
    assert pipeline.store.articles.count() >= 2225
    return pipeline


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


def test_every_quote_is_an_exact_span(full_pipeline, dev_report):
    store = full_pipeline.store
    for row in dev_report["questions"]:
        for c in row["citations"]:
            text = store.get_articles([c["article_id"]], with_text=True)[c["article_id"]].text
            assert text[c["start_char_idx"] : c["end_char_idx"]] == c["quote"]
