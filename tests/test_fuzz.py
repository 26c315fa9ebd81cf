"""Property-based fuzzing (Hypothesis) of everything that reads untrusted input: the file loaders, manifests, HTTP
API bodies and questions. The property everywhere: a clear error or a result, never a crash, a hang or unbounded
memory.

    RAG_FUZZ_PROFILE=fast .venv/bin/python -m pytest tests/test_fuzz.py   # ~25 inputs per test (seconds)
    .venv/bin/python -m pytest tests/test_fuzz.py                         # "full": ~200 per test (minutes)
    .venv/bin/python bench/fuzz.py                                        # "bench": ~2,000 per test

Every call runs under a watchdog (a hang fails instead of blocking the run); loader and manifest calls also
under ``tracemalloc``, whose peak must stay under :data:`MEMORY_BOUND`. :data:`TRIED` counts the inputs tried
per target (bench/fuzz.py reports it). A failure prints the minimal input Hypothesis found.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import os
import re
import shutil
import signal
import tracemalloc
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from ingest.loaders import Article, SkipFile, load_bytes, sha256_bytes
from ingest.metadata import REASON_CHARS
from ingest.manifest import ManifestEntry, ManifestError, read_manifest
from rag.core.errors import InvalidQuestion
from rag.core.settings import MAX_TOP_K, PROJECT_ROOT, Settings
from rag.core.types import Answer
from rag.web.http_api import FIELDS, BadRequest, parse_body
from rag.web.turns import ask_options, check_request
from tests.ingest_helpers import NEWS_HTML, paragraph, pdf_bytes

# --- budget -------------------------------------------------------------------------------------------------
PROFILES = {"fast": 25, "full": 200, "bench": 2000}  # examples per test (before a test's share)
PROFILE = os.environ.get("RAG_FUZZ_PROFILE", "full")
for _name, _examples in PROFILES.items():
    settings.register_profile(
        f"rag-fuzz-{_name}", max_examples=_examples, database=None, deadline=timedelta(seconds=5),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
        print_blob=True,
    )
if PROFILE not in PROFILES:
    raise ValueError(f"RAG_FUZZ_PROFILE={PROFILE!r}; use one of {', '.join(PROFILES)}")
BASE = settings.get_profile(f"rag-fuzz-{PROFILE}")  # not loaded globally: other modules keep their own

TRIED: collections.Counter = collections.Counter()  # target -> inputs tried (read by bench/fuzz.py)
TARGET_OF: dict[str, str] = {}  # test function name -> its target (bench/fuzz.py counts failures per target)

MEMORY_BOUND = 64 * 2**20  # peak bytes traced during one call; the inputs are at most a few hundred KB
WATCHDOG_S = 60  # a call running longer is a hang (the deadline only fails a slow call once it returns)
LIMITS = dict(max_pdf_pages=50, max_text_chars=200_000)


def fuzz(target: str, share: float = 1.0, deadline_s: float = 5):
    """Decorator: the profile's budget (``share`` of its examples, a ``deadline_s`` per input) for a test of
    ``target``."""
    def wrap(test):
        TARGET_OF[test.__name__] = target
        examples = max(5, round(BASE.max_examples * share))
        return settings(BASE, max_examples=examples, deadline=timedelta(seconds=deadline_s))(test)
    return wrap


# --- running one input ----------------------------------------------------------------------------------------
class Hang(BaseException):
    """A call that did not return within the watchdog's time (BaseException: no ``except Exception`` eats it)."""


@contextmanager
def watchdog(seconds: float = WATCHDOG_S):
    """Raise :class:`Hang` in the block when it runs longer than ``seconds``."""
    def fire(signum, frame):
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def bounded(target: str, call, allowed: tuple[type[BaseException], ...], *, memory: bool = True):
    """``call()`` counted under ``target``, watched and (``memory``) traced: its result, or the ``allowed``
    exception it raised; any other exception propagates (the test fails). Asserts the traced peak."""
    TRIED[target] += 1
    if memory:
        tracemalloc.start()
    try:
        with watchdog():
            try:
                outcome = call()
            except allowed as exc:
                outcome = exc
        peak = tracemalloc.get_traced_memory()[1] if memory else 0
    finally:
        if memory:
            tracemalloc.stop()
    assert peak < MEMORY_BOUND, f"{target}: {peak / 2**20:.0f} MiB traced for one input"
    return outcome


