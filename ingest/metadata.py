"""An article's publish date, authors, URL and outlet, read from whatever states them, in one normal form.

Sources are the file itself (HTML meta tags and JSON-LD through trafilatura, PDF info, Markdown front matter)
and a manifest beside the folder (:mod:`ingest.manifest`). Every date becomes ``YYYY-MM-DD`` and every author
list one comma-separated string; a value that cannot be read becomes a warning naming where it came from.
"""

from __future__ import annotations

import re
import reprlib
from datetime import date, datetime
from typing import Any, Optional

# Where a manifest line or a front matter block may state each field; the first key present wins.
FIELD_KEYS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "published": ("publish_date", "published", "date"),
    "author": ("authors", "author"),
    "url": ("url",),
    "site": ("site", "source"),
}

# 2022-02-07, 2022/02/07 or 20220207 (one separator throughout), optionally followed by a time of day with or
# without a zone; the date is kept as written (the publisher's local date), never shifted to another zone.
_DATE = re.compile(r"(\d{4})([-/]?)(\d{2})\2(\d{2})")
_TIME = re.compile(r"[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?")
# A Markdown front matter block: "---" on the first line, YAML, then "---" (or "...") on a line of its own.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S | re.M)
_AUTHOR_SEPARATOR = ";"  # how trafilatura joins several authors
MAX_FRONT_MATTER_CHARS = 16_384  # a larger block is not front matter but an attack or a mistake: read as text
QUOTED_CHARS = 80  # a value quoted in a message is cut to about this many characters
REASON_CHARS = 300  # a reason or warning is one line of at most about this many characters

_QUOTE = reprlib.Repr()  # keyword arguments only from Python 3.12
_QUOTE.maxlevel, _QUOTE.maxtuple, _QUOTE.maxlist, _QUOTE.maxdict, _QUOTE.maxset = 2, 4, 4, 4, 4
_QUOTE.maxstring = _QUOTE.maxother = _QUOTE.maxlong = QUOTED_CHARS


def one_line(text: str, limit: int = REASON_CHARS) -> str:
    """``text`` on one line (runs of white space made one space), cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def quoted(value: Any) -> str:
    """``repr(value)`` cut short for a message: a few items of a list, a string's first characters, about
    :data:`QUOTED_CHARS` in all. Walks at most a few levels, so a value built from shared references (YAML
    aliases) costs no more than a short one."""
    return one_line(_QUOTE.repr(value), QUOTED_CHARS + 20)


def iso_date(value: Any) -> str:
    """``value`` as ``YYYY-MM-DD`` ("" for an empty value); ValueError for anything not read as a date.

    Accepts ``2022-02-07``, ``2022/02/07``, ``20220207``, ISO datetimes with or without a zone, and date or
    datetime objects (YAML front matter parses dates itself).
    """
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if value is None or isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"not a date: {quoted(value)}")
    text = str(value).strip()
    if not text:
        return ""
    match = _DATE.match(text)
    if match is None or not (match.end() == len(text) or _TIME.fullmatch(text, match.end())):
        raise ValueError(f"not a date: {quoted(value)}")
    return date(int(match[1]), int(match[3]), int(match[4])).isoformat()  # ValueError for e.g. 2022-02-30


def date_or_warn(value: Any, where: str, warnings: list[str]) -> str:
    """:func:`iso_date` of ``value``; "" with a warning naming ``where`` and the value when it is no date."""
    try:
        return iso_date(value)
    except ValueError:
        warnings.append(f"{where}: unrecognised publish date {quoted(value)} (expected YYYY-MM-DD); left empty")
        return ""


def author_names(value: Any) -> Optional[str]:
    """The authors in ``value`` (a list of names, or one string: names separated by ";" are split) as one
    comma-separated string, each name once; None when ``value`` is neither."""
    if isinstance(value, str):
        value = value.split(_AUTHOR_SEPARATOR)
    if not isinstance(value, (list, tuple)) or not all(isinstance(name, str) for name in value):
        return None
    names = [name.strip() for name in value]
    return ", ".join(dict.fromkeys(name for name in names if name))


def meta_fields(mapping: dict, where: str, warnings: list[str]) -> dict[str, str]:
    """The known fields stated in ``mapping`` (a manifest line or front matter) by :data:`FIELD_KEYS`, normalised:
    only those with a usable non-empty value; each unusable one adds a warning naming ``where``."""
    fields: dict[str, str] = {}
    for name, keys in FIELD_KEYS.items():
        key = next((k for k in keys if mapping.get(k) not in (None, "")), None)
        if key is None:
            continue
        raw = mapping[key]
        if name == "published":
            value = date_or_warn(raw, where, warnings)
        elif name == "author":
            value = author_names(raw)
            if value is None:
                warnings.append(f"{where}: {key} must be a name or a list of names, not {quoted(raw)}; ignored")
        else:
            value = raw.strip() if isinstance(raw, str) else None
            if value is None:
                warnings.append(f"{where}: {key} must be text, not {quoted(raw)}; ignored")
        if value:
            fields[name] = value
    return fields


def _safe_yaml(block: str) -> Any:
    """``block`` parsed as YAML by PyYAML's safe loader with aliases refused (yaml.YAMLError): an alias repeats a
    node without copying it, so a few hundred bytes of nested aliases ("billion laughs") stand for billions of
    values, which every later walk over them (a message quoting one, a check of each item) expands."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted", event.start_mark)
            return super().compose_node(parent, index)

    return yaml.load(block, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def split_front_matter(text: str, where: str, warnings: list[str]) -> tuple[dict[str, str], str]:
    """Markdown front matter: (its fields by :func:`meta_fields`, the text after the block).

    Text without a block comes back whole with no fields. So does text whose block is broken YAML, uses aliases
    or is over :data:`MAX_FRONT_MATTER_CHARS` (each with a warning naming ``where``), or is no mapping (a ``---``
    rule around a line of text, not front matter).
    """
    import yaml

    match = _FRONT_MATTER.match(text[: MAX_FRONT_MATTER_CHARS + 64])
    if match is None:
        if text.startswith("---") and _FRONT_MATTER.match(text) is not None:
            warnings.append(f"{where}: front matter longer than {MAX_FRONT_MATTER_CHARS:,} characters; read as "
                            "plain text")
        return {}, text
    try:
        block = _safe_yaml(match[1])
    except (yaml.YAMLError, RecursionError, ValueError) as exc:  # nested thousands deep; a 2022-02-30 timestamp
        problem = " ".join(str(exc).split())[:200] if str(exc) else type(exc).__name__
        warnings.append(f"{where}: front matter is not valid YAML ({problem}); read as plain text")
        return {}, text
    if block is not None and not isinstance(block, dict):
        return {}, text
    keyed = {str(k).lower(): v for k, v in (block or {}).items()}
    return meta_fields(keyed, f"{where} front matter", warnings), text[match.end():].lstrip("\n")
