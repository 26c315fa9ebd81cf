"""Fit the time preference of retrieval (rag/core/calibration.py: RECENT_DAYS, STALE_WEIGHT, OUT_OF_WINDOW_WEIGHT)
on dated questions, with cross-validated figures.

    python bench/time_calibration.py QUESTIONS.jsonl --index DATA_DIR [--folds 5 --repeats 10]

The questions need a ``question_date`` (RealTime QA's do) and the index publish dates (ingested with the
corpus's manifest). Every grid point is run in extractive mode with each question asked as of its date; a
question counts as right when an answerable one is answered with a gold answer in the answer and a first
citation from a gold article or quoting a gold answer, and an unanswerable one abstains. The grid point with
the most right answers on the training folds is scored on the held-out fold.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

GRID = {
    "RECENT_DAYS": [4, 8, 15, 31],
    "STALE_WEIGHT": [1.0, 0.95, 0.9, 0.8, 0.7],
    "OUT_OF_WINDOW_WEIGHT": [1.0, 0.9, 0.8, 0.7, 0.6],
}
# A question with time words depends only on OUT_OF_WINDOW_WEIGHT, one without only on the other two: each
# question is run over its own part of the grid, and the full grid is put together from the parts.


def right(question, answer) -> bool:
    """Whether ``answer`` is right for ``question`` (see the module docstring)."""
    from rag.eval import contains_answer

    if not question.answers:
        return answer.abstained
    if answer.abstained or not contains_answer(answer.text, question.answers):
        return False
    first = answer.citations[0] if answer.citations else None
    return bool(first) and (first.article_id in question.gold_articles
                            or contains_answer(first.quote, question.answers))


def _run(pipeline, questions, values: dict) -> list[bool]:
    from rag.query import scope

    for name, value in values.items():
        setattr(scope, name, value)
    return [right(q, pipeline.ask(q.question, mode="extractive", as_of=q.question_date)) for q in questions]


def collect(pipeline, questions) -> dict[tuple, list[bool]]:
    """For every grid point: whether each question is answered right."""
    from rag.core.timewords import parse_date, question_window

    timed = [question_window(q.question, parse_date(q.question_date)) is not None for q in questions]
    with_words = [q for q, t in zip(questions, timed) if t]
    without = [q for q, t in zip(questions, timed) if not t]
    print(f"{len(with_words)} questions with time words, {len(without)} without", flush=True)
    by_window = {w: _run(pipeline, with_words, {"OUT_OF_WINDOW_WEIGHT": w}) for w in GRID["OUT_OF_WINDOW_WEIGHT"]}
    by_recency = {(d, s): _run(pipeline, without, {"RECENT_DAYS": d, "STALE_WEIGHT": s})
                  for d in GRID["RECENT_DAYS"] for s in GRID["STALE_WEIGHT"]}
    results = {}
    for d, s, w in itertools.product(*GRID.values()):
        parts = {True: iter(by_window[w]), False: iter(by_recency[(d, s)])}
        results[(d, s, w)] = [next(parts[t]) for t in timed]
    return results


def best(results: dict[tuple, list[bool]], rows: list[int]) -> tuple:
    return max(results, key=lambda p: (sum(results[p][i] for i in rows), p))  # ties: the milder preference


def cross_validate(results: dict[tuple, list[bool]], n: int, folds: int, repeats: int) -> None:
    rng = random.Random(0)
    held, chosen = [], []
    for _ in range(repeats):
        order = list(range(n))
        rng.shuffle(order)
        for k in range(folds):
            test = order[k::folds]
            train = [i for i in order if i not in set(test)]
            point = best(results, train)
            chosen.append(point)
            held.append(sum(results[point][i] for i in test) / len(test))
    full = best(results, list(range(n)))
    names = list(GRID)
    print(f"best on all questions: {dict(zip(names, full))} -> {sum(results[full]) / n:.3f} right")
    print(f"no time preference (all weights 1.0): "
          f"{max(sum(v) for p, v in results.items() if p[1] == 1.0 and p[2] == 1.0) / n:.3f} right")
    print(f"cross-validated ({folds}-fold x {repeats}): {statistics.mean(held):.3f} right; chosen points: "
          + ", ".join(f"{dict(zip(names, p))} x{chosen.count(p)}" for p in sorted(set(chosen), key=chosen.count)[-3:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("questions")
    parser.add_argument("--index", required=True, type=Path, help="data folder of a dated index")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    from rag.app import open_services
    from rag.core.settings import get_settings
    from rag.eval import load_questions

    questions, _ = load_questions(args.questions)
    services = open_services(get_settings(data_dir=args.index, chroma_host=None))
    services.pipeline.warm_up()
    results = collect(services.pipeline, questions)
    cross_validate(results, len(questions), args.folds, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
