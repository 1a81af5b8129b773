"""``_harness.pin`` moves a process to the CPU asked for even when its parent, pinned to
another CPU, passed that affinity on (the echo, http and scrape drivers pin themselves to
the load generator's CPU before they start the server that must run on the other)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "benches" / "python"

CHILD = """
import os, sys
sys.path.insert(0, sys.argv[1])
import _harness as h
h.pin(int(sys.argv[2]))
print(sorted(os.sched_getaffinity(0)))
"""


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs two CPUs",
)
def test_pin_leaves_the_inherited_cpu() -> None:
    first, second = sorted(os.sched_getaffinity(0))[:2]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(SCRIPTS), str(first)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        preexec_fn=lambda: os.sched_setaffinity(0, {second}),
    )
    assert out.stdout.strip() == str([first])
