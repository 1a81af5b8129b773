"""Argument checks the pool API shares: one place for each message."""

from __future__ import annotations

from typing import Any

__all__ = ["check_callable", "check_count", "check_priority", "intercepts"]


def check_callable(fn: Any) -> None:
    """TypeError unless ``fn`` is callable (as calling it would say)."""
    if not callable(fn):
        raise TypeError(f"{type(fn).__name__!r} object is not callable")


def check_count(name: str, value: int | None) -> int | None:
    """``value``: None, or an int of at least 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def check_priority(priority: int) -> int:
    """A task priority: an int in 0..255."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, not {type(priority).__name__}")
    if not 0 <= priority <= 255:
        raise ValueError(f"priority must be in 0..255, got {priority}")
    return priority


def intercepts(is_blocking: bool | None) -> bool:
    """Whether a task submitted with ``is_blocking`` has its blocking calls parked."""
    return is_blocking is None or bool(is_blocking)
