"""time.sleep parks intercepting virtual threads; stock behaviour elsewhere."""

from __future__ import annotations

import threading
import time

import pytest
import ringloom
from ringloom import Loom
from ringloom.green import time as green_time
from support import os_threads


def test_time_sleep_is_patched() -> None:
    assert time.sleep is green_time.sleep
    assert green_time.stock_sleep is not green_time.sleep


def test_five_thousand_sleepers_use_no_thread_each(loom: Loom) -> None:
    n = 5_000
    baseline = os_threads()  # main + the 2 workers (+ threads left by earlier tests)

    def sleeper(i: int) -> int:
        time.sleep(0.2)
        return i

    peak = 0
    futures = [ringloom.submit(loom, sleeper, i) for i in range(n)]
    while not all(f.done() for f in futures[-100:]):
        peak = max(peak, os_threads())
        time.sleep(0.01)
    assert [f.result(timeout=60) for f in futures] == list(range(n))
    peak = max(peak, os_threads())
    assert peak <= baseline + 4, (baseline, peak)


def test_sleepers_interleave_on_one_worker() -> None:
    order: list[str] = []

    def step(name: str, delay: float) -> None:
        order.append(f"{name}-start")
        time.sleep(delay)
        order.append(f"{name}-end")

    with Loom(workers=1) as loom:
        slow = ringloom.submit(loom, step, "slow", 0.2)
        fast = ringloom.submit(loom, step, "fast", 0.02)
        slow.result(timeout=10)
        fast.result(timeout=10)
    assert order.index("fast-end") < order.index("slow-end")


@pytest.mark.parametrize(
    "arg, error",
    [
        (-1, ValueError),
        (-0.5, ValueError),
        (float("nan"), ValueError),
        ("1", TypeError),
        (None, TypeError),
        (1 << 80, OverflowError),
    ],
)
def test_sleep_validates_like_stock(loom: Loom, arg: object, error: type) -> None:
    with pytest.raises(error):
        green_time.stock_sleep(arg)  # type: ignore[arg-type]
    with pytest.raises(error):
        time.sleep(arg)  # type: ignore[arg-type]
    with pytest.raises(error):
        ringloom.submit(loom, time.sleep, arg).result(timeout=10)


def test_sleep_accepts_ints_bools_and_floats(loom: Loom) -> None:
    for arg in (0, 0.0, False, 0.001, True * 0):
        assert ringloom.submit(loom, time.sleep, arg).result(timeout=10) is None


def test_sleep_outside_virtual_threads_is_stock() -> None:
    start = time.monotonic()
    time.sleep(0.02)
    assert time.monotonic() - start >= 0.02
    done = threading.Event()
    thread = threading.Thread(target=lambda: (time.sleep(0.01), done.set()))
    thread.start()
    thread.join(10)
    assert done.is_set()


def test_not_intercepting_uses_stock_sleep(loom: Loom, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(green_time, "stock_sleep", lambda s: calls.append(s))
    time.sleep(0.5)  # outside: the stock function
    assert calls == [0.5]
    ringloom.submit(loom, time.sleep, 0.001).result(timeout=10)  # inside: parks
    assert calls == [0.5]


def test_non_intercepting_virtual_thread_uses_stock_sleep(
    loom: Loom, monkeypatch: pytest.MonkeyPatch
) -> None:
    import concurrent.futures

    calls: list[float] = []
    monkeypatch.setattr(green_time, "stock_sleep", lambda s: calls.append(s))
    future: concurrent.futures.Future[None] = concurrent.futures.Future()
    loom.spawn(lambda: time.sleep(0.25), future, intercept=False)
    future.result(timeout=10)
    assert calls == [0.25]


def test_pool_is_blocking_false_is_not_intercepted(monkeypatch: pytest.MonkeyPatch) -> None:
    from ringloom import VirtualThreadPool

    calls: list[float] = []
    monkeypatch.setattr(green_time, "stock_sleep", lambda s: calls.append(s))
    with VirtualThreadPool(max_platform_threads=2) as pool:
        pool.submit(time.sleep, 0.125, is_blocking=False).result(timeout=10)
        assert calls == [0.125]
        pool.submit(time.sleep, 0.001).result(timeout=10)
        pool.submit(time.sleep, 0.001, is_blocking=True).result(timeout=10)
    assert calls == [0.125]
