"""CLI: ``python -m ingest PATH... [--prune] [--manifest FILE]``, ``python -m ingest --list``,
``python -m ingest --delete ID``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ingest.ingestor import open_ingestor
from ingest.manifest import ManifestError, load_manifests
from rag.core.settings import get_settings

RERUN_HINT = (
    "Articles committed before this point are kept and nothing half-written is visible; run the same "
    "command again to finish (it cleans up the interrupted batch)."
)

# What ``--list --json`` prints of each article record, in this order (everything but its text).
LIST_FIELDS = (
    "article_id", "title", "source", "sha256", "chunks", "ingested_at", "format", "published", "author", "url",
    "site", "root", "duplicate_of", "page_starts", "sentences",
)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 done, 1 an id to delete was not indexed, 2 error, 130
    interrupted)."""
    parser = argparse.ArgumentParser(prog="python -m ingest", description="Ingest news articles into the index.")
    parser.add_argument("paths", nargs="*", help="files or folders to ingest (.txt .md .html .htm .pdf)")
    parser.add_argument("--prune", action="store_true", help="remove indexed articles no longer in the folders")
    parser.add_argument("--manifest", metavar="FILE", help="JSON Lines of the articles' publish dates, authors, URLs "
                        "and outlets, its paths relative to the one folder given (default: manifest.jsonl files "
                        "in the folders)")
    parser.add_argument("--list", action="store_true", help="list the indexed articles")
    parser.add_argument("--delete", metavar="ID", action="append", default=[], help="delete an article by id")
    parser.add_argument("--json", action="store_true", help="print the report or list as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if not (args.paths or args.list or args.delete):
        parser.error("give PATHs to ingest, --list or --delete ID")
    if args.manifest and not args.paths:
        parser.error("--manifest needs the folder it describes")
    try:  # before anything is loaded or written: an unusable manifest stops the whole run
        load_manifests(args.paths, args.manifest)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        ingestor = open_ingestor(get_settings())
    except Exception as exc:  # clear message for an unusable index or model, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        status = _delete_and_ingest(ingestor, args)
    except KeyboardInterrupt:
        print("interrupted: " + RERUN_HINT, file=sys.stderr)
        return 130
    except ManifestError as exc:  # a manifest that became unreadable since the check above
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a store or model failure mid-run: one clear line, no traceback
        print(f"error: ingestion stopped: {type(exc).__name__}: {exc}\n{RERUN_HINT}", file=sys.stderr)
        return 2
    if args.list:
        _print_list(ingestor.store.all_articles(), as_json=args.json)
    return status


def _print_list(records, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{k: getattr(r, k) for k in LIST_FIELDS} for r in records], indent=2))
        return
    for r in records:
        dup = f"  (duplicate of {r.duplicate_of})" if r.duplicate_of else ""
        print(f"{r.article_id}\t{r.title[:60]}\t{r.chunks} chunks\t{r.ingested_at}\t"
              f"{r.published or '-'}\t{r.site or '-'}{dup}")
    print(f"{len(records)} articles")


def _remove_upload(record, settings) -> str:
    """Remove the web UI's copy of a deleted uploaded article (the UI indexes its uploads folder at start, so the
    copy would bring the article back); a note for the output, "" when it was not an upload."""
    uploads = settings.uploads_dir.resolve()
    if record is None or not record.root or Path(record.root).resolve() != uploads:
        return ""
    (uploads / record.article_id).unlink(missing_ok=True)
    return f" (and its uploaded copy in {uploads})"


def _delete_and_ingest(ingestor, args) -> int:
    status = 0
    for article_id in args.delete:
        record = ingestor.store.get_articles([article_id]).get(article_id)
        if ingestor.delete(article_id):
            print(f"deleted {article_id}{_remove_upload(record, ingestor.settings)}")
        else:
            print(f"error: no article with id {article_id!r} is indexed", file=sys.stderr)
            status = 1
    if args.paths:
        report = ingestor.ingest(args.paths, prune=args.prune, progress=not args.quiet, manifest=args.manifest)
        if args.json:
            print(json.dumps(report.to_dict(), indent=2))
        else:
            for skipped in report.skipped:
                print(f"skipped {skipped.path}: {skipped.reason}")
            for article_id, canonical in report.duplicates:
                print(f"duplicate {article_id} (same content as {canonical})")
            for warning in report.warnings:
                print(f"warning: {warning}")
            print(report.summary())
    return status


if __name__ == "__main__":
    sys.exit(main())
