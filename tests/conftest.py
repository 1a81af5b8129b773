"""Fixtures every test layer uses: a ``Loom`` of two workers, or of one (on one worker a
virtual thread blocked in a call holds the only worker, so a test that passes shows the
call parked)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ringloom import Loom


@pytest.fixture
def loom() -> Iterator[Loom]:
    with Loom(workers=2) as loom:
        yield loom


@pytest.fixture
def one_worker() -> Iterator[Loom]:
    with Loom(workers=1) as loom:
        yield loom
