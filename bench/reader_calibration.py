"""Calibrating the LLM reader's abstention: collect per-question signals, then pick a threshold by cross-validation.

    python bench/reader_calibration.py run QA.jsonl CORPUS_DIR --out rows.jsonl [--model GGUF] [--limit N]
    python bench/reader_calibration.py fit rows.jsonl [more.jsonl ...] [--folds 5 --repeats 20]
    RAG_ABSTAIN_THRESHOLD=-1 python -m rag eval QA.jsonl --corpus DIR --mode extractive --out report.json
    python bench/reader_calibration.py fit-extractive report.json [more.json ...] [--threshold 0.58]

``run`` answers every question in LLM mode with the abstention threshold off (the model is always asked)
over a cached index of CORPUS_DIR (see rag/eval/index_cache.py) and writes one JSON row per question: the
retrieval evidence score, the model's raw reply, whether its phrase was found in a passage, the answer,
and whether it holds a gold answer (a NOT FOUND is always asked again, the reply begun as "ANSWER:").
``fit`` then chooses LLM mode's four evidence thresholds (see ``outcome``): under which it abstains without
asking the model, from which a NOT FOUND gives way to the extractive answer, from which a NOT FOUND is
asked again, and from which it is asked again but the phrase then named stands only when the extractive answer
gives it too. On each training split it takes the thresholds that maximise
(answered correctly + abstained correctly on unanswerable) / questions, scored on the held-out split, over
all given files together (one set of thresholds for every corpus). It prints the held-out
figures per file. ``fit-extractive`` does the same for extractive mode's one threshold (``ABSTAIN_THRESHOLD``),
from evaluation reports run with the threshold off.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


def _norm(text: str) -> str:
    from rag.eval import normalize_answer

    return normalize_answer(text)


def holds_gold(text: str, golds: list[str]) -> bool:
    """The text contains one of the gold answers (normalised as the evaluation does)."""
    text = _norm(text or "")
    return any(_norm(g) and _norm(g) in text for g in golds)


def signals(pipeline, q: dict, llm_passages: int) -> dict:
    """One question's row: the LLM-mode answer and its signals, and the extractive answer beside it."""
    from rag.query.llm_answer import REASK_AGREED_NOTE, REASK_NOTE

    started = time.perf_counter()
    as_of = q.get("question_date")  # asked as of its date, as `rag eval` asks it
    answer = pipeline.ask(q["question"], mode="llm", as_of=as_of)
    seconds = time.perf_counter() - started
    golds = q.get("answers") or []
    extractive = pipeline.ask(q["question"], mode="extractive", as_of=as_of)
    gold_articles = set(q.get("articles") or ([q["article"]] if q.get("article") else []))
    first = answer.citations[0] if answer.citations else None
    said = [*answer.notes, answer.abstain_reason]  # what the pipeline said about the model's reply
    return {
        "id": q["id"], "answerable": bool(golds), "evidence": answer.evidence_score,
        "reply": answer.llm_reply, "abstained": answer.abstained, "notes": answer.notes,
        "abstain_reason": answer.abstain_reason, "short": answer.short_answer, "text": answer.text,
        "contains": (not answer.abstained) and holds_gold(answer.text, golds),
        "short_contains": bool(answer.short_answer) and holds_gold(answer.short_answer, golds),
        "first_article": first.article_id if first else None,
        "first_gold": bool(first) and first.article_id in gold_articles,
        "first_quotes_gold": bool(first) and holds_gold(first.quote, golds),
        "gold_in_passages": any(p.article_id in gold_articles for p in answer.passages[:llm_passages]),
        "seconds": seconds, "generate": answer.timings.get("generate"),
        "ex_abstained": extractive.abstained,
        "ex_contains": (not extractive.abstained) and holds_gold(extractive.text, golds),
        "ungrounded": any("in none of the passages" in n for n in said),
        "not_found": any("found no answer" in n for n in said),
        # NOT FOUND, then, asked again with the reply begun, a phrase found in the passages (which is the answer)
        "reasked": REASK_NOTE in answer.notes or REASK_AGREED_NOTE in answer.notes,
        # ... and the extractive answer gives the same phrase (rag.query.llm_answer.agrees)
        "agreed": REASK_AGREED_NOTE in answer.notes,
    }


