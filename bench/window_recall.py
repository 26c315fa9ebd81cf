"""Fit the reader's lede bonus (rag/core/calibration.py: LEDE_BONUS) on how often a gold answer is in the windows
the model reads, with cross-validated figures. No model is run: the windows depend on retrieval only.

    python bench/window_recall.py QA.jsonl CORPUS_DIR [QA.jsonl CORPUS_DIR ...] [--folds 5 --repeats 10]

Each corpus is indexed once into the evaluation cache (rag/eval/index_cache.py; RealTime QA with its manifest
of publish dates) and each answerable question retrieved as ``rag eval`` retrieves it (as of its question date).
For every bonus of the grid, the reader's windows (``rag.query.reader.reader_windows``, ``llm_passages`` of them)
are cut again, and a question counts when one of them holds a gold answer (normalised as the evaluation does).
The bonus with the most such questions on the training folds (all corpora pooled; ties go to the smaller bonus)
is scored on the held-out fold; the share whose first window holds it is printed beside.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

GRID = [0.0, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3]


def _reader_calibration():
    """bench/reader_calibration.py as a module, for its cross-validation loop."""
    spec = importlib.util.spec_from_file_location("reader_calibration", Path(__file__).with_name("reader_calibration.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect(questions_file: Path, corpus: Path) -> list[dict]:
    """One row per answerable question: for each bonus of :data:`GRID`, whether a window / the first window holds
    a gold answer."""
    from rag.app import open_services
    from rag.core.settings import get_settings
    from rag.eval import load_questions, normalize_answer
    from rag.eval.index_cache import cached_index, sidecar_manifest
    from rag.query import reader
    from rag.query.scope import build_scope

    settings = cached_index(corpus, get_settings(), progress=True, manifest=sidecar_manifest(corpus))
    pipeline = open_services(settings).pipeline
    questions, _ = load_questions(questions_file)
    rows = []
    for q in questions:
        golds = [g for g in (normalize_answer(a) for a in q.answers) if g]
        if not golds:
            continue
        scope = build_scope(q.question, as_of=q.question_date)
        evidence = pipeline.retrieve(q.question, settings.top_k, {}, scope)
        extractive = pipeline.extract(q.question, evidence, scope)
        row = {"id": q.id, "in": {}, "first": {}}
        for bonus in GRID:
            windows = reader.reader_windows(extractive.candidates, evidence.passages, evidence.articles,
                                            settings.llm_passages, lede_bonus=bonus)
            holds = [any(g in normalize_answer(w.text) for g in golds) for w, _ in windows]
            row["in"][bonus], row["first"][bonus] = any(holds), bool(holds and holds[0])
        rows.append(row)
    return rows


def best_bonus(rows: list[dict]) -> float:
    """The bonus under which the most questions have a gold answer in a window (ties: the smaller bonus)."""
    return max(GRID, key=lambda b: (sum(r["in"][b] for r in rows), -b))


def summary(rows: list[dict], bonus: float) -> dict:
    return {"in_windows": sum(r["in"][bonus] for r in rows) / max(1, len(rows)),
            "in_first_window": sum(r["first"][bonus] for r in rows) / max(1, len(rows))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", help="QA.jsonl CORPUS_DIR, one pair per corpus")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if len(args.pairs) % 2:
        parser.error("give a question file and a corpus folder for each corpus")
    pairs = list(zip(args.pairs[::2], args.pairs[1::2]))
    files = {Path(qa).name: collect(Path(qa), Path(corpus)) for qa, corpus in pairs}
    for name, rows in files.items():
        print(f"{name}: {len(rows)} answerable; a gold answer in the windows, by bonus: "
              + ", ".join(f"{b:g}: {sum(r['in'][b] for r in rows)}" for b in GRID)
              + "; in the first window: " + ", ".join(f"{b:g}: {sum(r['first'][b] for r in rows)}" for b in GRID))
    chosen, figures = _reader_calibration().cross_validate(files, best_bonus, summary, args.folds, args.repeats)
    full = best_bonus([r for rows in files.values() for r in rows])
    print(f"bonus on all rows: {full:g}; chosen on training splits: median {statistics.median(chosen):g} "
          f"(range {min(chosen):g}-{max(chosen):g})")
    for name, rows in files.items():
        print(f"{name}: cross-validated " + ", ".join(f"{k} {v:.3f}" for k, v in figures[name].items())
              + " | no bonus " + ", ".join(f"{k} {v:.3f}" for k, v in summary(rows, 0.0).items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
