import concurrent.futures
from types import TracebackType
from typing import Any, Callable

class Loom:
    def __init__(self, workers: int = 2) -> None: ...
    @property
    def workers(self) -> int: ...
    def spawn(
        self,
        func: Callable[..., Any],
        future: concurrent.futures.Future[Any],
        intercept: bool = True,
        priority: int = 128,
        args: tuple[Any, ...] | None = None,
    ) -> None:
        """Runs ``func(*args)`` in a new virtual thread, its outcome to ``future``.
        ``priority`` (0..255, lower first) orders the ready virtual threads of a worker."""
    def spawn_batch(
        self,
        func: Callable[..., Any],
        calls: list[tuple[Any, ...]],
        batch: Batch,
        intercept: bool = True,
        priority: int = 128,
    ) -> None:
        """Runs ``func(*calls[i])`` in a new virtual thread for each ``i``; outcome ``i``
        goes to place ``i`` of ``batch``. The calls go out in chunks, not a task each."""
    def stats(self) -> dict[str, Any]: ...
    def holding(self) -> list[tuple[int, int, float]]:
        """``(thread_ident, episode, seconds)`` per worker running a virtual thread
        now, for the watchdog."""
    def close(self) -> None:
        """Stops the workers; RuntimeError on one of them (it would wait for itself)."""
    def on_worker(self) -> bool:
        """Whether the caller runs on one of this Loom's workers."""
    def __enter__(self) -> Loom: ...
    def __exit__(
        self,
        ty: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

def sleep(seconds: float) -> None: ...
def in_virtual_thread() -> bool: ...
def wait_fd(fd: int, events: int, timeout: float | None = None) -> int: ...
def intercepting() -> bool:
    """True in a virtual thread started with interception on (``is_blocking`` None or
    True): the interception layer parks its blocking calls only then."""

def wait_fds(fds: list[tuple[int, int]], timeout: float | None = None) -> list[tuple[int, int]]: ...
def forget_after_fork() -> int:
    """In the child of ``os.fork()``: leaks every open ``Loom``'s runtime (its worker
    threads do not exist there) and leaves those Looms closed; how many it took.
    ``ringloom._fork`` registers it with ``os.register_at_fork``."""

def blocking(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

class Batch:
    """The shared completion of ``Loom.spawn_batch`` (``VirtualThreadPool.map``).

    ``results[i]`` gets call ``i``'s value; the error of the lowest index is kept and
    skips the later calls not started; ``on_done(batch)`` runs once all are over."""
    def __init__(self, results: list[Any], on_done: Callable[[Batch], object]) -> None: ...
    def cancel(self) -> None:
        """Skips every call not started yet."""
    @property
    def remaining(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def skipped(self) -> int: ...
    @property
    def error(self) -> tuple[int, BaseException] | None: ...

class Parker:
    """One waiter's wake-up slot (``ringloom.sync``)."""
    def __init__(self) -> None: ...
    def park(self, timeout: float | None = None) -> bool:
        """Waits for ``unpark`` (True) or ``timeout`` (False): parks a virtual thread,
        blocks an OS thread with the GIL released."""
    def unpark(self) -> None:
        """Wakes the park in progress (or makes the next one return at once); any
        thread."""

class Event:
    """An event flag (``threading.Event``'s interface): ``wait`` parks a virtual thread
    and blocks an OS thread (GIL released, Ctrl-C seen); any thread may ``set`` it."""
    def __init__(self) -> None: ...
    def is_set(self) -> bool: ...
    def isSet(self) -> bool: ...  # noqa: N802 (the threading alias)
    def set(self) -> None: ...
    def clear(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool:
        """True once set; on ``timeout`` (seconds, not negative) the flag then."""

# Descriptor I/O for the patched open(), os.read and os.write (src/file.rs): park a
# virtual thread while the call waits on the ring; the plain syscall elsewhere.
def file_readinto(fd: int, buffer: Any, offset: int = -1) -> int: ...
def file_read(fd: int, size: int, offset: int = -1) -> bytes: ...
def file_write(fd: int, data: Any, offset: int = -1, nowait_first: bool = True) -> int: ...
def file_open(path: bytes, flags: int, mode: int = 0o666) -> int: ...
