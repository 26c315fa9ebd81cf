"""Fast unit tests of the pure parts of evaluation: normalisation, answer, citation and retrieval metrics,
scoring and aggregation, percentiles, question records and the report tables, on tiny hand-made inputs."""

from __future__ import annotations

import math

import pytest

from rag.core.types import Answer, Citation, Passage
from rag.eval import (
    ArticleMatcher, EvalQuestion, aggregate, citation_is_correct, compare, contains_answer, evidence_overlap,
    evidence_retrieved, exact_match, find_span, format_table, gold_rank, normalize_answer, percentile,
    score_answer, speed_summary, strip_markers, summarise, token_f1,
)


# --- normalisation and answer metrics ----------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("The Cat sat on a mat.", "cat sat on mat"),
    ("An apple, the pear!", "apple pear"),
    ("Théodore", "theodore"),                 # combining accent dropped (NFKD)
    ("Jean-Francois Theodore", "jean francois theodore"),
    ("Jean\u2013Fran\u00e7ois", "jean francois"),  # en dash, cedilla
    ("\ufb01nal\u00a0score", "final score"),    # ligature and no-break space (NFKD)
    ("Don\u2019t Cry", "dont cry"),           # curly apostrophe joins like a straight one
    ("Boys Don't Cry", "boys dont cry"),
    ("$1.13bn", "1.13bn"),
    ("£98", "98"),
    ("€5 m", "5 m"),
    ("19,800 yen", "19800 yen"),
    ("3,000,000", "3000000"),
    ("72%", "72 percent"),
    ("72 per cent", "72 percent"),
    ("1.13", "1.13"),                         # a decimal point is kept
    ("in 1997.", "in 1997"),                  # a full stop is not
    ("a an the", ""),
    ("", ""),
    (None, ""),
])
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_currency_and_number_forms_match():
    assert exact_match("$1.13bn", ["1.13bn"]) == 1.0
    assert exact_match("1.13bn", "$1.13bn") == 1.0
    assert exact_match("113bn", ["1.13bn"]) == 0.0
    assert exact_match("19800 yen", ["19,800 yen"]) == 1.0
    assert contains_answer("profits rose to $1.13bn last year", ["1.13bn"]) == 1.0


def test_exact_match():
    assert exact_match("The 8 December.", ["8 December"]) == 1.0
    assert exact_match("8 Dec", ["8 December"]) == 0.0
    assert exact_match("McCain", ["John McCain", "McCain"]) == 1.0
    assert exact_match("THÉODORE", "Theodore") == 1.0


def test_token_f1_known_values():
    # pred tokens [cat, sat, on, mat], gold [cat, sat]: P = 2/4, R = 2/2, F1 = 2/3
    assert token_f1("The cat sat on the mat", ["a cat sat"]) == pytest.approx(2 / 3)
    # the best gold counts
    assert token_f1("John McCain", ["McCain", "John McCain"]) == 1.0
    assert token_f1("Jean-Francois", ["Jean Francois Theodore"]) == pytest.approx(0.8)  # P 1, R 2/3
    assert token_f1("nothing in common", ["8 December"]) == 0.0
    assert token_f1("the", ["8 December"]) == 0.0  # normalises to empty


def test_contains_answer_is_token_aligned():
    assert contains_answer("Lenovo signed with IBM on 8 December 2004.", ["8 December"]) == 1.0
    assert contains_answer("It cost 200 dollars", ["20"]) == 0.0
    assert contains_answer("It cost £20.", ["£20"]) == 1.0
    assert contains_answer("anything", ["", "the"]) == 0.0  # golds that normalise to nothing are ignored


def test_unanswerable_scores_follow_squad2():
    for metric in (exact_match, token_f1, contains_answer):
        assert metric("", []) == 1.0
        assert metric("Google made $369m", []) == 0.0
        assert metric(None, None) == 1.0


def test_strip_markers():
    assert strip_markers("BAIC holds 39% [1]. CATL holds 51% [2, 3]") == "BAIC holds 39%. CATL holds 51%"
    assert strip_markers("The answer [12]") == "The answer"
    assert exact_match(strip_markers("8 December [1]"), ["8 December"]) == 1.0


