"""What every patch shares: the dispatch test and the stock functions it falls back to."""

from __future__ import annotations

from typing import Any, Callable

from ringloom import _native

#: True inside a virtual thread whose blocking calls are intercepted (started with
#: ``is_blocking`` None or True). Resolved once: the pool's native ``intercepting`` when
#: the build has it, else every virtual thread counts.
intercepting: Callable[[], bool] = getattr(_native, "intercepting", _native.in_virtual_thread)


def dress_as_stock(methods: dict[str, Any], stock: dict[str, Any], owner: str) -> None:
    """Gives each patched method the name, docstring and ``__wrapped__`` of the stock
    method it replaces, so that help(), tracebacks and introspection read as stock."""
    for name, method in methods.items():
        method.__name__ = name
        method.__qualname__ = f"{owner}.{name}"
        method.__doc__ = stock[name].__doc__
        method.__wrapped__ = stock[name]
