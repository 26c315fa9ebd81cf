"""The rag pipeline on a real index (seed article + the test corpus), real model, real Chroma on disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from rag import Answer, InvalidQuestion, Pipeline
from rag.app import Services, open_services
from rag.core.text import ABSTAIN_TEXT
from rag.query.answer import answer_type
from rag.core.settings import PROJECT_ROOT, Settings
from tests.conftest import TEST_CORPUS

SEED_ID = "catl-baic-xiaomi-battery-jv.txt"
MAJORITY = "CATL will hold a majority stake of 51%, followed by BAIC with 39% and Xiaomi Auto with 5%."
CAPITAL = "The joint venture will start with a capital investment of 1 billion yuan (approximately $138 million)."
KINDLEPATH = "tech/kindlepath-data-breach.txt"  # "Kindlepath was founded in 2011 by former librarian Oliver Strand"
MARROWGATE = "business/marrowgate-quarterly-profits.txt"  # profits in the third quarter of 2024


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    shutil.copytree(TEST_CORPUS, root, dirs_exist_ok=True)
    shutil.copy(PROJECT_ROOT / "corpus" / SEED_ID, root / SEED_ID)
    return root


@pytest.fixture(scope="module")
def services(tmp_path_factory, corpus_dir, embedder) -> Services:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"), corpus_dir=corpus_dir)
    services = open_services(settings, embedder=embedder)
    report = services.ensure_corpus(progress=False)
    files = [p for p in corpus_dir.rglob("*") if p.is_file()]
    assert report is not None and report.skipped == []
    assert len(report.added) + len(report.duplicates) == len(files) and len(report.duplicates) == 1
    return services


@pytest.fixture(scope="module")
def pipeline(services) -> Pipeline:
    return services.pipeline


def article_text(pipe: Pipeline, article_id: str) -> str:
    return pipe.store.get_articles([article_id], with_text=True)[article_id].text


def assert_spans_exact(pipe: Pipeline, answer: Answer) -> None:
    for c in answer.citations:
        assert c.quote == article_text(pipe, c.article_id)[c.start_char_idx : c.end_char_idx]
    for p in answer.passages:
        assert p.text == article_text(pipe, p.article_id)[p.start_char_idx : p.end_char_idx]


# --- the seed article -----------------------------------------------------------------------------------
def test_majority_stake_cites_the_51_percent_sentence(pipeline):
    answer = pipeline.ask("Who holds the majority stake?")
    assert not answer.abstained
    assert answer.citations[0].article_id == SEED_ID
    assert answer.citations[0].quote == MAJORITY
    assert "[1]" in answer.text and "51%" in answer.text
    assert_spans_exact(pipeline, answer)


def test_capital_question_cites_the_1_billion_yuan_sentence(pipeline):
    answer = pipeline.ask("How much capital does the joint venture start with?")
    assert answer.citations[0].quote == CAPITAL
    assert_spans_exact(pipeline, answer)


def test_extractive_short_answer_is_the_span_beside_the_question_words(pipeline):
    """The short answer is the thing of the asked-for kind that stands beside the question's words, an exact
    span of the first citation, given beside the text (which stays the cited sentences); a question asking
    for no such kind has none."""
    who = pipeline.ask("Who founded Kindlepath?")
    assert who.short_answer == "Oliver Strand"
    assert who.text.startswith(who.citations[0].quote + " [1]")
    capital = pipeline.ask("How much capital does the joint venture start with?")
    assert capital.short_answer in ("1 billion yuan", "$138 million")
    for answer in (who, capital):
        quote = answer.citations[0].quote
        assert answer.short_answer in quote and answer.short_answer == answer.short_answer.strip(" ,.;:")
    why = pipeline.ask("Why did the three companies form the joint venture?")
    assert why.short_answer is None


def test_short_answer_spans_hold_the_whole_quantity():
    from rag.query.answer import Candidate, answer_spans

    question = "How many people did the flood leave homeless?"
    spans = answer_spans("It left about 12 million people homeless, officials said.", "number", question)
    assert "12 million" in {"It left about 12 million people homeless, officials said."[s:e] for s, e, _ in spans}
    money = "It paid $19 million for the painting and £322m in all."
    found = {money[s:e] for s, e, strength in answer_spans(money, "number", "How much did it pay?") if strength == 1.0}
    assert {"$19 million", "£322m"} <= found


def test_short_answer_is_the_closest_thing_of_the_kind_or_none_when_two_are_close(pipeline):
    from rag.query.answer import Candidate, short_answer

    bm25 = pipeline.retriever.bm25()
    question = "Who is the chief executive of Velorum?"

    def short(sentence):
        span = short_answer(question, Candidate(0, "x", 0, len(sentence), sentence), bm25)
        return sentence[span[0] : span[1]] if span else None

    assert short("Velorum chief executive Tomas Lindqvist met Helen Ashworth of Pennant Brewery.") == "Tomas Lindqvist"
    assert short("On Monday, Helen Ashworth said Velorum chief executive Tomas Lindqvist would stay.") == "Tomas Lindqvist"
    # Two names as close to the question's words: which one is meant is not clear, so no short answer.
    assert short("On Monday, Helen Ashworth told Velorum staff Tomas Lindqvist would stay.") is None
    assert short("Nobody from the company would comment.") is None


def test_answer_fields_and_json(pipeline):
    answer = pipeline.ask("Who founded Kindlepath?", top_k=3)
    assert 1 <= len(answer.passages) <= 3
    assert [p.score for p in answer.passages] == sorted((p.score for p in answer.passages), reverse=True)
    assert answer.citations and answer.citations[0].article_id == KINDLEPATH
    assert "Oliver Strand" in answer.text
    assert {"retrieve", "rerank", "total"} <= set(answer.timings)
    assert all(v >= 0 for v in answer.timings.values())
    data = json.loads(answer.to_json())
    assert data["citations"][0]["quote"] == answer.citations[0].quote
    assert data["abstained"] is False
    assert_spans_exact(pipeline, answer)


def test_unanswerable_question_abstains_with_related_passages(pipeline):
    answer = pipeline.ask("Which film won the Palme d'Or at the 2005 Cannes Film Festival?")
    assert answer.abstained
    assert answer.text == ABSTAIN_TEXT
    assert answer.citations == []
    assert answer.passages  # shown as related, not as citations


def test_follow_up_carries_the_subject_into_retrieval(pipeline):
    history = [("Who holds the majority stake in the joint venture?", MAJORITY)]
    answer = pipeline.chat("And how much does BAIC hold?", history)
    assert "joint venture" in answer.retrieval_query
    assert answer.citations[0].article_id == SEED_ID
    assert "39%" in answer.text
    # Gradio-style message history works the same way.
    messages = [{"role": "user", "content": history[0][0]}, {"role": "assistant", "content": MAJORITY}]
    assert pipeline.chat("And how much does BAIC hold?", messages).retrieval_query == answer.retrieval_query


def typed(sentence: str, kind: str, question: str) -> float:
    from rag.query.answer import answer_spans

    return max((strength for _, _, strength in answer_spans(sentence, kind, question)), default=0.0)


def test_answer_type_forms():
    grow = "How fast did China's economy grow in 2004?"
    assert typed("It expanded by 9.5% during 2004.", "number", grow) == 1.0
    assert typed("Exports reached 300 units.", "number", grow) == 0.5
    price = "What was the retail price of the console?"
    assert typed("It will cost about 19,800 yen when it launches.", "number", price) == 1.0
    when = "On what date does the festival open?"
    assert typed("It begins on 11 June.", "date", when) == 1.0
    assert typed("It was founded in 1993.", "date", when) == 0.5
    where = "In which city was the ceremony held?"
    assert typed("It was held at a gala in Zurich.", "place", where) == 1.0
    who = "Who founded the airline?"
    assert typed("It was founded by travel agent Naresh Goyal.", "name", who) == 1.0
    assert typed("Nobody knows.", "name", who) == 0.0
    # What the question already names is not an answer to it.
    assert typed("Naresh Goyal spoke.", "name", "What did Naresh Goyal say?") == 0.0


def test_proximity_prefers_the_answer_beside_the_question_words(pipeline):
    from rag.query.answer import answer_spans, proximity

    bm25 = pipeline.retriever.bm25()
    question = "Who is the chief executive of Velorum?"
    weights = bm25.question_weights(bm25.tokenizer(question))

    def near(sentence):
        return proximity(sentence, answer_spans(sentence, "name", question), weights, bm25.tokenizer.stem)

    beside = near("Velorum chief executive Tomas Lindqvist held talks on Monday.")
    far = near("Helen Ashworth held talks in London on Monday, weeks after the offer that Velorum chief executives made.")
    assert beside > far > 0.0
    assert near("Nobody from the drug maker would comment.") == 0.0


def test_periods_read_from_text():
    from rag.core.periods import contradicts, periods_in, published_in, question_periods, years_clash

    assert periods_in("profits for the three months to December").quarters == {4}
    assert periods_in("in the three months ending 30 September").quarters == {3}
    assert periods_in("sales in the first three months of 2005").quarters == {1}
    assert periods_in("first-half profit; Q3 guidance").quarters == {1, 2, 3}
    assert periods_in("the second quarter of 2004 and 1999").years == {2004, 1999}
    asked = question_periods("How much net profit did Time Warner make in the first quarter of 2005?")
    assert contradicts(asked, periods_in("Profit jumped 76% for the three months to December.")) == "quarter 4, not quarter 1"
    assert contradicts(asked, periods_in("Profit in the first quarter of 2005 rose.")) == ""
    assert contradicts(asked, periods_in("Profit rose.")) == ""  # naming no period contradicts nothing
    vote = question_periods("What was the voter turnout at the May 2005 UK general election?")
    assert contradicts(vote, periods_in("Turnout fell to 59% in the last general election in 2001.")) == "2001, not 2005"
    assert years_clash(vote, periods_in("in 2001")) and not years_clash(asked, periods_in("the fourth quarter of 2005"))
    assert published_in(vote, ["", "2005-05-06"]) and not published_in(vote, ["", "2004-12-31"])
    # A question asking for the period itself pins none.
    assert not question_periods("In what year did France last win at Twickenham before 2005?")


def test_evidence_about_another_period_abstains(pipeline):
    """Marrowgate's third-quarter 2024 story does not answer a question about its first quarter of 2025."""
    wrong = pipeline.ask("How much profit did Marrowgate Foods make in the first quarter of 2025?")
    assert wrong.abstained and wrong.text == ABSTAIN_TEXT
    assert "The closest passage is about" in wrong.abstain_reason, wrong.abstain_reason
    assert "not quarter 1" in wrong.abstain_reason or "not 2025" in wrong.abstain_reason, wrong.abstain_reason
    assert wrong.passages and wrong.passages[0].article_id == MARROWGATE  # shown as related
    right = pipeline.ask("How much profit did Marrowgate Foods make in the third quarter of 2024?")
    assert not right.abstained
    assert right.citations[0].article_id == MARROWGATE and "£38.6m" in right.text


