"""``select.select``, ``select.poll`` and ``selectors`` that park an intercepting
virtual thread until one of several descriptors is ready (one ring poll each; the first
completion or the timeout wins)."""

from __future__ import annotations

import errno
import math
import operator
import os
import select as _select
import selectors as _selectors
from collections.abc import Iterable
from typing import Any

from ringloom import _native, monkey
from ringloom.green._common import intercepting

POLLIN = _select.POLLIN
POLLOUT = _select.POLLOUT
POLLPRI = _select.POLLPRI
POLLERR = _select.POLLERR
POLLHUP = _select.POLLHUP
POLLNVAL = _select.POLLNVAL

stock_select = _select.select
stock_poll = _select.poll
stock_default_selector = _selectors.DefaultSelector
stock_select_selector_select = _selectors.SelectSelector._select  # type: ignore[attr-defined]
stock_poll_selector_cls = _selectors.PollSelector._selector_cls  # type: ignore[attr-defined]
stock_epoll_select: Any = getattr(getattr(_selectors, "EpollSelector", None), "select", None)


def _fileno(obj: Any) -> int:
    if isinstance(obj, int):
        fd = obj
    else:
        try:
            method = obj.fileno
        except AttributeError:
            raise TypeError("argument must be an int, or have a fileno() method.") from None
        fd = method()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        raise TypeError("timeout must be a float or None") from None
    if math.isnan(seconds):
        raise ValueError("Invalid value NaN (not a number)")
    if seconds < 0:
        raise ValueError("timeout must be non-negative")
    return seconds


def _descriptors(given: Iterable[Any]) -> tuple[list[Any], list[int]]:
    """The objects of one of ``select``'s sets and their descriptors, read as stock
    ``select`` reads them: a list or tuple by index while its length lasts (a
    ``fileno()`` may shorten it), anything else through ``list()`` first."""
    if isinstance(given, (list, tuple)):
        sequence: list[Any] | tuple[Any, ...] = given
    else:
        try:
            sequence = list(given)
        except TypeError:
            raise TypeError("arguments 1-3 must be sequences") from None
    objects: list[Any] = []
    numbers: list[int] = []
    index = 0
    while index < len(sequence):
        obj = sequence[index]
        numbers.append(_fileno(obj))
        objects.append(obj)
        index += 1
    return objects, numbers


def select(
    rlist: Iterable[Any],
    wlist: Iterable[Any],
    xlist: Iterable[Any],
    timeout: float | None = None,
    /,
) -> tuple[list[Any], list[Any], list[Any]]:
    """``select.select``: parks the virtual thread when intercepting."""
    if not intercepting():
        return stock_select(rlist, wlist, xlist, timeout)
    seconds = _seconds(timeout)
    masks = (POLLIN, POLLOUT, POLLPRI)
    wanted: dict[int, int] = {}
    lists = []
    fds = []
    for given, mask in zip((rlist, wlist, xlist), masks):
        objects, numbers = _descriptors(given)
        lists.append(objects)
        fds.append(numbers)
        for fd in numbers:
            wanted[fd] = wanted.get(fd, 0) | mask
    ready = dict(_native.wait_fds(list(wanted.items()), seconds))
    if any(revents & POLLNVAL for revents in ready.values()):
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    # What select(2) reports for each set, in poll(2) terms.
    shown = (POLLIN | POLLHUP | POLLERR, POLLOUT | POLLERR, POLLPRI)
    return tuple(  # type: ignore[return-value]
        [obj for obj, fd in zip(objects, numbers) if ready.get(fd, 0) & mask]
        for objects, numbers, mask in zip(lists, fds, shown)
    )


