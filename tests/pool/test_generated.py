"""Generated programs over the pool's public API with ringloom's own primitives (the
rules and the model are in ``tests/generated.py``)."""

from __future__ import annotations

from pathlib import Path

from generated import GeneratedPrograms, run_programs
from hypothesis import seed


class PoolPrograms(GeneratedPrograms):
    """ringloom's ``Event``, ``Lock`` and ``queues.Queue`` (the defaults)."""


@seed(20261206)
def pool_program() -> PoolPrograms:
    """The programs' factory: its digest (not the machine's, which changes with every
    edit) keys the kept failures, and its seed makes every run generate the same
    programs after replaying them."""
    return PoolPrograms()


def test_generated_pool_programs() -> None:
    run_programs(pool_program, Path(__file__).with_name("generated-failures"), 150, 25)