def assert_message(message: str, limit: int = REASON_CHARS + 20) -> None:
    """A message meant for a person: non-empty, one line, short."""
    assert message.strip(), "empty message"
    assert "\n" not in message and "\r" not in message, f"message over several lines: {message!r}"
    assert len(message) <= limit, f"message of {len(message):,} characters: {message[:200]!r}..."


def check_load(target: str, data: bytes, name: str) -> None:
    """``load_bytes`` of ``data`` as file ``name``: an Article that keeps its promises, or a SkipFile."""
    outcome = bounded(target, lambda: load_bytes(data, Path(name), **LIMITS), (SkipFile,))
    event(f"Article, {len(outcome.warnings)} warnings" if isinstance(outcome, Article) else str(outcome)[:40])
    if isinstance(outcome, SkipFile):
        assert_message(str(outcome))
        return
    assert isinstance(outcome, Article)
    assert outcome.text.strip() and len(outcome.text) <= LIMITS["max_text_chars"]
    assert outcome.sha256 == sha256_bytes(data) and outcome.format == Path(name).suffix.lstrip(".")
    assert outcome.published == "" or re.fullmatch(r"\d{4}-\d{2}-\d{2}", outcome.published), outcome.published
    assert all(isinstance(v, str) for v in (outcome.title, outcome.author, outcome.url, outcome.site))
    assert outcome.page_starts == sorted(outcome.page_starts) and all(
        0 <= s <= len(outcome.text) for s in outcome.page_starts)
    for warning in outcome.warnings:
        assert_message(warning)


@pytest.fixture(autouse=True, scope="module")
def quiet_parsers():
    """pypdf and trafilatura log a warning per oddity of a broken file: thousands, burying a failure's report."""
    loggers = [logging.getLogger(name) for name in ("pypdf", "trafilatura", "htmldate", "charset_normalizer")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


# --- strategies: text files -------------------------------------------------------------------------------------
ENCODINGS = ("utf-8", "utf-8-sig", "cp1252", "latin-1", "utf-16", "shift_jis", "koi8-r")
MOSTLY_UTF8 = ("utf-8",) * 6 + ("cp1252", "utf-16")  # UTF-16 (NUL bytes) is refused as binary: rarely
TIME_WORDS = ("this week", "last week", "yesterday", "today", "last month", "this year", "last year", "recently",
              "on Monday", "this past week", "in recent days", "latest")
# Small texts with the characters that trip parsers: controls, BOMs, surrogate-free astral, RTL, NUL.
odd_text = st.text(st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ["", " ", "\x00", "\ufeff", "\u202e\u2066", "\x1b[31m", "\r\n\r\n", "\u2028", "\U0001f600" * 5, "é" * 40])
big_run = st.builds(lambda ch, n: ch * n, st.sampled_from(["a", " ", "\n", "9", "é", "<", "-", "#"]),
                    st.integers(0, 60_000))


@st.composite
def text_files(draw) -> bytes:
    """Text in a drawn encoding: prose, odd characters and long runs mixed."""
    parts = draw(st.lists(st.one_of(odd_text, big_run, st.just(paragraph("harbour", 3))), min_size=1, max_size=6))
    return "".join(parts).encode(draw(st.sampled_from(ENCODINGS)), errors="replace")


def splice(data: bytes, junk: bytes, at: int) -> bytes:
    """``junk`` inserted into ``data`` at ``at`` (taken modulo its length)."""
    at = at % (len(data) + 1)
    return data[:at] + junk + data[at:]


# --- strategies: Markdown front matter -------------------------------------------------------------------------
KEYS = ("title", "publish_date", "published", "date", "authors", "author", "url", "site", "source", "Title",
        "DATE", "tags", "? complex", "<<", "", "1", "null", "true")
ODD_DATES = ("2022-02-07", "2022/02/07", "20220207", "2022-02-30", "0000-00-00", "0001-01-01", "9999-12-31",
             "2022-02-07T25:99:00+99:99", "2022-02-07 10:00:00 -0500", "2022-13-01", "1e9", "tomorrow",
             "-2022-01-01", "2022-02-07T10:00:00.123456789Z", "20222-02-07", "2022-2-7", "12345678901234567890")
SCALARS = st.one_of(
    st.sampled_from(ODD_DATES),
    st.sampled_from(["~", "null", "true", "no", ".nan", "-.inf", "0x1F", "0o17", "1_000", "'quoted'", '"esc\\x41"',
                     "[1, 2]", "{a: 1}", "[]", "{}", "!!binary aGVsbG8=", "!!python/object:os.system x",
                     "!!timestamp 2022-02-07", "!!int x", "!!float abc", "|\n  block\n  text", ">-\n  folded",
                     "[unclosed", "{a: ", "'unterminated", "@reserved", "`tick", "*undefined", "&only"]),
    st.integers(-(10**30), 10**30).map(str),
    st.builds(lambda n: "9" * n, st.integers(1, 6000)),  # huge integers
    st.builds(lambda n: "x" * n, st.integers(1, 20_000)),  # huge scalars (over the 16 KiB block limit)
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=60),
)


