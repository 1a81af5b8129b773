"""What every patch shares: the dispatch test and the stock functions it falls back to."""

from __future__ import annotations

from typing import Callable

from ringloom import _native

#: True inside a virtual thread whose blocking calls are intercepted (started with
#: ``is_blocking`` None or True). Resolved once: the pool's native ``intercepting`` when
#: the build has it, else every virtual thread counts.
intercepting: Callable[[], bool] = getattr(_native, "intercepting", _native.in_virtual_thread)
