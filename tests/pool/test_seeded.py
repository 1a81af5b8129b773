"""Seeded scheduling (``RINGLOOM_SCHED_SEED``): the order in which a worker's ready virtual
threads run within a priority is shuffled from the seed, and the same seed replays it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# One worker and one native batch: every call is ready at once, so the start order is
# the hub's choice alone.
ORDER = """
import json
from ringloom.virtual_thread import VirtualThreadPool

started = []
with VirtualThreadPool(max_platform_threads=1) as pool:
    pool.map(started.append, range(50))
print(json.dumps(started))
"""


def start_order(seed: str | None) -> list[int]:
    env = {k: v for k, v in os.environ.items() if k != "RINGLOOM_SCHED_SEED"}
    if seed is not None:
        env["RINGLOOM_SCHED_SEED"] = seed
    out = subprocess.run(
        [sys.executable, "-c", ORDER], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    order: list[int] = json.loads(out.stdout)
    return order


def test_a_seed_shuffles_the_start_order_and_replays_it() -> None:
    fifo = list(range(50))
    assert start_order(None) == fifo
    seeded = start_order("7")
    assert sorted(seeded) == fifo
    assert seeded != fifo
    assert start_order("7") == seeded
    assert start_order("8") != seeded


@pytest.mark.parametrize("seed", ["seven", "-1"])
def test_a_seed_that_is_not_an_unsigned_integer_is_refused(seed: str) -> None:
    env = {**os.environ, "RINGLOOM_SCHED_SEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", ORDER], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "RINGLOOM_SCHED_SEED must be an unsigned integer" in out.stderr
