"""``ringloom.asyncio``: an asyncio event loop whose waits go through ringloom's ring.

The loop is the standard library's unix selector loop (so every transport, stream, TLS
layer, subprocess transport, signal handler and unix socket is the stock one) over a
:class:`RingSelector`: the interest set lives in a kernel epoll set, kept exactly as
``selectors.EpollSelector`` keeps it, and the loop's wait for that set (with the timeout
of its next timer) is one io_uring ``POLL_ADD`` on the epoll descriptor:

- run inside a virtual thread, the wait parks the virtual thread on its worker's ring
  (``ringloom.wait_fd``): the worker runs other virtual threads, other loops among them;
- run on a plain OS thread (the main thread, say), the wait is handed to a virtual thread
  of a one-worker ``Loom`` kept for the purpose, and the OS thread blocks with the GIL
  released until that virtual thread's poll completes (signal handlers still run within
  50 ms, and ``call_soon_threadsafe`` wakes it through the loop's self-pipe, which is in
  the interest set).

Either way a wait costs one ring operation whatever the number of registered descriptors,
and the ready ones are read with a non-blocking ``epoll_wait``. The default executor of
``run_in_executor`` is a :class:`ringloom.VirtualThreadPool`, so blocking calls there run
as virtual threads; :func:`run_coroutine` goes the other way, running a coroutine on a
loop and parking the calling virtual thread (or blocking the OS thread) until it ends.

Entry points: :func:`new_event_loop` (a ``loop_factory`` for ``asyncio.Runner``),
:func:`run`, :class:`EventLoopPolicy` and :func:`install`.

Example::

    import asyncio
    import ringloom.asyncio

    async def main() -> int:
        await asyncio.sleep(0.01)
        return await asyncio.get_running_loop().run_in_executor(None, sum, [1, 2])

    assert ringloom.asyncio.run(main()) == 3
"""

from __future__ import annotations

import asyncio
import asyncio.events
import asyncio.selector_events
import asyncio.trsock
import asyncio.unix_events
import concurrent.futures
import contextvars
import os
import select
import selectors
import sys
import threading
from collections.abc import Coroutine
from typing import Any, Callable, TypeVar

from ringloom import _fork, _native
from ringloom._pool import VirtualThreadPool

__all__ = [
    "EventLoopPolicy",
    "RingEventLoop",
    "RingSelector",
    "install",
    "new_event_loop",
    "run",
    "run_coroutine",
]

T = TypeVar("T")

_EPOLLIN = select.EPOLLIN
_EPOLLOUT = select.EPOLLOUT
_POLLIN = select.POLLIN

# The one-worker runtime that waits on behalf of loops run on plain OS threads: made at
# first use, made again in a forked child (the parent's worker does not exist there).
_waiter_loom: _native.Loom | None = None
_waiter_lock = threading.Lock()


def _loom() -> _native.Loom:
    global _waiter_loom
    with _waiter_lock:
        if _waiter_loom is None:
            _waiter_loom = _native.Loom(workers=1)
        return _waiter_loom


@_fork.on_child
def _reset_after_fork() -> None:
    global _waiter_loom, _waiter_lock
    _waiter_lock = threading.Lock()
    _waiter_loom = None


