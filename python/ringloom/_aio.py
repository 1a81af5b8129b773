"""``AsyncVirtualThreadPool``: a ``VirtualThreadPool`` for asyncio code."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from typing import Any, Callable, TypeVar

from ringloom._checks import check_callable
from ringloom._pool import DEFAULT_PRIORITY, VirtualThreadPool

__all__ = ["AsyncVirtualThreadPool"]

T = TypeVar("T")


class AsyncVirtualThreadPool:
    """A ``VirtualThreadPool`` for asyncio code: ``await`` its results.

    Example::

        async with AsyncVirtualThreadPool() as pool:
            square = await pool.submit(pow, 3, 2)
            squares = await pool.map(abs, [-1, -2, -3])
    """

    def __init__(
        self,
        max_platform_threads: int | None = None,
        max_virtual_threads: int | None = None,
    ) -> None:
        self._pool = VirtualThreadPool(max_platform_threads, max_virtual_threads)

    @property
    def pool(self) -> VirtualThreadPool:
        """The underlying executor (also usable with ``loop.run_in_executor``)."""
        return self._pool

    async def submit(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
        **kwargs: Any,
    ) -> T:
        """Runs ``fn(*args, **kwargs)`` in a virtual thread and returns its result."""
        future = self._pool.submit(fn, *args, priority=priority, is_blocking=is_blocking, **kwargs)
        return await asyncio.wrap_future(future)

    async def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
    ) -> list[T]:
        """``[fn(*args) for args in zip(*iterables)]`` in virtual threads, a list."""
        check_callable(fn)
        futures = [
            self._pool.submit(fn, *args, priority=priority, is_blocking=is_blocking)
            for args in zip(*iterables)
        ]
        try:
            return list(await asyncio.gather(*(asyncio.wrap_future(f) for f in futures)))
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    async def starmap(
        self,
        fn: Callable[..., T],
        iterable: Iterable[Iterable[Any]],
        priority: int = DEFAULT_PRIORITY,
        is_blocking: bool | None = None,
    ) -> list[T]:
        """``[fn(*args) for args in iterable]`` in virtual threads, a list."""
        return await self.map(
            lambda args: fn(*args),
            [tuple(args) for args in iterable],
            priority=priority,
            is_blocking=is_blocking,
        )

    def get_stats(self) -> dict[str, Any]:
        """The underlying pool's ``get_stats()``."""
        return self._pool.get_stats()

    async def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Shuts the pool down without blocking the event loop."""
        if wait:
            await asyncio.get_running_loop().run_in_executor(
                None,
                functools.partial(self._pool.shutdown, wait=True, cancel_futures=cancel_futures),
            )
        else:
            self._pool.shutdown(wait=False, cancel_futures=cancel_futures)

    async def __aenter__(self) -> AsyncVirtualThreadPool:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.shutdown(wait=True)
