"""``ringloom.asyncio``: subprocess transports and signal handlers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any, Callable

import pytest
import ringloom.asyncio

# The ``run_loop`` fixture (conftest.py): runs a coroutine function on a new loop.
RunLoop = Callable[..., Any]


def test_subprocess_exec_communicate(run_loop: RunLoop) -> None:
    async def main() -> tuple[bytes, bytes, int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; data = sys.stdin.read(); print(data.upper()); "
            "print('err', file=sys.stderr); sys.exit(3)",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(b"hello")
        return out, err, await proc.wait()

    out, err, code = run_loop(main)
    assert (out.strip(), err.strip(), code) == (b"HELLO", b"err", 3)


def test_subprocess_shell_and_pipe_lines(run_loop: RunLoop) -> None:
    async def main() -> list[bytes]:
        proc = await asyncio.create_subprocess_shell(
            "for i in 1 2 3; do echo line$i; done", stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        lines = [line async for line in proc.stdout]
        assert await proc.wait() == 0
        return lines

    assert run_loop(main) == [b"line1\n", b"line2\n", b"line3\n"]


def test_subprocess_protocol_and_kill(run_loop: RunLoop) -> None:
    class Proto(asyncio.SubprocessProtocol):
        def __init__(self) -> None:
            self.exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def process_exited(self) -> None:
            self.exited.set_result(None)

    async def main() -> int:
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            Proto, sys.executable, "-c", "import time; time.sleep(60)"
        )
        transport.kill()
        await proto.exited
        code = transport.get_returncode()
        transport.close()
        return code

    assert run_loop(main) == -signal.SIGKILL


def test_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers need the main thread")

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        got: asyncio.Queue[int] = asyncio.Queue()
        loop.add_signal_handler(signal.SIGUSR1, got.put_nowait, 1)
        loop.add_signal_handler(signal.SIGUSR2, got.put_nowait, 2)
        try:
            seen = []
            # Sent from another thread while the loop waits with nothing else to do:
            # the signal's wakeup byte ends the ring wait.
            for signum in (signal.SIGUSR1, signal.SIGUSR2):
                threading.Thread(target=os.kill, args=(os.getpid(), signum)).start()
                seen.append(await got.get())
            return seen
        finally:
            assert loop.remove_signal_handler(signal.SIGUSR1)
            assert loop.remove_signal_handler(signal.SIGUSR2)

    assert ringloom.asyncio.run(main()) == [1, 2]


def test_ctrl_c_cancels_the_main_task() -> None:
    """SIGINT during a main-thread ring wait reaches asyncio.Runner's handler, which
    cancels the main task (KeyboardInterrupt comes out of run)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    cancelled: list[bool] = []

    async def main() -> None:
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(KeyboardInterrupt):
        ringloom.asyncio.run(main())
    assert cancelled == [True]


def test_a_forked_child_runs_its_own_loop() -> None:
    """The helper Loom of the parent (whose worker the child does not have) is made
    again in a forked child."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("forks from the main thread")

    async def main() -> int:
        await asyncio.sleep(0.001)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, sum, [20, 22])

    assert ringloom.asyncio.run(main()) == 42  # the parent's helper exists now
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if ringloom.asyncio.run(main()) == 42 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


LATE_SCRIPT = """
import asyncio, atexit

def late():
    import ringloom.asyncio as ra
    try:
        ra._loom().spawn(print, None)
    except RuntimeError:
        print("helper closed")
    print(ra.run(asyncio.sleep(0.001, "late run")))

atexit.register(late)  # before ringloom's own exit hook, so it runs after it
import ringloom.asyncio
print(ringloom.asyncio.run(asyncio.sleep(0.001, "first run")))
"""


def test_a_loop_run_after_the_exit_hook_closed_the_helper() -> None:
    """At interpreter exit every Loom is closed; a loop run later (an earlier atexit
    hook) waits with poll(2) on its own thread instead of failing."""
    import subprocess

    from support import script_env

    out = subprocess.run(
        [sys.executable, "-c", LATE_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=script_env(),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["first run", "helper closed", "late run", ""]
