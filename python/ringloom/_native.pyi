import concurrent.futures
from types import TracebackType
from typing import Any, Callable

class Loom:
    def __init__(self, workers: int = 2) -> None: ...
    @property
    def workers(self) -> int: ...
    def spawn(
        self,
        func: Callable[[], Any],
        future: concurrent.futures.Future[Any],
        intercept: bool = True,
    ) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def holding(self) -> list[tuple[int, int, float]]:
        """``(thread_ident, episode, seconds)`` per worker running a virtual thread
        now, for the watchdog."""
    def close(self) -> None: ...
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
def blocking(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

class Parker:
    """One waiter's wake-up slot (``ringloom.sync``)."""
    def __init__(self) -> None: ...
    def park(self, timeout: float | None = None) -> bool:
        """Waits for ``unpark`` (True) or ``timeout`` (False): parks a virtual thread,
        blocks an OS thread with the GIL released."""
    def unpark(self) -> None:
        """Wakes the park in progress (or makes the next one return at once); any
        thread."""
