"""Generated programs over stock ``threading``, ``queue``, sockets and files under
``ringloom.monkey.patch_all()`` (hypothesis stateful testing), with Ctrl-C.

Patching changes the whole process, so the programs run in a child (this file as a
script, see the bottom), which fails with hypothesis's reproduction of the first
failing program. Each program makes a ``VirtualThreadPool`` (bounded or not), then a
random sequence of: submits that return or raise; increments under a stock
``threading.Lock`` from virtual threads (parking inside the critical section), from
``threading.Thread``s (virtual threads once patched) and from real OS threads
(``ringloom.threads.OSThread``); waits on stock ``threading.Event``s; takes from a stock
``queue.Queue`` fed by the test's OS thread; ``threading.local`` values kept across a
park; an echo over a ``socket.socketpair`` served by a ``threading.Thread``; a file
written and read back with ``open()``; nested waits on the pool's own futures;
cancellations; and a ``SIGINT`` delivered while the main thread waits on a future,
whose ``KeyboardInterrupt`` must end only that wait. At the end every future must have
the outcome the model expects, the counter every increment, the queue every item once;
descriptors and OS threads come back to the start. A failing program is kept in
``generated-failures/`` (committed with its fix) and replayed first by every run; the
rest come from a fixed seed, the same every run.
"""

from __future__ import annotations

import os
import subprocess
import sys

from support import script_env

#: Seconds a generated program's future may take to end once its events are set.
HANG_LIMIT = 60