def test_evidence_overlap_and_citation_correctness():
    evidence = "The joint venture will start with a capital investment of 1 billion yuan."
    assert evidence_overlap(evidence, evidence) == 1.0
    assert evidence_overlap("nothing related", evidence) == 0.0
    # tokens of the evidence (articles dropped): joint venture will start with capital investment of 1 billion yuan
    half = "joint venture will start with capital"
    assert evidence_overlap(half, evidence) == pytest.approx(6 / 11)
    assert citation_is_correct(half, [], evidence)
    assert citation_is_correct("It starts with 1 billion yuan.", ["1 billion yuan"], None)
    assert not citation_is_correct("CATL holds 51%.", ["1 billion yuan"], evidence)


def _passage(article_id, start=0, end=100, text="x", duplicates=()):
    return Passage(chunk_id=f"{article_id}#{start}", article_id=article_id, title="", source="", text=text,
                   start_char_idx=start, end_char_idx=end, score=1.0, duplicates=list(duplicates))


def test_article_matching_treats_identical_copies_as_one():
    matcher = ArticleMatcher({"a.txt": "s1", "b.txt": "s1", "c.txt": "s2"})
    assert matcher.same("a.txt", "b.txt") and matcher.same("b.txt", "a.txt")
    assert not matcher.same("a.txt", "c.txt")
    assert not matcher.same("x.txt", "y.txt")  # unknown ids match only themselves
    assert matcher.same("x.txt", "x.txt")
    passages = [_passage("c.txt"), _passage("a.txt")]
    assert gold_rank(passages, "b.txt", matcher) == 2
    assert gold_rank(passages, "c.txt", matcher) == 1
    assert gold_rank(passages, "z.txt", matcher) is None
    assert gold_rank([_passage("c.txt", duplicates=["z.txt"])], "z.txt", matcher) == 1


def test_evidence_retrieved_by_text_or_span():
    text = "First sentence.  The  answer is\nhere. Last one."
    evidence = "The answer is here."
    span = find_span(text, evidence)
    assert span is not None and text[span[0]:span[1]] == "The  answer is\nhere."
    matcher = ArticleMatcher({"a.txt": "s", "b.txt": "s"})
    inside = _passage("a.txt", 10, 40, text=text[10:40])
    assert evidence_retrieved([inside], evidence, "b.txt", span, matcher)  # span of a byte-identical copy
    cut = _passage("a.txt", 0, 25, text=text[0:25])
    assert not evidence_retrieved([cut], evidence, "b.txt", span, matcher)
    assert evidence_retrieved([_passage("q.txt", text="so The answer is here. ok")], evidence)
    assert not evidence_retrieved([inside], None)


def test_score_answer_and_aggregate():
    matcher = ArticleMatcher({"a.txt": "s1", "b.txt": "s2"})
    q = EvalQuestion("Q?", ["8 December"], id="q", article="a.txt", evidence="Signed on 8 December.", type="when")
    cite = Citation(n=1, article_id="a.txt", title="", source="", quote="Signed on 8 December.", start_char_idx=0,
                    end_char_idx=21, score=1.0)
    wrong = Citation(n=2, article_id="b.txt", title="", source="", quote="Unrelated.", start_char_idx=0,
                     end_char_idx=10, score=1.0)
    answer = Answer(question="Q?", text="Signed on 8 December. [1] Unrelated. [2]", citations=[cite, wrong],
                    passages=[_passage("b.txt"), _passage("a.txt", text="Signed on 8 December.")])
    m = score_answer(q, answer, matcher)
    assert (m["hit@1"], m["hit@5"], m["mrr"]) == (0.0, 1.0, 0.5)
    assert m["evidence_hit"] == 1.0 and m["contains"] == 1.0 and m["em"] == 0.0
    assert m["citation_precision"] == 0.5 and m["first_citation_gold"] == 1.0
    assert m["false_abstention"] == 0.0 and m["abstain_accuracy"] is None

    unanswerable = EvalQuestion("U?", [], id="u")
    abstained = Answer(question="U?", text="The indexed articles do not answer this question.", abstained=True)
    mu = score_answer(unanswerable, abstained, matcher)
    assert mu["abstain_accuracy"] == 1.0 and mu["hit@1"] is None and mu["em"] is None
    assert unanswerable.type == "unanswerable"

    rows = [
        {"answerable": True, "metrics": m, "type": "when"},
        {"answerable": False, "metrics": mu, "type": "unanswerable"},
    ]
    agg = aggregate(rows)
    assert agg["n"] == 2 and agg["answerable"] == 1 and agg["unanswerable"] == 1
    assert agg["mrr"] == 0.5 and agg["mrr_n"] == 1 and agg["abstain_accuracy"] == 1.0


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_percentile_interpolates_and_ignores_missing_values():
    assert percentile([4, 1, 3, 2], 0) == 1 and percentile([4, 1, 3, 2], 100) == 4  # any input order
    assert percentile([1, 2], 25) == pytest.approx(1.25)
    assert percentile([1.0, None, math.nan, 3.0], 50) == 2.0
    assert percentile([None, math.nan], 50) is None


