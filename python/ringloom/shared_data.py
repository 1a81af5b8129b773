"""Containers that OS threads and virtual threads share: ``create_safe_shared_data``.

Each operation is atomic. The dict, counter and array keep their state under a plain
``_thread`` lock that no operation holds across a park or a call into user code that
could park (they only touch builtin containers), so a virtual thread never parks
holding it and the lock is held for a few hundred nanoseconds at most: waiting for it
costs less than a switch would. The queue's blocking ``pop`` waits on
:class:`ringloom.Queue`, so it parks a virtual thread and blocks an OS thread.

Example::

    from ringloom.safe_thread import create_safe_shared_data

    hits = create_safe_shared_data("counter", initial_value=0)
    hits.increment()
    assert hits.get() == 1
"""

from __future__ import annotations

import _thread
import queue as _queue
from collections.abc import Iterable, Iterator
from typing import Any

from ringloom.sync import Queue

__all__ = ["SharedArray", "SharedCounter", "SharedDict", "SharedQueue", "create_safe_shared_data"]

_MISSING: Any = object()


class SharedDict:
    """A dict: ``put``/``get``/``delete``/``keys``/``items``, and ``d[k]``, ``k in d``,
    ``len(d)``, iteration over a snapshot of the keys."""

    def __init__(self, initial: Any = None) -> None:
        self._lock = _thread.allocate_lock()
        self._data: dict[Any, Any] = dict(initial) if initial is not None else {}

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value

    set = put

    def get(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def delete(self, key: Any) -> bool:
        """Removes ``key``; False when it was not there."""
        with self._lock:
            return self._data.pop(key, _MISSING) is not _MISSING

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        with self._lock:
            if default is _MISSING:
                return self._data.pop(key)
            return self._data.pop(key, default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        with self._lock:
            return self._data.setdefault(key, default)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        with self._lock:
            self._data.update(other, **kwargs)

    def contains(self, key: Any) -> bool:
        with self._lock:
            return key in self._data

    def keys(self) -> list[Any]:
        with self._lock:
            return list(self._data)

    def values(self) -> list[Any]:
        with self._lock:
            return list(self._data.values())

    def items(self) -> list[tuple[Any, Any]]:
        with self._lock:
            return list(self._data.items())

    def size(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def to_dict(self) -> dict[Any, Any]:
        with self._lock:
            return dict(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def __getitem__(self, key: Any) -> Any:
        with self._lock:
            return self._data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        with self._lock:
            del self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"SharedDict({self.to_dict()!r})"


class SharedQueue:
    """A FIFO queue: ``push``, ``pop`` (``None`` when empty, or waits with
    ``blocking=True`` up to ``timeout``), ``len(q)``; ``get``/``put`` with the
    ``queue.Queue`` behaviour (``queue.Empty`` on timeout)."""

    def __init__(self, initial: Iterable[Any] | None = None) -> None:
        self._queue = Queue()
        for item in initial or ():
            self._queue.put(item)

    def push(self, item: Any) -> None:
        self._queue.put(item)

    put = push

    def pop(self, blocking: bool = False, timeout: float | None = None) -> Any:
        """The oldest item; ``None`` if there is none (after waiting up to ``timeout``
        seconds, forever for ``None``, with ``blocking=True``)."""
        if timeout is not None and timeout < 0:
            raise ValueError("timeout value must be a non-negative number")
        try:
            return self._queue.get(blocking, timeout if blocking else None)
        except _queue.Empty:
            return None

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout value must be a non-negative number")
        return self._queue.get(block, timeout)

    def size(self) -> int:
        return self._queue.qsize()

    def empty(self) -> bool:
        return self._queue.empty()

    def __len__(self) -> int:
        return self._queue.qsize()

    def __iter__(self) -> Iterator[Any]:
        with self._queue.mutex:
            return iter(list(self._queue.queue))

    def __repr__(self) -> str:
        return f"SharedQueue(size={len(self)})"


class SharedCounter:
    """An integer with atomic ``increment``, ``decrement``, ``add`` (each returns the
    new value), ``get`` and ``set``; ``int(c)`` works."""

    def __init__(self, initial: Any = None) -> None:
        if initial is None:
            initial = 0
        if isinstance(initial, bool) or not isinstance(initial, int):
            raise TypeError(f"a counter starts from an int, not {type(initial).__name__}")
        self._lock = _thread.allocate_lock()
        self._value = initial

    def add(self, n: int) -> int:
        with self._lock:
            self._value += n
            return self._value

    def increment(self, n: int = 1) -> int:
        return self.add(n)

    def decrement(self, n: int = 1) -> int:
        return self.add(-n)

    def get(self) -> int:
        return self._value

    value = property(get)

    def set(self, value: int) -> None:
        with self._lock:
            self._value = value

    def __int__(self) -> int:
        return self._value

    def __index__(self) -> int:
        return self._value

    def __repr__(self) -> str:
        return f"SharedCounter({self._value})"


class SharedArray:
    """A list of any objects: ``get``/``set``/``append``/``len``, and ``a[i]``,
    ``len(a)``, iteration over a snapshot."""

    def __init__(self, initial: Iterable[Any] | None = None) -> None:
        self._lock = _thread.allocate_lock()
        self._data: list[Any] = list(initial) if initial is not None else []

    def get(self, index: int) -> Any:
        with self._lock:
            return self._data[index]

    def set(self, index: int, value: Any) -> None:
        with self._lock:
            self._data[index] = value

    def append(self, value: Any) -> None:
        with self._lock:
            self._data.append(value)

    push = append

    def extend(self, values: Iterable[Any]) -> None:
        items = list(values)
        with self._lock:
            self._data.extend(items)

    def pop(self, index: int = -1) -> Any:
        with self._lock:
            return self._data.pop(index)

    def size(self) -> int:
        return len(self._data)

    def to_list(self) -> list[Any]:
        with self._lock:
            return list(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: Any) -> Any:
        return self.get(index)

    def __setitem__(self, index: Any, value: Any) -> None:
        self.set(index, value)

    def __contains__(self, value: Any) -> bool:
        with self._lock:
            return value in self._data

    def __iter__(self) -> Iterator[Any]:
        return iter(self.to_list())

    def __repr__(self) -> str:
        return f"SharedArray({self.to_list()!r})"


_KINDS: dict[str, type] = {
    "dict": SharedDict,
    "queue": SharedQueue,
    "counter": SharedCounter,
    "array": SharedArray,
}


def create_safe_shared_data(
    data_type: str, initial_value: Any = None, *, initial: Any = None
) -> SharedDict | SharedQueue | SharedCounter | SharedArray:
    """A shared container of kind ``"dict"``, ``"queue"``, ``"counter"`` or ``"array"``,
    starting from ``initial_value`` (``initial`` is the same).

    Example: ``create_safe_shared_data("array", [1, 2, 3]).get(0) == 1``
    """
    kind = _KINDS.get(data_type) if isinstance(data_type, str) else None
    if kind is None:
        raise ValueError(
            f"unknown shared data kind {data_type!r}: expected one of "
            + ", ".join(repr(k) for k in _KINDS)
        )
    if initial is not None:
        if initial_value is not None:
            raise TypeError("give initial_value or initial, not both")
        initial_value = initial
    return kind(initial_value)  # type: ignore[no-any-return]