def run(args) -> int:
    from rag.app import open_services
    from rag.core.settings import Settings
    from rag.eval.index_cache import cached_index, sidecar_manifest

    overrides = {"llm": "llamacpp", "answer_mode": "llm", "llm_abstain_threshold": -1.0, "llm_reask_threshold": -1.0,
                 "llm_agree_threshold": -1.0}
    if args.model:
        overrides["llm_model_path"] = args.model
    corpus = Path(args.corpus)  # with its manifest of publish dates, as `rag eval --corpus` indexes it
    settings = cached_index(corpus, Settings(**overrides), progress=True, manifest=sidecar_manifest(corpus))
    pipeline = open_services(settings).pipeline
    pipeline.warm_up()
    questions = [json.loads(line) for line in Path(args.questions).read_text().splitlines() if line.strip()]
    questions = questions[: args.limit] if args.limit else questions
    with open(args.out, "w") as out:
        for i, q in enumerate(questions, 1):
            row = signals(pipeline, q, settings.llm_passages)
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"{i:4d} {q['id']:24} ev={row['evidence']:.3f} {'ABST' if row['abstained'] else 'ans '} "
                  f"{'OK ' if row['contains'] else '-- ' if row['answerable'] else 'UNA'} {row['seconds']:5.1f}s "
                  f"{(row['reply'] or '').strip()[:60]!r}", flush=True)
    return 0


def outcome(row: dict, thresholds: tuple[float, float, float, float]) -> dict:
    """The row's result under LLM mode's decision rule with ``thresholds`` = (abstain, override, reask, agree):

    - retrieval evidence under ``abstain``: abstain without asking the model;
    - a phrase found in the passages: the model's answer;
    - NOT FOUND with evidence from ``reask`` on: the model is asked again with its reply begun as "ANSWER:";
      the phrase it then names is the answer when it is found in the passages;
    - NOT FOUND with evidence from ``agree`` on: the same, but the phrase is the answer only when the extractive
      answer gives it too;
    - otherwise NOT FOUND: abstain, unless the evidence reaches ``override`` and the extractive answer has
      enough evidence of its own (then that answer is shown: a small model says NOT FOUND too readily);
    - a phrase found nowhere: the extractive answer if it has enough evidence, else abstain.
    """
    abstain, override, reask, agree = thresholds
    if row["evidence"] < abstain or (row["abstained"] and not row["not_found"] and not row["ungrounded"]):
        shown = None
    elif row["not_found"] and row.get("reasked") and (
        row["evidence"] >= reask or (row["evidence"] >= agree and row.get("agreed"))
    ):
        shown = "llm"
    elif row["not_found"]:
        shown = "extractive" if row["evidence"] >= override and not row["ex_abstained"] else None
    elif row["ungrounded"]:
        shown = None if row["ex_abstained"] else "extractive"
    else:
        shown = "llm"
    right = {"llm": row["contains"], "extractive": row["ex_contains"], None: False}[shown]
    if row["answerable"]:
        return {"correct": bool(right), "false_abstention": shown is None}
    return {"correct": shown is None, "false_abstention": False}


def score(rows: list[dict], thresholds) -> float:
    return sum(outcome(r, thresholds)["correct"] for r in rows) / max(1, len(rows))


OVERRIDES = [round(0.5 + 0.05 * i, 2) for i in range(12)] + [9.9]  # 9.9: NOT FOUND always abstains
REASKS = [round(0.5 + 0.05 * i, 2) for i in range(10)] + [9.9]  # 9.9: NOT FOUND is never asked again
# the agreement threshold: only those under the re-asking one (from which a re-asked phrase stands anyway) or 9.9


def agrees_for(reask: float) -> list[float]:
    return [a for a in REASKS if a < reask] + [9.9]