def test_a_sentence_recalling_another_year_gives_way_when_the_year_asked_is_covered(tmp_path, embedder):
    """The report of this year's final recalls the 2006 one: undated, the best sentence about 2006 makes the answer
    abstain (the corpus may not cover 2022); published in 2022, the answer comes from the other sentences."""
    from tests.conftest import make_settings

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "larkspur-cup.txt").write_text(
        "Hawks lift the Larkspur Cup\n\n"
        "The Harbourside Hawks beat Tollan 4-2 on Sunday. "
        "The Tollan Owls won the Larkspur Cup final in 2006, when the final of the Larkspur Cup went to extra time.\n",
        encoding="utf-8",
    )
    services = open_services(make_settings(tmp_path / "data", abstain_threshold=-1.0), embedder=embedder)
    services.ingestor.ingest([corpus], progress=False)
    question = "Which team won the 2022 Larkspur Cup final?"
    undated = services.pipeline.ask(question, mode="extractive")
    assert undated.abstained and "2006, not 2022" in undated.abstain_reason, undated
    records = services.store.get_articles(["larkspur-cup.txt"])
    for record in records.values():
        record.published = "2022-06-27"
    services.store.update_article_metadata(list(records.values()))
    services.store.bump_version()
    dated = services.pipeline.ask(question, mode="extractive")
    assert not dated.abstained, dated.abstain_reason
    assert "Harbourside Hawks" in dated.citations[0].quote and "2006" not in dated.text


