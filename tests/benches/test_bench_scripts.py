"""Each benchmark script runs and reports through the harness contract (its last stdout
line is JSON with ``metrics``), at sizes small enough for a test. Numbers are not
checked here: they are measured by ``make bench``, beside the peers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "benches" / "python"

CASES = [
    ("overhead.py", ["ringloom", "map", "--n", "200", "--cpu", "-1"], "tasks_per_s"),
    ("overhead.py", ["ringloom", "submit", "--n", "200", "--cpu", "-1"], "tasks_per_s"),
    ("sleepers.py", ["ringloom", "--n", "100", "--cpu", "-1"], "wall_s"),
    ("hashmap.py", ["ringloom", "--n", "8", "--mib", "0.01"], "hashes_per_s"),
    ("locks.py", ["ringloom", "uncontended", "--n", "1000", "--cpu", "-1"], "ns_per_op"),
    ("locks.py", ["ringloom", "handoff", "--n", "1000", "--cpu", "-1"], "ops_per_s"),
    ("locks.py", ["ringloom", "queue", "--n", "1000", "--cpu", "-1"], "items_per_s"),
    ("gunicorn_wsgi.py", ["ringloom", "--conns", "20", "--seconds", "1"], "req_per_s"),
]
# The py.aio.* scripts under ringloom.asyncio's loop (each checks its own work: echoed
# bytes, callbacks run, HTTP answers, connections served).
UNPINNED = ["--server-cpu", "-1", "--load-cpu", "-1"]
for _style, _size in (("protocol", "65536"), ("streams", "1024")):
    CASES.append(
        (
            "echo.py",
            [f"aio-ringloom-{_style}", "--conns", "20", "--size", _size, "--seconds", "0.3"]
            + ["--warmup", "0.1", *UNPINNED],
            "req_per_s",
        )
    )
CASES += [
    ("aio_callbacks.py", ["ringloom", "soon", "--n", "2000", "--cpu", "-1"], "calls_per_s"),
    ("aio_callbacks.py", ["ringloom", "later", "--n", "2000", "--cpu", "-1"], "timers_per_s"),
    (
        "aio_http.py",
        ["ringloom", "--conns", "20", "--seconds", "1", "--warmup", "0", *UNPINNED],
        "req_per_s",
    ),
    ("aio_idle.py", ["ringloom", "--conns", "200", *UNPINNED], "rss_mib"),
]


@pytest.mark.parametrize(("script", "args", "metric"), CASES, ids=lambda c: str(c))
def test_benchmark_script_reports(script: str, args: list[str], metric: str) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=SCRIPTS,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["metrics"][metric] > 0
