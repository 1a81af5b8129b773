"""The pool of frame stacks (``src/arena.rs``): each virtual thread's 16 KiB frame stack
comes from 1 MiB regions shared by 64, is reused after the thread ends, and regions go
back to the system once all their stacks are free.

The pool is the process's, so what it holds is measured in a fresh process: in the test
process, stacks that other tests' threads still hold would pin regions of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from ringloom.virtual_thread import VirtualThreadPool

PARKED = 2_000
# Free chunks whose pages the pool keeps at most (`DIRTY_LIMIT`).
CACHED_LIMIT = 256
# Idle greenlets a worker's hub keeps for its next calls (`Idle::KEEP`, src/vthread),
# each with its stack.
KEPT_IDLE = 256

# Parks PARKED virtual threads at once, three times, and reports the pool's regions and
# stacks in use at rest, while they all wait, and once they ended.
ROUNDS = """
import json, sys, threading, time
from ringloom import _native
from ringloom.virtual_thread import VirtualThreadPool

PARKED, SETTLED = int(sys.argv[1]), int(sys.argv[2])

def until(predicate):
    deadline = time.monotonic() + 60
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)

with VirtualThreadPool(2) as pool:
    def stats():
        native = pool._loom.stats()
        return (
            native["frame_chunk_regions"],
            native["frame_chunks_in_use"],
            native["frame_chunks_cached"],
            native["frame_chunks_peak"],
        )
    assert pool.submit(lambda: 1).result() == 1
    idle = stats()
    rounds = []
    for _ in range(3):
        arrived = [0]
        lock = threading.Lock()
        release = _native.Event()

        def wait(i):
            with lock:
                arrived[0] += 1
            release.wait()
            return i

        futures = [pool.submit(wait, i) for i in range(PARKED)]
        until(lambda: arrived[0] == PARKED)
        parked = stats()
        release.set()
        assert [f.result(timeout=60) for f in futures] == list(range(PARKED))
        # Ended, they give their stacks back but for the greenlets each hub keeps idle.
        until(lambda: stats()[1] <= idle[1] + SETTLED)
        rounds.append({"parked": parked, "ended": stats()})
print(json.dumps({"idle": idle, "rounds": rounds}))
"""


def run(script: str, *args: str, **env: str) -> Any:
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("seed", [None, "1", "2"])
def test_parked_threads_share_regions_and_give_them_back_when_they_end(seed: str | None) -> None:
    # Seeded, the threads end in shuffled orders, and the idle greenlets the hubs keep
    # are scattered over the regions.
    env = {"RINGLOOM_SCHED_SEED": seed} if seed is not None else {}
    seen = run(ROUNDS, str(PARKED), str(2 * KEPT_IDLE + 2), **env)
    _, in_use_idle, _, _ = seen["idle"]
    for one in seen["rounds"]:
        regions, in_use, _, peak = one["parked"]
        # Each parked thread holds its own stack, 64 to a region. A region is mapped
        # only when all the others are full: stacks freed since (kept greenlets let go,
        # in shuffled orders when seeded) leave room in older regions, so the bound is
        # on the most stacks ever in use, not on those in use now.
        assert in_use >= in_use_idle + PARKED
        assert peak >= in_use
        assert regions <= peak // 64 + 1
        # Ended, their stacks are free: regions all of whose stacks are free went back
        # to the system, and of the free stacks in the regions that the kept greenlets
        # pin, only a bounded number keep their pages.
        regions_ended, _, cached, _ = one["ended"]
        assert regions_ended <= regions
        assert cached <= CACHED_LIMIT


def test_deep_recursion_takes_bigger_stacks_from_the_system_allocator() -> None:
    def depth(n: int) -> int:
        return 0 if n == 0 else 1 + depth(n - 1)

    with VirtualThreadPool(2) as pool:
        # Beyond one 16 KiB stack: CPython asks for a bigger one, which is not pooled.
        assert pool.map(depth, [500] * 50) == [500] * 50
        assert pool.map(depth, [5] * 500) == [5] * 500


SYSTEM = """
import json
from ringloom.virtual_thread import VirtualThreadPool
with VirtualThreadPool(2) as pool:
    assert pool.map(lambda i: i, range(1000)) == list(range(1000))
    print(json.dumps(pool._loom.stats()["frame_chunk_regions"]))
"""


def test_the_system_allocator_can_be_kept() -> None:
    assert run(SYSTEM, RINGLOOM_FRAME_CHUNKS="system") == 0
