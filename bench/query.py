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


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    i = min(len(values) - 1, max(0, round(q * (len(values) - 1))))
    return values[i]


def line(name: str, values: list[float]) -> str:
    return f"  {name:<22} p50 {pct(values, .5) * 1000:8.1f} ms   p95 {pct(values, .95) * 1000:8.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=ROOT / "data", help="data dir of the index")
    parser.add_argument("--corpus", type=Path, help="ingest this folder into --index first")
    parser.add_argument("--questions", type=Path, default=DEV)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the questions")
    args = parser.parse_args()

    from rag.query.pipeline import Pipeline
    from rag.core.settings import Settings

    settings = Settings(data_dir=args.index)
    if args.corpus:
        from ingest.ingestor import open_ingestor

        print(open_ingestor(settings).ingest([args.corpus]).summary())
    questions = [json.loads(l)["question"] for l in args.questions.read_text().splitlines() if l.strip()]

    # Cold start: a fresh process, from interpreter start to the first answer printed.
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "rag", "ask", questions[0], "--json"], cwd=ROOT, capture_output=True, text=True,
        env={"RAG_DATA_DIR": str(args.index), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )
    cold = time.perf_counter() - started
    if out.returncode != 0:
        print(out.stderr[-2000:])

    pipeline = Pipeline(settings)
    t0 = time.perf_counter()
    pipeline.warm_up()
    warm_up = time.perf_counter() - t0
    print(f"index: {pipeline.store.articles.count()} articles, {pipeline.store.chunk_count()} chunks at {args.index}")

    from llama_index.core import VectorStoreIndex

    baseline = VectorStoreIndex.from_vector_store(pipeline.store.vector_store, embed_model=pipeline.embedder.llama)
    plain = baseline.as_retriever(similarity_top_k=settings.top_k)
    for q in questions[:3]:  # warm both paths
        pipeline.ask(q)
        plain.retrieve(q)

    stages: dict[str, list[float]] = {}
    plain_times: list[float] = []
    for _ in range(args.repeat):
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

    print(f"\n{len(questions)} questions x {args.repeat} passes")
    print("extractive ask, per stage:")
    for name in ("condense", "retrieve", "rerank", "total", "ask (wall)"):
        if name in stages:
            print(line(name, stages[name]))
    print("plain LlamaIndex vector retriever (same index, same embedder):")
    print(line("retrieve", plain_times))
    ratio = pct(stages["ask (wall)"], .5) / pct(plain_times, .5)
    print(f"\nask p50 / plain retriever p50 = {ratio:.2f}x   (target <= 1.5x)")
    print(f"ask p50 = {pct(stages['ask (wall)'], .5) * 1000:.1f} ms   (target < 60 ms)")
    print(f"cold start (process start -> first answer, `python -m rag ask`): {cold:.1f} s")
    print(f"warm-up in process (BM25 build + first encode): {warm_up:.2f} s")
    print(f"mean ask: {statistics.mean(stages['ask (wall)']) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