# --- scoring details --------------------------------------------------------------------------------------------


def _citation(n, article_id, quote):
    return Citation(n=n, article_id=article_id, title="", source="", quote=quote, start_char_idx=0,
                    end_char_idx=len(quote), score=1.0)


def test_score_answer_judges_the_short_answer_and_strips_markers():
    matcher = ArticleMatcher({"a.txt": "s1"})
    q = EvalQuestion("When?", ["8 December"], id="q", article="a.txt")
    llm = Answer(question="When?", text="8 December \u2014 Signed on 8 December. [1]", short_answer="8 December",
                 citations=[_citation(1, "a.txt", "Signed on 8 December.")], passages=[_passage("a.txt")])
    m = score_answer(q, llm, matcher)
    assert m["em"] == 1.0 and m["f1"] == 1.0 and m["contains"] == 1.0 and m["gold_rank"] == 1
    assert m["evidence_hit"] is None  # no evidence sentence given
    extractive = Answer(question="When?", text="Signed on 8 December. [1]", citations=llm.citations,
                        passages=[_passage("b.txt"), _passage("c.txt")])
    m = score_answer(q, extractive, matcher)
    assert m["em"] == 0.0 and m["contains"] == 1.0  # EM of the whole sentence, the marker removed
    assert (m["hit@1"], m["hit@5"], m["mrr"], m["gold_rank"]) == (0.0, 0.0, 0.0, None)


def test_score_answer_counts_an_abstention_as_the_empty_answer():
    q = EvalQuestion("When?", ["8 December"], id="q", article="a.txt")
    abstained = Answer(question="When?", text="The indexed articles do not answer this question.", abstained=True)
    m = score_answer(q, abstained, ArticleMatcher())
    assert (m["em"], m["f1"], m["contains"], m["false_abstention"]) == (0.0, 0.0, 0.0, 1.0)
    assert m["citation_precision"] is None and m["first_citation_gold"] is None


def test_first_citation_ok_accepts_a_quote_of_the_gold_answer():
    matcher = ArticleMatcher({"gold.txt": "s1", "other.txt": "s2"})
    q = EvalQuestion("Who won?", ["Ada Lovelace"], id="q", articles=["gold.txt", "gold2.txt"])
    assert q.article is None and q.gold_articles == ["gold.txt", "gold2.txt"]
    q.article = q.articles[0]
    answer = Answer(question="Who won?", text="Ada Lovelace won. [1]",
                    citations=[_citation(1, "other.txt", "Ada Lovelace won the race.")],
                    passages=[_passage("other.txt"), _passage("gold2.txt")])
    m = score_answer(q, answer, matcher)
    assert m["first_citation_gold"] == 0.0 and m["first_citation_ok"] == 1.0
    assert m["gold_rank"] == 2 and m["mrr"] == 0.5  # the best rank over every gold article


def test_citation_correctness_threshold():
    evidence = "one two three four"
    assert citation_is_correct("one two", [], evidence)  # exactly half the evidence tokens
    assert not citation_is_correct("one", [], evidence)
    assert citation_is_correct("one", [], evidence, min_overlap=0.25)
    assert not citation_is_correct("one two", [], None)


def test_find_span_edge_cases():
    assert find_span(None, "x") is None and find_span("text", "") is None and find_span("text", None) is None
    assert find_span("a b", "c") is None
    assert find_span("say (1+1)=2 now", "(1+1)=2") == (4, 11)  # regex characters are literal


def test_article_matcher_knows_only_indexed_ids():
    matcher = ArticleMatcher({"a.txt": "s"})
    assert matcher.known("a.txt") and not matcher.known("b.txt") and not matcher.known(None)
    assert not matcher.same(None, "a.txt") and not matcher.same("a.txt", "")


