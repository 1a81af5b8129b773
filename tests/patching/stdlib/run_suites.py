"""Runs CPython's own test suites under ``ringloom.monkey.patch_all()``.

    python tests/patching/stdlib/run_suites.py [--where main|vthread] [--skip-file F] TEST ...

Each TEST is a dotted unittest name (``test.test_queue``, ``test.test_threading.LockTests``).
``--where vthread`` runs the tests (with their class and module fixtures) inside a
virtual thread of a ``VirtualThreadPool``; ``main`` on the main OS thread. Tests named in
the skip file (one ``id: reason`` per line; ``vthread id: reason`` for a test that
cannot pass only inside a virtual thread) are skipped with that reason. Prints one
JSON line: counts and the ids of failures and errors.
"""

from __future__ import annotations

import argparse
import json
import sys
import unittest

from ringloom import monkey

monkey.patch_all()

from ringloom.virtual_thread import VirtualThreadPool  # noqa: E402 - after the patch


def _cases(suite: unittest.TestSuite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from _cases(item)
        else:
            yield item


def _skips(path: str | None, where: str) -> dict[str, str]:
    """``{test id: reason}`` from the skip file; a line that starts with ``vthread ``
    applies only to runs inside a virtual thread."""
    skips: dict[str, str] = {}
    if path:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                only, _, rest = line.partition(" ")
                if only == "vthread":
                    if where != "vthread":
                        continue
                    line = rest
                test_id, _, reason = line.partition(":")
                skips[test_id.strip()] = reason.strip()
    return skips


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--where", choices=("main", "vthread"), default="main")
    parser.add_argument("--skip-file")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--ringloom-queues",
        action="store_true",
        help="test_queue imports fresh copies of queue (the patch does not reach them): "
        "put ringloom.queues' Queue, LifoQueue and PriorityQueue in them",
    )
    parser.add_argument("tests", nargs="+")
    args = parser.parse_args()
    skips = _skips(args.skip_file, args.where)
    loaded = unittest.defaultTestLoader.loadTestsFromNames(args.tests)
    if args.ringloom_queues:
        from ringloom import queues
        from test import test_queue

        for module in (test_queue.py_queue, test_queue.c_queue):
            # Each fresh copy has its own Empty and Full, which its tests expect.
            errors = {"_empty_error": module.Empty, "_full_error": module.Full}
            for name in ("Queue", "LifoQueue", "PriorityQueue"):
                setattr(module, name, type(name, (getattr(queues, name),), errors))
    cases = list(_cases(loaded))
    for case in cases:
        reason = skips.get(case.id())
        if reason:
            setattr(
                case,
                case._testMethodName,
                unittest.skip(reason)(getattr(case, case._testMethodName)),
            )
    stream = unittest.runner._WritelnDecorator(sys.stderr)  # type: ignore[attr-defined]
    verbosity = 2 if args.verbose else 1
    result = unittest.TextTestResult(stream, descriptions=False, verbosity=verbosity)
    # One suite, so that unittest runs the class and module fixtures (setUpClass,
    # setUpModule) around the cases, as its own runner does.
    suite = unittest.TestSuite(cases)
    if args.where == "main":
        suite.run(result)
    else:
        with VirtualThreadPool(max_platform_threads=2) as pool:
            pool.submit(suite.run, result).result()
    print()
    print(
        json.dumps(
            {
                "where": args.where,
                "run": result.testsRun,
                "skipped": len(result.skipped),
                "failures": [test.id() for test, _ in result.failures],
                "errors": [test.id() for test, _ in result.errors],
                "unexpected_successes": len(result.unexpectedSuccesses),
            }
        )
    )
    for test, trace in result.failures + result.errors:
        print(f"--- {test.id()}\n{trace}", file=sys.stderr)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
