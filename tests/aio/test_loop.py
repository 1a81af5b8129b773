"""``ringloom.asyncio``: the loop's scheduling, its waits on the ring, the entry points, and
the bridge to virtual threads both ways."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import sys
import threading
from typing import Any, Callable

import pytest
import ringloom
import ringloom.asyncio
from ringloom.asyncio import EventLoopPolicy, RingEventLoop, RingSelector
from support import TIMEOUT

# The ``run_loop`` fixture (conftest.py): runs a coroutine function on a new loop.
RunLoop = Callable[..., Any]


def test_the_stdlib_asyncio_is_not_shadowed() -> None:
    import ringloom._aio

    assert ringloom._aio.asyncio is asyncio
    assert asyncio.__name__ == "asyncio" and ringloom.asyncio.__name__ == "ringloom.asyncio"


def test_call_soon_call_later_call_at_order(run_loop: RunLoop) -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        done = loop.create_future()
        now = loop.time()
        loop.call_at(now + 0.03, seen.append, "at")
        loop.call_later(0.02, seen.append, "later")
        loop.call_later(0.04, done.set_result, None)
        cancelled = loop.call_later(0.01, seen.append, "cancelled")
        loop.call_soon(seen.append, "soon")
        cancelled.cancel()
        await done
        assert loop.time() >= now + 0.04
        return seen

    assert run_loop(main) == ["soon", "later", "at"]


def test_call_soon_handles_are_the_stock_ones(run_loop: RunLoop) -> None:
    # `RingEventLoop.call_soon` fills the stock Handle in itself: what a caller sees of
    # it (type, cancel, repr, the context it runs in, the debug traceback) is unchanged.
    import contextvars

    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main(debug: bool) -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.set_debug(debug)
        seen: list[Any] = []
        done = loop.create_future()
        var.set("outer")
        handles = [
            loop.call_soon(lambda: seen.append(("plain", var.get()))),
            loop.call_soon(seen.append, "cancelled"),
        ]
        handles[1].cancel()
        line = sys._getframe().f_lineno + 3
        context = contextvars.copy_context()
        context.run(var.set, "given")
        handles.append(loop.call_soon(lambda: seen.append(("given", var.get())), context=context))
        var.set("later")
        loop.call_soon(done.set_result, None)
        await done
        traceback = handles[2]._source_traceback  # type: ignore[attr-defined]
        return [
            [type(h) is asyncio.Handle for h in handles],
            [h.cancelled() for h in handles],
            "cancelled" in repr(handles[1]),
            seen,
            None if traceback is None else traceback[-1][1:3] == (line, "main"),
        ]

    for debug in (False, True):
        assert run_loop(main, debug) == [
            [True, True, True],
            [False, True, False],
            True,
            [("plain", "outer"), ("given", "given")],
            True if debug else None,
        ]
    loop = RingEventLoop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(print)


def test_futures_tasks_gather_and_cancel(run_loop: RunLoop) -> None:
    async def child(n: int) -> int:
        await asyncio.sleep(0.001 * n)
        return n * n

    async def forever() -> None:
        await asyncio.Event().wait()

    async def main() -> tuple[list[int], bool]:
        squares = await asyncio.gather(*(child(n) for n in range(10)))
        task = asyncio.ensure_future(forever())
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return squares, task.cancelled()

    assert run_loop(main) == ([n * n for n in range(10)], True)


def test_timeouts(run_loop: RunLoop) -> None:
    async def main() -> bool:
        try:
            await asyncio.wait_for(asyncio.Event().wait(), 0.01)
        except asyncio.TimeoutError:
            return True
        return False

    assert run_loop(main) is True


def test_debug_mode(run_loop: RunLoop) -> None:
    async def main() -> bool:
        await asyncio.sleep(0.001)
        return asyncio.get_running_loop().get_debug()

    assert run_loop(main, debug=True) is True


def test_call_soon_threadsafe_from_an_os_thread_wakes_the_loop(run_loop: RunLoop) -> None:
    async def main() -> str:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()
        # The loop waits with no timer at all: only the self-pipe can end the wait.
        thread = threading.Thread(
            target=lambda: loop.call_soon_threadsafe(future.set_result, "woken")
        )
        thread.start()
        result = await future
        thread.join()
        return result

    assert run_loop(main) == "woken"


def test_run_in_executor_runs_a_virtual_thread(run_loop: RunLoop) -> None:
    def blocking(n: int) -> tuple[bool, int]:
        import time

        time.sleep(0.001)  # parks the virtual thread
        return ringloom.in_virtual_thread(), n + 1

    async def main() -> tuple[list[tuple[bool, int]], str]:
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(
            *(loop.run_in_executor(None, blocking, n) for n in range(50))
        )
        executor = type(loop._default_executor).__name__  # type: ignore[attr-defined]
        return list(results), executor

    results, executor = run_loop(main)
    assert results == [(True, n + 1) for n in range(50)]
    assert executor == "VirtualThreadPool"


def test_shutdown_default_executor_then_run_in_executor_fails() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, abs, -3) == 3
        await loop.shutdown_default_executor()
        with pytest.raises(RuntimeError):
            await loop.run_in_executor(None, abs, -3)

    ringloom.asyncio.run(main())


def test_set_default_executor_takes_a_virtual_thread_pool() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        pool = ringloom.VirtualThreadPool(max_virtual_threads=4)
        loop.set_default_executor(pool)
        inside = await loop.run_in_executor(None, ringloom.in_virtual_thread)
        return bool(inside and loop._default_executor is pool)  # type: ignore[attr-defined]

    assert ringloom.asyncio.run(main()) is True


def _by_run_coroutine(coro: Any, loop: asyncio.AbstractEventLoop) -> Any:
    return ringloom.asyncio.run_coroutine(coro, loop)


def _by_futures_wait(coro: Any, loop: asyncio.AbstractEventLoop) -> Any:
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    concurrent.futures.wait([future])  # parks an intercepting virtual thread
    return future.result()


@pytest.mark.parametrize("wait", [_by_run_coroutine, _by_futures_wait])
def test_a_virtual_thread_parks_on_a_coroutine_of_the_loop(wait: Any) -> None:
    """``run_coroutine``, or ``run_coroutine_threadsafe`` and ``concurrent.futures.wait``,
    from virtual threads of a one-worker pool: all of them at once, each parked (not
    holding the worker) until its coroutine on the loop ends."""

    async def double(n: int, gate: asyncio.Event) -> int:
        await gate.wait()
        return 2 * n

    async def main() -> tuple[bool, list[int]]:
        loop = asyncio.get_running_loop()
        gate = asyncio.Event()

        def in_vthread(n: int) -> int:
            assert ringloom.in_virtual_thread()
            return wait(double(n, gate), loop)

        with ringloom.VirtualThreadPool(max_platform_threads=1) as pool:
            futures = [asyncio.wrap_future(pool.submit(in_vthread, n)) for n in range(20)]
            # Every virtual thread has submitted its coroutine and parked: the one
            # worker was free for all of them (a wait that held the worker would let
            # only one coroutine in until the gate opens).
            # The gate opens either way, so that the pool's tasks end before it shuts
            # down (its shutdown blocks this loop's thread).
            deadline = loop.time() + TIMEOUT
            while len(asyncio.all_tasks()) < 21 and loop.time() < deadline:
                await asyncio.sleep(0.001)
            all_parked = len(asyncio.all_tasks()) == 21
            gate.set()
            return all_parked, list(await asyncio.gather(*futures))

    assert ringloom.asyncio.run(main()) == (True, [2 * n for n in range(20)])


def test_run_coroutine_timeout_cancels_the_coroutine() -> None:
    async def main() -> bool:
        loop = asyncio.get_running_loop()
        cancelled = asyncio.Event()

        async def slow() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        def waiter() -> str:
            try:
                ringloom.asyncio.run_coroutine(slow(), loop, timeout=0.01)
            except TimeoutError:
                return "timeout"
            return "no timeout"

        assert await loop.run_in_executor(None, waiter) == "timeout"
        await cancelled.wait()
        return True

    assert ringloom.asyncio.run(main()) is True


def test_run_coroutine_on_its_own_loop_is_refused() -> None:
    async def main() -> None:
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            ringloom.asyncio.run_coroutine(coro, asyncio.get_running_loop())
        coro.close()

    ringloom.asyncio.run(main())


def test_loops_in_virtual_threads_of_one_worker_run_together() -> None:
    """Eight loops in eight virtual threads of one worker, each waiting for the next
    one's message: only loops whose waits park their virtual thread get through."""
    ringloom.monkey.patch_asyncio()
    count = 8
    pairs = [socket.socketpair() for _ in range(count)]

    async def member(k: int) -> tuple[int, bytes, str]:
        loop = asyncio.get_running_loop()
        mine, _ = pairs[k]
        _, nxt = pairs[(k + 1) % count]
        mine.setblocking(False)
        nxt.setblocking(False)
        await loop.sock_sendall(nxt, b"from %d" % k)
        got = await loop.sock_recv(mine, 100)
        return k, got, type(loop).__name__

    try:
        with ringloom.Loom(workers=1) as loom:
            futures = [ringloom.submit(loom, ringloom.asyncio.run, member(k)) for k in range(count)]
            results = [f.result(timeout=TIMEOUT) for f in futures]
    finally:
        for a, b in pairs:
            a.close()
            b.close()
    assert results == [(k, b"from %d" % ((k - 1) % count), "RingEventLoop") for k in range(count)]


