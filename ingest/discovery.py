"""Finding the files to ingest under the paths given, the manifests beside them, and each article's id."""

from __future__ import annotations

from pathlib import Path
from typing import Collection, Iterable

from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.report import SkippedFile

MISSING_PATH = "path does not exist"
MANIFEST_NAME = "manifest.jsonl"  # in a folder: the metadata of its articles (ingest.manifest), not an article


def article_id_for(path: Path, root: Path) -> str:
    """Stable article id: the path relative to the ingested root, with forward slashes."""
    return path.relative_to(root).as_posix()


def discover(
    paths: Iterable[Path | str], *, exclude: Collection[Path] = ()
) -> tuple[list[tuple[Path, Path]], list[SkippedFile]]:
    """(file, root) pairs for every supported file under ``paths``, and the paths skipped with their reasons.

    A folder is its files' root; a file given by itself is rooted at its own folder. Hidden files and folders,
    the manifests in folders and the files in ``exclude`` (resolved paths: a manifest given for the run) are
    ignored, and a file reached twice is listed once.
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
                if _hidden(rel) or not (file.is_file() or file.is_symlink()) or _is_manifest(file, exclude):
                    continue
                if _leaves(file, root):
                    skipped.append(SkippedFile(str(file), f"a link to {file.resolve()}, outside {root} (not followed)"))
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


def manifests_in(folder: Path) -> list[Path]:
    """The manifests in ``folder`` and its subfolders (hidden ones excepted), shallowest first."""
    found = [m for m in folder.rglob(MANIFEST_NAME) if not _hidden(m.relative_to(folder)) and m.is_file()]
    return sorted(found, key=lambda m: (len(m.parts), m))


def _leaves(file: Path, root: Path) -> bool:
    """Whether ``file`` (a link, or a file under a linked folder) resolves to a place outside ``root``: ingesting
    a folder must not read what its links point to elsewhere on the machine."""
    target = file.resolve()
    return target.exists() and not target.is_relative_to(root)


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _is_manifest(file: Path, exclude: Collection[Path]) -> bool:
    return file.name == MANIFEST_NAME or (bool(exclude) and file.resolve() in exclude)


def folder_roots(paths: Iterable[Path | str]) -> set[str]:
    """The folders among ``paths``, resolved: what pruning may remove articles from (a file given by itself
    must not prune its siblings)."""
    return {str(Path(p).expanduser().resolve()) for p in paths if Path(p).expanduser().is_dir()}