def scripted_pipeline(tmp_path: Path, embedder, articles: dict[str, str], reply: str):
    """A real store under ``tmp_path`` holding ``articles`` (file name -> text), and a pipeline over it with both
    abstention thresholds off and a scripted LLM that replies ``reply``: (services, corpus folder, pipeline, LLM)."""
    from tests.conftest import make_settings
    from tests.llm_helpers import ScriptedLLM

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in articles.items():
        (corpus / name).write_text(text, encoding="utf-8")
    settings = make_settings(tmp_path / "data", abstain_threshold=-1.0, llm_abstain_threshold=-1.0)
    services = open_services(settings, embedder=embedder)
    services.ingestor.ingest([corpus], progress=False)
    llm = ScriptedLLM(reply=reply, prompts=[])
    return services, corpus, Pipeline(services.pipeline.settings, llm=llm, embedder=embedder, store=services.store), llm


def test_a_question_about_days_no_indexed_article_was_published_in_abstains_without_asking_the_model(
    tmp_path, embedder
):
    """"This week", asked in 2025 of an archive whose newest story is from 2022: no article can report that week,
    however well the 2022 story matches the words, so the answer says so (naming the days and the newest story)
    in both modes, without a model call; the passages stay, shown as related. Asked as of the week the story
    was published, without time words or with vague ones ("recently"), it is answered; an undated article might
    be from any week, so while one is indexed nothing says the week is empty."""
    services, _, pipeline, llm = scripted_pipeline(tmp_path, embedder, {
        "larkspur-cup.txt": "Hawks lift the Larkspur Cup\n\nThe Harbourside Hawks beat the Tollan Owls 4-2 in the "
                            "Larkspur Cup final on Sunday, their first title in a decade.\n",
    }, reply="ANSWER: Harbourside Hawks\nPASSAGE: 1")
    question = "Which team won the Larkspur Cup final this week?"
    assert not pipeline.ask(question, mode="extractive", as_of="2025-01-10").abstained  # undated: could be recent

    records = services.store.get_articles(["larkspur-cup.txt"])
    for record in records.values():
        record.published = "2022-06-27"
    services.store.update_article_metadata(list(records.values()))
    services.store.bump_version()
    for mode in ("extractive", "llm"):
        answer = pipeline.ask(question, mode=mode, as_of="2025-01-10")
        assert answer.abstained and not answer.citations and answer.short_answer is None, answer
        assert answer.abstain_reason.startswith(
            "No indexed article was published 2025-01-02 to 2025-01-10, the days \u201cthis week\u201d points to "
            "as of 2025-01-10; the newest one that may be cited is from 2022-06-27."), answer.abstain_reason
        assert answer.passages[0].article_id == "larkspur-cup.txt"  # shown as related
    assert llm.prompts == []  # the model was never asked
    then = pipeline.ask(question, mode="llm", as_of="2022-06-30")
    assert not then.abstained and then.short_answer == "Harbourside Hawks" and len(llm.prompts) == 1
    for other in ("Which team won the Larkspur Cup final?", "Which team recently won the Larkspur Cup?"):
        # no time words, or vague ones (a preference for recent news, not days the question names): answered
        assert not pipeline.ask(other, mode="extractive", as_of="2025-01-10").abstained, other


