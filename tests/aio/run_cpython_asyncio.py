"""Runs CPython's own ``test.test_asyncio`` modules with a chosen event loop installed,
and prints pass/fail/error/skip counts per module.

The loop under test (``ringloom``, ``uvloop``, or ``asyncio`` for the stock one) replaces
every loop the tests make for real I/O:

- the event loop policy (``asyncio.new_event_loop()``, ``asyncio.run``,
  ``IsolatedAsyncioTestCase``): ``asyncio.DefaultEventLoopPolicy`` is replaced too, since
  the modules reset the policy with ``set_event_loop_policy(None)``;
- ``asyncio.SelectorEventLoop()`` called without a selector (the functional test cases
  of test_server, test_sslproto, test_buffered_proto, test_base_events, test_unix_events);
- the per-selector test cases (test_events, test_sock_lowlevel, test_sendfile): the
  epoll one is kept and its ``create_event_loop`` makes the loop under test; the poll,
  select and kqueue ones are dropped.

Loops the tests build on purpose as mocks or fakes (``TestLoop``, a ``SelectorEventLoop``
given a mock selector) stay what they are, for every loop alike. Each module runs in its
own child process; ``--debug`` sets ``PYTHONASYNCIODEBUG=1``.

Example::

    .venv/bin/python tests/aio/run_cpython_asyncio.py --loop ringloom --loop asyncio \\
        --module test_futures --module test_streams
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import unittest
from typing import Any

__all__ = ["MODULES", "install_loop", "load_suite", "main", "run_module", "table"]

#: The modules that test loop behaviour (the issue's list, and their neighbours).
MODULES = [
    "test_events",
    "test_base_events",
    "test_sock_lowlevel",
    "test_streams",
    "test_tasks",
    "test_futures",
    "test_sslproto",
    "test_subprocess",
    "test_server",
    "test_buffered_proto",
    "test_timeouts",
    "test_unix_events",
    "test_sendfile",
    "test_ssl",
    "test_taskgroups",
    "test_waitfor",
    "test_locks",
    "test_queues",
    "test_runners",
    "test_context",
    "test_pep492",
]

#: ``ringloom-vthread``: the ringloom loop, every test run inside one virtual thread of a
#: one-worker Loom (``patch_asyncio`` on), not on the main thread; ``asyncio-thread``: the
#: stock loop with every test run in one OS thread that is not the main thread, to tell
#: what fails off the main thread whatever the loop.
LOOPS = ["ringloom", "ringloom-vthread", "uvloop", "asyncio", "asyncio-thread"]
_OFF_MAIN = {"ringloom-vthread", "asyncio-thread"}

# Modules with one test case per selector class.
_PER_SELECTOR = {"test_events", "test_sock_lowlevel", "test_sendfile"}
_DROPPED = ("KqueueEventLoopTests", "PollEventLoopTests", "SelectEventLoopTests")


def install_loop(name: str) -> Any:
    """Installs loop ``name`` as described in the module docstring; returns a factory
    of new loops of that kind.

    Example: ``make = install_loop("ringloom"); loop = make(); loop.close()``
    """
    import asyncio

    if name in ("asyncio", "asyncio-thread"):
        return asyncio.new_event_loop
    if name in ("ringloom", "ringloom-vthread"):
        import ringloom.asyncio

        policy_cls: Any = ringloom.asyncio.EventLoopPolicy
        factory: Any = ringloom.asyncio.new_event_loop
        asyncio.SelectorEventLoop = ringloom.asyncio.RingEventLoop  # type: ignore[misc]
    elif name == "uvloop":
        import uvloop

        policy_cls = uvloop.EventLoopPolicy
        factory = uvloop.new_event_loop
        stock = asyncio.SelectorEventLoop

        def selector_loop(selector: Any = None) -> Any:
            return uvloop.new_event_loop() if selector is None else stock(selector)

        asyncio.SelectorEventLoop = selector_loop  # type: ignore[misc,assignment]
        # CPython's test helper (utils.TestCase.close_loop) reads the loop's private
        # `_default_executor`, which uvloop's Loop does not expose: None, so that the
        # helper just closes the loop (which shuts uvloop's executor down itself).
        uvloop.Loop._default_executor = None
    else:
        raise ValueError(f"unknown loop {name!r}")
    asyncio.DefaultEventLoopPolicy = policy_cls  # type: ignore[misc]
    asyncio.set_event_loop_policy(policy_cls())
    return factory


class Hang(BaseException):
    """Raised into a test that outlived the per-test limit (``--test-timeout``); a
    BaseException, so that the test's own ``except Exception`` does not swallow it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise Hang(f"did not finish within {_test_timeout()} s (stopped by the runner)")


def _test_timeout() -> float:
    return float(os.environ.get("RUN_CPYTHON_ASYNCIO_TEST_TIMEOUT", "60"))


