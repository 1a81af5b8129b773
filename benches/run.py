"""Runs every benchmark suite, interleaved, and writes the report.

    python benches/run.py [--quick] [--rounds N] [--only PREFIX] [--suite rust|python]

Each round runs every case of every workload once; the order of the peers inside a
workload rotates from round to round, so a slow stretch of this shared 2-core machine
falls on every peer alike. Raw records go to ``benches/results.json`` (or
``results-quick.json``, or ``results-partial.json`` when ``--only`` or ``--suite`` picks
some workloads); ``benches/report.py`` turns them into ``RESULTS.md`` and charts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from suites.common import Case, SuiteUnavailable, Workload  # noqa: E402

SUITES = ("rust", "python")


def _run(case: Case) -> dict[str, Any]:
    started = time.monotonic()
    record: dict[str, Any] = {"workload": case.workload, "peer": case.peer, "argv": case.argv}
    try:
        done = subprocess.run(
            case.argv,
            cwd=case.cwd or ROOT,
            env={**os.environ, **case.env},
            capture_output=True,
            text=True,
            timeout=case.timeout,
        )
    except subprocess.TimeoutExpired:
        record.update(ok=False, error=f"killed after {case.timeout:.0f} s")
        return record
    except OSError as err:
        record.update(ok=False, error=f"could not start: {err}")
        return record
    record["seconds"] = round(time.monotonic() - started, 3)
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    parsed: dict[str, Any] | None = None
    if lines:
        try:
            parsed = json.loads(lines[-1])
        except json.JSONDecodeError:
            parsed = None
    if done.returncode != 0 or not isinstance(parsed, dict) or "metrics" not in parsed:
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        record.update(ok=False, error=f"exit {done.returncode}: " + " | ".join(tail))
        return record
    record.update(ok=True, metrics=parsed["metrics"], info=parsed.get("info", {}))
    return record


def _machine() -> dict[str, Any]:
    def out(*argv: str) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "unavailable"

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = 0
    return {
        "kernel": platform.release(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "python": platform.python_version(),
        "rustc": out("rustc", "--version"),
        "loadavg_at_start": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under 5 minutes")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3, quick 2)")
    parser.add_argument("--only", default="", help="run only workloads starting with this")
    parser.add_argument("--suite", choices=SUITES, action="append", help="run only this suite")
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 3)
    if rounds < 1:
        parser.error("--rounds must be at least 1")

    workloads: dict[str, Workload] = {}
    cases: list[Case] = []
    unavailable: dict[str, str] = {}
    for name in args.suite or SUITES:
        suite = importlib.import_module(f"suites.{name}")
        try:
            print(f"== preparing the {name} suite", flush=True)
            suite.prepare(args.quick)
            suite_cases = [c for c in suite.cases(args.quick) if c.workload.startswith(args.only)]
        except SuiteUnavailable as err:
            unavailable[name] = str(err)
            print(f"   unavailable: {err}", flush=True)
            continue
        workloads.update(suite.WORKLOADS)
        cases.extend(suite_cases)

    by_workload: dict[str, list[Case]] = {}
    for case in cases:
        by_workload.setdefault(case.workload, []).append(case)
    records: list[dict[str, Any]] = []
    # A run of some workloads only must not replace the full run's published report.
    partial = bool(args.only or args.suite) and not args.quick
    name = (
        "results-quick.json"
        if args.quick
        else "results-partial.json"
        if partial
        else "results.json"
    )
    machine = _machine()

    def save(rounds_done: int) -> dict[str, Any]:
        """Written after every round, so a run cut short still leaves its records."""
        results = {
            "quick": args.quick,
            "partial": partial,
            "rounds": rounds_done,
            "machine": machine,
            "unavailable": unavailable,
            "workloads": {
                key: {**w.__dict__, "goals": [g.__dict__ for g in w.goals]}
                for key, w in workloads.items()
            },
            "records": records,
        }
        (HERE / name).write_text(json.dumps(results, indent=1, default=str))
        return results

    results: dict[str, Any] = {}
    began = time.monotonic()
    for round_no in range(rounds):
        for workload, group in by_workload.items():
            shift = round_no % len(group)
            for case in group[shift:] + group[:shift]:
                clock = time.monotonic() - began
                print(
                    f"-- [{clock // 60:02.0f}:{clock % 60:02.0f}] round {round_no + 1}/{rounds} "
                    f"{workload} {case.peer}",
                    flush=True,
                )
                record = _run(case)
                record["round"] = round_no
                records.append(record)
                shown = record.get("metrics") if record["ok"] else record.get("error")
                print(f"   {shown}", flush=True)
        results = save(round_no + 1)
        print(f"== round {round_no + 1} saved to benches/{name}", flush=True)
    from report import write_report

    write_report(results, quick=args.quick, partial=partial)
    return 0


if __name__ == "__main__":
    sys.exit(main())
