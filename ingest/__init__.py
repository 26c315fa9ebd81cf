"""Ingestion: files -> articles -> chunks -> embeddings in the Chroma index.

    from ingest import ingest_paths
    report = ingest_paths(["corpus/"])
"""

from ingest.ingestor import Ingestor, delete_article, ingest_paths, list_articles, open_ingestor
from ingest.loaders import Article, SkipFile, load_bytes
from ingest.manifest import ManifestError
from ingest.report import IngestReport, SkippedFile

__all__ = [
    "Article", "SkipFile", "load_bytes", "IngestReport", "Ingestor", "ManifestError", "SkippedFile",
    "delete_article", "ingest_paths", "list_articles", "open_ingestor",
]