class _RingWait:
    """The outcome slot of one wait done by a virtual thread for an OS thread: it has
    the future interface ``Loom.spawn`` reports to, and wakes the OS thread's parker."""

    __slots__ = ("done", "error", "parker")

    def __init__(self) -> None:
        self.parker = _native.Parker()
        self.done = False
        self.error: BaseException | None = None

    def set_running_or_notify_cancel(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False

    def set_result(self, result: object) -> None:
        self.done = True
        self.parker.unpark()

    def set_exception(self, error: BaseException) -> None:
        self.error = error
        self.done = True
        self.parker.unpark()


class RingSelector(selectors.EpollSelector):
    """A ``selectors`` selector whose ``select`` waits on ringloom's ring.

    Registration is ``EpollSelector``'s (a kernel epoll set, so the same errors for a
    closed descriptor or a regular file). ``select(timeout)`` first looks without
    waiting; if nothing is ready and the timeout allows, it waits for the epoll
    descriptor to turn readable through one ring poll (parking the calling virtual
    thread, or, on an OS thread, a helper virtual thread while the OS thread blocks with
    the GIL released), then reads the ready events without waiting.

    Example::

        import socket

        a, b = socket.socketpair()
        with RingSelector() as selector:
            selector.register(a, selectors.EVENT_READ, "data")
            b.send(b"x")
            [(key, events)] = selector.select(timeout=5)
            assert key.data == "data" and events == selectors.EVENT_READ
        a.close(); b.close()
    """

    def __init__(self) -> None:
        super().__init__()
        # A pipe in the epoll set (not in the key map): written to end a helper's wait
        # that its OS thread stopped waiting for (a signal handler raised meanwhile).
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_r, _EPOLLIN)
        self._pending: _RingWait | None = None

    @property
    def _epoll(self) -> Any:
        return self._selector  # type: ignore[attr-defined]

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """The ready ``(key, events)`` pairs; waits on the ring up to ``timeout``
        seconds (None: until one is ready) when none is ready at once."""
        if self._pending is not None:
            self._finish_pending()
        if timeout is not None:
            timeout = max(timeout, 0.0)
        fd_to_key: dict[int, selectors.SelectorKey] = self._fd_to_key  # type: ignore[attr-defined]
        # One more than the keys, for the wake pipe.
        most = len(fd_to_key) + 1
        ready = self._epoll.poll(0, most)
        if not ready and timeout != 0:
            self._wait(timeout)
            ready = self._epoll.poll(0, most)
        found = []
        for fd, event in ready:
            if fd == self._wake_r:
                self._drain()
                continue
            key = fd_to_key.get(fd)
            if key is None:
                continue
            events = 0
            if event & ~_EPOLLIN:
                events |= selectors.EVENT_WRITE
            if event & ~_EPOLLOUT:
                events |= selectors.EVENT_READ
            events &= key.events
            if events:
                found.append((key, events))
        return found

    def _wait(self, timeout: float | None) -> None:
        epfd = self._epoll.fileno()
        if _native.in_virtual_thread():
            _native.wait_fd(epfd, _POLLIN, timeout)
            return
        wait = _RingWait()
        try:
            _loom().spawn(_native.wait_fd, wait, args=(epfd, _POLLIN, timeout))
        except RuntimeError:
            # The helper is closed (interpreter exit closes every Loom): poll(2) on
            # this thread, GIL released, rather than fail the loop.
            _native.wait_fd(epfd, _POLLIN, timeout)
            return
        try:
            wait.parker.park()
        except BaseException:
            # The wait goes on in the helper: the pipe ends it, the next select (or
            # close) takes its outcome.
            self._pending = wait
            self._poke()
            raise
        if wait.error is not None:
            raise wait.error

    def _finish_pending(self) -> None:
        wait = self._pending
        assert wait is not None
        while not wait.done:
            wait.parker.park()
        self._pending = None

    def _poke(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # already full of pokes

    def _drain(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Closes the epoll set and the wake pipe (after any helper wait has ended)."""
        if self._wake_r < 0:
            return
        if self._pending is not None:
            self._poke()
            self._finish_pending()
        super().close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1


#: The transport extras made only when asked for (or when the socket closes).
_LAZY_EXTRAS = ("socket", "sockname")


#: The stock default low-water mark, as one shared object (the stock transport computes
#: a new int for each connection).
_DEFAULT_LOW_WATER = (64 * 1024) // 4


class _RingSocketTransport(asyncio.selector_events._SelectorSocketTransport):  # type: ignore[name-defined,misc]
    """The stock socket transport with reads of at most 64 KiB, and less memory held by
    each idle connection.

    The stock 256 KiB read allocates its bytes object above glibc's mmap threshold
    (128 KiB), so every read cost an ``mmap``, a ``mremap`` to the size received and a
    ``munmap``, with their page faults: about a fifth of an echo server's CPU here. A
    64 KiB object comes from the heap.

    What an idle connection holds, less than stock: the ``socket`` and ``sockname``
    extras are made when first asked for; the peer's host string is shared between
    connections from one host; the read callback is chosen by a flag, not kept as a
    second bound method; the default low-water mark is one shared int.
    """

    max_size = 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Made when first asked for, or as the socket closes (most connections are
        # never asked): a wrapper object, an address tuple and its string less per
        # connection held.
        for name in _LAZY_EXTRAS:
            self._extra.pop(name, None)
        peer = self._extra.get("peername")
        if type(peer) is tuple and peer and type(peer[0]) is str:
            # An equal tuple whose host string is the one other connections share.
            self._extra["peername"] = (sys.intern(peer[0]), *peer[1:])

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        super().set_protocol(protocol)
        self._buffered_reads = isinstance(protocol, asyncio.BufferedProtocol)
        # `_read_ready` below reads the flag instead (a bound method less held).
        self._read_ready_cb = None

    def _read_ready(self) -> None:
        if self._buffered_reads:
            self._read_ready__get_buffer()
        else:
            self._read_ready__data_received()

    def _set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        super()._set_write_buffer_limits(high, low)
        if self._low_water == _DEFAULT_LOW_WATER:  # type: ignore[has-type]
            self._low_water = _DEFAULT_LOW_WATER

    def _make_lazy_extras(self) -> None:
        sock = self._sock
        if sock is None:
            return
        if "socket" not in self._extra:
            self._extra["socket"] = asyncio.trsock.TransportSocket(sock)
        if "sockname" not in self._extra:
            try:
                self._extra["sockname"] = sock.getsockname()
            except OSError:
                self._extra["sockname"] = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name in _LAZY_EXTRAS and name not in self._extra:
            self._make_lazy_extras()
        return super().get_extra_info(name, default)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        # The socket goes at the end of this: what was asked later gets what stock does.
        self._make_lazy_extras()
        super()._call_connection_lost(exc)


_Handle = asyncio.events.Handle
_new_object = object.__new__
_copy_context = contextvars.copy_context

#: Whether ``asyncio.Handle`` has the fields ``RingEventLoop.call_soon`` fills in itself
#: (the stock ``Handle.__init__`` of 3.9 to 3.13); on another Python it calls the stock
#: path.
_HANDLE_FIELDS_KNOWN = set(getattr(_Handle, "__slots__", ())) == {
    "_callback",
    "_args",
    "_cancelled",
    "_loop",
    "_source_traceback",
    "_repr",
    "__weakref__",
    "_context",
}


class RingEventLoop(asyncio.unix_events._UnixSelectorEventLoop):  # type: ignore[name-defined]
    """The stock unix selector event loop over a :class:`RingSelector` (or ``selector``,
    if given), with a :class:`ringloom.VirtualThreadPool` as its default executor.

    Example::

        loop = RingEventLoop()
        try:
            assert loop.run_until_complete(asyncio.sleep(0, "done")) == "done"
        finally:
            loop.close()
    """

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        super().__init__(RingSelector() if selector is None else selector)

    def call_soon(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        """``loop.call_soon``: the stock ``Handle``, filled in here rather than through
        its ``__init__`` and the loop's ``_call_soon`` (two Python calls and a debug
        check fewer a callback); in debug mode, the stock path with its checks."""
        if self._debug or self._closed or not _HANDLE_FIELDS_KNOWN:  # type: ignore[attr-defined]
            stock: Any = super().call_soon(callback, *args, context=context)
            if stock._source_traceback:
                # Ends at this method's caller, as the stock loop's does.
                del stock._source_traceback[-1]
            return stock  # type: ignore[no-any-return]
        handle: Any = _new_object(_Handle)
        handle._context = _copy_context() if context is None else context
        handle._loop = self
        handle._callback = callback
        handle._args = args
        handle._cancelled = False
        handle._repr = None
        handle._source_traceback = None
        self._ready.append(handle)  # type: ignore[attr-defined]
        return handle  # type: ignore[no-any-return]

    def _make_socket_transport(
        self,
        sock: Any,
        protocol: asyncio.BaseProtocol,
        waiter: asyncio.Future[Any] | None = None,
        *,
        extra: dict[str, Any] | None = None,
        server: asyncio.Server | None = None,
    ) -> asyncio.Transport:
        return _RingSocketTransport(self, sock, protocol, waiter, extra, server)  # type: ignore[no-any-return]

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """``loop.run_in_executor``; the default executor (``executor`` None) is a
        ``VirtualThreadPool``, made at first use: ``func`` runs as a virtual thread."""
        if executor is None and getattr(self, "_default_executor", None) is None:
            self._check_closed()  # type: ignore[attr-defined]
            self._check_default_executor()  # type: ignore[attr-defined]
            self._default_executor = VirtualThreadPool()
        return super().run_in_executor(executor, func, *args)  # type: ignore[no-any-return]

    def set_default_executor(self, executor: concurrent.futures.Executor) -> None:
        """Sets the default executor: a ``ThreadPoolExecutor`` or a ``VirtualThreadPool``."""
        if isinstance(executor, VirtualThreadPool):
            self._default_executor = executor
            return
        super().set_default_executor(executor)  # type: ignore[arg-type]


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):  # type: ignore[misc,valid-type]
    """The default event loop policy, making :class:`RingEventLoop` loops.

    Example::

        asyncio.set_event_loop_policy(EventLoopPolicy())
        try:
            loop = asyncio.new_event_loop()
            assert isinstance(loop, RingEventLoop)
            loop.close()
        finally:
            asyncio.set_event_loop_policy(None)
    """

    _loop_factory = RingEventLoop


def new_event_loop() -> RingEventLoop:
    """A new :class:`RingEventLoop`; a ``loop_factory`` for ``asyncio.Runner``.

    Example::

        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(asyncio.sleep(0))
    """
    return RingEventLoop()


def install() -> None:
    """Makes :class:`EventLoopPolicy` the process's event loop policy, so that
    ``asyncio.run`` and ``asyncio.new_event_loop`` make ringloom loops.

    Example: ``ringloom.asyncio.install()`` before the program's ``asyncio.run(main())``.
    """
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run(main, debug=debug)`` on a new :class:`RingEventLoop`.

    Example::

        async def answer() -> int:
            return 42

        assert run(answer()) == 42
    """
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_compat(main, debug)


def _run_compat(main: Coroutine[Any, Any, T], debug: bool | None) -> T:
    """``asyncio.run`` for Pythons without ``asyncio.Runner`` (3.9, 3.10)."""
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("run() cannot be called from a running event loop")
    loop = new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def run_coroutine(
    coro: Coroutine[Any, Any, T],
    loop: asyncio.AbstractEventLoop,
    *,
    timeout: float | None = None,
) -> T:
    """Runs ``coro`` on ``loop`` (running in another thread or virtual thread) and
    returns its result; the calling virtual thread parks meanwhile (an OS thread blocks,
    GIL released). On ``timeout`` seconds the coroutine is cancelled and
    ``TimeoutError`` raised; so is it if the wait is interrupted.

    Example (in a virtual thread, with ``loop`` running elsewhere)::

        assert run_coroutine(asyncio.sleep(0, "hi"), loop) == "hi"
    """
    if asyncio.events._get_running_loop() is loop:
        raise RuntimeError("run_coroutine() would wait for the loop it runs on")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    parker = _native.Parker()
    future.add_done_callback(lambda _: parker.unpark())
    try:
        if not parker.park(timeout):
            raise TimeoutError(f"the coroutine did not end within {timeout} s")
    except BaseException:
        future.cancel()
        raise
    return future.result()
