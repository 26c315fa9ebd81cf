"""No regular expression of the product backtracks super-linearly over untrusted text (articles, questions, model
replies, file names).

Every compiled pattern at module level in ``rag`` and ``ingest`` is fed adversarial strings: runs of the characters
and words that make patterns backtrack (digits, separators, spaces, capitals, the pattern's own literal characters),
behind a few openings and before a character that makes the match fail. The work a pattern does on an input of
length 8n is compared with its work on length n, both measured in one run as the least CPU time of three tries: a
linear pattern does about 8 times the work, a quadratic one 64 times. Python's ``re`` exposes no step counter, so
the ratio stands in for one; times too small to measure (under a millisecond) are not judged.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
import warnings

import pytest

import ingest
import rag

SMALL, LARGE = 250, 2000  # input lengths; LARGE / SMALL = 8
MAX_GROWTH = 24  # linear: about 8; quadratic: about 64
MEASURABLE = 0.001  # seconds of work on the large input below which the ratio is noise
RUNS = [
    "1", "1,", "1.", " ", "\t \n", "\n\n", "A", "Aa ", "A. ", "A of ", "A-", "A A", "A'", "A, ", "a", "ab ", "aA",
    "'", '"', "<<<", "(", "-", ".", "$1", "£1 ", "1 m ", "1 per ", "1%", "Jan 1 ", "Monday ", "1 1 ", "a.b", "--- ",
    "-\n", "Mr. ", "U.S.", "\u2019", "\u201c", "http://", "www.", "@", "#", "*", "_", "[1", "[1, ", "system ",
]
OPENINGS = ["", "A", "1", "<<<"]


def module_patterns() -> dict[str, re.Pattern]:
    """Every compiled pattern bound at module level (alone or in a list, tuple or dict) in rag and ingest."""
    found: dict[str, re.Pattern] = {}
    for package in (rag, ingest):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for name, value in vars(module).items():
                values = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) \
                    else [value]
                for item in values:
                    item = next((x for x in item if isinstance(x, re.Pattern)), None) if isinstance(item, tuple) \
                        else item
                    if isinstance(item, re.Pattern):
                        found.setdefault(f"{info.name}.{name}", item)
    return found


def own_characters(pattern: re.Pattern) -> list[str]:
    """Runs of the literal characters the pattern names (twice each, then a space)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import sre_parse

        try:
            parsed = sre_parse.parse(pattern.pattern, pattern.flags)
        except Exception:
            return []
    text = pattern.pattern if isinstance(pattern.pattern, str) else pattern.pattern.decode("latin-1")
    literals = {chr(value) for op, value in parsed if op == sre_parse.LITERAL and value < 0x110000}
    return [c * 2 + " " for c in sorted(literals) if c in text or not c.isalnum()]


def work(pattern: re.Pattern, text: str) -> float:
    """The least CPU time of three full scans of ``text`` (every match, then a search)."""
    subject = text.encode("utf-8", "surrogateescape") if isinstance(pattern.pattern, bytes) else text
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _match in pattern.finditer(subject):
            pass
        pattern.search(subject)
        best = min(best, time.process_time() - start)
    return best


def adversarial(run: str, opening: str, length: int) -> str:
    return opening + (run * (length // len(run) + 1))[:length] + "!"


PATTERNS = module_patterns()


def test_the_product_has_patterns_to_check():
    assert len(PATTERNS) > 40 and "rag.query.answer._MONEY" in PATTERNS and "ingest.metadata._FRONT_MATTER" in PATTERNS


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern_work_grows_linearly_with_adversarial_input(name):
    pattern = PATTERNS[name]
    slow = []
    for run in RUNS + own_characters(pattern):
        for opening in OPENINGS:
            large = work(pattern, adversarial(run, opening, LARGE))
            if large < MEASURABLE:
                continue
            small = work(pattern, adversarial(run, opening, SMALL))
            if large / max(small, 1e-6) > MAX_GROWTH and work(pattern, adversarial(run, opening, LARGE)) / max(
                    work(pattern, adversarial(run, opening, SMALL)), 1e-6) > MAX_GROWTH:  # measured twice
                slow.append(f"{opening!r} + {run!r} * n: {small * 1000:.2f} ms -> {large * 1000:.2f} ms")
    assert not slow, f"{name} backtracks super-linearly: {slow}"
