"""Manifests: JSON Lines stating each article's publish date, authors, URL and outlet, beside the articles.

One line per article, e.g. ``{"path": "cnn/0001.txt", "url": "...", "title": "...", "publish_date": "2022/02/07",
"authors": ["..."], "site": "cnn"}``. ``path`` is relative to the folder the manifest describes: the one folder
ingested with it (``--manifest FILE``), or, for a ``manifest.jsonl`` found in a folder being ingested, the
folder holding it (a deeper one wins for the files it names). What a manifest states wins over what the file
says, except the title: a title is embedded with every chunk, so the manifest's is only a fallback for a file
without one, and changing a manifest never requires re-embedding.

A line that cannot be used (not JSON, no ``path``, a bad date...) is a warning naming the manifest and the line;
the other lines still apply. A manifest that cannot be read stops the run before anything is written.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence, TypeVar

from ingest.discovery import article_id_for, folder_roots, manifests_in
from ingest.metadata import meta_fields, one_line, quoted
from rag.core.errors import RagError
from rag.core.types import ArticleMeta

# What a manifest may change on a stored article without re-embedding it: everything it states but the title.
RELABEL_FIELDS = ("published", "author", "url", "site")

Meta = TypeVar("Meta", bound=ArticleMeta)


class ManifestError(RagError):
    """A manifest that cannot be used at all (missing, unreadable, or given with other than one folder)."""


@dataclass(frozen=True)
class ManifestEntry:
    """What one manifest line states about one article ("" where it states nothing)."""

    origin: str  # "<manifest> line <n>", to name the line in messages
    path: str  # as listed, normalised: relative to the folder the manifest describes
    title: str = ""
    published: str = ""
    author: str = ""
    url: str = ""
    site: str = ""

    def apply(self, article: ArticleMeta) -> None:
        """Give a just-loaded ``article`` what this entry states; the title only when the file gave none."""
        for name in RELABEL_FIELDS:
            if getattr(self, name):
                setattr(article, name, getattr(self, name))
        if self.title and not article.title:
            article.title = self.title

    def relabelled(self, record: Meta) -> Optional[Meta]:
        """A copy of the stored ``record`` with what this entry states, or None when it states nothing new."""
        changes = {
            name: getattr(self, name) for name in RELABEL_FIELDS
            if getattr(self, name) and getattr(self, name) != getattr(record, name)
        }
        return replace(record, **changes) if changes else None


@dataclass
class RunManifests:
    """The manifest entries of one ingestion run, by (folder ingested, article id), and the manifests' warnings."""

    entries: dict[tuple[str, str], ManifestEntry] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    given: set[Path] = field(default_factory=set)  # the manifest given for the run, resolved: not an article

    def entry(self, root: Path, article_id: str) -> Optional[ManifestEntry]:
        """The entry for the article ``article_id`` of the folder ``root``, if a manifest lists it."""
        return self.entries.get((str(root), article_id))

    def unmatched(self, found: Sequence[tuple[Path, Path]]) -> list[str]:
        """Warnings for the entries naming no file among ``found`` (the run's (file, root) pairs)."""
        listed = {(str(root), article_id_for(file, root)) for file, root in found}
        return [
            f"{entry.origin}: no file {Path(root, article_id)} to ingest"
            for (root, article_id), entry in self.entries.items() if (root, article_id) not in listed
        ]


def read_manifest(path: Path) -> tuple[dict[str, ManifestEntry], list[str]]:
    """The entries of the manifest at ``path`` by their normalised ``path``, and a warning for each line that
    cannot be used; ManifestError when the file cannot be read."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError as exc:
        raise ManifestError(f"manifest {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ManifestError(f"manifest {path} is a folder, not a JSON Lines file") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"manifest {path} is not UTF-8 text") from exc
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    entries: dict[str, ManifestEntry] = {}
    warnings: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        entry = _parse_line(line, f"{path} line {number}", warnings)
        if entry is None:
            continue
        if entry.path in entries:
            warnings.append(f"{entry.origin}: {entry.path} is listed before ({entries[entry.path].origin}); "
                            "this line is ignored")
            continue
        entries[entry.path] = entry
    return entries, [one_line(w) for w in warnings]  # a path or value may hold line breaks or run long


def _parse_line(line: str, where: str, warnings: list[str]) -> Optional[ManifestEntry]:
    """The entry on one manifest line; None (with a warning) for a line that cannot be used."""
    try:
        item = json.loads(line)
    except (ValueError, RecursionError) as exc:  # also a number of 4,300 digits, brackets nested thousands deep
        problem = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        warnings.append(f"{where}: not valid JSON ({problem}); line ignored")
        return None
    if not isinstance(item, dict):
        warnings.append(f"{where}: not a JSON object; line ignored")
        return None
    raw = item.get("path")
    if not isinstance(raw, str) or not raw.strip():
        warnings.append(f'{where}: no "path" naming the article file; line ignored')
        return None
    path = posixpath.normpath(raw.strip())
    if path.startswith("/") or path == ".." or path.startswith("../"):
        warnings.append(f"{where}: path {quoted(raw)} is outside the folder the manifest describes; line ignored")
        return None
    return ManifestEntry(origin=where, path=path, **meta_fields(item, f"{where} ({path})", warnings))


def load_manifests(paths: Sequence[Path | str], manifest: Optional[Path | str] = None) -> RunManifests:
    """The manifests of a run over ``paths``: ``manifest`` for the one folder given with it, else every
    ``manifest.jsonl`` in the folders among ``paths``.

    ManifestError when a manifest cannot be read, or ``manifest`` comes with anything but exactly one folder.
    """
    if manifest is not None:
        manifest = Path(manifest).expanduser()
        folders = [Path(p).expanduser() for p in paths]
        if len(folders) != 1 or not folders[0].is_dir():
            given = ", ".join(str(p) for p in paths) or "none"
            raise ManifestError(
                f"the paths in manifest {manifest} are relative to one folder: give exactly that folder with it "
                f"(given: {given})"
            )
        sources = [(folders[0].resolve(), manifest)]
    else:
        sources = [(Path(root), found) for root in sorted(folder_roots(paths)) for found in manifests_in(Path(root))]
    run = RunManifests(given={manifest.resolve()} if manifest is not None else set())
    for root, path in sources:
        entries, warnings = read_manifest(path)
        run.warnings += warnings
        prefix = "" if manifest is not None else path.parent.relative_to(root).as_posix()
        for entry in entries.values():  # manifests come shallow to deep: a deeper one wins for its files
            run.entries[(str(root), posixpath.normpath(posixpath.join(prefix, entry.path)))] = entry
    return run
