"""What an ingestion run did: the IngestReport every run returns, and the files it skipped with their reasons."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class SkippedFile:
    """A path that was not ingested, with the reason shown to the user."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingestion run did."""

    seen: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (article id, id of the stored copy)
    skipped: list[SkippedFile] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    metadata_updated: list[str] = field(default_factory=list)  # unchanged files whose manifest metadata changed
    chunks_written: int = 0
    sentences_written: int = 0
    tokens_embedded: int = 0
    warnings: list[str] = field(default_factory=list)
    repaired: int = 0  # uncommitted batches of interrupted runs cleaned up
    quarantined: list[str] = field(default_factory=list)  # files moved to a quarantine folder (ingest.quarantine)
    seconds: float = 0.0
    embed_seconds: float = 0.0

    def summary(self) -> str:
        """The one-line summary printed at the end of a run."""
        return (
            f"{self.seen} files seen, {len(self.added)} added, {len(self.updated)} updated, "
            f"{self.unchanged} unchanged, {len(self.duplicates)} duplicates, {len(self.skipped)} skipped, "
            f"{len(self.pruned)} pruned, {len(self.metadata_updated)} metadata updated, {self.chunks_written} chunks "
            f"({self.sentences_written} sentence vectors) written in {self.seconds:.1f} s"
        )

    def changed(self) -> bool:
        """Whether the run changed the index (so other processes must rebuild what they derived from it)."""
        return bool(
            self.added or self.updated or self.duplicates or self.pruned or self.metadata_updated or self.repaired
        )

    def to_dict(self) -> dict:
        """A plain dict (JSON-ready)."""
        return asdict(self)