class _Counts(unittest.TextTestResult):
    """A result that also keeps the ids and first error lines of what failed, and
    stops a test that hangs (SIGALRM after ``--test-timeout`` seconds: every loop runs
    Python signal handlers while it waits; a test that sets its own alarm takes the
    signal over for its duration)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passed = 0
        self.problems: list[tuple[str, str, str]] = []

    def startTest(self, test: unittest.TestCase) -> None:  # noqa: N802 (unittest's name)
        super().startTest(test)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, _test_timeout())

    def stopTest(self, test: unittest.TestCase) -> None:  # noqa: N802
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)
        super().stopTest(test)

    def addSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802 (unittest's name)
        super().addSuccess(test)
        self.passed += 1

    def _keep(self, kind: str, test: Any, err: Any) -> None:
        text = self._exc_info_to_string(err, test)  # type: ignore[attr-defined]
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        self.problems.append((kind, test.id(), last[:300]))

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:  # noqa: N802
        super().addFailure(test, err)
        self._keep("fail", test, err)

    def addError(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addError(test, err)
        self._keep("error", test, err)

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802
        super().addUnexpectedSuccess(test)
        self.problems.append(("unexpected-success", test.id(), ""))


@unittest.skip("interrupts the main thread: run only there")
def _main_thread_only(self: Any) -> None:
    """Stands in for a test that can only run on the main thread."""


def load_suite(loop_name: str, module_name: str) -> unittest.TestSuite:
    """Installs ``loop_name`` and loads module ``module_name``'s tests for it.

    Example: ``unittest.TextTestRunner().run(load_suite("ringloom", "test_futures"))``
    """
    make_loop = install_loop(loop_name)
    import asyncio
    import importlib

    module = importlib.import_module(f"test.test_asyncio.{module_name}")
    if module_name in _PER_SELECTOR and loop_name != "asyncio":
        for dropped in _DROPPED:
            if hasattr(module, dropped):
                delattr(module, dropped)
        case = module.EPollEventLoopTests
        case.create_event_loop = lambda self: make_loop()
        if loop_name == "uvloop" and module_name == "test_events":
            # The unix mixin attaches a SafeChildWatcher through the policy, which
            # uvloop's policy refuses (NotImplementedError); uvloop watches its
            # children itself, so its loop is tested without one.
            mixin = module.EventLoopTestsMixin
            case.setUp = mixin.setUp
            case.tearDown = mixin.tearDown
    elif module_name in _PER_SELECTOR:
        for dropped in _DROPPED:
            if hasattr(module, dropped):
                delattr(module, dropped)
    if loop_name in _OFF_MAIN and module_name == "test_runners":
        # These interrupt the main thread (`_thread.interrupt_main`) to stop their own
        # loop, and three of them assert that they run there: off it, the loop waits
        # on forever while the interrupt goes elsewhere. Skipped.
        for name in dir(module.RunnerTests):
            if name.startswith("test_interrupt_"):
                setattr(module.RunnerTests, name, _main_thread_only)
        module.RunTests.test_asyncio_run_without_uncancel = _main_thread_only
    if loop_name in _OFF_MAIN and module_name == "test_events":
        # The unix mixin's SafeChildWatcher takes SIGCHLD through add_signal_handler,
        # which only the main thread may do: off it, the threaded watcher (as asyncio's
        # default policy uses), so that the loop's own tests run there too.
        mixin = module.EventLoopTestsMixin

        def set_up(self: Any) -> None:
            mixin.setUp(self)
            watcher = asyncio.ThreadedChildWatcher()
            watcher.attach_loop(self.loop)
            asyncio.set_child_watcher(watcher)

        module.EPollEventLoopTests.setUp = set_up
    return unittest.defaultTestLoader.loadTestsFromModule(module)


def _in_virtual_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a virtual thread of a one-worker Loom (no per-test limit there:
    SIGALRM reaches only the main thread; the module's limit still applies)."""
    import ringloom
    import ringloom.monkey

    ringloom.monkey.patch_asyncio()

    def body() -> Any:
        assert ringloom.in_virtual_thread()
        return fn(*args)

    with ringloom.Loom(workers=1) as loom:
        return ringloom.submit(loom, body).result()


def _in_os_thread(fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in a new OS thread (not the main one)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn(*args)))
    thread.start()
    thread.join()
    return out[0]


def run_module(loop_name: str, module_name: str) -> dict[str, Any]:
    """Runs one module in this process with ``loop_name`` installed; its counts.

    Example: ``run_module("ringloom", "test_futures")["fail"] == 0``
    """
    suite = load_suite(loop_name, module_name)
    with open(os.devnull, "w") as sink:
        runner = unittest.TextTestRunner(stream=sink, resultclass=_Counts, verbosity=0)
        if loop_name == "ringloom-vthread":
            result: Any = _in_virtual_thread(runner.run, suite)
        elif loop_name == "asyncio-thread":
            result = _in_os_thread(runner.run, suite)
        else:
            result = runner.run(suite)
    return {
        "module": module_name,
        "loop": loop_name,
        "run": result.testsRun,
        "pass": result.passed,
        "fail": len(result.failures),
        "error": len(result.errors),
        "skip": len(result.skipped),
        "xfail": len(result.expectedFailures),
        "problems": result.problems,
    }


