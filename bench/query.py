"""Query latency: p50/p95 per stage of ``ask`` over the dev questions, cold start, and a plain LlamaIndex baseline.

    python bench/query.py --index data/          # an index of all 2,225 BBC articles
    python bench/query.py --corpus ../shared/data/bbc --index /tmp/bbc-index   # build it first

Prints figures; asserts nothing. Targets on the 2-core dev machine: extractive ask p50 < 60 ms and no more
than 1.5x the plain vector retriever alone, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEV = ROOT.parent / "shared" / "data" / "bbc_dev_qa.jsonl"
TARGET_RATIO = 1.5  # ask p50 at most this many times the plain vector retriever's
TARGET_P50_MS = 60.0
WARM_QUESTIONS = 3  # questions asked through both paths before timing


def line(name: str, values: list[float]) -> str:
    """One stage's p50 and p95 in milliseconds."""
    from rag.eval import percentile

    return f"  {name:<22} p50 {percentile(values, 50) * 1000:8.1f} ms   p95 {percentile(values, 95) * 1000:8.1f} ms"


def cold_start(index: Path, question: str) -> float:
    """Seconds from a fresh ``python -m rag ask`` process's start to its first answer printed."""
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "rag", "ask", question, "--json"], cwd=ROOT, capture_output=True, text=True,
        env={"RAG_DATA_DIR": str(index), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    cold = time.perf_counter() - started
    if out.returncode != 0:
        print(out.stderr[-2000:])
    return cold


def timed_runs(pipeline, plain, questions: list[str], repeat: int) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds per stage of ``ask`` (and its wall time) and of the plain retriever, ``repeat`` passes."""
    stages: dict[str, list[float]] = {}
    plain_times: list[float] = []
    for _ in range(repeat):
        for q in questions:  # interleaved so that machine noise hits both alike
            t = time.perf_counter()
            answer = pipeline.ask(q)
            total = time.perf_counter() - t
            for name, seconds in answer.timings.items():
                stages.setdefault(name, []).append(seconds)
            stages.setdefault("ask (wall)", []).append(total)
            t = time.perf_counter()
            plain.retrieve(q)
            plain_times.append(time.perf_counter() - t)
    return stages, plain_times


def report(stages: dict[str, list[float]], plain_times: list[float], cold: float, warm_up: float) -> None:
    """Print the figures beside their targets."""
    from rag.eval import percentile

    print("extractive ask, per stage:")
    for name in ("condense", "retrieve", "rerank", "total", "ask (wall)"):
        if name in stages:
            print(line(name, stages[name]))
    print("plain LlamaIndex vector retriever (same index, same embedder):")
    print(line("retrieve", plain_times))
    ask_p50 = percentile(stages["ask (wall)"], 50)
    print(f"\nask p50 / plain retriever p50 = {ask_p50 / percentile(plain_times, 50):.2f}x   "
          f"(target <= {TARGET_RATIO}x)")
    print(f"ask p50 = {ask_p50 * 1000:.1f} ms   (target < {TARGET_P50_MS:.0f} ms)")
    print(f"cold start (process start -> first answer, `python -m rag ask`): {cold:.1f} s")
    print(f"warm-up in process (BM25 build + first encode): {warm_up:.2f} s")
    print(f"mean ask: {statistics.mean(stages['ask (wall)']) * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=ROOT / "data", help="data dir of the index")
    parser.add_argument("--corpus", type=Path, help="ingest this folder into --index first")
    parser.add_argument("--questions", type=Path, default=DEV)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the questions")
    args = parser.parse_args()

    from rag.app import open_ingestor, open_services
    from rag.core.settings import Settings
    from rag.eval import baseline_retriever

    settings = Settings(data_dir=args.index)
    if args.corpus:
        print(open_ingestor(settings).ingest([args.corpus]).summary())
    questions = [json.loads(l)["question"] for l in args.questions.read_text().splitlines() if l.strip()]
    cold = cold_start(args.index, questions[0])

    services = open_services(settings)
    pipeline = services.pipeline
    t0 = time.perf_counter()
    pipeline.warm_up()
    warm_up = time.perf_counter() - t0
    print(f"index: {services.store.article_count()} articles, {services.store.chunk_count()} chunks at {args.index}")

    plain = baseline_retriever(pipeline, settings.top_k)
    for q in questions[:WARM_QUESTIONS]:  # warm both paths
        pipeline.ask(q)
        plain.retrieve(q)
    stages, plain_times = timed_runs(pipeline, plain, questions, args.repeat)
    print(f"\n{len(questions)} questions x {args.repeat} passes")
    report(stages, plain_times, cold, warm_up)


if __name__ == "__main__":
    main()