def test_an_answer_from_an_article_that_never_mentions_the_questions_rarest_name_abstains(tmp_path, embedder):
    """A near miss: asked for Marks & Spencer's profit, the best sentence is another company's profit in the
    same words. Its article never mentions the question's most specific name, so neither mode gives it (the
    model is asked, its answer not shown, and nothing of it streamed in extractive mode); a name no article
    mentions says so; the company's own question is answered. A name many articles mention is a topic, not
    checked."""
    services, corpus, pipeline, llm = scripted_pipeline(tmp_path, embedder, {
        "multiplex-profit.txt": "Builder lifts profit\n\nBuilder Multiplex reported a pre-tax profit of \u00a367.7m "
                                "for the year to April, up from \u00a351m, helped by its stadium contracts.\n",
        "high-street.txt": "Shoppers return to the high street\n\nRetailers such as Marks & Spencer saw more "
                           "shoppers in December, a survey of town centres found. Footfall rose by 3% on the year.\n",
    }, reply="ANSWER: \u00a367.7m\nPASSAGE: 1")

    near_miss = "What pre-tax profit did Marks & Spencer report for the year to April?"
    for mode in ("extractive", "llm"):
        answer = pipeline.ask(near_miss, mode=mode)
        assert answer.abstained and not answer.citations and answer.short_answer is None, answer
        assert answer.abstain_reason.startswith(
            "The best answer found comes from an article that never mentions \u201cMarks\u201d, which the question "
            "names"), answer.abstain_reason
        assert answer.passages[0].article_id == "multiplex-profit.txt"  # shown as related
    assert len(llm.prompts) == 1  # asked; its answer came from the wrong article
    assert list(pipeline.ask_stream(near_miss, mode="extractive"))[0] == ABSTAIN_TEXT  # nothing of it streamed

    unknown = pipeline.ask("What pre-tax profit did Glenfarrow Mills report for the year to April?", mode="llm")
    assert unknown.abstained and unknown.abstain_reason.startswith(
        "No indexed article mentions \u201cGlenfarrow\u201d, which the question names."), unknown.abstain_reason

    for mode in ("extractive", "llm"):
        own = pipeline.ask("What pre-tax profit did Multiplex report for the year to April?", mode=mode)
        assert not own.abstained and "\u00a367.7m" in own.text and own.citations[0].article_id == "multiplex-profit.txt"

    # Marks & Spencer in two articles of three: more than one and more than 1 in 100, a topic; not checked.
    (corpus / "retail-survey.txt").write_text(
        "Retail survey\n\nMarks & Spencer and Next were named the most visited stores in a survey of "
        "2,000 shoppers.\n", encoding="utf-8")
    services.ingestor.ingest([corpus], progress=False)
    pipeline.refresh()
    topic = pipeline.ask(near_miss, mode="extractive")
    assert not topic.abstained and topic.citations[0].article_id == "multiplex-profit.txt", topic


