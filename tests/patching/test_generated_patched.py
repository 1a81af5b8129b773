"""Generated programs over stock ``threading``, ``queue``, sockets and files under
``ringloom.monkey.patch_all()`` (hypothesis stateful testing), with Ctrl-C: the rules
and the model of ``tests/generated.py`` over the stock primitives, and more rules.

Patching changes the whole process, so the programs run in a child (this file as a
script, see the bottom), which fails with hypothesis's reproduction of the first
failing program. Each program makes a ``VirtualThreadPool`` (bounded or not), then a
random sequence of the pool-API steps of ``tests/generated.py`` (submits that return
or raise, maps, timeouts, endings) and of: increments under a stock
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
from typing import Any

from support import script_env


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


def run_patched_programs() -> None:
    """The child: patches, then runs the programs."""
    import ringloom.monkey

    ringloom.monkey.patch_all()

    import queue
    import signal
    import socket
    import tempfile
    import threading
    import time
    from pathlib import Path

    import ringloom
    from generated import HANG_LIMIT, GeneratedPrograms, run_programs, wait_for
    from hypothesis import seed
    from hypothesis import strategies as st
    from hypothesis.stateful import precondition, rule
    from ringloom.threads import OSThread

    # A child of a shell that ignores SIGINT inherits that; the programs need the default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # Patched, a stock `threading.Thread` runs on the process-wide pool, made at first
    # use and kept: up before the first program counts the process's threads.
    ringloom.run_in_virtual_thread(lambda: None)
    scratch = tempfile.mkdtemp(prefix="ringloom-generated-")
    local = threading.local()
    interrupts = [0]

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

    class PatchedPrograms(GeneratedPrograms):
        """The stock primitives, patched; and rules for what only patching reaches."""

        def make_event(self) -> threading.Event:
            return threading.Event()

        def make_lock(self) -> Any:
            return threading.Lock()

        def make_queue(self) -> queue.Queue[int | None]:
            return queue.Queue()

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
            future = self.pool.submit(file_round_trip, len(self.expected), data)
            self.expect(future, ("value", data))

        @precondition(lambda self: self.limit is None)
        @rule(index=st.integers(0, 2))
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
                interrupts[0] += 1
            else:
                raise AssertionError("the wait ended without KeyboardInterrupt")
            finally:
                interrupter.join(HANG_LIMIT)
            assert not future.done(), future
            event.set()
            self.expect(future, ("value", index))

    @seed(20261206)
    def patched_program() -> PatchedPrograms:
        """The factory: its digest keys the kept failures, its seed fixes the programs."""
        return PatchedPrograms()

    examples = int(os.environ.get("RINGLOOM_GENERATED_EXAMPLES", "200"))
    kept = Path(__file__).with_name("generated-failures")
    run_programs(patched_program, kept, examples, 30)
    os.rmdir(scratch)
    print(f"{examples} programs passed ({interrupts[0]} interrupts, shrinking included)")


if __name__ == "__main__":
    run_patched_programs()