def best_threshold(rows: list[dict]) -> tuple[float, float, float, float]:
    """The (abstain, override, reask, agree) thresholds that maximise :func:`score` on ``rows``; ties go to the
    lowest abstain and the highest override, reask and agree thresholds.

    The grid holds some 70,000 points and cross-validation fits it 100 times, so each (override, reask, agree)
    takes :func:`outcome` once per row with the model always asked, and numpy then scores every abstain
    threshold at once: under it a row abstains without asking, which is right exactly when it is unanswerable.
    """
    import numpy as np

    candidates = sorted({round(r["evidence"], 3) for r in rows if r["evidence"] < 0.7} | {0.0})
    asked = np.array([r["evidence"] for r in rows])[None, :] >= np.array(candidates)[:, None]
    right_unasked = np.array([not r["answerable"] for r in rows])
    best, best_key = None, None
    for o in OVERRIDES:
        for r in REASKS:
            for g in agrees_for(r):
                right_asked = np.array([outcome(row, (-math.inf, o, r, g))["correct"] for row in rows])
                totals = np.where(asked, right_asked, right_unasked).sum(axis=1)
                for i, a in enumerate(candidates):
                    key = (int(totals[i]), -a, o, r, g)
                    if best_key is None or key > best_key:
                        best, best_key = (a, o, r, g), key
    return best


def summary(rows: list[dict], thresholds) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    results = [outcome(r, thresholds) for r in answerable]
    return {
        "contains": sum(o["correct"] for o in results) / max(1, len(answerable)),
        "false_abstention": sum(o["false_abstention"] for o in results) / max(1, len(answerable)),
        "abstained_unanswerable": sum(outcome(r, thresholds)["correct"] for r in unanswerable) / max(1, len(unanswerable)),
    }


def cross_validate(files: dict[str, list[dict]], choose, summarise, folds: int, repeats: int):
    """Repeated k-fold cross-validation over the rows of all ``files`` together: ``choose(train rows)`` picks
    thresholds, ``summarise(rows, thresholds)`` scores them. Returns the thresholds chosen on each training
    split and, per file, its held-out figures (weighted by the held-out rows of that file)."""
    everything = [dict(r, file=name) for name, rows in files.items() for r in rows]
    rng = random.Random(0)
    held_out: dict[str, list[tuple[dict, int]]] = {name: [] for name in files}
    chosen = []
    for _ in range(repeats):
        order = everything[:]
        rng.shuffle(order)
        for k in range(folds):
            test = order[k::folds]
            train = [r for r in order if r not in test]
            t = choose(train)
            chosen.append(t)
            for name in files:
                part = [r for r in test if r["file"] == name]
                if part:
                    held_out[name].append((summarise(part, t), len(part)))
    figures = {
        name: {key: sum(s[key] * n for s, n in parts) / sum(n for _, n in parts) for key in parts[0][0]}
        for name, parts in held_out.items()
    }
    return chosen, figures


def _print_files(files, figures, fitted) -> None:
    for name, rows in files.items():
        print(f"{name}: cross-validated " + ", ".join(f"{k} {v:.3f}" for k, v in figures[name].items())
              + " | at the full-data threshold " + ", ".join(f"{k} {v:.3f}" for k, v in fitted(rows).items()))


def fit(args) -> int:
    files = {Path(f).name: [json.loads(line) for line in Path(f).read_text().splitlines() if line.strip()]
             for f in args.rows}
    chosen, figures = cross_validate(files, best_threshold, summary, args.folds, args.repeats)
    full = best_threshold([r for rows in files.values() for r in rows])
    print(f"thresholds (abstain, override, reask, agree) on all rows: {full}; chosen on training splits: abstain "
          f"median {statistics.median(t[0] for t in chosen):.3f}, override median "
          f"{statistics.median(t[1] for t in chosen):.2f}, reask median {statistics.median(t[2] for t in chosen):.2f} "
          f"(range {min(t[2] for t in chosen)}-{max(t[2] for t in chosen)}), agree median "
          f"{statistics.median(t[3] for t in chosen):.2f} (range {min(t[3] for t in chosen)}-{max(t[3] for t in chosen)})")
    _print_files(files, figures, lambda rows: summary(rows, full))
    return 0