# --- aggregation ------------------------------------------------------------------------------------------------


def _row(type_, answerable, metrics, timings=None, error=None):
    return {"type": type_, "answerable": answerable, "metrics": metrics, "timings": timings or {}, "error": error}


def test_aggregate_skips_metrics_that_do_not_apply():
    rows = [_row("who", True, {"em": 1.0, "f1": 0.5}), _row("who", True, {"em": 0.0, "f1": None}, error="LLMError"),
            _row("unanswerable", False, {"abstain_accuracy": 1.0})]
    agg = aggregate(rows)
    assert agg["em"] == 0.5 and agg["em_n"] == 2 and agg["f1"] == 0.5 and agg["f1_n"] == 1
    assert agg["hit@1"] is None and agg["hit@1_n"] == 0 and agg["errors"] == 1
    assert aggregate([_row("x", True, {"f1": 2 / 3})])["f1"] == 0.6667  # four decimals


def test_speed_summary_puts_total_last():
    rows = [_row("t", True, {}, {"total": 0.3, "retrieve": 0.1}), _row("t", True, {}, {"retrieve": 0.3, "rerank": 0.2,
                                                                                        "total": 0.5})]
    speed = speed_summary(rows)
    assert list(speed) == ["retrieve", "rerank", "total"]
    assert speed["retrieve"] == {"p50": 0.2, "p95": 0.29, "mean": 0.2, "n": 2}
    assert speed["rerank"]["n"] == 1 and speed["total"]["p50"] == 0.4


def test_summarise_groups_by_type_in_name_order():
    rows = [_row("who", True, {"em": 1.0}), _row("unanswerable", False, {"abstain_accuracy": 0.0}),
            _row("who", True, {"em": 0.0})]
    summary = summarise(rows)
    assert list(summary["by_type"]) == ["unanswerable", "who"]
    assert summary["by_type"]["who"]["em"] == 0.5 and summary["overall"]["n"] == 3 and summary["speed"] == {}


# --- question records -------------------------------------------------------------------------------------------


def test_eval_question_coerce():
    assert EvalQuestion.coerce("What?", 4).id == "q005"
    q = EvalQuestion.coerce({"question": "  Who   won? ", "answers": "Ada", "id": 7}, 0)
    assert (q.question, q.answers, q.id, q.type, q.line) == ("Who won?", ["Ada"], "7", "answerable", 1)
    assert EvalQuestion.coerce(q) is q
    with pytest.raises(ValueError, match="question"):
        EvalQuestion.coerce({"answers": ["x"]})


# --- the tables -------------------------------------------------------------------------------------------------


def _report(name, em, abstained, total):
    rows = [dict(_row("who", True, {"em": em, "hit@1": 1.0}, {"total": total}), id="q1", abstained=False),
            dict(_row("unanswerable", False, {"abstain_accuracy": float(abstained)}, {"total": total}), id="u1",
                 abstained=abstained)]
    return {"meta": {"name": name, "top_k": 5, "index": "tiny"}, "summary": summarise(rows), "questions": rows}


def test_format_table_of_a_tiny_report():
    table = format_table(_report("tiny", 1.0, True, 0.25)).splitlines()
    assert table[0] == "tiny: 2 questions (1 answerable, 1 unanswerable) | top_k 5 | index tiny"
    overall = next(line for line in table if line.startswith("overall"))
    assert overall.split()[:3] == ["overall", "2", "1.000"] and overall.split()[-2:] == ["1.000", "-"]  # abst, f-abst
    assert table[-1].split() == ["total", "0.250", "0.250", "0.250"]


def test_compare_names_changed_outcomes():
    a, b = _report("A", 1.0, True, 0.25), _report("B", 0.0, False, 0.5)
    text = compare(a, b, names=("a.json", "b.json"))
    assert "(A = a.json, B = b.json)" in text
    em = next(line for line in text.splitlines() if line.startswith("em "))
    assert em.split() == ["em", "1.000", "0.000", "-1.000"]
    assert "q1 [who]: EM 1->0" in text and "u1 [unanswerable]: abstained True->False" in text
    assert "questions whose outcome differs: 2" in text
    b["questions"] = b["questions"][:1]
    assert "only in A (1): u1" in compare(a, b)
