"""A fast subset of CPython's own asyncio tests, with the ringloom loop installed by
``run_cpython_asyncio.py`` (in a child process per module, under the driver this run
uses), with and without asyncio's debug mode: no failure or error beyond the known ones
listed here. The whole list of modules, uvloop's and the stock loop's counts beside
ringloom's: README, "asyncio on the ring"."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).with_name("run_cpython_asyncio.py")

# The modules that exercise the loop itself (transports, sockets, streams, pipes,
# signals, subprocesses through the loop's child watcher): about 10 s in all.
MODULES = [
    "test_events",
    "test_base_events",
    "test_sock_lowlevel",
    "test_streams",
    "test_unix_events",
    "test_sendfile",
    "test_server",
    "test_buffered_proto",
]

# Test ids expected to fail or error with the ringloom loop, each with its reason.
# None at present: every test of these modules passes (or is skipped, as it is with the
# stock loop).
KNOWN_FAILURES: dict[str, str] = {}


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the modules of CPython 3.11")
@pytest.mark.parametrize("debug", [False, True], ids=["normal", "debug-mode"])
def test_cpython_asyncio_subset_passes(tmp_path: Path, debug: bool) -> None:
    pytest.importorskip("test.test_asyncio")
    out = tmp_path / "counts.jsonl"
    args = [sys.executable, str(RUNNER), "--loop", "ringloom", "--json", str(out)]
    if debug:
        args.append("--debug")  # PYTHONASYNCIODEBUG=1 in the children
    for module in MODULES:
        args += ["--module", module]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [c["module"] for c in counts] == MODULES
    unexpected = [
        (kind, test_id, line)
        for c in counts
        for kind, test_id, line in c["problems"]
        if test_id not in KNOWN_FAILURES
    ]
    assert unexpected == [], proc.stdout
    assert sum(c["pass"] for c in counts) > 300  # the modules did run