def alias_bomb(levels: int, width: int) -> str:
    """YAML of ``levels`` lists, each of ``width`` aliases of the one before: width**levels values."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + f"\ntitle: *a{levels}\nauthors: *a{levels}\ndate: *a{levels}"


front_matter_lines = st.one_of(
    st.builds(lambda k, v: f"{k}: {v}", st.sampled_from(KEYS), SCALARS),
    st.builds(lambda k, v: f"{k}:\n  - {v}\n  - {v}", st.sampled_from(KEYS), SCALARS),  # block lists
    st.just("a: &x [1,2]\nb: *x\ntitle: *x"),
    st.just("base: &b {title: T, date: 2022-02-07}\nmerged:\n  <<: *b"),
    st.builds(alias_bomb, st.integers(1, 9), st.integers(2, 10)),
    st.text(st.characters(codec="utf-8"), max_size=80),  # anything, including broken YAML
)


@st.composite
def markdown_files(draw) -> bytes:
    """A Markdown article with a YAML-ish front matter block (or something like one)."""
    block = "\n".join(draw(st.lists(front_matter_lines, max_size=8)))
    opener = draw(st.sampled_from(["---\n", "---  \n", "--- \n", "----\n", "---\r\n", "\ufeff---\n", ""]))
    closer = draw(st.sampled_from(["\n---\n", "\n...\n", "\n---", "\n", "\n--- trailing\n", "\n---\n---\n"]))
    body = draw(st.sampled_from(["", "\n", "# Heading\n\n" + paragraph("bridge", 3), "plain body", "---"]))
    text = opener + block + closer + body
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    data = text.encode(draw(st.sampled_from(MOSTLY_UTF8)), errors="replace")
    if draw(st.booleans()):  # non-UTF-8 bytes somewhere (inside the block, the body or the markers)
        data = splice(data, draw(st.binary(min_size=1, max_size=8)), draw(st.integers(0, 10**6)))
    return data


# --- strategies: HTML tag soup ----------------------------------------------------------------------------------
TAGS = ("p", "div", "article", "main", "section", "span", "a", "b", "table", "tr", "td", "h1", "h2", "ul", "li",
        "script", "style", "noscript", "template", "svg", "math", "iframe", "form", "textarea", "pre", "code",
        "header", "footer", "nav", "aside", "time", "html", "head", "body", "title", "frameset", "xmp", "plaintext")
VOID = ("br", "img", "hr", "input", "meta", "link", "base", "wbr")
ENTITIES = ("&amp;", "&lt;", "&nbsp;", "&#0;", "&#x0;", "&#xD800;", "&#1114112;", "&#99999999999;", "&#x1F600;",
            "&bogus;", "&", "&#", "&#x;", "&amp", "&AElig", "&nbsp")
META = st.builds(
    lambda name, value: f'<meta {name} content="{value}">',
    st.sampled_from(['name="author"', 'property="article:published_time"', 'name="date"', 'property="og:title"',
                     'property="og:site_name"', 'name="citation_date"', 'itemprop="datePublished"',
                     'http-equiv="refresh"', 'charset="bogus-8"', 'http-equiv="Content-Type"']),
    st.one_of(st.sampled_from(ODD_DATES), st.text(st.characters(codec="utf-8", exclude_characters='"'), max_size=40)),
)
JSON_LD = st.builds(
    lambda doc: f'<script type="application/ld+json">{doc}</script>',
    st.one_of(
        st.builds(lambda d, a: json.dumps({"@type": "NewsArticle", "datePublished": d, "author": a,
                                           "headline": "H", "publisher": {"name": a}}),
                  st.sampled_from(ODD_DATES), st.one_of(st.text(max_size=20), st.lists(st.text(max_size=10)))),
        st.text(max_size=60), st.just("{" * 500), st.just('{"@graph": ' + "[" * 300 + "]" * 300 + "}"),
    ),
)
attribute = st.builds(
    lambda k, v, q: f' {k}={q}{v}{q}', st.sampled_from(["class", "id", "href", "src", "lang", "style", "onload",
                                                          "hidden", "x", "data-a"]),
    st.text(st.characters(codec="utf-8", exclude_characters="\"'<>"), max_size=20), st.sampled_from(['"', "'", ""]))
html_leaf = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=80),  # control characters
    st.sampled_from(ENTITIES + ("\x1b", "\x0b", "\x7f", "\r")),  # ... only a few: many are "binary content"
    st.just(paragraph("council", 2)), st.builds(lambda n: "word " * n, st.integers(0, 3000)),
    st.sampled_from(["<!-- comment -->", "<!--", "-->", "<![CDATA[x]]>", "<!DOCTYPE html>", "<?xml version='1.0'?>",
                     "</p>", "</div></div></div>", "<", ">", "< p>", "<p", "<<<>>>", "</>"]),
    META, JSON_LD, st.builds(lambda t: f"<{t}>", st.sampled_from(VOID)),
)


def element(children: st.SearchStrategy) -> st.SearchStrategy:
    """One tag around ``children``: closed, left open or closed by the wrong name."""
    return st.builds(
        lambda tag, attrs, inner, close, wrong: f"<{tag}{''.join(attrs)}>{''.join(inner)}"
        + {"close": f"</{tag}>", "open": "", "wrong": f"</{wrong}>"}[close],
        st.sampled_from(TAGS), st.lists(attribute, max_size=3), st.lists(children, max_size=4),
        st.sampled_from(["close", "close", "open", "wrong"]), st.sampled_from(TAGS))


html_soup = st.recursive(html_leaf, element, max_leaves=40)


@st.composite
def html_files(draw) -> bytes:
    """Tag soup, sometimes inside a page skeleton or around a real article page."""
    soup = draw(st.lists(html_soup, min_size=1, max_size=4).map("".join))
    frame = draw(st.sampled_from(["bare", "page", "news"]))
    if frame == "page":
        soup = f"<!DOCTYPE html><html><head><title>T</title>{soup}</head><body>{soup}</body></html>"
    elif frame == "news":
        at = draw(st.integers(0, len(NEWS_HTML)))
        soup = NEWS_HTML[:at] + soup + NEWS_HTML[at:]
    return soup.encode(draw(st.sampled_from(MOSTLY_UTF8)), errors="replace")


# --- strategies: PDFs -------------------------------------------------------------------------------------------
SEED_PDFS = (
    pdf_bytes([["Harbour bridge reopens", paragraph("bridge", 1)[:90]]], title="Bridge", author="Jane Doe"),
    pdf_bytes([["Page one of three."], ["Page two, with text."], ["Page three."]]),
    pdf_bytes([[]]),  # a page without text
    pdf_bytes([["Secret minutes"]], encrypt="hunter2"),  # a user password: refused
)
HOSTILE_NUMBERS = (b"0", b"-1", b"1", b"2147483648", b"9223372036854775808", b"1" * 400, b"99999999", b"1e308",
                   b"-0.0", b"NaN", b"3.4028236e38", b"4294967295")
TOKENS = (b"/Count", b"/Kids", b"/Length", b"/Filter", b"/FlateDecode", b"/Parent", b"/Contents", b"/Resources",
          b"/Root", b"/Prev", b"/XRefStm", b"/Encrypt", b"/ObjStm", b"/Type", b"/Page", b"/Pages", b"stream",
          b"endstream", b"obj", b"endobj", b"xref", b"trailer", b"startxref", b"R", b"<<", b">>", b"[", b"]", b"(",
          b")", b"%%EOF", b"/DecodeParms", b"/Predictor 12", b"/Columns 99999", b"/ASCIIHexDecode", b"/LZWDecode")
MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("token"), st.integers(0, 10**6), st.sampled_from(TOKENS)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 256)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("number"), st.integers(0, 10**6), st.sampled_from(HOSTILE_NUMBERS)),
    st.tuples(st.just("repeat"), st.integers(0, 10**6), st.integers(2, 200)),
)
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?")


def mutate(data: bytes, mutation: tuple) -> bytes:
    """``data`` with one mutation applied; positions are taken modulo the length."""
    kind, at, arg = mutation
    at = at % (len(data) + 1)
    if kind == "flip" and at < len(data):
        return data[:at] + bytes([data[at] ^ (1 << arg)]) + data[at + 1:]
    if kind in ("insert", "token"):
        return data[:at] + arg + data[at:]
    if kind == "delete":
        return data[:at] + data[at + arg:]
    if kind == "truncate":
        return data[:at]
    if kind == "number":  # a number of the file (a length, a count, an object number) made hostile
        numbers = list(_NUMBER.finditer(data))
        if numbers:
            m = numbers[at % len(numbers)]
            return data[:m.start()] + arg + data[m.end():]
    if kind == "repeat":  # a slice repeated: duplicated objects, xref sections, pages
        piece = data[at:at + 64]
        return data[:at] + piece * arg + data[at:]
    return data


pdf_files = st.builds(lambda seed, ops: _apply(seed, ops), st.sampled_from(SEED_PDFS), st.lists(MUTATIONS, max_size=8))


def _apply(data: bytes, ops: list) -> bytes:
    for op in ops:
        data = mutate(data, op)
    return data


# --- strategies: JSON -------------------------------------------------------------------------------------------
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10**40), 10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.builds(lambda n: "q" * n, st.integers(0, 300_000)),
    st.sampled_from(ODD_DATES), st.sampled_from(["", " ", "\n", "\x00", "llm", "extractive", "EXTRACTIVE"]),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)
# Text that is no plain JSON value: deep nesting, huge numbers, bare words, broken syntax.
hostile_json = st.one_of(
    st.builds(lambda n, o, c: o * n + c * n, st.integers(1, 50_000), st.sampled_from(["[", '{"a":']),
              st.sampled_from(["]", "}"])),
    st.builds(lambda n: "1" * n, st.integers(1, 10_000)),
    st.builds(lambda n: "1e" + "9" * n, st.integers(1, 500)),
    st.sampled_from(["NaN", "-Infinity", "nul", "{", '{"a":1,}', "'x'", '"\\ud800"', '"\\u00"', "[1,,2]", "\ufeff{}"]),
)


def _dumps(value) -> str:
    return json.dumps(value, allow_nan=True)


# --- loaders ----------------------------------------------------------------------------------------------------
@fuzz("loader.txt")
@given(st.binary(max_size=4096))
def test_txt_arbitrary_bytes(data):
    """Any bytes as a .txt file: an Article or a SkipFile."""
    check_load("loader.txt", data, "fuzz.txt")


@fuzz("loader.txt")
@given(text_files())
def test_txt_text_in_any_encoding(data):
    """Text in any encoding, with control characters and long runs, as a .txt file."""
    check_load("loader.txt", data, "fuzz.txt")


@fuzz("loader.md")
@given(markdown_files())
def test_markdown_front_matter(data):
    """Markdown with YAML-ish front matter: aliases, alias bombs, huge scalars, odd dates, non-UTF-8 bytes."""
    check_load("loader.md", data, "fuzz.md")


@fuzz("loader.html", deadline_s=8)
@given(html_files())
def test_html_tag_soup(data):
    """Generated tag soup (nested, unclosed, meta tags, JSON-LD, entities) as a .html file."""
    check_load("loader.html", data, "fuzz.html")


@fuzz("loader.pdf", deadline_s=8)
@given(pdf_files)
def test_pdf_mutated(data):
    """Small real PDFs with bytes flipped, inserted, deleted, repeated, numbers made hostile, or truncated."""
    check_load("loader.pdf", data, "fuzz.pdf")


pdf_soup = st.builds(
    lambda parts, tail: b"%PDF-1." + b"".join(parts) + tail,
    st.lists(st.one_of(st.binary(max_size=16), st.sampled_from(TOKENS), st.sampled_from(HOSTILE_NUMBERS),
                       st.sampled_from([b" ", b"\n", b"1 0 obj", b"0 0 R", b"/Root 1 0 R", b"/Size 3"])), max_size=40),
    st.sampled_from([b"", b"\n%%EOF\n", b"\nstartxref\n9\n%%EOF\n", b"\nstartxref\n0\n%%EOF"]))


@fuzz("loader.pdf", share=0.5)
@given(st.one_of(st.binary(max_size=2048).map(lambda tail: b"%PDF-1." + tail), pdf_soup))
def test_pdf_random_bytes(data):
    """Random bytes, and random runs of PDF tokens and numbers, after a PDF header."""
    check_load("loader.pdf", data, "fuzz.pdf")


# --- manifests --------------------------------------------------------------------------------------------------
MANIFEST_KEYS = ("path", "title", "publish_date", "published", "date", "authors", "author", "url", "site", "source")
manifest_paths = st.one_of(
    st.sampled_from(["a.txt", "cnn/0001.txt", "./a.txt", "../a.txt", "/etc/passwd", "a/../../b", "", " ", ".",
                     "a\nb.txt", "a\x00b", "C:\\x.txt", "~/x", "a//b/./c"]),
    st.text(max_size=30), st.builds(lambda n: "d/" * n + "x.txt", st.integers(0, 5000)), json_values)
manifest_objects = st.fixed_dictionaries(
    {"path": manifest_paths},
    optional={k: json_values for k in MANIFEST_KEYS[1:]} | {"extra": json_values, "Path": manifest_paths},
)
manifest_lines = st.one_of(manifest_objects.map(_dumps), manifest_objects.map(_dumps),
                           json_values.map(_dumps), hostile_json, st.text(max_size=80))


@st.composite
def manifest_files(draw) -> bytes:
    """JSON Lines: objects with odd field types and huge values, other JSON, non-JSON lines; repeated lines
    (duplicate paths), a BOM, CRLF, non-UTF-8 bytes."""
    lines = draw(st.lists(manifest_lines, max_size=12))
    lines += draw(st.lists(st.sampled_from(lines), max_size=3)) if lines else []
    text = draw(st.sampled_from(["\n", "\r\n", "\n\n"])).join(lines)
    data = (draw(st.sampled_from(["", "\ufeff"])) + text).encode("utf-8")
    if draw(st.integers(0, 4)) == 0:
        data = splice(data, draw(st.binary(min_size=1, max_size=4)), draw(st.integers(0, 10**6)))
    return data


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory) -> Path:
    """Where each generated manifest is written (one file, rewritten per input)."""
    return tmp_path_factory.mktemp("fuzz-manifest") / "manifest.jsonl"


@fuzz("manifest", deadline_s=4)
@given(data=manifest_files())
def test_manifest_lines(manifest_path, data):
    """read_manifest: entries and one-line warnings, or a ManifestError."""
    path = manifest_path
    path.write_bytes(data)
    outcome = bounded("manifest", lambda: read_manifest(path), (ManifestError,))
    limit = 2 * len(str(path)) + REASON_CHARS  # a warning names the manifest (twice for a repeated path)
    if isinstance(outcome, ManifestError):
        assert_message(str(outcome), limit)
        return
    entries, warnings = outcome
    assert all(isinstance(e, ManifestEntry) and e.path == key for key, e in entries.items())
    for entry in entries.values():
        assert entry.published == "" or re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry.published), entry.published
    for warning in warnings:
        assert_message(warning, limit)


# --- HTTP API bodies --------------------------------------------------------------------------------------------
API_SETTINGS = Settings(_env_file=None)
history_values = st.one_of(
    json_values, st.lists(st.lists(st.text(max_size=30), min_size=2, max_size=2), max_size=60),
    st.builds(lambda n, s: [["q" * s, "a" * s]] * n, st.integers(0, 80), st.integers(0, 5000)))
field_values = {
    "question": st.one_of(st.text(max_size=60), st.builds(lambda n: "w " * n, st.integers(0, 3000)), json_values),
    "mode": st.one_of(st.sampled_from(["extractive", "llm", "", "LLM", "x"]), json_values),
    "top_k": st.one_of(st.sampled_from([0, 1, MAX_TOP_K, MAX_TOP_K + 1, -1, 1.0, 2.5, 1e300, math.nan, math.inf,
                                        -math.inf, True, 10**30, "5"]), json_values),
    "history": history_values,
    "as_of": st.one_of(st.sampled_from(ODD_DATES), json_values),
    "since": st.one_of(st.sampled_from(ODD_DATES), json_values),
    "until": st.one_of(st.sampled_from(ODD_DATES), json_values),
    "sources": st.one_of(st.sampled_from(["bbc", "bbc, cnn", ",,,", ""]), st.lists(st.text(max_size=10)), json_values),
}
# Every field the API accepts (a KeyError here names one added without a strategy), and one it does not.
api_objects = st.fixed_dictionaries({}, optional={name: field_values[name] for name in FIELDS} | {"extra": json_values})


def check_body(raw: bytes) -> None:
    """parse_body: (question, options, history) or BadRequest with a message."""
    outcome = bounded("http_api", lambda: parse_body(raw, API_SETTINGS), (BadRequest,))
    if isinstance(outcome, BadRequest):
        assert str(outcome).strip()
        return
    question, options, history = outcome
    assert isinstance(question, str) and len(question) <= API_SETTINGS.max_question_chars
    assert set(options) == {"mode", "top_k", "as_of", "since", "until", "sources"}
    assert options["top_k"] is None or 1 <= options["top_k"] <= MAX_TOP_K
    assert all(isinstance(q, str) and isinstance(a, str) for q, a in history)


@fuzz("http_api")
@given(api_objects.map(_dumps))
def test_api_body_fields(body):
    """Objects with the real field names holding odd values (NaN, inf, huge ints, nesting, long strings)."""
    check_body(body.encode())


@fuzz("http_api")
@given(st.one_of(json_values.map(_dumps), hostile_json))
def test_api_body_any_json(body):
    """Any JSON value, and text that is nearly JSON (deep nesting, huge numbers, broken syntax)."""
    check_body(body.encode())


@fuzz("http_api")
@given(st.one_of(st.binary(max_size=512), api_objects.map(lambda o: _dumps(o).encode("utf-16"))))
def test_api_body_raw_bytes(raw):
    """Arbitrary bytes, and valid bodies in a non-UTF-8 encoding."""
    check_body(raw)


option_args = dict(
    mode=st.one_of(st.text(max_size=20), st.none()),
    top_k=st.one_of(st.integers(-(10**20), 10**20), st.floats(), st.none(), st.booleans(), st.just(0)),
    as_of=st.one_of(st.sampled_from(ODD_DATES), st.text(max_size=20), st.none()),
    since=st.one_of(st.sampled_from(ODD_DATES), st.text(max_size=20), st.none()),
    until=st.one_of(st.sampled_from(ODD_DATES), st.text(max_size=20), st.none()),
    sources=st.one_of(st.none(), st.text(max_size=30), st.lists(st.one_of(st.text(max_size=8), st.integers()))),
)


@fuzz("ask_options")
@given(**option_args)
def test_ask_options(mode, top_k, as_of, since, until, sources):
    """ask_options of any field values: the keywords of ask, or InvalidQuestion."""
    outcome = bounded("ask_options", lambda: ask_options(mode, top_k, as_of, since, until, sources),
                      (InvalidQuestion,), memory=False)
    if isinstance(outcome, InvalidQuestion):
        assert_message(str(outcome))
        return
    assert outcome["top_k"] is None or (isinstance(outcome["top_k"], int) and 1 <= outcome["top_k"] <= MAX_TOP_K)
    assert outcome["sources"] is None or all(isinstance(s, str) and s.strip() == s and s for s in outcome["sources"])


@fuzz("check_request")
@given(question=st.one_of(st.text(max_size=50), st.builds(lambda n: "x" * n, st.integers(0, 10_000))),
       history=st.one_of(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=20)), max_size=80),
                         st.builds(lambda n, s: [("q" * s, "a" * s)] * n, st.integers(0, 60), st.integers(0, 60_000))))
def test_check_request(question, history):
    """check_request: None within the limits, InvalidQuestion beyond them (and exactly then)."""
    outcome = bounded("check_request", lambda: check_request(question, history, API_SETTINGS), (InvalidQuestion,),
                      memory=False)
    over = (len(question) > API_SETTINGS.max_question_chars or len(history) > API_SETTINGS.max_history_turns
            or sum(len(q) + len(a) for q, a in history) > API_SETTINGS.max_history_chars)
    assert isinstance(outcome, InvalidQuestion) == over
    if over:
        assert_message(str(outcome))


# --- questions through a real pipeline --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, embedder, settings_at):
    """A real extractive Pipeline over a fresh index of the corpus/ folder (ingested once)."""
    from rag.app import open_services

    corpus = tmp_path_factory.mktemp("fuzz-corpus") / "corpus"
    shutil.copytree(PROJECT_ROOT / "corpus", corpus)
    services = open_services(settings_at(tmp_path_factory.mktemp("fuzz-data"), corpus_dir=corpus), embedder=embedder)
    assert services.ensure_corpus(progress=False) is not None
    services.pipeline.ask("Who holds the majority stake?", mode="extractive")  # warm: models, caches
    return services.pipeline


question_parts = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40), st.sampled_from(TIME_WORDS),
    st.sampled_from(["Who holds the majority stake?", "CATL", "BAIC", "51%", "\"quoted\"", "'", "\u201cCATL\u201d",
                     "?", "   ", "\t\n", "\x00\x01\x1f\x7f", "\u200b\u200d\ufeff", "\u202e", "[1]", "1:c:0"]),
    st.builds(lambda n: "1" * n, st.integers(1, 400)), st.builds(lambda n: " " * n, st.integers(1, 300)),
    st.builds(lambda w, n: (w + " ") * n, st.sampled_from(["stake", "the", "é", "\U0001f600", "?"]),
              st.integers(1, 1000)),
)
questions = st.builds(lambda parts, sep: sep.join(parts)[:5000], st.lists(question_parts, max_size=6),
                      st.sampled_from([" ", "", "\n", " , "]))


def check_answer(pipeline, call) -> None:
    """``call()`` (an ask): an Answer whose citations quote their articles exactly, or InvalidQuestion."""
    outcome = bounded("pipeline", call, (InvalidQuestion,), memory=False)
    event(type(outcome).__name__)
    if isinstance(outcome, InvalidQuestion):
        assert_message(str(outcome))
        return
    assert isinstance(outcome, Answer) and outcome.mode == "extractive"
    json.loads(outcome.to_json())
    for c in outcome.citations:
        text = pipeline.store.get_articles([c.article_id], with_text=True)[c.article_id].text
        assert text[c.start_char_idx:c.end_char_idx] == c.quote


@fuzz("pipeline", share=0.5, deadline_s=10)
@given(question=questions)
def test_pipeline_questions(pipeline, question):
    """Extractive ask of any question (controls, 5,000 characters, digit runs, time words, quotes)."""
    check_answer(pipeline, lambda: pipeline.ask(question, mode="extractive"))


EDGE_DATES = ("0001-01-01", "0001-01-02", "0001-12-31", "9999-12-31", "2022-02-07", "2024-03-05", "2030-01-01")
as_of_dates = st.one_of(st.none(), st.sampled_from(EDGE_DATES), st.sampled_from(ODD_DATES + ("", " ")),
                        st.text(max_size=12))
window_dates = st.one_of(st.none(), st.none(), st.none(), as_of_dates)  # since/until: mostly unset


@fuzz("pipeline", share=0.5, deadline_s=10)
@given(question=st.builds("{} {}?".format, questions, st.sampled_from(TIME_WORDS + ("",))),
       top_k=st.one_of(st.none(), st.integers(-5, MAX_TOP_K + 5), st.integers()),
       as_of=as_of_dates, since=window_dates, until=window_dates,
       sources=st.one_of(st.none(), st.lists(st.sampled_from(["", " ", "bbc", "BBC", "corpus", "\x00"]) | st.text(
           max_size=8), max_size=4)),
       history=st.one_of(st.none(), st.lists(st.tuples(questions, st.text(max_size=40)), max_size=3)))
def test_pipeline_options(pipeline, question, top_k, as_of, since, until, sources, history):
    """Ask with any options of the right types: a top-k out of range, odd dates (year 1, 9999, 30 February),
    outlets, an earlier conversation."""
    check_answer(pipeline, lambda: pipeline.ask(question, mode="extractive", top_k=top_k, as_of=as_of, since=since,
                                                until=until, sources=sources, history=history))
