"""Fixtures of the ``ringloom.asyncio`` tests: ``run_loop`` runs a coroutine function on a
new ringloom loop, on the main thread and (a second parameter) in a virtual thread;
``hang_guard`` (every test) ends a run that hangs, with every thread's stack."""

from __future__ import annotations

import faulthandler
from collections.abc import Coroutine, Iterator
from typing import Any, Callable

import pytest
import ringloom
import ringloom.asyncio
import ringloom.monkey
from support import TIMEOUT

RunLoop = Callable[..., Any]

#: Seconds a test of this directory may take before the run is ended with every thread's
#: stack (a lost wake-up is then a failure, not a stuck run). Far above any test's time.
HANG_LIMIT = 180


@pytest.fixture(autouse=True)
def hang_guard() -> Iterator[None]:
    """Ends the process with all stacks if the test outlives ``HANG_LIMIT``."""
    faulthandler.dump_traceback_later(HANG_LIMIT, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=["main-thread", "virtual-thread"])
def run_loop(request: pytest.FixtureRequest) -> Iterator[RunLoop]:
    """``run_loop(fn, *args, debug=None)``: ``ringloom.asyncio.run(fn(*args))`` on the
    main thread, or in a virtual thread of a one-worker Loom; its result."""
    if request.param == "main-thread":

        def on_main(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, **kw: Any) -> Any:
            return ringloom.asyncio.run(fn(*args), **kw)

        yield on_main
        return
    # Each virtual thread keeps its own running loop (several loops on one worker).
    ringloom.monkey.patch_asyncio()
    with ringloom.Loom(workers=1) as loom:

        def in_vthread(fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any, **kw: Any) -> Any:
            def body() -> Any:
                assert ringloom.in_virtual_thread()
                return ringloom.asyncio.run(fn(*args), **kw)

            return ringloom.submit(loom, body).result(timeout=TIMEOUT)

        yield in_vthread
