"""``time.sleep`` that parks an intercepting virtual thread on a ring timer."""

from __future__ import annotations

import math
import time as _time

from ringloom import _native, monkey
from ringloom.green._common import intercepting

stock_sleep = _time.sleep

# The largest sleep CPython accepts (its _PyTime_t counts nanoseconds in 64 bits).
_MAX_SECONDS = (2**63 - 1) / 1e9


def sleep(secs: float, /) -> None:
    """``time.sleep``: parks the virtual thread when intercepting, else the stock call."""
    # The common case first, in as few steps as it takes (NaN fails both comparisons).
    kind = type(secs)
    if (kind is float or kind is int) and 0 <= secs <= _MAX_SECONDS and intercepting():
        _native.sleep(secs)
        return None
    return _checked_sleep(secs)


def _checked_sleep(secs: float) -> None:
    if not intercepting():
        return stock_sleep(secs)
    # The stock validation: a float (or subclass), or anything with __index__.
    if isinstance(secs, float):
        value = float(secs)
        if math.isnan(value):
            raise ValueError("Invalid value NaN (not a number)")
    else:
        try:
            value = secs.__index__()  # type: ignore[union-attr]
        except AttributeError:
            raise TypeError(
                f"'{type(secs).__name__}' object cannot be interpreted as an integer"
            ) from None
    if value < 0:
        raise ValueError("sleep length must be non-negative")
    if value > _MAX_SECONDS:
        raise OverflowError("timestamp too large to convert to C _PyTime_t")
    _native.sleep(float(value))
    return None


sleep.__wrapped__ = stock_sleep  # type: ignore[attr-defined]


def patch() -> None:
    monkey.replace(_time, "sleep", sleep)


def unpatch() -> None:
    monkey.restore(_time, "sleep")
