"""select.select, select.poll and selectors park intercepting virtual threads on
several descriptors at once."""

from __future__ import annotations

import os
import select
import selectors
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import ringloom
from ringloom import Loom, _native
from ringloom.green import select as green_select


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(4)]
    yield made
    for a, b in made:
        a.close()
        b.close()


def later(loom: Loom, delay: float, sock: socket.socket, data: bytes) -> None:
    def send() -> None:
        _native.sleep(delay)
        sock.send(data)

    ringloom.submit(loom, send)


def test_select_wakes_on_the_ready_one(loom: Loom, pairs: list) -> None:
    readers = [a for a, _ in pairs]

    def wait() -> list[socket.socket]:
        ready, _, _ = select.select(readers, [], [], 10)
        return ready

    future = ringloom.submit(loom, wait)
    later(loom, 0.02, pairs[2][1], b"x")
    assert future.result(timeout=10) == [readers[2]]


def test_select_timeout_and_writable(loom: Loom, pairs: list) -> None:
    readers = [a for a, _ in pairs]
    assert ringloom.submit(loom, select.select, readers, [], [], 0.02).result(10) == ([], [], [])
    r, w, x = ringloom.submit(loom, select.select, readers, readers[:2], [], 1).result(10)
    assert (r, w, x) == ([], readers[:2], [])
    # stock outside, same answers
    assert select.select(readers, [], [], 0.01) == ([], [], [])
    assert select.select(readers, readers[:2], [], 1) == ([], readers[:2], [])


def test_select_with_file_numbers_and_errors(loom: Loom, pairs: list) -> None:
    a, b = pairs[0]
    b.send(b"x")
    fds = [a.fileno()]
    assert ringloom.submit(loom, select.select, fds, [], [], 1).result(10)[0] == fds
    with pytest.raises(ValueError):
        ringloom.submit(loom, select.select, fds, [], [], -1).result(10)
    with pytest.raises(TypeError):
        ringloom.submit(loom, select.select, ["x"], [], [], 1).result(10)
    with pytest.raises(OSError):
        ringloom.submit(loom, select.select, [1_000_000], [], [], 1).result(10)


def test_select_reads_its_sets_as_stock(loom: Loom, pairs: list) -> None:
    """A list is read by index while its length lasts (a ``fileno()`` may shorten it,
    as CPython's test_select_mutated does); any iterable is taken; a non-iterable is
    the stock TypeError."""
    a, _ = pairs[0]

    def shrinking() -> tuple[list, list]:
        shrinks: list[object] = []

        class Shrinks:
            def fileno(self) -> int:
                del shrinks[-1]
                return a.fileno()

        shrinks[:] = [Shrinks()] * 10
        _, writable, _ = select.select([], shrinks, [], 1)
        return writable, shrinks

    writable, left = ringloom.submit(loom, shrinking).result(10)
    assert len(writable) == 5 and writable == left  # stock: 5 calls shrank it to 5
    assert ringloom.submit(loom, select.select, (), iter([a]), [], 1).result(10)[1] == [a]
    with pytest.raises(TypeError, match="must be sequences"):
        ringloom.submit(loom, select.select, 5, [], [], 0).result(10)


def test_poll_objects_are_made_only_by_select_poll(loom: Loom) -> None:
    poller = ringloom.submit(loom, select.poll).result(10)
    with pytest.raises(TypeError, match="cannot create"):
        type(poller)()
    with selectors.PollSelector() as sel:  # its _selector_cls is the factory
        assert type(sel._selector) is type(poller)  # type: ignore[attr-defined]


@pytest.mark.parametrize("wait", ["select", "poll"])
def test_a_wait_that_finds_work_ready_lets_its_worker_drain_it(wait: str) -> None:
    """A loop around select()/poll() that waits for another virtual thread of its
    worker to consume what it finds ready (multiprocessing's pool does this with its
    result pipe) spun for ever: a wait that found something ready answered at once, and
    the consumer never ran. Now a wait with a timeout yields once first."""
    data_r, data_w = os.pipe()
    done_r, done_w = os.pipe()
    done: list[bool] = []

    def watch() -> int:
        poller = select.poll()
        poller.register(data_r, select.POLLIN)
        poller.register(done_r, select.POLLIN)
        for turn in range(100_000):
            if done:
                return turn
            if wait == "select":
                select.select([data_r, done_r], [], [], 10)
            else:
                poller.poll(10_000)
        return -1

    def drain() -> None:
        os.read(data_r, 1)
        done.append(True)
        os.write(done_w, b"x")

    try:
        os.write(data_w, b"x")
        with Loom(workers=1) as loom:
            watching = ringloom.submit(loom, watch)
            draining = ringloom.submit(loom, drain)
            assert 0 < watching.result(timeout=30) < 10
            draining.result(timeout=30)
    finally:
        for fd in (data_r, data_w, done_r, done_w):
            os.close(fd)


