"""Finding the files to ingest under the paths given, and the article id each one gets."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.report import SkippedFile

MISSING_PATH = "path does not exist"


def article_id_for(path: Path, root: Path) -> str:
    """Stable article id: the path relative to the ingested root, with forward slashes."""
    return path.relative_to(root).as_posix()


def discover(paths: Iterable[Path | str]) -> tuple[list[tuple[Path, Path]], list[SkippedFile]]:
    """(file, root) pairs for every supported file under ``paths``, and the paths skipped with their reasons.

    A folder is its files' root; a file given by itself is rooted at its own folder. Hidden files and folders
    are ignored, and a file reached twice is listed once.
    """
    found: list[tuple[Path, Path]] = []
    skipped: list[SkippedFile] = []
    listed: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            skipped.append(SkippedFile(str(raw), MISSING_PATH))
        elif path.is_dir():
            root = path.resolve()
            for file in sorted(root.rglob("*")):
                rel = file.relative_to(root)
                # A dangling symlink is kept: reading it reports the file as vanished instead of dropping it silently.
                if any(part.startswith(".") for part in rel.parts) or not (file.is_file() or file.is_symlink()):
                    continue
                if file.suffix.lower() not in SUPPORTED_SUFFIXES:
                    skipped.append(SkippedFile(str(file), f"unsupported file type {file.suffix or '(none)'}"))
                elif file not in listed:
                    listed.add(file)
                    found.append((file, root))
        else:
            resolved = path.resolve()
            if resolved not in listed:
                listed.add(resolved)
                found.append((resolved, resolved.parent))
    return found, skipped


def folder_roots(paths: Iterable[Path | str]) -> set[str]:
    """The folders among ``paths``, resolved: what pruning may remove articles from (a file given by itself
    must not prune its siblings)."""
    return {str(Path(p).expanduser().resolve()) for p in paths if Path(p).expanduser().is_dir()}
