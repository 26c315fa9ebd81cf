"""Cited text belongs to the claim: the phrase a reader reply names is grounded in the passage it names (or another
window of that passage's article), never in another article's sentence; otherwise the model's phrase is not shown.
Real Chroma store, real embedding model, a scripted LLM reply.
"""

from __future__ import annotations

import shutil

import pytest

from rag import Pipeline
from rag.app import open_services
from rag.core.settings import PROJECT_ROOT
from rag.core.types import Passage, Reading
from rag.query.grounding import ground
from rag.query.reader import parse_reply
from tests.llm_helpers import ScriptedLLM

SEED_ID = "catl-baic-xiaomi-battery-jv.txt"
RUMOUR_ID = "battery-rumour.txt"
RUMOUR = ("Battery venture rumour\n\n"
          "A blog post claimed on Sunday that the Beijing battery joint venture of BAIC and Xiaomi will be led by an "
          "unnamed foreign partner holding the majority stake. The blog gave no source for the majority stake "
          "claim, and no company confirmed it.\n")
HARBOUR = "The Vellmar harbour reopened on Monday. Its new pier cost 4 million euros."
DOCKS = "Dock workers in Quillon went on strike. The strike began on Friday in Oslo."


def _passage(article_id: str, text: str) -> Passage:
    return Passage(f"{article_id}#x#0", article_id, article_id, article_id, text, 0, len(text), 0.6)


def test_a_phrase_is_not_grounded_in_another_articles_passage():
    passages = [_passage("harbour.txt", HARBOUR), _passage("docks.txt", DOCKS)]
    articles = {"harbour.txt": HARBOUR, "docks.txt": DOCKS}
    assert ground(parse_reply("ANSWER: Oslo\nPASSAGE: 1"), passages, articles) is None  # named: the harbour story
    named = ground(parse_reply("ANSWER: Oslo\nPASSAGE: 2"), passages, articles)
    assert named is not None and named.passage_index == 1 and DOCKS[named.start:named.end] == "Oslo"
    unnamed = ground(parse_reply("ANSWER: Oslo"), passages, articles)  # no passage named: wherever it stands
    assert unnamed is not None and unnamed.passage_index == 1


@pytest.fixture(scope="module")
def two_articles(tmp_path_factory, embedder, settings_at) -> Pipeline:
    corpus = tmp_path_factory.mktemp("claims")
    shutil.copy(PROJECT_ROOT / "corpus" / SEED_ID, corpus / SEED_ID)
    (corpus / RUMOUR_ID).write_text(RUMOUR, encoding="utf-8")
    services = open_services(settings_at(tmp_path_factory.mktemp("data"), corpus_dir=corpus), embedder=embedder)
    services.ensure_corpus(progress=False)
    return services.pipeline


def test_an_article_cannot_get_another_articles_sentence_cited_for_its_claim(two_articles):
    question = "Who holds the majority stake in the battery joint venture?"
    reading = next(item for item in Pipeline(two_articles.settings, llm=ScriptedLLM(reply="NOT FOUND"),
                                             embedder=two_articles.embedder).ask_stream(question, mode="llm")
                   if isinstance(item, Reading))
    windows = [p.article_id for p in reading.passages]
    assert RUMOUR_ID in windows and SEED_ID in windows, windows
    rumour_window = windows.index(RUMOUR_ID) + 1
    reply = f"ANSWER: CATL\nPASSAGE: {rumour_window}"  # the rumour's window named, the seed's word given
    pipe = Pipeline(two_articles.settings, llm=ScriptedLLM(reply=reply), embedder=two_articles.embedder)
    answer = pipe.ask(question, mode="llm")
    assert answer.short_answer != "CATL" and answer.mode != "llm", answer
    assert any("CATL" in n and "is not in the article of the passage it names" in n for n in answer.notes)
    seed_window = windows.index(SEED_ID) + 1  # named where it stands, the same phrase is the answer
    honest = Pipeline(two_articles.settings, llm=ScriptedLLM(reply=f"ANSWER: CATL\nPASSAGE: {seed_window}"),
                      embedder=two_articles.embedder).ask(question, mode="llm")
    assert honest.mode == "llm" and honest.short_answer == "CATL" and honest.citations[0].article_id == SEED_ID