def test_the_main_thread_loop_waits_on_a_ring() -> None:
    """A wait of a loop on an OS thread is a poll on the helper Loom's ring."""

    async def main() -> None:
        await asyncio.sleep(0.01)

    ringloom.asyncio.run(main())
    loom = ringloom.asyncio._waiter_loom
    assert loom is not None
    before = loom.stats()
    ringloom.asyncio.run(main())
    after = loom.stats()
    assert after["started"] > before["started"]
    assert after["ops_submitted"] > before["ops_submitted"]


def test_selector_select_and_interest_set() -> None:
    a, b = socket.socketpair()
    try:
        with RingSelector() as selector:
            key = selector.register(a, 1, "data")  # EVENT_READ
            assert selector.select(0) == []
            b.send(b"x")
            assert selector.select(TIMEOUT) == [(key, 1)]
            selector.modify(a, 2, "w")  # EVENT_WRITE
            [(key2, events)] = selector.select(TIMEOUT)
            assert key2.data == "w" and events == 2
            selector.unregister(a)
            assert selector.select(0) == []
            with pytest.raises(OSError):  # as EpollSelector: a closed descriptor
                selector.register(10_000, 1)
    finally:
        a.close()
        b.close()


def test_an_interrupted_wait_is_ended_and_the_selector_stays_usable() -> None:
    """A signal handler that raises during a main-thread wait: the helper's wait is
    ended by the wake pipe, the next select works, and close releases everything."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted

    a, b = socket.socketpair()
    old = signal.signal(signal.SIGUSR1, handler)
    try:
        selector = RingSelector()
        selector.register(a, 1)
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        with pytest.raises(Interrupted):
            selector.select(None)
        timer.join()
        b.send(b"x")
        assert [events for _, events in selector.select(TIMEOUT)] == [1]
        selector.close()
    finally:
        signal.signal(signal.SIGUSR1, old)
        a.close()
        b.close()


def test_policy_runner_and_new_event_loop() -> None:
    asyncio.set_event_loop_policy(EventLoopPolicy())
    try:
        loop = asyncio.new_event_loop()
        assert isinstance(loop, RingEventLoop)
        loop.close()
        assert asyncio.run(asyncio.sleep(0, "ok")) == "ok"
    finally:
        asyncio.set_event_loop_policy(None)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=ringloom.asyncio.new_event_loop) as runner:
            assert isinstance(runner.get_loop(), RingEventLoop)
            assert runner.run(asyncio.sleep(0, 5)) == 5


def test_shutdown_asyncgens(run_loop: RunLoop) -> None:
    closed: list[bool] = []

    async def agen() -> Any:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main() -> int:
        gen = agen()
        first = await gen.__anext__()
        return first  # left suspended: closed by shutdown_asyncgens at the end of run

    assert run_loop(main) == 1
    assert closed == [True]


def test_add_reader_and_add_writer(run_loop: RunLoop) -> None:
    async def main() -> tuple[bytes, bool]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        got: asyncio.Future[bytes] = loop.create_future()
        writable: asyncio.Future[bool] = loop.create_future()
        loop.add_reader(a, lambda: got.done() or got.set_result(a.recv(100)))
        loop.add_writer(b, lambda: writable.done() or writable.set_result(True))
        assert await writable
        assert loop.remove_writer(b)
        b.send(b"ping")
        data = await got
        assert loop.remove_reader(a)
        a.close()
        b.close()
        return data, True

    assert run_loop(main) == (b"ping", True)


def test_getaddrinfo(run_loop: RunLoop) -> None:
    async def main() -> set[Any]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
        return {info[4] for info in infos}

    assert run_loop(main) == {("127.0.0.1", 80)}


def test_executor_future_from_another_pool_is_awaited(run_loop: RunLoop) -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return await loop.run_in_executor(pool, sum, [1, 2, 3])

    assert run_loop(main) == 6
