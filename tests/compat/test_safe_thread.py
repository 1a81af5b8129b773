"""ringloom.safe_thread: the pyferris.safe_thread documentation's examples, threading
semantics, and correctness under interleaving of OS threads and virtual threads."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import threading
import time
from typing import Any

import pytest
import ringloom
from ringloom.safe_thread import (
    SafeCondition,
    SafeLock,
    SafeRLock,
    SafeThread,
    SafeThreadPool,
    create_safe_shared_data,
    safe_parallel_map,
    safe_thread_decorator,
)

TIMEOUT = 60

# The examples of the pyferris.safe_thread documentation, with only the import line
# changed.
DOC_EXAMPLES = {
    "basic": """
from ringloom.safe_thread import SafeThread

def cpu_intensive_task(n):
    total = 0
    for i in range(n):
        total += i * i
    return total

# Create and start a safe thread
thread = SafeThread(target=cpu_intensive_task, args=(1000000,))
thread.start()

# Wait for completion and get result
thread.join()
result = thread.get_result()
print(f"Result: {result}")
""",
    "pool": """
from ringloom.safe_thread import SafeThreadPool

def process_data(x):
    return x * x

data = range(1000)

# Use thread pool for better performance
with SafeThreadPool(max_workers=4) as pool:
    # Submit individual tasks
    futures = [pool.submit(process_data, x) for x in data]
    results = [future.result() for future in futures]
    
    # Or use map for batch processing
    results = pool.map(process_data, data)
""",
    "parallel_map": """
from ringloom.safe_thread import safe_parallel_map

def transform(x):
    return x ** 2

data = range(10000)

# Parallel processing with automatic chunking
results = safe_parallel_map(transform, data, max_workers=4, chunksize=100)
""",
    "shared": """
from ringloom.safe_thread import create_safe_shared_data, SafeThread

# Create shared data structures
shared_dict = create_safe_shared_data("dict")
shared_queue = create_safe_shared_data("queue")
shared_counter = create_safe_shared_data("counter", initial_value=0)
shared_array = create_safe_shared_data("array", [1, 2, 3, 4, 5])

def worker(thread_id):
    # Safely access shared data
    shared_counter.increment()
    shared_dict.put(f"worker_{thread_id}", f"result_{thread_id}")
    shared_queue.push(f"task_result_{thread_id}")

# Create worker threads
threads = []
for i in range(5):
    thread = SafeThread(target=worker, args=(i,))
    threads.append(thread)
    thread.start()

# Wait for all threads
for thread in threads:
    thread.join()

print(f"Counter: {shared_counter.get()}")
print(f"Dict size: {shared_dict.size()}")
""",
    "locks": """
from ringloom.safe_thread import SafeLock, SafeCondition

# Safe lock usage
lock = SafeLock()

def critical_section():
    with lock:
        # Critical code here
        pass

# Condition variables
condition = SafeCondition()

def waiter():
    with condition:
        condition.wait()
        print("Condition met!")

def notifier():
    with condition:
        condition.notify()
""",
    "decorator": """
from ringloom.safe_thread import safe_thread_decorator

@safe_thread_decorator(max_workers=4)
def expensive_computation(data):
    # This function will run in a thread pool
    return sum(x * x for x in data)

# Use the decorated function
future = expensive_computation(range(10000))
result = future.result()
""",
    "benchmark": """
# Benchmark example
import time
from ringloom.safe_thread import SafeThreadPool, safe_parallel_map

def cpu_task(n):
    return sum(i * i for i in range(n))

data = [100000] * 10

# Standard approach
start = time.time()
results = [cpu_task(n) for n in data]
standard_time = time.time() - start

# Safe threading approach
start = time.time()
results = safe_parallel_map(cpu_task, data, max_workers=4)
safe_time = time.time() - start

print(f"Speedup: {standard_time / safe_time:.2f}x")
""",
    "migration": """
# Standard threading
import threading

thread = threading.Thread(target=func, args=(arg1, arg2))
thread.start()
thread.join()