def test_a_passage_copied_in_two_articles_is_cited_from_the_first_copy_whichever_ranks_higher(tmp_path, embedder):
    """Two wire copies of one story, differing in their headlines: their identical passages are one passage,
    cited from the first copy by path, whichever copy's passage the rankings put first."""
    from tests.conftest import make_settings

    body = ("The council announced the decision on Tuesday evening after a long meeting. "
            "The Marlow ferry service will stop running in March after the operator lost its subsidy. "
            "About 1,200 passengers use the crossing each day, most of them commuters who would face a "
            "forty-minute drive around the estuary instead.")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a-wire.txt").write_text(f"Ferry to stop\n\n{body}\n", encoding="utf-8")
    (corpus / "b-paper.txt").write_text(f"Marlow loses its ferry\n\n{body}\n", encoding="utf-8")
    settings = make_settings(tmp_path / "data", chunk_tokens=32, chunk_overlap=0)  # the headline in a chunk alone
    services = open_services(settings, embedder=embedder)
    services.ingestor.ingest([corpus], progress=False)
    retriever = services.pipeline.retriever
    bm25 = retriever.bm25()
    copies = [r for r in bm25.rows if r.text.startswith("The Marlow ferry")]
    assert sorted(r.article_id for r in copies) == ["a-wire.txt", "b-paper.txt"]  # one identical chunk each
    for ranked in (copies, copies[::-1]):
        passages = retriever._fuse([(r, 0.8) for r in ranked], [(r, 5.0) for r in ranked], 5, bm25)
        assert [(p.article_id, p.duplicates) for p in passages] == [("a-wire.txt", ["b-paper.txt"])]
    answer = services.pipeline.ask("How many passengers use the Marlow ferry each day?", mode="extractive")
    assert answer.citations[0].article_id == "a-wire.txt" and "1,200" in answer.citations[0].quote