class Poll:
    """What ``select.poll()`` makes: ``poll()`` parks the virtual thread when
    intercepting, and is the stock poll elsewhere. Made only by :func:`poll`, as the
    stock type is made only by ``select.poll()``."""

    _stock: Any
    _fds: dict[int, int]
    _polling: bool

    def __new__(cls, *args: Any, **kwargs: Any) -> Poll:
        raise TypeError(f"cannot create '{cls.__module__}.{cls.__name__}' instances")

    @classmethod
    def _make(cls) -> Poll:
        self: Poll = object.__new__(cls)
        self._stock = stock_poll()
        self._fds = {}
        self._polling = False
        return self

    def register(self, fd: Any, eventmask: int = POLLIN | POLLPRI | POLLOUT, /) -> None:
        self._stock.register(fd, eventmask)
        self._fds[_fileno(fd)] = eventmask

    def modify(self, fd: Any, eventmask: int, /) -> None:
        self._stock.modify(fd, eventmask)
        self._fds[_fileno(fd)] = eventmask

    def unregister(self, fd: Any, /) -> None:
        self._stock.unregister(fd)
        del self._fds[_fileno(fd)]

    def poll(self, timeout: float | None = None, /) -> list[tuple[int, int]]:
        if self._polling:
            raise RuntimeError("concurrent poll() invocation")
        if not intercepting():
            return self._stock.poll(timeout)  # type: ignore[no-any-return]
        seconds = _poll_seconds(timeout)
        # poll(2) always reports these three, asked or not.
        always = POLLERR | POLLHUP | POLLNVAL
        self._polling = True
        try:
            ready = dict(_native.wait_fds(list(self._fds.items()), seconds))
        finally:
            self._polling = False
        return [
            (fd, ready[fd] & (mask | always))
            for fd, mask in self._fds.items()
            if ready.get(fd, 0) & (mask | always)
        ]


_INT_MAX = 2**31 - 1
_NS_LIMIT = 2**63


def _poll_seconds(timeout: Any) -> float | None:
    """``poll()``'s timeout (milliseconds) in seconds, read as stock reads it: None or
    any negative value waits for ever, a fraction of a millisecond rounds up, more
    than ``INT_MAX`` milliseconds is ``OverflowError``."""
    if timeout is None:
        return None
    if isinstance(timeout, float):
        if math.isnan(timeout):
            raise ValueError("Invalid value NaN (not a number)")
        if not -_NS_LIMIT < timeout * 1e6 < _NS_LIMIT:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
        if timeout < 0:
            return None
        ms = math.ceil(timeout)
    else:
        try:
            ms = operator.index(timeout)
        except TypeError:
            raise TypeError("timeout must be an integer or None") from None
        if not -_NS_LIMIT <= ms * 10**6 < _NS_LIMIT:
            raise OverflowError("timestamp too large to convert to C _PyTime_t")
        if ms < 0:
            return None
    if ms > _INT_MAX:
        raise OverflowError("timeout is too large")
    return ms / 1000


def poll() -> Poll:
    """``select.poll()``: a polling object whose ``poll()`` parks an intercepting
    virtual thread."""
    return Poll._make()


class PollSelector(_selectors.PollSelector):
    """``selectors.PollSelector`` on the parking ``poll``."""

    _selector_cls = staticmethod(poll)  # type: ignore[assignment]


def _epoll_select(self: Any, timeout: float | None = None) -> Any:
    """``EpollSelector.select``: an epoll descriptor is itself pollable, so an
    intercepting virtual thread parks on it and then collects without waiting."""
    if not intercepting() or (timeout is not None and timeout <= 0):
        return stock_epoll_select(self, timeout)
    _native.wait_fd(self._selector.fileno(), POLLIN, timeout)
    return stock_epoll_select(self, 0)


class DefaultSelector:
    """``selectors.DefaultSelector``: a parking ``PollSelector`` when made in an
    intercepting virtual thread, the stock default elsewhere."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
        if intercepting():
            return PollSelector(*args, **kwargs)
        return stock_default_selector(*args, **kwargs)


def _patches() -> list[tuple[Any, str, Any]]:
    patches: list[tuple[Any, str, Any]] = [
        (_select, "select", select),
        (_select, "poll", poll),
        (_selectors, "DefaultSelector", DefaultSelector),
        (_selectors.SelectSelector, "_select", staticmethod(select)),
        # The stock PollSelector too (subprocess.communicate, socket.sendfile,
        # socketserver): the parking poll is the stock one outside intercepting virtual
        # threads.
        (_selectors.PollSelector, "_selector_cls", staticmethod(poll)),
    ]
    if stock_epoll_select is not None:
        patches.append((_selectors.EpollSelector, "select", _epoll_select))  # type: ignore[attr-defined]
    return patches


def patch() -> None:
    for target, name, value in _patches():
        monkey.replace(target, name, value)


def unpatch() -> None:
    for target, name, _ in _patches():
        monkey.restore(target, name)
