"""The calibrated numbers of answering, in one place, with what depends on what.

Everything here was fitted on the two dev sets as a whole (BBC: 46 questions, RealTime QA: 144), never to
single questions, and checked by cross-validation (``bench/reader_calibration.py``; README, Quality).

How they hang together:

1. Reranking (``rag.query.rerank``) scores each retrieved passage as
   ``DENSE_WEIGHT * cosine(question, passage) + (1 - DENSE_WEIGHT) * keyword coverage``, both in [0, 1].
2. The extractive answerer (``rag.query.answer``) scores candidate sentences with ``SENTENCE_WEIGHTS``.
3. The evidence score of an answer is the mean of four values: the question's keyword coverage of the best
   sentence's article, that sentence's cosine similarity, its score under ``SENTENCE_WEIGHTS`` and the top
   passage's rerank score (step 1). These are on different scales; the mean is only meaningful against the
   thresholds below, which were fitted on it.
4. The thresholds on the evidence score: ``ABSTAIN_THRESHOLD`` (extractive mode), ``LLM_ABSTAIN_THRESHOLD``,
   ``LLM_NOT_FOUND_OVERRIDE``, ``LLM_REASK_THRESHOLD`` and ``LLM_AGREE_THRESHOLD`` (LLM mode, fitted together by
   5-fold cross-validation repeated 10 times).
   They are the defaults of the settings of the same names (``RAG_ABSTAIN_THRESHOLD`` ...).

Changing ``DENSE_WEIGHT`` or ``SENTENCE_WEIGHTS`` (or the embedding model) moves the evidence score, so the
five thresholds must then be fitted again with ``bench/reader_calibration.py``.
"""

from __future__ import annotations

DENSE_WEIGHT = 0.5  # rerank score = DENSE_WEIGHT * cosine + (1 - DENSE_WEIGHT) * keyword coverage

# Candidate sentence score: a weighted sum of its features (see rag.query.answer.Candidate). A grid over these
# weights, scored by answer containment and by the first citation's article.
SENTENCE_WEIGHTS = {
    "dense": 0.1, "typed": 0.3, "proximity": 0.5, "article": 0.5, "period": 0.1, "passage": 0.25, "rank": 0.05,
}

# The reader's windows (rag.query.reader.reader_windows): an article's lede (its first sentence, where a news
# story states its main fact) counts this much more than its candidate score when the windows are picked and
# ordered. Fitted on how often a gold answer is in the four windows the model reads (bench/window_recall.py,
# both dev sets, 5-fold cross-validation repeated 10 times): README, Quality.
LEDE_BONUS = 0.1

ABSTAIN_THRESHOLD = 0.58  # extractive mode: evidence under this abstains
LLM_ABSTAIN_THRESHOLD = 0.57  # LLM mode: evidence under this abstains without asking the model
LLM_NOT_FOUND_OVERRIDE = 0.80  # LLM mode: from this evidence on, the model's NOT FOUND gives way to extraction
LLM_REASK_THRESHOLD = 0.75  # LLM mode: from this evidence on, a NOT FOUND is asked again with the reply begun
LLM_AGREE_THRESHOLD = 0.70  # LLM mode: from this evidence on too, but the phrase then named answers only when the
# extractive answer also gives it (rag.query.llm_answer.agrees)

# Time preference (rag.query.scope): a passage's rerank score is scaled by these, relative to the best-placed
# candidate. Fitted on the RealTime QA dev set asked as of its question dates (bench/time_calibration.py, a grid
# of 4 x 5 x 5 points, extractive answers right = gold answer and a right first citation, or an abstention when
# unanswerable): 0.611 right without a preference, 0.646 at these values, 0.631 cross-validated (5-fold x 10).
RECENT_DAYS = 31  # without time words, articles this many days before the as-of date count as recent
STALE_WEIGHT = 0.95  # without time words: older articles
OUT_OF_WINDOW_WEIGHT = 0.7  # with time words ("this week"): articles outside their window