def _child(
    loop_name: str, module_name: str, timeout: float, debug: bool, test_timeout: float
) -> dict[str, Any]:
    env = dict(os.environ, RUN_CPYTHON_ASYNCIO_TEST_TIMEOUT=str(test_timeout))
    if debug:
        env["PYTHONASYNCIODEBUG"] = "1"
    cmd = [sys.executable, __file__, "--child", loop_name, module_name]
    started = time.monotonic()
    try:
        out = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"module": module_name, "loop": loop_name, "crash": f"timeout {timeout:.0f} s"}
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            counts: dict[str, Any] = json.loads(line)
            counts["seconds"] = round(time.monotonic() - started, 1)
            return counts
    tail = (out.stderr.strip().splitlines() or ["?"])[-1]
    return {"module": module_name, "loop": loop_name, "crash": f"rc {out.returncode}: {tail}"}


def table(files: dict[str, str], only_failing: bool = False) -> str:
    """A markdown table: a row per module, a column per labelled ``--json`` file, each
    cell ``passed / failed+errors / skipped``; ``only_failing``: only the modules with a
    failure or error in some column (and the totals).

    Example: ``print(table({"ringloom": "ringloom.jsonl", "uvloop": "uvloop.jsonl"}))``
    """
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for label, path in files.items():
        with open(path) as lines:
            runs[label] = {c["module"]: c for c in map(json.loads, lines)}
    modules = [m for m in MODULES if any(m in run for run in runs.values())]
    rows = ["| module | " + " | ".join(runs) + " |", "|---" + "|---:" * len(runs) + "|"]
    totals = {label: [0, 0, 0] for label in runs}
    for module in modules:
        cells = []
        for label, run in runs.items():
            c = run.get(module)
            if c is None or "crash" in c:
                cells.append("crash" if c else "-")
                continue
            bad = c["fail"] + c["error"]
            for i, n in enumerate((c["pass"], bad, c["skip"])):
                totals[label][i] += n
            shown = f"**{bad}**" if bad else "0"
            cells.append(f"{c['pass']} / {shown} / {c['skip']}")
        if only_failing and "**" not in "".join(cells):
            continue
        rows.append(f"| {module} | " + " | ".join(cells) + " |")
    rows.append(
        "| **all** | " + " | ".join(f"**{p}** / {b} / {s}" for p, b, s in totals.values()) + " |"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring); 0 unless a module crashed.

    Example: ``main(["--loop", "ringloom", "--module", "test_futures"])``
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loop", action="append", choices=LOOPS)
    parser.add_argument("--module", action="append")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--test-timeout", type=float, default=60, help="seconds a test may run (then: error)"
    )
    parser.add_argument("--debug", action="store_true", help="PYTHONASYNCIODEBUG=1")
    parser.add_argument("--json", help="append each module's counts to this file")
    parser.add_argument(
        "--table",
        nargs="+",
        metavar="LABEL=FILE",
        help="print a markdown table of --json files (no tests run)",
    )
    parser.add_argument(
        "--only-failing", action="store_true", help="--table: only modules with failures"
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table:
        print(table(dict(item.split("=", 1) for item in args.table), args.only_failing))
        return 0
    if args.child:
        # A shell's background job starts with SIGINT ignored; the tests send it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(json.dumps(run_module(*args.child)), flush=True)
        return 0
    crashed = False
    print(f"{'loop':16} {'module':20} {'run':>5} {'pass':>5} {'fail':>4} {'err':>4} {'skip':>4}")
    for loop_name in args.loop or LOOPS:
        for module_name in args.module or MODULES:
            counts = _child(loop_name, module_name, args.timeout, args.debug, args.test_timeout)
            counts["driver"] = os.environ.get("RINGLOOM_DRIVER", "uring")
            counts["debug"] = args.debug
            if "crash" in counts:
                crashed = True
                print(f"{loop_name:16} {module_name:20} CRASH {counts['crash']}", flush=True)
            else:
                print(
                    f"{loop_name:16} {module_name:20} {counts['run']:5} {counts['pass']:5} "
                    f"{counts['fail']:4} {counts['error']:4} {counts['skip']:4}",
                    flush=True,
                )
                for kind, test_id, line in counts["problems"]:
                    print(f"    {kind}: {test_id}: {line}", flush=True)
            if args.json:
                with open(args.json, "a") as out:
                    out.write(json.dumps(counts) + "\n")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