# --- extractive mode --------------------------------------------------------------------------------------
def extractive_rows(report: Path) -> list[dict]:
    """The rows of a ``rag eval --mode extractive --out`` report run with ``RAG_ABSTAIN_THRESHOLD=-1`` (so every
    question is answered unless its evidence is about another period): evidence, answered, gold contained."""
    rows = []
    for q in json.loads(Path(report).read_text())["questions"]:
        rows.append({"answerable": q["answerable"], "evidence": q["evidence_score"] or 0.0,
                     "clash": q["abstained"], "contains": bool(q["metrics"].get("contains"))})
    return rows


def extractive_summary(rows: list[dict], threshold: float) -> dict:
    """Extractive mode's figures with evidence under ``threshold`` abstaining."""
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    shown = [not r["clash"] and r["evidence"] >= threshold for r in answerable]
    return {
        "contains": sum(s and r["contains"] for s, r in zip(shown, answerable)) / max(1, len(answerable)),
        "false_abstention": shown.count(False) / max(1, len(answerable)),
        "abstained_unanswerable": sum(r["clash"] or r["evidence"] < threshold for r in unanswerable)
        / max(1, len(unanswerable)),
    }


def best_extractive_threshold(rows: list[dict]) -> float:
    """The threshold that maximises the mean over corpora of (answered with a gold answer + unanswerable
    abstained) / questions: each corpus counts the same, however many questions it has."""
    corpora = {r["file"] for r in rows}

    def right(t):
        total = 0.0
        for name in corpora:
            part = [r for r in rows if r["file"] == name]
            s = extractive_summary(part, t)
            answerable = sum(r["answerable"] for r in part)
            total += (s["contains"] * answerable + s["abstained_unanswerable"] * (len(part) - answerable)) / len(part)
        return total

    return max(sorted({round(r["evidence"], 3) for r in rows} | {0.0}), key=lambda t: (right(t), -t))


def fit_extractive(args) -> int:
    files = {Path(f).name: extractive_rows(Path(f)) for f in args.reports}
    chosen, figures = cross_validate(files, best_extractive_threshold, extractive_summary, args.folds, args.repeats)
    full = best_extractive_threshold([dict(r, file=name) for name, rows in files.items() for r in rows])
    print(f"extractive threshold on all rows: {full:.3f}; chosen on training splits: median "
          f"{statistics.median(chosen):.3f} (range {min(chosen):.3f}-{max(chosen):.3f})")
    _print_files(files, figures, lambda rows: extractive_summary(rows, full))
    if args.threshold is not None:
        for name, rows in files.items():
            print(f"{name} at {args.threshold}: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in extractive_summary(rows, args.threshold).items()))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="collect per-question signals in LLM mode")
    r.add_argument("questions")
    r.add_argument("corpus")
    r.add_argument("--out", required=True)
    r.add_argument("--model", type=Path, default=None, help="GGUF file (default: the installed default model)")
    r.add_argument("--limit", type=int, default=None)
    f = sub.add_parser("fit", help="cross-validate the abstention threshold over row files")
    f.add_argument("rows", nargs="+")
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--repeats", type=int, default=20)
    e = sub.add_parser("fit-extractive", help="cross-validate extractive mode's abstention threshold over "
                       "`rag eval --mode extractive --out` reports run with RAG_ABSTAIN_THRESHOLD=-1")
    e.add_argument("reports", nargs="+")
    e.add_argument("--folds", type=int, default=5)
    e.add_argument("--repeats", type=int, default=20)
    e.add_argument("--threshold", type=float, default=None, help="also show the figures at this threshold")
    args = parser.parse_args(argv)
    return {"run": run, "fit": fit, "fit-extractive": fit_extractive}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
