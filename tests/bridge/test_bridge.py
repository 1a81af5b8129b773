"""The greenlet bridge: virtual threads park on ring timers, not on OS threads."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time

import pytest
import ringloom
from ringloom import Loom, _native
from support import os_threads


def test_ten_thousand_sleepers_on_two_workers(loom: Loom) -> None:
    n = 10_000
    baseline = os_threads()  # the main thread, and the fixture's 2 workers

    def sleeper(i: int) -> int:
        _native.sleep(0.2)
        return i

    peak = 0
    futures = [ringloom.submit(loom, sleeper, i) for i in range(n)]
    while not all(f.done() for f in futures[-100:]):
        peak = max(peak, os_threads())
        time.sleep(0.01)
    results = [f.result(timeout=60) for f in futures]
    peak = max(peak, os_threads())
    assert results == list(range(n))
    # no thread per virtual thread: at most a few more (blocking pool, helpers)
    assert peak <= baseline + 4, (baseline, peak)
    assert baseline <= 1 + 2 + 4, baseline


def test_exception_keeps_its_type(loom: Loom) -> None:
    class Boom(Exception):
        pass

    def fails() -> None:
        _native.sleep(0.01)
        raise Boom("inside a virtual thread")

    future = ringloom.submit(loom, fails)
    with pytest.raises(Boom, match="inside a virtual thread") as info:
        future.result(timeout=10)
    assert info.traceback[-1].name == "fails"


def test_cpu_only_function(loom: Loom) -> None:
    future = ringloom.submit(loom, sum, range(1000))
    assert future.result(timeout=10) == 499500


def test_in_virtual_thread_flag(loom: Loom) -> None:
    assert not _native.in_virtual_thread()
    assert ringloom.submit(loom, _native.in_virtual_thread).result(timeout=10)


def test_sleep_outside_a_virtual_thread() -> None:
    start = time.monotonic()
    _native.sleep(0.05)
    assert time.monotonic() - start >= 0.05
    with pytest.raises(ValueError):
        _native.sleep(-1)


def test_sleepers_interleave_on_one_worker() -> None:
    order: list[str] = []

    def step(name: str, delay: float) -> None:
        order.append(f"{name}-start")
        _native.sleep(delay)
        order.append(f"{name}-end")

    with Loom(workers=1) as loom:
        slow = ringloom.submit(loom, step, "slow", 0.2)
        fast = ringloom.submit(loom, step, "fast", 0.05)
        slow.result(timeout=10)
        fast.result(timeout=10)
    assert order.index("fast-end") < order.index("slow-end")
    assert order.index("fast-start") < order.index("slow-end")


def test_close_fails_unfinished_virtual_threads() -> None:
    loom = Loom(workers=1)
    future = ringloom.submit(loom, _native.sleep, 30)
    time.sleep(0.1)
    loom.close()
    with pytest.raises(RuntimeError):
        future.result(timeout=10)
    with pytest.raises(RuntimeError):
        loom.spawn(print, future)


def test_non_callable_is_refused(loom: Loom) -> None:
    with pytest.raises(TypeError):
        ringloom.submit(loom, 42)  # type: ignore[arg-type]


def test_wait_fd_parks_until_readable(loom: Loom) -> None:
    a, b = socket.socketpair()
    with a, b:

        def reader() -> bytes:
            ready = _native.wait_fd(a.fileno(), select.POLLIN)
            assert ready & select.POLLIN
            return a.recv(16)

        future = ringloom.submit(loom, reader)
        others = [ringloom.submit(loom, _native.sleep, 0.01) for _ in range(10)]
        for other in others:
            other.result(timeout=10)  # the parked reader does not hold a worker
        assert not future.done()
        b.send(b"ping")
        assert future.result(timeout=10) == b"ping"


def test_wait_fd_outside_a_virtual_thread() -> None:
    a, b = socket.socketpair()
    with a, b:
        assert _native.wait_fd(a.fileno(), select.POLLOUT) & select.POLLOUT
        b.send(b"x")
        assert _native.wait_fd(a.fileno(), select.POLLIN) & select.POLLIN


def test_wait_fd_bad_descriptor(loom: Loom) -> None:
    future = ringloom.submit(loom, _native.wait_fd, 1_000_000, select.POLLIN)
    with pytest.raises(OSError):
        future.result(timeout=10)


def test_open_loom_is_closed_at_exit() -> None:
    """An open Loom is closed at exit (atexit), before the interpreter finalizes: a
    runtime dropped during finalization waits its whole shutdown timeout for workers that
    can no longer take the GIL."""
    code = (
        "import atexit, concurrent.futures\n"
        "def check():\n"  # registered first, so it runs after ringloom's handler
        "    try:\n"
        "        loom.spawn(print, concurrent.futures.Future())\n"
        "    except RuntimeError:\n"
        "        print('closed')\n"
        "atexit.register(check)\n"
        "import ringloom\n"
        "from ringloom import Loom, _native\n"
        "loom = Loom(workers=2)\n"
        "futures = [ringloom.submit(loom, _native.sleep, 30) for _ in range(100)]\n"
        "print(ringloom.submit(loom, sum, [1, 2]).result(timeout=10))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "closed"]


def _epoll_registrations() -> int:
    """Items registered in this process's epoll instances (/proc fdinfo "tfd:" lines)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/self/fdinfo/{name}") as info:
                count += sum(line.startswith("tfd:") for line in info)
        except OSError:
            continue
    return count


@pytest.mark.skipif(
    os.environ.get("RINGLOOM_DRIVER") != "fallback",
    reason="epoll registrations belong to the fallback driver",
)
def test_timed_out_waits_leave_no_epoll_registration_behind() -> None:
    # A wait that times out is cancelled: its registration must go with it (closing the
    # driver's duplicate of the descriptor does not remove it from epoll).
    left, right = socket.socketpair()
    with left, right, Loom(workers=1) as loom:

        def waits() -> None:
            for _ in range(200):
                _native.wait_fd(left.fileno(), select.POLLIN, 0.001)

        before = _epoll_registrations()
        ringloom.submit(loom, waits).result(timeout=60)
        assert _epoll_registrations() <= before
