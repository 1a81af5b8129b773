"""Virtual thread pools: many Python callables on a few ringloom workers (the
``pyferris.virtual_thread`` API; porting code is a change of the import line only).

A virtual thread runs one callable in a greenlet on a worker of the ringloom runtime.
When it blocks (``time.sleep``, sockets, files, locks) it parks and its worker runs
others meanwhile. CPU-bound Python still holds the GIL: virtual threads give concurrency
for waiting, not parallel computation of bytecode.

Example::

    from ringloom.virtual_thread import VirtualThreadPool

    def io_task(duration, message):
        time.sleep(duration)
        return f"Completed: {message}"

    with VirtualThreadPool(max_platform_threads=2) as pool:
        print(pool.submit(io_task, 0.1, "Task 1").result())
        results = pool.starmap(io_task, [(0.1, f"t{i}") for i in range(10)])

The pool lives in ``ringloom._pool``, its asyncio face in ``ringloom._aio``, the shared
pool of the helpers in ``ringloom._shared``; this module gathers them under the names
that API has, with its benchmarking helper.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

from ringloom._checks import check_callable, check_count
from ringloom._pool import (
    DEFAULT_PLATFORM_THREADS,
    DEFAULT_PRIORITY,
    MAP_FILES_OPEN,
    VirtualThreadPool,
)
from ringloom._shared import run_in_virtual_thread, virtual_map

if TYPE_CHECKING:
    from ringloom._aio import AsyncVirtualThreadPool

__all__ = [
    "DEFAULT_PLATFORM_THREADS",
    "DEFAULT_PRIORITY",
    "MAP_FILES_OPEN",
    "AsyncVirtualThreadPool",
    "VirtualThreadPool",
    "run_in_virtual_thread",
    "virtual_map",
    "virtual_thread_benchmark",
]


def virtual_thread_benchmark(
    fn: Callable[..., Any],
    test_cases: Iterable[Any],
    traditional_threads: bool = True,
    max_platform_threads: int = 4,
) -> dict[str, Any]:
    """Times ``fn`` over ``test_cases`` in virtual threads and, optionally, OS threads.

    Each test case is a tuple of arguments (anything else is one argument). Returns
    ``{'virtual_threads': {'time': s, 'results': [...]}, 'traditional_threads':
    {'time': s, 'results': [...]} or None, 'speedup': traditional / virtual or None,
    'tasks': n, 'max_platform_threads': n}``. One run each: a rough comparison.

    Example::

        r = virtual_thread_benchmark(sum, [([1, 2],), ([3],)])
        print(f"{r['speedup']:.2f}x")
    """
    check_callable(fn)
    check_count("max_platform_threads", max_platform_threads)
    cases = [case if isinstance(case, tuple) else (case,) for case in test_cases]

    start = time.perf_counter()
    with VirtualThreadPool(max_platform_threads=max_platform_threads) as pool:
        vt_results = pool.starmap(fn, cases)
    vt_time = time.perf_counter() - start
    report: dict[str, Any] = {
        "virtual_threads": {"time": vt_time, "results": vt_results},
        "traditional_threads": None,
        "speedup": None,
        "tasks": len(cases),
        "max_platform_threads": max_platform_threads,
    }
    if traditional_threads:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_platform_threads) as executor:
            tt_results = [f.result() for f in [executor.submit(fn, *c) for c in cases]]
        tt_time = time.perf_counter() - start
        report["traditional_threads"] = {"time": tt_time, "results": tt_results}
        report["speedup"] = tt_time / vt_time if vt_time > 0 else float("inf")
    return report


def __getattr__(name: str) -> Any:
    # ``AsyncVirtualThreadPool`` imports asyncio (a third of ringloom's import time):
    # loaded on first use, not by ``import ringloom``.
    if name == "AsyncVirtualThreadPool":
        from ringloom._aio import AsyncVirtualThreadPool

        globals()[name] = AsyncVirtualThreadPool
        return AsyncVirtualThreadPool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
