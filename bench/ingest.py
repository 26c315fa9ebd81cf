"""Ingestion benchmark: N BBC articles into a fresh index, compared with the bare encoder on the same texts.

    python bench/ingest.py --n 300            # a temporary index, removed afterwards
    python bench/ingest.py --data-dir /tmp/x  # keep the index (the folder must be empty or absent)

Prints, for one run: articles/s, chunks/s, embedded tokens/s, peak RSS; the pure SentenceTransformer
``encode`` throughput on exactly the texts ingestion embedded (title + "\\n" + chunk, read back from Chroma)
and the ratio ingest time / pure encode time; then an unchanged re-run, in-process and as a fresh
``python -m ingest`` process. Targets are printed beside the figures.

The BBC folder is bbc/ under RAG_EVAL_DATA (default ../shared/data); it is only read. The N files are
taken round-robin over the five categories and linked (symlinks, not copies) into a temporary folder, so
article ids are ``<category>/<file>`` as when the whole folder is ingested.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import zip_longest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this folder is sys.path[0] and this file would shadow the ``ingest`` package.
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from rag.core.settings import Settings  # noqa: E402 (after the sys.path fix above)

BBC_DIR = Settings().eval_data / "bbc"  # RAG_EVAL_DATA, default ../shared/data
TARGET_RATIO = 1.2
TARGET_RERUN_S = 10.0
TARGET_RSS_GB = 2.5
STORAGE_VARS = ("RAG_DATA_DIR", "RAG_CHROMA_PATH", "RAG_CHROMA_HOST", "RAG_CHROMA_PORT", "RAG_COLLECTION")


def pick_files(n: int | None) -> list[Path]:
    """The first ``n`` BBC articles, taken round-robin over the category folders (all when ``n`` is None)."""
    categories = sorted(p for p in BBC_DIR.iterdir() if p.is_dir())
    columns = [sorted(c.glob("*.txt")) for c in categories]
    files = [f for row in zip_longest(*columns) for f in row if f is not None]
    return files if n is None else files[:n]


def link_tree(files: list[Path], dest: Path) -> None:
    for file in files:
        target = dest / file.parent.name / file.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(file)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # ru_maxrss is in KiB on Linux


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="articles to ingest (default: all 2,225)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="index folder, empty or absent (default: a temporary folder, removed afterwards)")
    parser.add_argument("--progress", action="store_true", help="show ingestion progress bars")
    args = parser.parse_args(argv)
    if not BBC_DIR.is_dir():
        parser.error(f"BBC corpus not found at {BBC_DIR}")
    if args.n is not None and args.n < 1:
        parser.error("--n must be at least 1")

    if args.data_dir is not None and args.data_dir.exists() and any(args.data_dir.iterdir()):
        parser.error(f"{args.data_dir} is not empty: the benchmark needs a fresh index")
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    data_dir = (args.data_dir or work / "data").expanduser().resolve()
    try:
        return run(args, work, data_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def pure_encode(store, embedder, batch_size: int) -> tuple[list[str], int, float, float]:
    """The texts ingestion embedded (title + chunk, read back from the index), their token count, and the wall
    and CPU seconds of encoding them with the bare SentenceTransformer."""
    from ingest.writer import embed_text  # ingestion's own rule, so the texts are exactly those it embedded

    texts = [embed_text(chunk.title, chunk.text) for chunk in store.committed_chunks()]
    tokens = embedder.count_tokens(texts)
    t0, cpu0 = time.perf_counter(), time.process_time()
    embedder.model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                          show_progress_bar=False)
    return texts, tokens, time.perf_counter() - t0, time.process_time() - cpu0


def cli_rerun(src: Path, data_dir: Path, work: Path) -> tuple[float, float, str]:
    """A fresh ``python -m ingest`` over the unchanged folder: wall seconds, CPU seconds, its summary line."""
    env = {k: v for k, v in os.environ.items() if k not in STORAGE_VARS}
    env.update(RAG_DATA_DIR=str(data_dir), PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])))
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "ingest", str(src), "--quiet"], env=env, cwd=work,
                         capture_output=True, text=True)
    cli_s = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cli_cpu = (children.ru_utime - children0.ru_utime) + (children.ru_stime - children0.ru_stime)
    cli_summary = (cli.stdout.strip().splitlines() or [""])[-1]
    if cli.returncode != 0 or " 0 chunks (0 sentence vectors) written" not in cli_summary:
        print(f"warning: the CLI re-run did not behave as an unchanged run (exit {cli.returncode}):\n"
              f"{cli.stdout}{cli.stderr[-2000:]}")
    return cli_s, cli_cpu, cli_summary


def print_figures(f: dict) -> None:
    """The benchmark's figures beside their targets (``f``: what :func:`run` measured)."""
    report, seconds, w = f["report"], f["report"].seconds, 44
    articles = len(report.added) + len(report.updated)
    ratio = seconds / f["pure_s"] if f["pure_s"] else float("inf")
    print()
    print(f"{'ingest (in-process, model loaded)':<{w}} {seconds:9.2f} s   {report.summary()}")
    print(f"{'  articles/s':<{w}} {articles / seconds:9.1f}     ({articles} articles embedded)")
    print(f"{'  chunks/s':<{w}} {report.chunks_written / seconds:9.1f}     ({report.chunks_written} chunks)")
    print(f"{'  embedded tokens/s (whole ingest)':<{w}} {report.tokens_embedded / seconds:9.0f}     "
          f"({report.tokens_embedded} tokens)")
    print(f"{'  embedded tokens/s (embedding calls only)':<{w}} {report.tokens_embedded / report.embed_seconds:9.0f}     "
          f"({report.embed_seconds:.2f} s in the encoder, {seconds - report.embed_seconds:.2f} s elsewhere)")
    print(f"{'pure encoder (SentenceTransformer.encode)':<{w}} {f['pure_s']:9.2f} s   same {f['texts']} texts, "
          f"{f['pure_tokens']} tokens")
    print(f"{'  tokens/s':<{w}} {f['pure_tokens'] / f['pure_s']:9.0f}")
    print(f"{'ratio ingest time / pure encode time':<{w}} {ratio:9.2f}     target <= {TARGET_RATIO}: {verdict(ratio <= TARGET_RATIO)}")
    print(f"{'  same ratio in CPU time (robust to load)':<{w}} {f['ingest_cpu'] / f['pure_cpu']:9.2f}     "
          f"({f['ingest_cpu']:.1f} / {f['pure_cpu']:.1f} CPU s)")
    rerun = f["rerun"]
    print(f"{'unchanged re-run, in-process ingest()':<{w}} {rerun.seconds:9.2f} s   target < {TARGET_RERUN_S:.0f} s: "
          f"{verdict(rerun.seconds < TARGET_RERUN_S)}   ({rerun.unchanged} unchanged)")
    print(f"{'unchanged re-run, fresh python -m ingest':<{w}} {f['cli_s']:9.2f} s   target < {TARGET_RERUN_S:.0f} s: "
          f"{verdict(f['cli_s'] < TARGET_RERUN_S)}   (wall time incl. start-up and model load, "
          f"{f['cli_cpu']:.1f} CPU s; {f['cli_summary']})")
    print(f"{'peak RSS after ingest':<{w}} {f['rss_ingest']:9.2f} GB  target < {TARGET_RSS_GB} GB: "
          f"{verdict(f['rss_ingest'] < TARGET_RSS_GB)}")
    print(f"{'peak RSS at the end (incl. pure encode)':<{w}} {f['rss']:9.2f} GB")
    print(f"load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (timings are only comparable on an idle machine)")


