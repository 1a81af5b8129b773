"""Ctrl-C is never lost: a KeyboardInterrupt reaches the main thread wherever it lands
in ``map``, ``submit(...).result()``, ``shutdown(wait=True)`` and a SafeThread ``join``,
and leaving the pool after it never hangs.

Whether the interrupt lands in the pool's setup, in the wait, or in between is a race,
so each child process runs every case many times, the interrupt fired after a random
delay, by ``_thread.interrupt_main`` (no real signal: a blocking wait is not woken by it)
and by a real ``SIGINT`` from ``os.kill``. The parent only bounds how long the child may
take: a child that hangs is killed and its output shown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

#: Seconds a child may run: far above what its rounds take, only a hang reaches it.
HANG_LIMIT = 240

ROUNDS = 25

CHILD = r"""
import _thread, os, random, signal, sys, threading, time
from ringloom import SafeThread, VirtualThreadPool
from ringloom.sync import Event

# What a terminal gives Python; a job started in the background of a non-interactive
# shell inherits SIGINT ignored, and interrupt_main then does nothing (documented).
signal.signal(signal.SIGINT, signal.default_int_handler)

case, how, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(int(sys.argv[4]))

def fire():
    if how == "kill":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        _thread.interrupt_main()

def park(_=None):
    time.sleep(60)

interrupted = 0
for _ in range(rounds):
    timer = threading.Timer(rng.uniform(0.0, 0.05), fire)
    stop = Event()
    try:
        timer.start()
        if case == "map":
            with VirtualThreadPool(max_platform_threads=2) as pool:
                pool.map(park, range(500))
        elif case == "result":
            with VirtualThreadPool(max_platform_threads=2) as pool:
                pool.submit(park).result()
        elif case == "shutdown":
            pool = VirtualThreadPool(max_platform_threads=2)
            for _ in range(100):
                pool.submit(park)
            pool.shutdown(wait=True)
        elif case == "join":
            thread = SafeThread(target=stop.wait)
            thread.start()
            thread.join()
        raise AssertionError(f"{case} returned without the interrupt")
    except KeyboardInterrupt:
        interrupted += 1
    finally:
        timer.join()
        stop.set()
print("interrupted", interrupted)
"""


def run_child(case: str, how: str, seed: int) -> str:
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, case, how, str(ROUNDS), str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        # A child of a process that ignores SIGINT would inherit that.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        out, _ = proc.communicate(timeout=HANG_LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"{case}/{how}: the child hung\n{out[-4000:]}")
    assert proc.returncode == 0, f"{case}/{how}: exit {proc.returncode}\n{out[-4000:]}"
    return out


@pytest.mark.parametrize("how", ["interrupt_main", "kill"])
@pytest.mark.parametrize("case", ["map", "result", "shutdown", "join"])
def test_ctrl_c_is_never_lost(case: str, how: str) -> None:
    out = run_child(case, how, seed=hash((case, how)) & 0xFFFF)
    assert f"interrupted {ROUNDS}" in out, out[-4000:]
    # Nothing the interrupt left behind was reported as unraisable or as a thread's
    # failure (a SafeThread killed at exit, a done callback that raised).
    assert "Traceback" not in out, out[-4000:]


CLOSE_UNDER_MAP = r"""
import sys, threading, time
from ringloom import VirtualThreadPool

for _ in range(int(sys.argv[1])):
    pool = VirtualThreadPool(max_platform_threads=2)
    started = threading.Event()

    def park(_):
        started.set()
        time.sleep(60)

    def run():
        try:
            pool.map(park, range(2000))
        except RuntimeError:
            pass  # the pool closed under the map: the map fails, as documented

    mapper = threading.Thread(target=run)
    mapper.start()
    started.wait()
    # What Ctrl-C leaving a `with` block does: every virtual thread is killed on both
    # workers at once, each failing its place of the batch.
    pool.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)
    mapper.join()
print("closed")
"""


def test_closing_a_pool_under_a_map_never_deadlocks() -> None:
    # Each killed call hands its batch an error built lazily; two workers doing that
    # at once deadlocked (one held the batch's error lock waiting for the GIL, the
    # other held the GIL waiting for that lock).
    proc = subprocess.run(
        [sys.executable, "-c", CLOSE_UNDER_MAP, "60"],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )
    assert proc.returncode == 0 and "closed" in proc.stdout, proc.stdout + proc.stderr
