"""What a suite gives the runner (``benches/run.py``).

A suite module defines ``WORKLOADS: dict[str, Workload]``, ``prepare(quick: bool) ->
None`` (builds and installs what its cases need; may raise ``SuiteUnavailable`` with a
reason) and ``cases(quick: bool) -> list[Case]``. The runner runs every case of a
workload once per round, in an order that rotates between rounds (interleaved, so a
slow minute of the machine hits every peer), and reads the last stdout line of each run
as JSON: ``{"metrics": {name: number, ...}, "info": {...}}``. A run that fails or
prints no such line is recorded as failed with its stderr tail; it is never dropped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


class SuiteUnavailable(RuntimeError):
    """A suite cannot run here (the reason goes into the report)."""


@dataclass(frozen=True)
class Goal:
    """A target of the issue, checked on medians: ours' ``metric`` against ``value``
    (kind ``"value"``), or against ``value`` times the best other peer's (kind
    ``"ratio"``; ``peer`` names one peer to compare with instead of the best)."""

    metric: str
    op: str  # ">=" or "<="
    value: float
    kind: str = "value"
    peer: str | None = None


@dataclass(frozen=True)
class Workload:
    """One row group of the report."""

    title: str
    #: The metric the ratio to the best peer is computed on.
    primary: str
    higher_is_better: bool
    #: Every metric to tabulate, in order, with its unit for the table header.
    metrics: dict[str, str]
    #: The issue's target and what was seen before, quoted in the report.
    target: str = ""
    seen: str = ""
    #: Anything else the reader of the row must know (a peer left out, and why).
    notes: str = ""
    #: Which peer is "ours" (the one the ratio is about).
    ours: str = "ringloom"
    #: The targets, checked in the report (optional: a target in words only is quoted).
    goals: tuple[Goal, ...] = ()


@dataclass(frozen=True)
class Case:
    workload: str
    peer: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    #: Seconds before the run is killed and recorded as failed.
    timeout: float = 300.0
    #: Working directory (None: the repository root).
    cwd: str | None = None


def install_package(package: str, command: str) -> None:
    """Installs ``package`` from the distribution (we run as root) unless ``command`` is
    on the path already; a failure leaves the rows that need it failed."""
    if shutil.which(command) or not shutil.which("apt-get"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