def test_generated_programs_over_patched_stock_primitives() -> None:
    child = subprocess.run(
        [sys.executable, __file__],
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert child.returncode == 0, (child.stdout + child.stderr)[-6000:]
    assert "programs passed" in child.stdout, child.stdout[-2000:]


def run_programs() -> None:
    """The child: patches, then runs the state machine's programs."""
    import ringloom.monkey

    ringloom.monkey.patch_all()

    import collections
    import concurrent.futures
    import queue
    import signal
    import socket
    import tempfile
    import threading
    import time
    import traceback
    from pathlib import Path
    from typing import Any

    import ringloom
    import ringloom.watchdog
    from hypothesis import HealthCheck, seed, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import (
        RuleBasedStateMachine,
        initialize,
        precondition,
        rule,
        run_state_machine_as_test,
    )
    from kept_failures import KeptFailures
    from ringloom.threads import OSThread
    from support import open_fds, os_threads, wait_until

    # A child of a shell that ignores SIGINT inherits that; the programs need the default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Patched, a stock `threading.Thread` runs on the process-wide pool, made at first
    # use and kept: up before the first program counts the process's threads.
    ringloom.run_in_virtual_thread(lambda: None)
    events_n = 3
    scratch = tempfile.mkdtemp(prefix="ringloom-generated-")

    class Boom(Exception):
        pass

    def give(value: int) -> int:
        return value

    def fail(message: str) -> None:
        raise Boom(message)

    def wait_for(event: threading.Event, index: int) -> int:
        if not event.wait(HANG_LIMIT):
            raise TimeoutError(f"event {index} never set")
        return index

    local = threading.local()

    def keep_local(value: int, ms: int) -> int:
        local.value = value
        time.sleep(ms / 1000)  # parks; other virtual threads set their own value
        return int(local.value)

    def echo(data: bytes) -> bytes:
        a, b = socket.socketpair()

        def serve() -> None:
            with b:
                while chunk := b.recv(65536):
                    b.sendall(chunk)

        server = threading.Thread(target=serve)
        server.start()
        with a:
            a.sendall(data)
            a.shutdown(socket.SHUT_WR)
            back = b""
            while chunk := a.recv(65536):
                back += chunk
        server.join(HANG_LIMIT)
        return back

    def file_round_trip(name: int, data: bytes) -> bytes:
        path = os.path.join(scratch, f"{name}-{threading.get_ident()}")
        with open(path, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            back = f.read()
        os.unlink(path)
        return back

    def stacks() -> str:
        """Every thread's stack, then every virtual thread's with what it is parked on."""
        threads = "\n".join(
            f"-- {ident}\n{''.join(traceback.format_stack(frame))}"
            for ident, frame in sys._current_frames().items()
        )
        return f"{threads}\n{ringloom.watchdog.dump_virtual_threads()}"

    steps: collections.Counter[str] = collections.Counter()

    class PatchedPrograms(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            steps["programs"] += 1
            self.fds = open_fds()
            self.threads = os_threads()
            self.pool: ringloom.VirtualThreadPool | None = None
            self.expected: list[tuple[concurrent.futures.Future[Any], Any, int]] = []
            self.events = [threading.Event() for _ in range(events_n)]
            self.lock = threading.Lock()
            self.counter = [0]
            self.items: queue.Queue[int | None] = queue.Queue()
            self.put: list[int] = []
            self.takers: list[concurrent.futures.Future[Any]] = []
            self.threads_started: list[threading.Thread] = []
            self.thread_increments = 0
            self.files = 0

        @initialize(limit=st.one_of(st.none(), st.integers(1, 4)), workers=st.integers(1, 2))
        def start(self, limit: int | None, workers: int) -> None:
            self.limit = limit
            self.pool = ringloom.VirtualThreadPool(
                max_platform_threads=workers, max_virtual_threads=limit
            )

        def expect(self, future: Any, outcome: Any, increments: int = 0) -> None:
            self.expected.append((future, outcome, increments))
            steps["futures"] += 1

        @rule(value=st.integers())
        def submit_value(self, value: int) -> None:
            assert self.pool is not None
            self.expect(self.pool.submit(give, value), ("value", value))

        @rule(message=st.text(max_size=5))
        def submit_failure(self, message: str) -> None:
            assert self.pool is not None
            self.expect(self.pool.submit(fail, message), ("raises", Boom, message))

        @rule(times=st.integers(1, 10))
        def submit_locked_increments(self, times: int) -> None:
            assert self.pool is not None
            lock, counter = self.lock, self.counter

            def increment() -> int:
                for _ in range(times):
                    with lock:
                        seen = counter[0]
                        time.sleep(0)
                        counter[0] = seen + 1
                return times

            self.expect(self.pool.submit(increment), ("value", times), times)

        @rule(times=st.integers(1, 30), real=st.booleans())
        def thread_increments(self, times: int, real: bool) -> None:
            """A stock ``threading.Thread`` (a virtual thread once patched) or a real
            OS thread takes the lock the pool's tasks take."""
            lock, counter = self.lock, self.counter

            def increment() -> None:
                for _ in range(times):
                    with lock:
                        seen = counter[0]
                        time.sleep(0)
                        counter[0] = seen + 1

            thread = OSThread(target=increment) if real else threading.Thread(target=increment)
            thread.start()
            steps["threads"] += 1
            self.threads_started.append(thread)
            self.thread_increments += times

        @precondition(lambda self: self.limit is None)
        @rule(index=st.integers(0, events_n - 1))
        def submit_event_wait(self, index: int) -> None:
            assert self.pool is not None
            future = self.pool.submit(wait_for, self.events[index], index)
            self.expect(future, ("value", index))

        @rule(index=st.integers(0, events_n - 1))
        def set_event(self, index: int) -> None:
            self.events[index].set()

        @rule(value=st.integers())
        def put_item(self, value: int) -> None:
            self.items.put(value)
            self.put.append(value)

        @precondition(lambda self: self.limit is None)
        @rule()
        def submit_take(self) -> None:
            assert self.pool is not None
            self.takers.append(self.pool.submit(self.items.get, timeout=HANG_LIMIT))

        @rule(value=st.integers(), ms=st.integers(0, 3))
        def submit_local(self, value: int, ms: int) -> None:
            assert self.pool is not None
            self.expect(self.pool.submit(keep_local, value, ms), ("value", value))

        @rule(data=st.binary(max_size=70_000))
        def submit_echo(self, data: bytes) -> None:
            assert self.pool is not None
            self.expect(self.pool.submit(echo, data), ("value", data))

        @rule(data=st.binary(max_size=70_000))
        def submit_file(self, data: bytes) -> None:
            assert self.pool is not None
            self.files += 1
            future = self.pool.submit(file_round_trip, self.files, data)
            self.expect(future, ("value", data))

        @precondition(lambda self: self.limit is None)
        @rule(value=st.integers())
        def submit_nested(self, value: int) -> None:
            assert self.pool is not None
            pool = self.pool

            def nested() -> int:
                return pool.submit(give, value).result(HANG_LIMIT)

            self.expect(pool.submit(nested), ("value", value))

        @precondition(lambda self: self.limit is None)
        @rule(index=st.integers(0, events_n - 1))
        def interrupt_a_wait(self, index: int) -> None:
            """Ctrl-C while the main thread waits on a future that cannot end yet (its
            event is unset): the wait raises KeyboardInterrupt; the future goes on."""
            assert self.pool is not None
            event = threading.Event()
            future = self.pool.submit(wait_for, event, index)
            interrupter = OSThread(target=os.kill, args=(os.getpid(), signal.SIGINT))
            try:
                interrupter.start()
                future.result(HANG_LIMIT)
            except KeyboardInterrupt:
                steps["interrupts"] += 1
            else:
                raise AssertionError("the wait ended without KeyboardInterrupt")
            finally:
                interrupter.join(HANG_LIMIT)
            assert not future.done(), future
            event.set()
            self.expect(future, ("value", index))

        @precondition(lambda self: bool(self.expected))
        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            index = data.draw(st.integers(0, len(self.expected) - 1))
            future, _, _ = self.expected[index]
            if future.cancel():
                self.expected[index] = (future, ("cancelled",), 0)

        def teardown(self) -> None:
            if self.pool is None:
                return
            for event in self.events:
                event.set()
            for _ in range(len(self.takers) - len(self.put)):
                self.items.put(None)
            taken = []
            try:
                for future, outcome, _ in self.expected:
                    try:
                        value = future.result(HANG_LIMIT)
                    except concurrent.futures.TimeoutError:
                        raise AssertionError(f"a future never ended\n{stacks()}") from None
                    except concurrent.futures.CancelledError:
                        assert outcome == ("cancelled",), outcome
                        continue
                    except Boom as err:
                        assert outcome == ("raises", Boom, err.args[0]), (outcome, err)
                        continue
                    assert outcome == ("value", value), (outcome, value)
                for taker in self.takers:
                    try:
                        taken.append(taker.result(HANG_LIMIT))
                    except concurrent.futures.TimeoutError:
                        raise AssertionError(f"a taker never ended\n{stacks()}") from None
                for thread in self.threads_started:
                    thread.join(HANG_LIMIT)
                    assert not thread.is_alive(), f"a thread never ended\n{stacks()}"
            finally:
                self.pool.shutdown(wait=True)
            left = []
            while not self.items.empty():
                left.append(self.items.get_nowait())
            got = collections.Counter(x for x in taken + left if x is not None)
            assert got == collections.Counter(self.put), (taken, left, self.put)
            pool_increments = sum(increments for _, _, increments in self.expected)
            assert self.counter[0] == pool_increments + self.thread_increments
            wait_until(lambda: os_threads() <= self.threads)
            wait_until(lambda: open_fds() <= self.fds)

    @seed(20261206)
    def patched_program() -> PatchedPrograms:
        """The factory: its digest keys the kept failures, its seed fixes the programs."""
        return PatchedPrograms()

    examples = int(os.environ.get("RINGLOOM_GENERATED_EXAMPLES", "200"))
    run_state_machine_as_test(
        patched_program,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            database=KeptFailures(Path(__file__).with_name("generated-failures")),
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    os.rmdir(scratch)
    print(f"{examples} programs passed ({dict(steps)} over all runs, shrinking included)")


if __name__ == "__main__":
    run_programs()