def run(args, work: Path, data_dir: Path) -> int:
    files = pick_files(args.n)
    src = work / "bbc"
    link_tree(files, src)

    import torch

    from rag.app import open_services

    # Storage is always the fresh folder; other RAG_* settings (batch size, chunk size...) apply as usual.
    settings = Settings(_env_file=None, data_dir=data_dir, chroma_path=None, chroma_host=None, collection="news")
    services = open_services(settings)
    embedder, store, ingestor = services.embedder, services.store, services.ingestor
    t0 = time.perf_counter()
    embedder.model  # the model loads lazily; load it here so the ingest timing below excludes it
    load_s = time.perf_counter() - t0
    print(f"corpus: {len(files)} BBC articles from {BBC_DIR}")
    print(f"index:  {settings.index_location}")
    print(f"model:  {embedder.name} (max {embedder.max_seq_length} tokens), batch {settings.embed_batch_size}, "
          f"chunk {ingestor.writer.chunk_tokens}/{settings.chunk_overlap} tokens, torch threads {torch.get_num_threads()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"model load: {load_s:.1f} s")

    cpu0 = time.process_time()
    report = ingestor.ingest([src], progress=args.progress)
    figures = {"report": report, "ingest_cpu": time.process_time() - cpu0, "rss_ingest": peak_rss_gb()}
    if report.skipped:
        print(f"warning: {len(report.skipped)} files skipped, e.g. {report.skipped[0].path}: {report.skipped[0].reason}")
    texts, figures["pure_tokens"], figures["pure_s"], figures["pure_cpu"] = pure_encode(
        store, embedder, settings.embed_batch_size)
    assert len(texts) == report.chunks_written, (len(texts), report.chunks_written)
    figures["texts"] = len(texts)

    # A fresh ingestor (new store, same loaded model) over the unchanged folder.
    figures["rerun"] = open_services(settings, embedder=embedder).ingestor.ingest([src], progress=False)
    assert figures["rerun"].chunks_written == 0, figures["rerun"].summary()
    figures["cli_s"], figures["cli_cpu"], figures["cli_summary"] = cli_rerun(src, data_dir, work)
    figures["rss"] = peak_rss_gb()
    print_figures(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