def test_a_story_republished_under_another_headline_is_one_passage_headline_chunk_included(tmp_path, embedder):
    """The same story under two headlines, each article one chunk that starts with its headline: the chunks
    differ only in that line, so they are one passage, cited from the first copy by path; another story is not
    merged into it."""
    from tests.conftest import make_settings

    body = ("The Marlow ferry service will stop running in March after the operator lost its subsidy. "
            "About 1,200 passengers use the crossing each day.")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a-wire.txt").write_text(f"Ferry to stop\n\n{body}\n", encoding="utf-8")
    (corpus / "b-paper.txt").write_text(f"Marlow loses its ferry\n\n{body}\n", encoding="utf-8")
    (corpus / "c-other.txt").write_text("Bridge opens\n\nThe Marlow bridge opened on Monday.\n", encoding="utf-8")
    services = open_services(make_settings(tmp_path / "data"), embedder=embedder)
    services.ingestor.ingest([corpus], progress=False)
    retriever = services.pipeline.retriever
    bm25 = retriever.bm25()
    rows = sorted(bm25.rows, key=lambda r: r.article_id)
    assert [(r.article_id, r.start) for r in rows] == [("a-wire.txt", 0), ("b-paper.txt", 0), ("c-other.txt", 0)]
    for ranked in (rows, rows[::-1]):
        passages = retriever._fuse([(r, 0.8) for r in ranked], [(r, 5.0) for r in ranked], 5, bm25)
        assert sorted((p.article_id, p.duplicates) for p in passages) == [
            ("a-wire.txt", ["b-paper.txt"]), ("c-other.txt", [])]
    answer = services.pipeline.ask("How many passengers use the Marlow ferry each day?", mode="extractive")
    assert answer.citations[0].article_id == "a-wire.txt" and answer.passages[0].duplicates == ["b-paper.txt"]


