"""Turn one file into an :class:`Article`: extracted text plus metadata. One function per format.

Every loader raises :class:`SkipFile` with a human-readable reason for input it cannot use; the
pipeline records the reason in its report and carries on with the other files.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ingest.metadata import author_names, date_or_warn, one_line, split_front_matter
from rag.core.types import ArticleMeta

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf")


class SkipFile(Exception):
    """A file that cannot be ingested; ``str(exc)`` is the reason shown to the user, always one short line (a
    parser's message may quote the file at length)."""

    def __init__(self, reason: str):
        super().__init__(one_line(reason))


@dataclass(kw_only=True)
class Article(ArticleMeta):
    """An article ready for chunking: ``text`` is the extracted text every span refers to."""

    text: str
    warnings: list[str] = field(default_factory=list)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of raw file content (what identifies byte-identical duplicates)."""
    return hashlib.sha256(data).hexdigest()


def looks_binary(data: bytes) -> bool:
    """True for content that is not text: NUL bytes or many control characters in the first 8 KiB."""
    head = data[:8192]
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return bool(head) and controls / len(head) > 0.05


_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}|[\xf0-\xf4][\x80-\xbf]{3}")
_ASCII = bytes(range(128))


def decode_text(data: bytes, name: str, warnings: list[str]) -> str:
    """Decode text bytes: UTF-8 (with or without BOM), else the detected encoding, else UTF-8 with replacement.

    Mostly-ASCII text with a few non-UTF-8 bytes (an accented word, a pound sign) is Windows-1252, the usual
    legacy encoding of English news; charset detection guesses badly on so little evidence (it reads the
    BBC corpus's "\xa315.8m" as Japanese cp932). Any fallback adds a warning naming the file.
    """
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    high = len(data.translate(None, _ASCII))  # bytes >= 0x80
    if high <= len(data) // 10:
        if sum(len(m) for m in _UTF8_SEQUENCE.findall(data)) * 2 >= high:
            warnings.append(f"{name}: invalid UTF-8 bytes replaced")
            return data.decode("utf-8", errors="replace")
        try:
            text = data.decode("cp1252")
            warnings.append(f"{name}: not valid UTF-8, decoded as cp1252")
            return text
        except UnicodeDecodeError:
            pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is not None and best.encoding:
        warnings.append(f"{name}: not valid UTF-8, decoded as {best.encoding}")
        return str(best)
    warnings.append(f"{name}: encoding not recognised, undecodable bytes replaced")
    return data.decode("utf-8", errors="replace")


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _first_line_title(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line:
            return re.sub(r"^#+\s*", "", line)[:300]
    return ""


def load_text(data: bytes, path: Path, warnings: list[str]) -> dict:
    """Plain text: the first non-empty line is the title."""
    if looks_binary(data):
        raise SkipFile("binary content, not text")
    text = _normalise_newlines(decode_text(data, str(path), warnings))
    if not text.strip():
        raise SkipFile("empty file")
    return {"text": text, "title": _first_line_title(text)}


def load_markdown(data: bytes, path: Path, warnings: list[str]) -> dict:
    """Markdown: text whose front matter (a YAML block at the top) gives the title, publish date, authors, URL
    and outlet; the block is cut off, so the text (and every span) is the body. Without a title there, the first
    line (``# heading``) is the title."""
    fields = load_text(data, path, warnings)
    meta, body = split_front_matter(fields["text"], str(path), warnings)
    if not body.strip():
        raise SkipFile("no text after the front matter")
    return {**meta, "text": body, "title": meta.get("title") or _first_line_title(body)}


def load_html(data: bytes, path: Path, warnings: list[str]) -> dict:
    """HTML: main text extracted by trafilatura (navigation, share buttons and footers dropped), with metadata."""
    import trafilatura

    if looks_binary(data):
        raise SkipFile("binary content, not HTML")
    html = decode_text(data, str(path), warnings)
    try:
        doc = trafilatura.bare_extraction(
            html, include_comments=False, include_tables=True, favor_precision=True, with_metadata=True
        )
    except MemoryError:
        raise
    except Exception as exc:  # lxml and trafilatura on malformed or deeply nested markup
        raise SkipFile(f"HTML page that cannot be read ({type(exc).__name__}: {exc})") from exc
    text = _normalise_newlines(getattr(doc, "text", None) or "") if doc is not None else ""
    if not text.strip():
        raise SkipFile("no main text found in the HTML page")
    title = (doc.title or "").strip() or _first_line_title(text)
    # trafilatura reads <meta> tags and JSON-LD (a NewsArticle's datePublished, author names, publisher name)
    return {
        "text": text,
        "title": title,
        "published": date_or_warn(doc.date or "", str(path), warnings),
        "author": author_names(doc.author or "") or "",
        "url": doc.url or "",
        "site": (doc.sitename or "").strip(),
    }


def load_pdf(data: bytes, path: Path, warnings: list[str], max_pages: Optional[int] = None,
             max_chars: Optional[int] = None) -> dict:
    """PDF: text per page with pypdf; pages are joined by a blank line and their start offsets kept. A PDF of
    more than ``max_pages`` pages is refused before any page is read, one of more than ``max_chars`` characters
    of text as soon as its pages read so far hold more."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                if not reader.decrypt(""):
                    raise SkipFile("encrypted PDF (password required)")
            except SkipFile:
                raise
            except Exception as exc:  # pypdf raises several types for unsupported encryption
                raise SkipFile(f"encrypted PDF that cannot be opened ({exc})") from exc
        if max_pages is not None and len(reader.pages) > max_pages:
            raise SkipFile(f"PDF of {len(reader.pages):,} pages; the limit is {max_pages:,} (RAG_MAX_PDF_PAGES)")
        pages = _page_texts(reader, max_chars)
    except (SkipFile, MemoryError):
        raise
    except Exception as exc:  # pypdf raises many types on malformed files (PdfReadError, KeyError, struct.error...)
        raise SkipFile(f"broken PDF ({type(exc).__name__}: {exc})") from exc
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for page_text in pages:
        starts.append(offset)
        parts.append(page_text)
        offset += len(page_text) + 2
    text = "\n\n".join(parts)
    if not text.strip():
        raise SkipFile("PDF has no extractable text (scanned images?)")
    title, author = _pdf_info(reader, warnings, str(path))
    return {
        "text": text,
        "title": title or _first_line_title(text),
        "author": author,
        "published": _pdf_date(reader),
        "page_starts": starts,
    }


def _pdf_info(reader, warnings: list[str], where: str) -> tuple[str, str]:
    """The PDF's title and author from its document information ("" each when absent); a damaged information
    dictionary is a warning, not a reason to refuse the text."""
    try:
        meta = reader.metadata or {}
        return str(meta.get("/Title") or "").strip(), str(meta.get("/Author") or "").strip()
    except MemoryError:
        raise
    except Exception as exc:  # pypdf reads the dictionary only now, and fails on a broken one
        warnings.append(f"{where}: document information unreadable ({type(exc).__name__}); title from the text")
        return "", ""


def _drawing_key(page) -> Optional[tuple]:
    """What a page's text is made of: its content stream(s) and resources, by object number where they are
    indirect objects (None when they cannot be told apart from other pages')."""
    from pypdf.generic import IndirectObject

    def ref(value):
        if isinstance(value, IndirectObject):
            return value.idnum, value.generation
        if isinstance(value, list) and all(isinstance(v, IndirectObject) for v in value):
            return tuple((v.idnum, v.generation) for v in value)
        return None

    contents = ref(page.raw_get("/Contents")) if "/Contents" in page else None
    if contents is None:
        return None
    resources = page.raw_get("/Resources") if "/Resources" in page else None
    return contents, ref(resources) if resources is not None and ref(resources) is not None else id(resources)


def _page_texts(reader, max_chars: Optional[int]) -> list[str]:
    """The text of each page. Pages drawn by the same content stream with the same resources are read once: a
    few kilobytes of PDF can point thousands of pages at one large stream, and pypdf parses it again for each.
    SkipFile once the text read so far is over ``max_chars``."""
    read: dict[tuple, str] = {}
    texts: list[str] = []
    total = 0
    for page in reader.pages:
        key = _drawing_key(page)
        text = read.get(key) if key is not None else None
        if text is None:
            text = _normalise_newlines(page.extract_text() or "").strip()
            if key is not None:
                read[key] = text
        total += len(text) + 2
        if max_chars is not None and total > max_chars:
            raise SkipFile(f"PDF with more than {max_chars:,} characters of text (RAG_MAX_TEXT_CHARS)")
        texts.append(text)
    return texts


def _pdf_date(reader) -> str:
    """The PDF's creation date as an ISO date (like the HTML loader's), "" when absent or unreadable."""
    try:
        created = reader.metadata.creation_date if reader.metadata else None
    except Exception:  # a malformed date string
        created = None
    return created.date().isoformat() if created else ""


LOADERS: dict[str, Callable[[bytes, Path, list[str]], dict]] = {
    ".txt": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
}


def load_bytes(
    data: bytes, path: Path, source: Optional[str] = None, *, max_pdf_pages: Optional[int] = None,
    max_text_chars: Optional[int] = None,
) -> Article:
    """Build an Article from a file's bytes; raises SkipFile for unusable input, for a PDF of more than
    ``max_pdf_pages`` pages and for text of more than ``max_text_chars`` characters."""
    suffix = path.suffix.lower()
    loader = LOADERS.get(suffix)
    if loader is None:
        raise SkipFile(f"unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if not data:
        raise SkipFile("empty file")
    warnings: list[str] = []
    if loader is load_pdf:
        fields = load_pdf(data, path, warnings, max_pdf_pages, max_text_chars)
    else:
        fields = loader(data, path, warnings)
    if max_text_chars is not None and len(fields["text"]) > max_text_chars:
        raise SkipFile(f"{len(fields['text']):,} characters of text; the limit is {max_text_chars:,} "
                       "(RAG_MAX_TEXT_CHARS)")
    warnings[:] = [one_line(w) for w in warnings]
    for warning in warnings:
        log.warning(warning)
    return Article(
        sha256=sha256_bytes(data),
        source=source or str(path),
        format=suffix.lstrip("."),
        warnings=warnings,
        **fields,
    )


def read_file(path: Path, max_bytes: int) -> bytes:
    """Read a file, refusing ones over ``max_bytes`` (SkipFile) and turning OS errors into SkipFile."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise SkipFile(f"file too large ({size / 1e6:.1f} MB > {max_bytes / 1e6:.1f} MB limit)")
        with path.open("rb") as handle:
            return handle.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise SkipFile("file vanished before it could be read") from exc
    except IsADirectoryError as exc:
        raise SkipFile("is a directory") from exc
    except PermissionError as exc:
        raise SkipFile("permission denied") from exc
    except OSError as exc:
        raise SkipFile(f"cannot read file ({exc.strerror or exc})") from exc
