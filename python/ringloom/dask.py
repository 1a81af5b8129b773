"""Dask workers whose tasks run in virtual threads.

``VirtualThreadExecutorPlugin`` is a ``distributed`` worker plugin: on each worker it
patches the worker process (``ringloom.monkey.patch_thread``, ``patch_queue``,
``patch_logging``), gives dask's per-thread task state a per-virtual-thread
``threading.local``, and installs a ``VirtualThreadPoolExecutor`` as the worker's
executor. Tasks that wait (sleeps, sockets, files, locks) then overlap by the thousand
in each worker process, and ``get_worker()``, task annotations and logging keep working.

How many tasks a worker runs at once is still its ``nthreads``: start the workers with
many (``LocalCluster(threads_per_worker=1000)``, ``dask worker --nthreads 1000``); the
executor makes those threads virtual, so no OS thread is made for each. Tasks that
``secede`` are not supported.

Example::

    from distributed import Client, LocalCluster
    from ringloom.dask import VirtualThreadExecutorPlugin

    with LocalCluster(n_workers=2, threads_per_worker=1000) as cluster, Client(cluster) as client:
        client.register_plugin(VirtualThreadExecutorPlugin())
        client.gather(client.map(time.sleep, [0.5] * 2000, pure=False))
"""

from __future__ import annotations

import sys
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from ringloom import monkey
from ringloom.virtual_thread import VirtualThreadPool

__all__ = ["VirtualThreadExecutorPlugin", "VirtualThreadPoolExecutor"]

# Modules that took dask's per-thread task state (a threading.local made at their
# import) by name.
_THREAD_STATE_HOLDERS = (
    "dask.context",
    "distributed.utils",
    "distributed.client",
    "distributed.actor",
    "distributed.worker",
)


class VirtualThreadPoolExecutor(VirtualThreadPool):
    """A ``VirtualThreadPool`` under the name ``distributed`` looks for: a worker runs a
    task in its caller's ``contextvars`` context (where ``get_worker()`` finds the
    worker) only on an executor whose type name says "ThreadPoolExecutor"."""


def _isolate_task_state() -> None:
    """Dask's per-thread task state (``thread_state``), per virtual thread."""
    from ringloom import threads

    state = threads.local()
    for name in _THREAD_STATE_HOLDERS:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "thread_state"):
            monkey.replace(module, "thread_state", state)


class VirtualThreadExecutorPlugin(WorkerPlugin):  # type: ignore[misc]
    """Installs a ``VirtualThreadPoolExecutor`` as a worker's ``executor`` (default:
    the worker's default executor), after patching the worker process.

    ``max_platform_threads`` and ``max_virtual_threads`` go to the pool (defaults: the
    pool's); ``patch=False`` leaves the process unpatched (stock locks in tasks then
    block a runtime worker).
    """

    name = "ringloom-virtual-threads"

    def __init__(
        self,
        executor: str = "default",
        max_platform_threads: int | None = None,
        max_virtual_threads: int | None = None,
        patch: bool = True,
    ) -> None:
        self.executor = executor
        self.max_platform_threads = max_platform_threads
        self.max_virtual_threads = max_virtual_threads
        self.patch = patch
        self._pool: VirtualThreadPoolExecutor | None = None

    def setup(self, worker: Any) -> None:
        if self.patch:
            monkey.patch_thread()
            monkey.patch_queue()
            monkey.patch_logging()
            _isolate_task_state()
        self._pool = VirtualThreadPoolExecutor(
            max_platform_threads=self.max_platform_threads,
            max_virtual_threads=self.max_virtual_threads,
        )
        replaced = worker.executors.get(self.executor)
        worker.executors[self.executor] = self._pool
        if replaced is not None and replaced is not self._pool:
            replaced.shutdown(wait=False)

    def teardown(self, worker: Any) -> None:
        if self._pool is not None:
            if worker.executors.get(self.executor) is self._pool:
                del worker.executors[self.executor]
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = None  # a pool stays in its process
        return state