def test_video_player_and_gallery_furniture_is_never_a_candidate_or_read(tmp_path, embedder):
    """A news site's video player and photo gallery leave their titles in the plain text, repeating the story's
    words. Those sentences are no candidates, so the answer cites the story's own sentence; the model's
    windows leave them out as neighbours too, and the stored text keeps them."""
    from tests.conftest import make_settings
    from rag.query.reader import reader_windows

    text = ("Kelso bridge reopens\n\n"
            "JUST WATCHED Kelso harbour bridge reopens to traffic after the long repair Replay More Videos ... "
            "MUST WATCH Kelso harbour bridge reopens to traffic after the long repair 02:15\n"
            "The Kelso harbour bridge reopened to traffic on Monday. Hide Caption 1 of 9 Photos: Kelso harbour "
            "bridge reopens to traffic after the long repair Crowds cross the harbour bridge. Engineers replaced "
            "the deck and the cables.\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "kelso.txt").write_text(text, encoding="utf-8")
    services = open_services(make_settings(tmp_path / "data"), embedder=embedder)
    services.ingestor.ingest([corpus], progress=False)
    pipe = services.pipeline
    question = "When did the Kelso harbour bridge reopen to traffic after the long repair?"
    evidence = pipe.retrieve(question, 5, {})
    result = pipe.extract(question, evidence)
    texts = [c.text for c in result.candidates]
    assert texts and not [t for t in texts if "WATCH" in t or "Hide Caption" in t], texts
    answer = pipe.ask(question, mode="extractive")
    assert answer.citations[0].quote == "The Kelso harbour bridge reopened to traffic on Monday."
    windows = reader_windows(result.candidates, evidence.passages, evidence.articles, 4)
    read = " ".join(w.text for w, _ in windows)
    assert "reopened to traffic on Monday" in read and "WATCH" not in read and "Hide Caption" not in read
    assert article_text(pipe, "kelso.txt") == text


def test_a_headline_alone_is_not_a_body_to_match_on():
    """A chunk holding only its headline keeps its text as its near-duplicate key, so the headline-only chunks
    of two stories never merge on an empty body; a later chunk is keyed on its text as it stands."""
    from rag.index.records import ChunkRecord
    from rag.query.retrieve import _body_text

    alone = ChunkRecord("a.txt", "0" * 64, 0, "Ferry to stop\n\n", 0, 15, title="Ferry to stop")
    first = ChunkRecord("a.txt", "0" * 64, 0, "Ferry to stop\n\nThe ferry stops.", 0, 31, title="Ferry to stop")
    later = ChunkRecord("a.txt", "0" * 64, 1, "Ferry to stop\nis what they said.", 40, 72, title="Ferry to stop")
    assert _body_text(alone) == alone.text
    assert _body_text(first) == "\nThe ferry stops."
    assert _body_text(later) == later.text


def test_answer_type_detection():
    assert answer_type("Who founded Jet Airways?") == "name"
    assert answer_type("How much capital does it start with?") == "number"
    assert answer_type("On what date did Lenovo sign?") == "date"
    assert answer_type("In which town is Woodhill prison?") == "place"
    assert answer_type("Why did it happen?") == "other"


# --- awkward questions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("question", ["", "   \n\t ", "\u200b \u200b\u2060", "\x00\x01\x7f"])
def test_empty_question_is_a_clear_error(pipeline, question):
    with pytest.raises(InvalidQuestion, match="type a question"):
        pipeline.ask(question)


def test_very_long_question_is_shortened_not_fatal(pipeline):
    answer = pipeline.ask("Who holds the majority stake? " + "lorem ipsum " * 900)
    assert len("Who holds the majority stake? " + "lorem ipsum " * 900) > 10_000
    assert any("shortened" in note for note in answer.notes)
    assert isinstance(answer.text, str) and answer.text


@pytest.mark.parametrize("question", ["合资企业的多数股权由谁持有？", "Wer hält die Mehrheit an dem Unternehmen?", "🔋❓"])
def test_non_english_questions_answer_or_abstain(pipeline, question):
    answer = pipeline.ask(question)
    assert answer.text
    assert answer.abstained or answer.citations
    assert_spans_exact(pipeline, answer)


def test_thread_safety_same_answers_in_parallel(pipeline):
    questions = [
        "Who holds the majority stake?", "How much capital does the joint venture start with?",
        "Who founded Kindlepath?", "Which film won the Palme d'Or at the 2005 Cannes Film Festival?",
    ] * 3
    expected = {q: pipeline.ask(q).text for q in set(questions)}
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def worker(i: int, q: str) -> None:
        try:
            results[i] = pipeline.ask(q).text
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, q)) for i, q in enumerate(questions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert all(results[i] == expected[q] for i, q in enumerate(questions))
    assert [a.text for a in pipeline.ask_many(questions[:4], workers=2)] == [expected[q] for q in questions[:4]]


def test_bm25_follows_deletes_and_adds(pipeline, services, tmp_path):
    """The keyword index stays in step with Chroma after an ingest and a delete, without a restart."""
    article = tmp_path / "zanzibar-clove-harvest.txt"
    article.write_text("Zanzibar clove harvest\n\nThe Zanzibar clove harvest reached 4,200 tonnes, said Amina Qorro.\n")
    services.ingestor.ingest([article], progress=False)
    answer = pipeline.ask("How large was the Zanzibar clove harvest?")
    assert answer.citations and answer.citations[0].article_id == article.name
    assert "4,200 tonnes" in answer.text
    services.ingestor.delete(article.name)
    after = pipeline.ask("How large was the Zanzibar clove harvest?")
    assert all(p.article_id != article.name for p in after.passages)


def test_questions_answer_from_the_previous_keyword_index_while_another_thread_rebuilds_it(pipeline, services,
                                                                                          tmp_path):
    """A write makes the BM25 index stale; while one thread rebuilds it the others do not wait for it (they
    answer from the previous version, dense hits included), and refresh() brings in what was written."""
    retriever = pipeline.retriever
    before = retriever.bm25()
    article = tmp_path / "orkney-kelp-farm.txt"
    article.write_text("Orkney kelp farm\n\nThe Orkney kelp farm of Ishbel Tannock harvested 310 tonnes this spring.\n")
    services.ingestor.ingest([article], progress=False)
    try:
        assert retriever._lock.acquire(timeout=10)  # as if another question were rebuilding it now
        try:
            answers: list = []
            asker = threading.Thread(target=lambda: answers.append(pipeline.ask("How much did the Orkney kelp farm "
                                                                                "harvest?")), daemon=True)
            asker.start()
            asker.join(120)
            assert answers, "the question waited for the rebuild"  # (a wait would last as long as the lock)
            assert retriever.bm25() is before
            assert all(p.article_id != article.name for p in answers[0].passages)  # not even by dense search
        finally:
            retriever._lock.release()
        pipeline.refresh()
        assert retriever.bm25() is not before
        fresh = pipeline.ask("How much did the Orkney kelp farm harvest?")
        assert fresh.citations and fresh.citations[0].article_id == article.name and "310 tonnes" in fresh.text
    finally:
        services.ingestor.delete(article.name)
        pipeline.refresh()


def test_unpunctuated_article_quotes_a_bounded_exact_span(pipeline, services, tmp_path):
    """A one-line article without sentence punctuation (a transcript, a scraped table) is not one huge
    sentence: the quote is a short exact span around the answer."""
    from rag.core.sentences import MAX_SENTENCE_CHARS

    filler = " ".join(f"the harbour board discussed agenda item {i} and moved on" for i in range(300))
    fact = "the Quorvik lighthouse keeper Hilde Amsel retired after 41 years of service"
    article = tmp_path / "harbour-board-minutes.txt"
    article.write_text(f"Harbour board minutes\n\n{filler} {fact} {filler}\n")
    services.ingestor.ingest([article], progress=False)
    try:
        answer = pipeline.ask("After how many years of service did the Quorvik lighthouse keeper retire?")
        assert answer.citations and answer.citations[0].article_id == article.name
        quote = answer.citations[0].quote
        assert "41 years" in quote and len(quote) <= MAX_SENTENCE_CHARS
        assert_spans_exact(pipeline, answer)
    finally:
        services.ingestor.delete(article.name)


def test_top_k_is_clamped(pipeline):
    assert len(pipeline.ask("Who holds the majority stake?", top_k=-3).passages) == 1
    assert len(pipeline.ask("Who holds the majority stake?", top_k=10_000).passages) <= 50


# --- CLI ----------------------------------------------------------------------------------------------
@pytest.mark.heavy
def test_cli_ask_json(pipeline):
    env = {"RAG_DATA_DIR": str(pipeline.settings.data_dir), "RAG_CORPUS_DIR": str(pipeline.settings.corpus_dir),
           "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "rag", "ask", "Who holds the majority stake?", "--json"],
                         capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["citations"][0]["quote"] == MAJORITY
    plain = subprocess.run([sys.executable, "-m", "rag", "ask", "Who holds the majority stake?"],
                           capture_output=True, text=True, env=env, cwd=PROJECT_ROOT, timeout=300)
    assert plain.returncode == 0 and "[1]" in plain.stdout and MAJORITY in plain.stdout
