"""The watchdog logs a virtual thread that holds its worker without parking."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
import ringloom
from ringloom import Loom, VirtualThreadPool
from ringloom.watchdog import Watchdog, default_threshold
from support import wait_until


def spin(seconds: float) -> int:
    """Runs pure Python for ``seconds`` without parking."""
    end = time.monotonic() + seconds
    turns = 0
    while time.monotonic() < end:
        turns += 1
    return turns


SPIN_FIRST = spin.__code__.co_firstlineno
SPIN_LAST = SPIN_FIRST + 6


def sleeper(times: int) -> int:
    for _ in range(times):
        ringloom.sleep(0.02)
    return times


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "ringloom" and r.levelno == logging.WARNING]


def watchdog_threads() -> set[threading.Thread]:
    """Live watchdog threads (other tests' pools left open, such as the shared pool of
    ``run_in_virtual_thread``, keep theirs: compare before and after)."""
    return {t for t in threading.enumerate() if t.name == "ringloom-watchdog"}


def test_spinning_virtual_thread_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ringloom")
    before = watchdog_threads()
    with VirtualThreadPool(max_platform_threads=2, watchdog_threshold=0.1) as pool:
        assert pool.submit(spin, 0.5).result() > 0
    records = warnings_of(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    record = records[0]
    assert record.vt_function == "spin"  # type: ignore[attr-defined]
    assert record.vt_file == __file__  # type: ignore[attr-defined]
    assert SPIN_FIRST <= record.vt_line <= SPIN_LAST  # type: ignore[attr-defined]
    message = record.getMessage()
    assert "spin" in message and __file__ in message
    assert f":{record.vt_line})" in message  # type: ignore[attr-defined]
    assert watchdog_threads() == before


def test_each_episode_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    """Two spins separated by a park are two episodes: two warnings."""

    def twice() -> None:
        spin(0.5)
        ringloom.sleep(0.01)
        spin(0.5)

    caplog.set_level(logging.WARNING, logger="ringloom")
    with VirtualThreadPool(max_platform_threads=1, watchdog_threshold=0.1) as pool:
        pool.submit(twice).result()
    records = warnings_of(caplog)
    assert len(records) == 2, [r.getMessage() for r in records]
    assert all(r.vt_function == "spin" for r in records)  # type: ignore[attr-defined]


def test_parking_virtual_threads_are_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ringloom")
    before = watchdog_threads()
    with VirtualThreadPool(max_platform_threads=2, watchdog_threshold=0.1) as pool:
        assert pool.map(sleeper, [25] * 20) == [25] * 20
    assert warnings_of(caplog) == []
    assert watchdog_threads() == before


def test_threshold_none_disables(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ringloom")
    before = watchdog_threads()
    with VirtualThreadPool(watchdog_threshold=None) as pool:
        assert pool.submit(spin, 0.4).result() > 0
        assert watchdog_threads() == before
    assert warnings_of(caplog) == []


def test_watchdog_thread_stops_with_the_pool() -> None:
    before = watchdog_threads()
    pool = VirtualThreadPool(watchdog_threshold=0.05)
    assert pool.submit(sum, [1, 2]).result() == 3
    (thread,) = watchdog_threads() - before
    pool.shutdown(wait=True)
    assert not thread.is_alive()
    assert watchdog_threads() == before


def test_bare_loom_watchdog(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ringloom")
    before = watchdog_threads()
    with Loom(workers=1) as loom:
        with Watchdog(loom, threshold=0.05):
            assert ringloom.submit(loom, spin, 0.3).result() > 0
        assert watchdog_threads() == before
        assert loom.holding() == []
    assert loom.holding() == []
    records = warnings_of(caplog)
    assert [r.vt_function for r in records] == ["spin"]  # type: ignore[attr-defined]


def test_threshold_validation_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        VirtualThreadPool(watchdog_threshold=0)
    with pytest.raises(TypeError):
        VirtualThreadPool(watchdog_threshold="1")  # type: ignore[arg-type]
    monkeypatch.delenv("RINGLOOM_WATCHDOG_MS", raising=False)
    assert default_threshold() == 0.1
    monkeypatch.setenv("RINGLOOM_WATCHDOG_MS", "250")
    assert default_threshold() == 0.25
    assert VirtualThreadPool()._watchdog_threshold == 0.25
    monkeypatch.setenv("RINGLOOM_WATCHDOG_MS", "off")
    assert default_threshold() is None
    monkeypatch.setenv("RINGLOOM_WATCHDOG_MS", "0")
    assert VirtualThreadPool()._watchdog_threshold is None


class _Holder:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # stock: this test process is not patched

    def use(self) -> None:
        with self._lock:
            pass


def test_a_wait_on_a_stock_lock_is_named(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="ringloom")
    holder = _Holder()
    holder._lock.acquire()
    with VirtualThreadPool(max_platform_threads=2, watchdog_threshold=0.1) as pool:
        waiting = pool.submit(holder.use)
        deadline = time.monotonic() + 30
        while not warnings_of(caplog) and time.monotonic() < deadline:
            time.sleep(0.01)
        holder._lock.release()
        waiting.result(30)
    records = warnings_of(caplog)
    assert records, "nothing was logged"
    record = records[0]
    assert record.vt_stock_lock == "self._lock"  # type: ignore[attr-defined]
    message = record.getMessage()
    assert "stock lock" in message and "patch_all" in message
    assert "in use" in message  # the stack names the function waiting


def test_dump_names_each_parked_virtual_thread_with_its_wait_and_stack() -> None:
    ringloom.watchdog.track()
    pool = VirtualThreadPool()
    a, b = socket.socketpair()
    fd = a.fileno()
    event = ringloom.Event()

    def receiver() -> bytes:
        return a.recv(4)

    def waiter() -> bool:
        return event.wait(60)

    try:
        received, waited = pool.submit(receiver), pool.submit(waiter)
        wait_until(lambda: pool.get_stats()["parked"] == 2)
        dump = ringloom.watchdog.dump_virtual_threads()
        b.sendall(b"ping")
        event.set()
        assert received.result(60) == b"ping" and waited.result(60) is True
        after = ringloom.watchdog.dump_virtual_threads()
    finally:
        event.set()
        pool.shutdown()
        a.close()
        b.close()
    # Each parked one: what it waits for (the ring op and its descriptor), and where.
    blocks = dump.split("virtual thread ")
    recv_block = next(block for block in blocks if "in receiver" in block)
    wait_block = next(block for block in blocks if "in waiter" in block)
    assert "parked" in recv_block, recv_block
    assert f"on ring POLL_ADD: fd {fd} for POLLIN" in recv_block, recv_block
    assert "on a lock, event, condition or queue" in wait_block, wait_block
    # Once they ended, neither is listed.
    assert "in receiver" not in after and "in waiter" not in after, after
