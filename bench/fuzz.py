"""Fuzzing benchmark: tests/test_fuzz.py with the "bench" Hypothesis profile (about 2,000 inputs per test).

    python bench/fuzz.py                  # every target (about 10x the inputs of the test run)
    python bench/fuzz.py -k pdf           # only the tests whose names match (pytest -k)
    python bench/fuzz.py --profile full   # a smaller budget: fast, full or bench
    python bench/fuzz.py --seed 1         # a reproducible run

Prints pytest's report (each failure with the minimal input Hypothesis found), then per target the inputs
tried (tests.test_fuzz.TRIED: every call, shrinking included) and the distinct failures found, and a last line
``fuzz: inputs=N failures=F seconds=S``. Exits with pytest's status: non-zero when any test failed.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this folder is sys.path[0] and bench/ingest.py would shadow the ``ingest`` package.
sys.path[:] = [str(REPO_ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

TESTS = REPO_ROOT / "tests" / "test_fuzz.py"
MODULE = "tests.test_fuzz"


class Failures:
    """A pytest plugin counting the distinct failures of each test (Hypothesis reports several at once as an
    exception group) by test name."""

    def __init__(self):
        self.by_test: collections.Counter = collections.Counter()

    def pytest_exception_interact(self, node, call, report):
        exc = call.excinfo.value if call.excinfo is not None else None
        self.by_test[getattr(node, "originalname", node.name)] += (
            len(exc.exceptions) if isinstance(exc, BaseExceptionGroup) else 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="bench", choices=("fast", "full", "bench"),
                        help="the Hypothesis budget of tests/test_fuzz.py (default: bench)")
    parser.add_argument("-k", dest="keyword", default=None, help="only the tests matching this pytest -k expression")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed, for a reproducible run")
    args = parser.parse_args(argv)

    os.environ["RAG_FUZZ_PROFILE"] = args.profile  # read when pytest imports the test module
    import pytest

    options = [str(TESTS), "-q", "-p", "no:cacheprovider", "--show-capture=no", "--rootdir", str(REPO_ROOT)]
    if args.keyword:
        options += ["-k", args.keyword]
    if args.seed is not None:
        options += [f"--hypothesis-seed={args.seed}"]
    failures = Failures()
    started = time.perf_counter()
    status = pytest.main(options, plugins=[failures])
    seconds = time.perf_counter() - started

    module = sys.modules.get(MODULE)
    tried = module.TRIED if module is not None else collections.Counter()
    target_of = module.TARGET_OF if module is not None else {}
    by_target: collections.Counter = collections.Counter()
    for test, count in failures.by_test.items():
        by_target[target_of.get(test, test)] += count
    print(f"\nfuzz profile {args.profile}: inputs tried and distinct failures per target")
    for target in sorted(set(tried) | set(by_target)):
        print(f"  {target:<14} inputs {tried[target]:>8,}   failures {by_target[target]}")
    print(f"fuzz: inputs={sum(tried.values())} failures={sum(by_target.values())} seconds={seconds:.1f}")
    return int(status) if status else (1 if by_target else 0)


if __name__ == "__main__":
    raise SystemExit(main())