# Safe threading
from ringloom.safe_thread import SafeThread

thread = SafeThread(target=func, args=(arg1, arg2))
thread.start()
thread.join()
result = thread.get_result()  # Additional feature
""",
}


def run_example(name: str, **names: Any) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "api_example", **names}
    exec(compile(DOC_EXAMPLES[name], f"<safe_thread example {name}>", "exec"), namespace)
    return namespace


def test_example_basic(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_example("basic")
    assert ns["result"] == sum(i * i for i in range(1000000))
    assert f"Result: {ns['result']}" in capsys.readouterr().out


def test_example_pool() -> None:
    ns = run_example("pool")
    assert list(ns["results"]) == [x * x for x in range(1000)]


def test_example_parallel_map() -> None:
    assert run_example("parallel_map")["results"] == [x**2 for x in range(10000)]


def test_example_shared(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_example("shared")
    assert ns["shared_counter"].get() == 5
    assert ns["shared_dict"].size() == 5
    assert sorted(ns["shared_queue"]) == sorted(f"task_result_{i}" for i in range(5))
    assert "Counter: 5\nDict size: 5" in capsys.readouterr().out


def test_example_locks(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_example("locks")
    ns["critical_section"]()
    waiter = SafeThread(target=ns["waiter"])
    waiter.start()
    condition = ns["condition"]
    # notify only once the waiter waits (a notify with no waiter is lost, as threading's)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with condition:
            if condition._waiters:
                condition.notify()
                break
        time.sleep(0.001)
    waiter.join(TIMEOUT)
    assert not waiter.is_alive()
    assert "Condition met!" in capsys.readouterr().out


def test_example_decorator() -> None:
    assert run_example("decorator")["result"] == sum(x * x for x in range(10000))


def test_example_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    ns = run_example("benchmark")
    assert ns["results"] == [sum(i * i for i in range(100000))] * 10
    assert "Speedup: " in capsys.readouterr().out


def test_example_migration() -> None:
    got: list[tuple[int, int]] = []

    def func(a: int, b: int) -> int:
        got.append((a, b))
        return a + b

    ns = run_example("migration", func=func, arg1=1, arg2=2)
    assert ns["result"] == 3
    assert got == [(1, 2), (1, 2)]


# -- SafeThread is a thread ------------------------------------------------------------


def test_thread_interface() -> None:
    t = SafeThread(target=pow, args=(2, 10), name="worker-1", daemon=True)
    assert (t.name, t.daemon, t.ident, t.is_alive()) == ("worker-1", True, None, False)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive()
    assert t.get_result() == 1024 and t.get_exception() is None
    assert isinstance(t.ident, int)
    with pytest.raises(RuntimeError, match="started once"):
        t.start()
    with pytest.raises(RuntimeError, match="daemon"):
        t.daemon = False
    other = SafeThread(target=pow, args=(2, 3))
    assert other.name != t.name and other.name.startswith("SafeThread-")
    with pytest.raises(RuntimeError, match="before it is started"):
        other.join()


def test_subclass_overriding_run() -> None:
    class Doubler(SafeThread):
        def __init__(self, x: int) -> None:
            super().__init__()
            self.x = x

        def run(self) -> int:
            return self.x * 2

    t = Doubler(21)
    t.start()
    t.join(TIMEOUT)
    assert t.get_result() == 42


def test_exception_is_kept_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    hooked: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", hooked.append)

    def boom() -> None:
        raise KeyError("boom")

    t = SafeThread(target=boom, name="boomer")
    t.start()
    t.join(TIMEOUT)
    assert isinstance(t.get_exception(), KeyError)
    assert t.get_result() is None
    assert len(hooked) == 1 and hooked[0].exc_type is KeyError and hooked[0].thread is t


def test_join_timeout_returns_while_alive() -> None:
    release = ringloom.Event()
    t = SafeThread(target=release.wait)
    t.start()
    t.join(0.01)
    assert t.is_alive()
    release.set()
    t.join(TIMEOUT)
    assert not t.is_alive()


def test_join_from_virtual_threads_parks() -> None:
    """A chain of joins longer than the workers: blocking joins would hold every worker
    and the threads at the end of the chain could never run."""
    release = ringloom.Event()
    threads: list[SafeThread] = []

    def link(i: int) -> int:
        if i + 1 < len(threads):
            threads[i + 1].join()
            return threads[i + 1].get_result() + 1
        release.wait()
        return 0

    threads.extend(SafeThread(target=link, args=(i,)) for i in range(20))
    for t in threads:
        t.start()
    release.set()
    threads[0].join(TIMEOUT)
    assert threads[0].get_result() == 19


def test_joining_the_current_thread_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threading, "excepthook", lambda args: None)
    box: list[SafeThread] = []

    def join_self() -> None:
        box[0].join()

    t = SafeThread(target=join_self)
    box.append(t)
    t.start()
    t.join(TIMEOUT)
    assert isinstance(t.get_exception(), RuntimeError)


def test_hundred_thousand_threads_at_once_use_few_os_threads() -> None:
    n = 100_000
    release = ringloom.Event()
    before = len(os.listdir("/proc/self/task"))
    threads = [SafeThread(target=release.wait) for _ in range(n)]
    for t in threads:
        t.start()
    assert sum(t.is_alive() for t in threads) == n
    during = len(os.listdir("/proc/self/task"))
    release.set()
    for t in threads:
        t.join(TIMEOUT)
    assert not any(t.is_alive() for t in threads)
    assert all(t.get_result() is True for t in threads)
    assert during <= before + 3  # the shared pool's workers (+ its blocking pool)


# -- correctness under interleaving ------------------------------------------------------


def hammer(counter: Any, times: int) -> None:
    for _ in range(times):
        counter.increment()


@pytest.mark.parametrize("kind", ["safe", "virtual", "mixed"])
def test_counter_race_gives_exactly_400_000(kind: str) -> None:
    counter = create_safe_shared_data("counter", 0)
    if kind == "safe":
        threads: list[Any] = [SafeThread(target=hammer, args=(counter, 100_000)) for _ in range(4)]
    elif kind == "mixed":
        threads = [threading.Thread(target=hammer, args=(counter, 100_000)) for _ in range(2)]
        threads += [SafeThread(target=hammer, args=(counter, 100_000)) for _ in range(2)]
    else:
        with ringloom.VirtualThreadPool() as pool:
            for f in [pool.submit(hammer, counter, 100_000) for _ in range(4)]:
                f.result(TIMEOUT)
        threads = []
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert counter.get() == 400_000


def test_lock_protected_read_modify_write_across_both_worlds() -> None:
    lock = SafeLock()
    box = [0]

    def add(times: int) -> None:
        for _ in range(times):
            with lock:
                value = box[0]
                if value % 1000 == 0:
                    time.sleep(0)  # a park inside the critical section
                box[0] = value + 1

    threads: list[Any] = [threading.Thread(target=add, args=(20_000,)) for _ in range(2)]
    threads += [SafeThread(target=add, args=(20_000,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert box[0] == 80_000


def test_lock_held_by_an_os_thread_and_wanted_by_1000_virtual_threads() -> None:
    lock = SafeLock()
    held = threading.Event()
    let_go = threading.Event()
    got: list[int] = []

    def holder() -> None:
        with lock:
            held.set()
            let_go.wait(TIMEOUT)

    os_thread = threading.Thread(target=holder)
    os_thread.start()
    assert held.wait(TIMEOUT)
    with ringloom.VirtualThreadPool(max_platform_threads=1) as pool:

        def want(i: int) -> None:
            with lock:
                got.append(i)

        waiting = [pool.submit(want, i) for i in range(1000)]
        # The worker keeps running other virtual threads while 1,000 wait for the lock.
        ticks = pool.submit(lambda: [time.sleep(0.001) for _ in range(20)] and "ticked")
        assert ticks.result(TIMEOUT) == "ticked"
        assert got == []
        let_go.set()
        for f in waiting:
            f.result(TIMEOUT)
    os_thread.join(TIMEOUT)
    assert sorted(got) == list(range(1000))


def test_producer_consumer_across_os_and_virtual_threads() -> None:
    shared = create_safe_shared_data("queue")
    per_producer = 200
    os_producers, vt_producers = 4, 500
    os_consumers, vt_consumers = 4, 500
    stop = object()
    consumed: list[list[Any]] = []

    def produce(pid: int) -> None:
        for j in range(per_producer):
            shared.push((pid, j))

    def consume() -> None:
        mine: list[Any] = []
        consumed.append(mine)
        while True:
            item = shared.pop(blocking=True, timeout=TIMEOUT)
            if item is stop or item is None:
                return
            mine.append(item)

    consumers: list[Any] = [threading.Thread(target=consume) for _ in range(os_consumers)]
    consumers += [SafeThread(target=consume) for _ in range(vt_consumers)]
    producers: list[Any] = [
        threading.Thread(target=produce, args=(p,)) for p in range(os_producers)
    ]
    producers += [
        SafeThread(target=produce, args=(p,))
        for p in range(os_producers, os_producers + vt_producers)
    ]
    for t in consumers + producers:
        t.start()
    for t in producers:
        t.join(TIMEOUT)
    for _ in consumers:
        shared.push(stop)
    for t in consumers:
        t.join(TIMEOUT)
    everything = collections.Counter(item for mine in consumed for item in mine)
    expected = collections.Counter(
        (p, j) for p in range(os_producers + vt_producers) for j in range(per_producer)
    )
    assert everything == expected
    assert len(shared) == 0


def test_condition_timeout_and_notify_one() -> None:
    cond = SafeCondition()
    with cond:
        assert cond.wait(0.01) is False
    woken: list[int] = []

    def wait_once(i: int) -> None:
        with cond:
            cond.wait()
            woken.append(i)

    threads = [SafeThread(target=wait_once, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + TIMEOUT
    while len(cond._waiters) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    with cond:
        cond.notify()
    deadline = time.monotonic() + TIMEOUT
    while not woken and time.monotonic() < deadline:
        time.sleep(0.001)
    assert len(woken) == 1
    assert sum(t.is_alive() for t in threads) >= 2
    with cond:
        cond.notify_all()
    for t in threads:
        t.join(TIMEOUT)
    assert sorted(woken) == [0, 1, 2]
    assert cond.wait_for.__name__ == "wait_for"


def test_rlock_is_reentrant_and_lock_is_not() -> None:
    rlock = SafeRLock()
    with rlock, rlock:
        pass
    lock = SafeLock()
    assert lock.acquire()
    assert lock.locked()
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(timeout=0.01) is False
    lock.release()
    assert not lock.locked()


# -- pools, map, decorator -------------------------------------------------------------


def test_pool_default_workers_and_shutdown_with_queued_work() -> None:
    pool = SafeThreadPool()
    assert pool.max_workers >= 1
    futures = [pool.submit(time.sleep, 0.001) for _ in range(200)]
    assert pool.active_tasks > 0
    pool.shutdown(wait=True)
    assert all(f.done() and f.exception() is None for f in futures)
    assert pool.active_tasks == 0
    with pytest.raises(RuntimeError):
        pool.submit(abs, 1)


def test_pool_bounds_concurrency_to_max_workers() -> None:
    running = create_safe_shared_data("counter", 0)
    peak = create_safe_shared_data("array", [0])
    lock = SafeLock()

    def task() -> None:
        now = running.increment()
        with lock:
            peak.set(0, max(peak.get(0), now))
        time.sleep(0.005)
        running.decrement()

    with SafeThreadPool(max_workers=3) as pool:
        for f in [pool.submit(task) for _ in range(30)]:
            f.result(TIMEOUT)
    assert peak.get(0) == 3


def test_map_chunks_keep_order_and_raise_the_first_error() -> None:
    with SafeThreadPool(max_workers=4) as pool:
        assert pool.map(pow, [2, 3, 4], [2, 2, 2], chunksize=2) == [4, 9, 16]
    assert safe_parallel_map(str, range(1001), max_workers=3) == [str(i) for i in range(1001)]
    assert safe_parallel_map(abs, [], max_workers=2) == []

    def fail_at(x: int) -> int:
        if x in (70, 30):
            raise ValueError(x)
        return x

    with pytest.raises(ValueError, match="30"):
        safe_parallel_map(fail_at, range(100), max_workers=4, chunksize=7)


def test_decorator_returns_futures() -> None:
    @safe_thread_decorator(max_workers=2)
    def square(x: int) -> int:
        """Squares."""
        return x * x

    futures = [square(i) for i in range(20)]
    assert all(isinstance(f, concurrent.futures.Future) for f in futures)
    assert [f.result(TIMEOUT) for f in futures] == [i * i for i in range(20)]
    assert square.__name__ == "square" and square.__doc__ == "Squares."
    assert safe_thread_decorator()(abs)(-3).result(TIMEOUT) == 3


# -- shared data protocols ---------------------------------------------------------------


def test_shared_containers_speak_python() -> None:
    d = create_safe_shared_data("dict")
    d.put("a", 1)
    d["b"] = [2]
    assert (d.get("a"), d["b"], d.get("zz"), len(d), "a" in d) == (1, [2], None, 2, True)
    assert sorted(d) == ["a", "b"] and sorted(d.keys()) == ["a", "b"]
    assert sorted(d.items()) == [("a", 1), ("b", [2])]
    assert d.delete("a") and not d.delete("a") and "a" not in d
    with pytest.raises(KeyError):
        d["a"]

    a = create_safe_shared_data("array", initial=[1, 2, 3])
    a.append({"x": 1})
    a.set(0, "zero")
    a[1] = 20
    assert (a.get(0), a[1], len(a), list(a)) == ("zero", 20, 4, ["zero", 20, 3, {"x": 1}])
    with pytest.raises(IndexError):
        a.get(10)

    q = create_safe_shared_data("queue")
    assert q.pop() is None
    q.push(1)
    q.push(None)
    assert (len(q), q.pop(), q.pop(), q.pop(blocking=True, timeout=0.01)) == (2, 1, None, None)

    c = create_safe_shared_data("counter", initial_value=10)
    assert (c.increment(), c.decrement(2), c.add(5), c.get(), int(c)) == (11, 9, 14, 14, 14)
    assert create_safe_shared_data("counter").get() == 0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="'dict'.*'queue'.*'counter'.*'array'"):
        create_safe_shared_data("set")
    with pytest.raises(TypeError):
        create_safe_shared_data("counter", "ten")
    with pytest.raises(RuntimeError):
        SafeLock().release()
    with pytest.raises(RuntimeError):
        SafeRLock().release()
    with pytest.raises(ValueError):
        SafeLock().acquire(timeout=-2)
    with pytest.raises(ValueError):
        SafeLock().acquire(blocking=False, timeout=1)
    cond = SafeCondition()
    with cond, pytest.raises(ValueError):
        cond.wait(-1)
    with pytest.raises(ValueError):
        create_safe_shared_data("queue").pop(blocking=True, timeout=-1)
    with pytest.raises(TypeError):
        SafeThread(target=42)  # type: ignore[arg-type]
    for bad in (0, -1):
        with pytest.raises(ValueError):
            SafeThreadPool(max_workers=bad)
        with pytest.raises(ValueError):
            safe_parallel_map(abs, [1], max_workers=bad)
        with pytest.raises(ValueError):
            safe_thread_decorator(max_workers=bad)
    with pytest.raises(TypeError):
        safe_parallel_map(42, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        safe_thread_decorator(abs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        SafeThreadPool(max_workers=2).submit(42)  # type: ignore[arg-type]


def test_package_root_reexports() -> None:
    for name in ("SafeThread", "SafeThreadPool", "SafeLock", "create_safe_shared_data"):
        assert getattr(ringloom, name) is getattr(ringloom.safe_thread, name)
