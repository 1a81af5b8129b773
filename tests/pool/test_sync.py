"""ringloom's Lock, RLock, Condition, Semaphore, Event and Queue: they park virtual
threads, block OS threads, and let both contend for one object."""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ringloom
from ringloom import _native, queues
from ringloom.virtual_thread import VirtualThreadPool
from support import wait_until

TIMEOUT = 60


@pytest.fixture
def pool() -> Iterator[VirtualThreadPool]:
    with VirtualThreadPool(max_platform_threads=2) as pool:
        yield pool


@pytest.fixture
def one_worker() -> Iterator[VirtualThreadPool]:
    with VirtualThreadPool(max_platform_threads=1) as pool:
        yield pool


def in_os_thread(fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as err:
            future.set_exception(err)

    threading.Thread(target=run, daemon=True).start()
    return future


def run_in(where: str, pool: VirtualThreadPool, fn: Callable[[], Any]) -> Any:
    future = pool.submit(fn) if where == "vt" else in_os_thread(fn)
    return future.result(timeout=TIMEOUT)


WHERE = pytest.mark.parametrize("where", ["vt", "os"])


# -- Lock --------------------------------------------------------------------------------


def test_lock_held_by_os_thread_wanted_by_1000_virtual_threads(
    one_worker: VirtualThreadPool,
) -> None:
    lock = ringloom.Lock()
    lock.acquire()  # held by this OS thread
    got: list[int] = []

    def want(i: int) -> None:
        with lock:
            got.append(i)

    futures = [one_worker.submit(want, i) for i in range(1000)]
    wait_until(lambda: lock._waiting == 1000)
    # The only worker is not blocked: another virtual thread keeps running meanwhile.
    ticks = [0]
    stop = ringloom.Event()

    def ticker() -> None:
        while not stop.is_set():
            ticks[0] += 1
            _native.sleep(0.0005)

    ticking = one_worker.submit(ticker)
    wait_until(lambda: ticks[0] >= 20)
    assert not got
    assert lock._waiting == 1000
    lock.release()
    for future in futures:
        future.result(timeout=TIMEOUT)
    stop.set()
    ticking.result(timeout=TIMEOUT)
    assert sorted(got) == list(range(1000))
    assert not lock.locked()


def test_lock_exact_total_across_os_threads_and_virtual_threads(
    pool: VirtualThreadPool,
) -> None:
    lock = ringloom.Lock()
    total = [0]

    def add(times: int) -> None:
        for i in range(times):
            with lock:
                value = total[0]
                if i % 3 == 0:
                    _native.sleep(0)  # hand the GIL / the worker over while holding it
                total[0] = value + 1

    os_threads = [in_os_thread(lambda: add(500)) for _ in range(4)]
    vts = [pool.submit(add, 5) for _ in range(1000)]
    for future in [*os_threads, *vts]:
        future.result(timeout=TIMEOUT)
    assert total[0] == 4 * 500 + 1000 * 5


@WHERE
def test_lock_basics(where: str, pool: VirtualThreadPool) -> None:
    def body() -> None:
        lock = ringloom.Lock()
        assert lock.acquire() is True
        assert lock.locked()
        assert lock.acquire(blocking=False) is False  # not re-entrant
        assert lock.acquire(timeout=0.01) is False
        lock.release()
        assert not lock.locked()
        with lock:
            assert lock.locked()
        assert not lock.locked()
        with pytest.raises(RuntimeError):
            lock.release()
        with pytest.raises(ValueError):
            lock.acquire(timeout=-2)
        with pytest.raises(ValueError):
            lock.acquire(False, 1)

    run_in(where, pool, body)


def test_lock_released_by_a_virtual_thread_wakes_an_os_thread(pool: VirtualThreadPool) -> None:
    lock = ringloom.Lock()
    lock.acquire()
    waiter = in_os_thread(lambda: lock.acquire(timeout=TIMEOUT))
    wait_until(lambda: lock._waiting == 1)
    pool.submit(lock.release).result(timeout=TIMEOUT)
    assert waiter.result(timeout=TIMEOUT) is True
    assert lock.locked()


# -- RLock -------------------------------------------------------------------------------


def test_rlock_is_owned_per_virtual_thread(one_worker: VirtualThreadPool) -> None:
    rlock = ringloom.RLock()
    held = ringloom.Event()
    done = ringloom.Event()

    def owner() -> None:
        with rlock, rlock:  # re-entrant
            held.set()
            done.wait()

    def other() -> tuple[bool, type[BaseException] | None]:
        got = rlock.acquire(blocking=False)
        try:
            rlock.release()
        except RuntimeError as err:
            return got, type(err)
        return got, None

    first = one_worker.submit(owner)
    held.wait(TIMEOUT)
    # Same worker OS thread, another virtual thread: not the owner.
    assert one_worker.submit(other).result(timeout=TIMEOUT) == (False, RuntimeError)
    done.set()
    first.result(timeout=TIMEOUT)
    assert rlock.acquire(blocking=False) is True
    rlock.release()


# -- Condition ---------------------------------------------------------------------------


@WHERE
def test_condition_wait_timeout_returns_false(where: str, pool: VirtualThreadPool) -> None:
    def body() -> None:
        cond = ringloom.Condition()
        with cond:
            assert cond.wait(0.01) is False
            assert cond.wait_for(lambda: False, timeout=0.01) is False
        with pytest.raises(RuntimeError):
            cond.wait(0.01)
        with pytest.raises(RuntimeError):
            cond.notify()
        with cond, pytest.raises(ValueError):
            cond.wait(-1)

    run_in(where, pool, body)


def test_condition_notify_wakes_exactly_one(pool: VirtualThreadPool) -> None:
    cond = ringloom.Condition(ringloom.Lock())
    woken = [0]

    def waiter() -> bool:
        with cond:
            result = cond.wait()
            woken[0] += 1
            return result

    futures = [pool.submit(waiter) for _ in range(50)]
    futures += [in_os_thread(waiter) for _ in range(3)]
    wait_until(lambda: len(cond._waiters) == 53)
    with cond:
        cond.notify()
        assert len(cond._waiters) == 52
    wait_until(lambda: woken[0] == 1)
    assert len(cond._waiters) == 52
    with cond:
        cond.notify(2)
    wait_until(lambda: woken[0] == 3)
    assert len(cond._waiters) == 50
    with cond:
        cond.notify_all()
    assert all(f.result(timeout=TIMEOUT) is True for f in futures)
    assert woken[0] == 53


def test_condition_wait_for(pool: VirtualThreadPool) -> None:
    cond = ringloom.Condition()
    items: list[int] = []

    def consumer() -> int:
        with cond:
            assert cond.wait_for(lambda: items, timeout=TIMEOUT)
            return items.pop()

    futures = [pool.submit(consumer) for _ in range(100)]
    futures += [in_os_thread(consumer) for _ in range(2)]
    for i in range(102):
        with cond:
            items.append(i)
            cond.notify()
    assert sorted(f.result(timeout=TIMEOUT) for f in futures) == list(range(102))


# -- Semaphore ---------------------------------------------------------------------------


def test_semaphore_bounds_concurrency(pool: VirtualThreadPool) -> None:
    sem = ringloom.Semaphore(3)
    guard = ringloom.Lock()
    inside = [0, 0]  # now, most

    def work() -> None:
        with sem:
            with guard:
                inside[0] += 1
                inside[1] = max(inside[1], inside[0])
            _native.sleep(0.0005)
            with guard:
                inside[0] -= 1

    futures = [pool.submit(work) for _ in range(300)]
    futures += [in_os_thread(work) for _ in range(4)]
    for future in futures:
        future.result(timeout=TIMEOUT)
    assert inside[0] == 0 and 1 <= inside[1] <= 3


@WHERE
def test_semaphore_bad_input(where: str, pool: VirtualThreadPool) -> None:
    def body() -> None:
        with pytest.raises(ValueError):
            ringloom.Semaphore(-1)
        sem = ringloom.BoundedSemaphore(1)
        assert sem.acquire() is True
        assert sem.acquire(blocking=False) is False
        assert sem.acquire(timeout=0.01) is False
        with pytest.raises(ValueError):
            sem.acquire(timeout=-1)
        with pytest.raises(ValueError):
            sem.acquire(False, 1)
        sem.release()
        with pytest.raises(ValueError):
            sem.release()
        plain = ringloom.Semaphore(0)
        plain.release(2)
        assert plain.acquire(blocking=False) and plain.acquire(blocking=False)

    run_in(where, pool, body)


# -- Event -------------------------------------------------------------------------------


def test_event_wakes_virtual_threads_and_os_threads(pool: VirtualThreadPool) -> None:
    event = ringloom.Event()
    futures = [pool.submit(event.wait) for _ in range(200)]
    futures += [in_os_thread(event.wait) for _ in range(4)]
    wait_until(lambda: event._waiting == 204)
    assert not any(f.done() for f in futures)
    event.set()
    assert all(f.result(timeout=TIMEOUT) is True for f in futures)
    assert event.is_set()
    assert event.wait(0) is True


def test_event_set_from_a_virtual_thread(pool: VirtualThreadPool) -> None:
    event = ringloom.Event()
    waiter = in_os_thread(lambda: event.wait(TIMEOUT))
    wait_until(lambda: event._waiting == 1)
    pool.submit(event.set).result(timeout=TIMEOUT)
    assert waiter.result(timeout=TIMEOUT) is True


@WHERE
def test_event_wait_timeout_and_bad_input(where: str, pool: VirtualThreadPool) -> None:
    def body() -> None:
        event = ringloom.Event()
        assert event.wait(0.01) is False
        assert event.wait(0) is False
        with pytest.raises(ValueError):
            event.wait(-1)
        event.set()
        event.clear()
        assert not event.is_set()

    run_in(where, pool, body)


# -- Queue -------------------------------------------------------------------------------


def test_queue_producers_and_consumers_lose_and_duplicate_nothing(
    pool: VirtualThreadPool,
) -> None:
    q: ringloom.Queue = ringloom.Queue(maxsize=16)
    assert isinstance(q, queue.Queue)

    def produce(base: int, count: int) -> None:
        for i in range(count):
            q.put(base + i)

    def consume() -> list[int]:
        got = []
        while (item := q.get()) is not None:
            got.append(item)
        return got

    # 8 OS threads (4 producers, 4 consumers), 1,000 virtual threads (500 and 500).
    producers = [in_os_thread(lambda b=b: produce(b * 1000, 400)) for b in range(4)]
    producers += [pool.submit(produce, 10_000 + v * 10, 6) for v in range(500)]
    consumers = [in_os_thread(consume) for _ in range(4)]
    consumers += [pool.submit(consume) for _ in range(500)]
    for future in producers:
        future.result(timeout=TIMEOUT)
    for _ in consumers:
        q.put(None)
    got = collections.Counter(x for f in consumers for x in f.result(timeout=TIMEOUT))
    expected = collections.Counter(
        [b * 1000 + i for b in range(4) for i in range(400)]
        + [10_000 + v * 10 + i for v in range(500) for i in range(6)]
    )
    assert got == expected
    assert q.empty()


def test_queue_task_done_and_join(pool: VirtualThreadPool) -> None:
    q: ringloom.Queue = ringloom.Queue()
    done = [0]

    def worker() -> None:
        while True:
            item = q.get()
            if item is None:
                q.task_done()
                return
            done[0] += 1
            q.task_done()

    workers = [pool.submit(worker) for _ in range(20)]
    for i in range(200):
        q.put(i)
    joiner = pool.submit(q.join)
    q.join()  # an OS thread and a virtual thread join together
    joiner.result(timeout=TIMEOUT)
    assert done[0] == 200
    for _ in workers:
        q.put(None)
    for future in workers:
        future.result(timeout=TIMEOUT)


@WHERE
def test_queue_interface_and_bad_input(where: str, pool: VirtualThreadPool) -> None:
    def body() -> None:
        q: ringloom.Queue = ringloom.Queue(maxsize=2)
        assert q.empty() and not q.full() and q.qsize() == 0
        with pytest.raises(queue.Empty):
            q.get_nowait()
        with pytest.raises(queue.Empty):
            q.get(timeout=0.01)
        q.put_nowait(1)
        q.put(2, block=False)
        assert q.full() and q.qsize() == 2
        with pytest.raises(queue.Full):
            q.put_nowait(3)
        with pytest.raises(queue.Full):
            q.put(3, timeout=0.01)
        with pytest.raises(ValueError):
            q.get(timeout=-1)
        with pytest.raises(ValueError):
            q.put(3, timeout=-1)
        assert [q.get(), q.get_nowait()] == [1, 2]
        with pytest.raises(ValueError):
            q.task_done()
            q.task_done()
            q.task_done()

    run_in(where, pool, body)


def test_queue_put_and_get_wait_while_another_thread_holds_its_mutex(
    one_worker: VirtualThreadPool,
) -> None:
    """Stock code may hold ``q.mutex`` to work on ``q.queue`` directly; a put or get
    must not touch the deque meanwhile, even when neither would have to wait."""
    q: queues.Queue = queues.Queue()
    q.put("first")
    inside: list[list[str]] = []
    holding = threading.Event()

    def holder() -> None:
        with q.mutex:
            holding.set()
            q.queue.append("held")
            seen_before = list(q.queue)
            # Parks while holding the mutex: the other virtual thread runs meanwhile.
            ringloom.sleep(0.05)
            inside.append(seen_before)
            inside.append(list(q.queue))

    def putter_and_getter() -> tuple[Any, list[str]]:
        q.put("later")
        return q.get(), list(q.queue)

    held = one_worker.submit(holder)
    # Submitted once the holder has the mutex, whatever the start order (seeded
    # scheduling shuffles it).
    assert holding.wait(TIMEOUT)
    other = one_worker.submit(putter_and_getter)
    held.result(timeout=TIMEOUT)
    got, after = other.result(timeout=TIMEOUT)
    assert inside == [["first", "held"], ["first", "held"]]
    assert got == "first" and after == ["held", "later"]


def test_queue_method_arguments_as_stock() -> None:
    import inspect

    q: queues.Queue = queues.Queue(maxsize=3)
    q.put(item=1)
    q.put(2, True, 1.0)
    q.put(3, timeout=None)
    assert [q.get(False), q.get(block=True, timeout=0.5), q.get(True, None)] == [1, 2, 3]
    for call, message in [
        (lambda: q.put(), "missing required argument 'item'"),
        (lambda: q.put(1, lock=True), "unexpected keyword argument 'lock'"),
        (lambda: q.put(1, True, 1.0, 4), "at most 3 arguments"),
        (lambda: q.put(1, item=2), "multiple values for argument 'item'"),
        (lambda: q.get(1, 2, 3), "at most 2 arguments"),
        (lambda: q.get(timeout="soon"), "str"),
    ]:
        with pytest.raises(TypeError, match=message):
            call()
    assert q.empty()
    params = list(inspect.signature(queues.Queue.put).parameters)
    assert params == ["self", "item", "block", "timeout"]
    assert list(inspect.signature(q.get).parameters) == ["block", "timeout"]


def test_queue_storage_replaced_by_a_bounded_deque_or_a_list() -> None:
    """``queue`` may be replaced; a deque with a ``maxlen`` drops its oldest item as
    stock ``_put`` would, and a subclass's storage hooks are called."""
    q: queues.Queue = queues.Queue()
    q.queue = collections.deque(maxlen=2)
    for i in range(3):
        q.put(i)
    assert list(q.queue) == [1, 2] and q.get() == 1

    class Stack(queues.Queue):
        def _init(self, maxsize: int) -> None:
            self.queue: list[int] = []

        def _qsize(self) -> int:
            return len(self.queue)

        def _put(self, item: int) -> None:
            self.queue.append(item)

        def _get(self) -> int:
            return self.queue.pop()

    s = Stack()
    s.put(1)
    s.put(2)
    assert [s.get(), s.get()] == [2, 1]