def test_a_closed_listener_refuses_after_a_timed_out_select(loom: Loom, tmp_path: Any) -> None:
    """A wait's poll in flight holds its file: a listener closed right after a select
    that timed out went on accepting until the worker's next ring turn completed the
    cancelled poll (CPython's test_logging test_noserver cases, run in a virtual
    thread). A wait now returns once its cancelled polls have completed."""
    path = str(tmp_path / "listener")

    def close_then_connect() -> str:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen()
        select.select([listener], [], [], 0.001)  # times out: its poll is cancelled
        listener.close()
        with socket.socket(socket.AF_UNIX) as client:
            try:
                client.connect(path)
                return "connected"
            except ConnectionRefusedError:
                return "refused"

    assert ringloom.submit(loom, close_then_connect).result(timeout=10) == "refused"


def test_select_empty_sets_sleep(loom: Loom) -> None:
    assert ringloom.submit(loom, select.select, [], [], [], 0.01).result(10) == ([], [], [])


def test_poll_object(loom: Loom, pairs: list) -> None:
    (a, b), (c, d) = pairs[:2]

    def wait() -> list:
        poller = select.poll()
        poller.register(a, select.POLLIN)
        poller.register(c.fileno(), select.POLLIN)
        first = poller.poll(10)  # ms: nothing yet
        poller.modify(a, select.POLLIN | select.POLLOUT)
        second = poller.poll(1000)
        poller.unregister(a)
        third = poller.poll()  # waits for c
        return [first, second, third]

    future = ringloom.submit(loom, wait)
    later(loom, 0.05, d, b"x")
    first, second, third = future.result(timeout=10)
    assert first == []
    assert second == [(a.fileno(), select.POLLOUT)]
    assert third == [(c.fileno(), select.POLLIN)]
    # the same object outside a virtual thread: stock poll
    poller = select.poll()
    poller.register(c, select.POLLIN)
    assert poller.poll(0) == [(c.fileno(), select.POLLIN)]


def test_default_selector(loom: Loom, pairs: list) -> None:
    def wait() -> tuple:
        sel = selectors.DefaultSelector()
        with sel:
            for i, (a, _) in enumerate(pairs):
                sel.register(a, selectors.EVENT_READ, data=i)
            nothing = sel.select(0.01)
            events = sel.select(10)
            return type(sel).__name__, nothing, [(key.data, mask) for key, mask in events]

    future = ringloom.submit(loom, wait)
    later(loom, 0.03, pairs[3][1], b"x")
    name, nothing, events = future.result(timeout=10)
    assert isinstance(selectors.DefaultSelector(), selectors.BaseSelector)
    assert name == "PollSelector"
    assert nothing == []
    assert events == [(3, selectors.EVENT_READ)]


def test_select_and_epoll_selectors(loom: Loom, pairs: list) -> None:
    for cls in (selectors.SelectSelector, selectors.EpollSelector):

        def wait(cls: type = cls) -> list:
            with cls() as sel:
                for i, (a, _) in enumerate(pairs):
                    sel.register(a, selectors.EVENT_READ, data=i)
                return [key.data for key, _ in sel.select(10)]

        future = ringloom.submit(loom, wait)
        later(loom, 0.02, pairs[1][1], b"x")
        assert future.result(timeout=10) == [1]
        pairs[1][0].recv(1)


def test_many_selects_share_two_workers(loom: Loom) -> None:
    n = 300
    made = [socket.socketpair() for _ in range(n)]
    try:

        def wait(i: int) -> int:
            a, _ = made[i]
            ready, _, _ = select.select([a], [], [], 30)
            return len(ready) and len(a.recv(10))

        futures = [ringloom.submit(loom, wait, i) for i in range(n)]
        _native.sleep(0.05)
        assert not any(f.done() for f in futures)
        for _, b in made:
            b.send(b"ab")
        assert [f.result(timeout=30) for f in futures] == [2] * n
    finally:
        for a, b in made:
            a.close()
            b.close()


def test_patched_names() -> None:
    assert select.select is green_select.select
    assert select.poll is green_select.poll


def test_subprocess_communicate_parks() -> None:
    """A virtual thread in communicate() leaves its only worker free: the child waits
    for a message that another virtual thread on that worker sends."""
    import subprocess
    import sys

    child = (
        "import socket, sys\n"
        "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n"
        "print(sys.stdin.read().upper() + ' ' + s.recv(10).decode())\n"
    )
    with Loom(workers=1) as loom, socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def run() -> bytes:
            proc = subprocess.Popen(
                [sys.executable, "-c", child, str(port)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            out, _ = proc.communicate(b"child", timeout=20)
            return out.strip()

        running = ringloom.submit(loom, run)
        conn, _ = listener.accept()
        with conn:
            ringloom.submit(loom, conn.sendall, b"go").result(timeout=20)
            assert running.result(timeout=30) == b"CHILD go"


def test_poll_selector_outside_is_stock(pairs: list) -> None:
    a, b = pairs[0]
    with selectors.PollSelector() as sel:
        sel.register(a, selectors.EVENT_READ)
        assert sel.select(0) == []
        b.send(b"x")
        assert [key.fileobj for key, _ in sel.select(1)] == [a]
