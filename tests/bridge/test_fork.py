"""os.fork() with a live VirtualThreadPool: the child can use a new pool, the inherited
one refuses work with a clear RuntimeError, and the parent's pool keeps working.

Each child is waited for with a bound (a pidfd) and killed past it: a hang fails the
test instead of stopping the suite. One variant forks this pytest process and the
child leaves with ``os._exit``; the other runs this file as a script (see the bottom)
whose child leaves through ``sys.exit``, so that interpreter exit and the atexit
handlers (ringloom's ``close_all``) run in the child, with a pool of its own open.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
from typing import Any, Callable

import pytest
import ringloom
from ringloom import VirtualThreadPool, _fork
from ringloom.safe_thread import SafeThread

WAIT = 120.0  # seconds a child may take before it counts as hung

_KEEP: list[Any] = []  # pools left open until the interpreter exits


def sleep_and_return(i: int) -> int:
    time.sleep(0.01)
    return i


def socket_round_trip(pool: VirtualThreadPool, payload: bytes) -> bytes:
    """``payload`` through a socketpair and back, both ends in virtual threads: the
    echoing end parks in recv until the other one, which sleeps first, sends."""
    left, right = socket.socketpair()
    with left, right:

        def echo() -> None:
            data = b""
            while len(data) < len(payload):
                data += right.recv(65536)
            right.sendall(data)

        def ask() -> bytes:
            time.sleep(0.01)
            left.sendall(payload)
            data = b""
            while len(data) < len(payload):
                data += left.recv(65536)
            return data

        echoing = pool.submit(echo)
        answer = pool.submit(ask).result(timeout=WAIT)
        echoing.result(timeout=WAIT)
        return answer


def exercise(pool: VirtualThreadPool) -> dict[str, Any]:
    """Sleeps and socket round trips in virtual threads of ``pool``; how they went."""
    payloads = [b"%d:" % i * (1 + 100 * i) for i in range(20)]
    sleeps = pool.map(sleep_and_return, range(200))
    echoes = [socket_round_trip(pool, payload) for payload in payloads]
    stats = pool.get_stats()
    return {
        "sleeps_ok": sleeps == list(range(200)),
        "echoes_ok": echoes == payloads,
        "parks": stats["parks"],
        "failed": stats["failed"],
        "driver": stats["driver"],
    }


def use_the_inherited_pool(
    pool: VirtualThreadPool, pending: concurrent.futures.Future[Any]
) -> dict[str, Any]:
    """What the inherited pool and a future of it that was pending at the fork do."""
    report: dict[str, Any] = {}
    for name, call in (
        ("submit", lambda: pool.submit(abs, -1)),
        ("map", lambda: pool.map(abs, [-1])),
    ):
        try:
            call()
            report[name] = "no error"
        except RuntimeError as err:
            report[name] = str(err)
    try:
        report["pending"] = f"returned {pending.result(timeout=WAIT)!r}"
    except RuntimeError as err:
        report["pending"] = str(err)
    except concurrent.futures.TimeoutError:
        report["pending"] = "still pending"
    report["driver"] = pool.get_stats()["driver"]
    pool.shutdown(wait=True)  # nothing of it runs here: returns at once
    report["shut_down"] = True
    return report


def start_pending(pool: VirtualThreadPool) -> tuple[ringloom.Event, concurrent.futures.Future[str]]:
    """A task parked in ``pool`` until the returned event is set."""
    release = ringloom.Event()
    started = ringloom.Event()

    def wait_for_release() -> str:
        started.set()
        release.wait()
        return "released"

    pending = pool.submit(wait_for_release)
    assert started.wait(WAIT)
    return release, pending


def wait_child(pid: int, timeout: float = WAIT) -> int:
    """The child's exit code (negative: killed by that signal); kills it and fails if
    it has not exited within ``timeout``."""
    pidfd = os.pidfd_open(pid)
    try:
        exited = select.select([pidfd], [], [], timeout)[0]
    finally:
        os.close(pidfd)
    if not exited:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise AssertionError(f"the child {pid} hung (killed after {timeout} s)")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def fork_child(
    work: Callable[[], dict[str, Any]], leave: Callable[[int], None]
) -> tuple[int, dict[str, Any]]:
    """Forks; the child runs ``work``, writes its report (or its traceback) to a pipe
    and calls ``leave(code)``. Returns the child's exit code and report."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller
        code = 70  # `work` did not return
        try:
            os.close(read_end)
            try:
                report = work()
                code = 0
            except BaseException:  # noqa: B036 - reported to the parent
                report = {"error": traceback.format_exc()}
            with os.fdopen(write_end, "w") as out:
                json.dump(report, out)
        finally:
            leave(code)
            os._exit(71)  # `leave` returned
    os.close(write_end)
    code = wait_child(pid)
    with os.fdopen(read_end) as got:
        text = got.read()
    return code, (json.loads(text) if text else {"error": "no report"})


def check_child(report: dict[str, Any]) -> None:
    assert "error" not in report, report.get("error")
    fresh = report["fresh"]
    assert fresh["sleeps_ok"] and fresh["echoes_ok"], fresh
    assert fresh["parks"] >= 200 and fresh["failed"] == 0, fresh
    inherited = report["inherited"]
    assert inherited["submit"] == _fork.INHERITED, inherited
    assert inherited["map"] == _fork.INHERITED, inherited
    assert inherited["pending"] == _fork.INHERITED, inherited
    assert inherited["driver"] == "closed" and inherited["shut_down"], inherited
    assert report["forgotten_later"] == 0, report  # the hook had taken every runtime


def child_work(
    pool: VirtualThreadPool, pending: concurrent.futures.Future[Any]
) -> Callable[[], dict[str, Any]]:
    """The child's work: a new pool, then the inherited one."""

    def work() -> dict[str, Any]:
        with VirtualThreadPool(max_platform_threads=2) as fresh:
            fresh_report = exercise(fresh)
        return {
            "inherited": use_the_inherited_pool(pool, pending),
            "fresh": fresh_report,
            "forgotten_later": ringloom._native.forget_after_fork(),
        }

    return work


def test_fork_with_a_live_pool_child_exits_with_os_exit() -> None:
    pool = VirtualThreadPool(max_platform_threads=2)
    assert pool.map(sleep_and_return, range(50)) == list(range(50))  # tasks ran
    release, pending = start_pending(pool)  # and one is parked at the fork
    try:
        code, report = fork_child(child_work(pool, pending), os._exit)
    finally:
        release.set()
    try:
        assert code == 0, report
        check_child(report)
        # The parent's pool, and its task that was parked at the fork, are untouched.
        assert pending.result(timeout=WAIT) == "released"
        parent = exercise(pool)
        assert parent["sleeps_ok"] and parent["echoes_ok"] and parent["failed"] == 0, parent
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("kind", ["lock", "semaphore"])
def test_a_lock_waited_on_in_the_parent_works_in_the_child(kind: str) -> None:
    # The main thread holds it while a virtual thread waits for it, and forks. In the
    # child that waiter does not exist: the release must not hand it the lock (it
    # would stay taken for ever), nor wake it (its hub is the parent's).
    pool = VirtualThreadPool(max_platform_threads=2)
    lock = ringloom.Lock() if kind == "lock" else ringloom.Semaphore(1)
    cond = ringloom.Condition(ringloom.Lock())
    assert lock.acquire()
    waiting = pool.submit(lock.acquire)
    waiting_cond = pool.submit(lambda: cond.acquire() and cond.wait(WAIT))
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and not (
        len(getattr(lock, "_waiters", ())) or getattr(lock, "_waiting", 0)
    ):
        time.sleep(0.001)
    while time.monotonic() < deadline and not len(cond._waiters):
        time.sleep(0.001)

    def child() -> dict[str, Any]:
        lock.release()
        took = lock.acquire(timeout=5)
        with cond:
            cond.notify()  # only the parent's waiter: nothing to wake here
        return {"took": took}

    try:
        code, report = fork_child(child, os._exit)
        assert code == 0, report
        assert report == {"took": True}
    finally:
        lock.release()  # the parent's waiter gets it
        assert waiting.result(timeout=WAIT)
        lock.release()
        with cond:
            cond.notify()
        assert waiting_cond.result(timeout=WAIT)
        pool.shutdown(wait=True)


def test_fork_in_a_virtual_thread() -> None:
    """A virtual thread forks: in the child it runs on as a plain thread (a new pool
    works, the inherited one refuses), the parent's pool and its parked task go on.
    It was refused with RuntimeError, so multiprocessing's fork start method, pty.fork
    and forking servers failed in virtual threads."""
    pool = VirtualThreadPool(max_platform_threads=2)
    release, pending = start_pending(pool)
    try:
        forked = pool.submit(fork_child, child_work(pool, pending), os._exit)
        code, report = forked.result(timeout=2 * WAIT)
    finally:
        release.set()
    try:
        assert code == 0, report
        check_child(report)
        assert pending.result(timeout=WAIT) == "released"
        parent = exercise(pool)
        assert parent["sleeps_ok"] and parent["echoes_ok"] and parent["failed"] == 0, parent
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def fork_and_end(how: str) -> int:
    """Forks; the child's copy of this virtual thread ends its call by ``how``; the
    child's exit code."""
    pid = os.fork()
    if pid == 0:
        time.sleep(0.01)  # blocks: the child's thread no longer parks
        if how == "raise":
            raise ValueError("raised in the child")
        if how == "exit":
            sys.exit(3)
        return -1  # the child ends here: its worker's loop is the parent's
    return wait_child(pid)


def test_a_forked_virtual_threads_call_ends_its_child() -> None:
    with VirtualThreadPool(max_platform_threads=2) as pool:
        codes = {
            how: pool.submit(fork_and_end, how).result(WAIT) for how in ("return", "exit", "raise")
        }
        assert codes == {"return": 0, "exit": 3, "raise": 1}
        assert pool.map(sleep_and_return, range(20)) == list(range(20))


def test_forkpty_in_a_virtual_thread() -> None:
    def run() -> bytes:
        pid, master = os.forkpty()
        if pid == 0:
            os.write(1, b"from the pty child\n")
            os._exit(0)
        data = b""
        try:
            while b"\n" not in data:
                data += os.read(master, 100)
        finally:
            os.close(master)
            wait_child(pid)
        return data

    with VirtualThreadPool(max_platform_threads=2) as pool:
        assert b"from the pty child" in pool.submit(run).result(timeout=WAIT)


def test_subprocess_with_preexec_fn_in_a_virtual_thread() -> None:
    """``subprocess`` with a ``preexec_fn`` forks and runs Python in the child before
    the exec: from a virtual thread the child runs it as a plain thread (a sleep there
    blocks, not parks) and execs; an exception in it is the stock SubprocessError.
    The child used to exit at once, and the parent saw an empty, failed run."""

    def prepared() -> None:
        time.sleep(0.01)  # stock in the child: the ring is the parent's
        os.putenv("FRUIT", "apple")

    def run() -> tuple[bytes, int, bytes, str]:
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(os.environ['FRUIT'])"],
            preexec_fn=prepared,
            capture_output=True,
        )
        session = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid())"],
            preexec_fn=os.setsid,
            capture_output=True,
        )
        try:
            subprocess.run(["true"], preexec_fn=lambda: 1 / 0)
            failed = "no error"
        except subprocess.SubprocessError as error:
            failed = str(error)
        return child.stdout, child.returncode, session.stdout, failed

    with VirtualThreadPool(max_platform_threads=2) as pool:
        out, code, session, failed = pool.submit(run).result(timeout=2 * WAIT)
        assert (out, code) == (b"apple\n", 0)
        assert session == b"True\n"
        assert failed == "Exception occurred in preexec_fn."
        assert pool.map(sleep_and_return, range(20)) == list(range(20))


def test_fork_child_exits_through_sys_exit_and_atexit() -> None:
    script = subprocess.run(
        [sys.executable, __file__, "sys-exit-child"],
        capture_output=True,
        timeout=2 * WAIT + 60,
    )
    assert script.returncode == 0, script.stderr.decode()
    outcome = json.loads(script.stdout.decode().strip().splitlines()[-1])
    assert outcome["child_code"] == 0, outcome
    check_child(outcome["child"])
    assert outcome["parent_ok"], outcome


def sys_exit_child() -> None:
    """Run as ``python test_fork.py sys-exit-child``: forks with a live pool and a
    running SafeThread; the child uses a new pool, leaves one open and ends through
    ``sys.exit(0)`` (interpreter exit, atexit handlers); the parent checks its pool and
    prints a JSON line of outcomes, also leaving its pool open for atexit."""
    pool = VirtualThreadPool(max_platform_threads=2)
    assert pool.map(sleep_and_return, range(50)) == list(range(50))
    release, pending = start_pending(pool)
    # A non-daemon SafeThread running at the fork: the parent waits for it at exit,
    # the child must not.
    blocker = SafeThread(target=release.wait, name="running-at-fork")
    blocker.start()
    work = child_work(pool, pending)

    def work_and_leave_a_pool_open() -> dict[str, Any]:
        report = work()
        left_open = VirtualThreadPool(max_platform_threads=2)
        assert left_open.submit(sleep_and_return, 1).result(timeout=WAIT) == 1
        _KEEP.append(left_open)  # open until the interpreter exits
        return report

    try:
        code, report = fork_child(work_and_leave_a_pool_open, sys.exit)
    finally:
        release.set()
    parent = exercise(pool)
    parent_ok = pending.result(timeout=WAIT) == "released" and parent["sleeps_ok"]
    parent_ok = parent_ok and parent["echoes_ok"] and parent["failed"] == 0
    blocker.join(WAIT)
    parent_ok = parent_ok and not blocker.is_alive() and blocker.get_result() is True
    print(json.dumps({"child_code": code, "child": report, "parent_ok": parent_ok}), flush=True)
    # Exits with the pool open: atexit closes it.


if __name__ == "__main__":
    if sys.argv[1:2] == ["sys-exit-child"]:
        sys_exit_child()
    else:
        sys.exit(f"usage: {sys.argv[0]} sys-exit-child")
