"""Turns the runner's records into ``benches/RESULTS.md``, PNG charts and the README's
headline table. A quick run's records go to ``benches/RESULTS-quick.md`` and
``benches/charts-quick/`` instead (a run of some workloads only, to
``-partial``), and leave the README alone: a smoke run with small
sizes should not replace the full run's published numbers.

    python benches/report.py [results.json]

Every number is a median over the rounds of one run, shown with its min-max; "of best"
is the peer's median relative to the best peer's on the workload's primary metric
(1.00 is the best, lower is worse, whichever way the metric points). Goals are checked
on medians. A case that failed is listed with its error, never left out.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NOTES = HERE / "notes"


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "-"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.2f}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.1f}k"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _summaries(records: list[dict[str, Any]], workload: str) -> dict[str, dict[str, Any]]:
    """Per peer: metric -> (median, min, max), runs, failures."""
    peers: dict[str, dict[str, Any]] = {}
    for record in records:
        if record["workload"] != workload:
            continue
        peer = peers.setdefault(record["peer"], {"values": {}, "runs": 0, "errors": [], "info": {}})
        peer["runs"] += 1
        if not record["ok"]:
            peer["errors"].append(record.get("error", "failed"))
            continue
        peer["info"] = record.get("info") or peer["info"]
        for metric, value in record["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                peer["values"].setdefault(metric, []).append(float(value))
    for peer in peers.values():
        peer["stats"] = {
            metric: (statistics.median(vs), min(vs), max(vs))
            for metric, vs in peer["values"].items()
        }
    return peers


def _best(peers: dict[str, dict[str, Any]], metric: str, higher: bool, skip: str = "") -> Any:
    """The best peer but ``skip`` and its own variants (``skip-...``, such as ringloom's
    batch API beside its pool): those are ours, not others to compare with."""
    candidates = [
        (p["stats"][metric][0], name)
        for name, p in peers.items()
        if metric in p["stats"] and name != skip and not name.startswith(f"{skip}-")
    ]
    if not candidates:
        return None
    return (max if higher else min)(candidates)


def _goal_lines(workload: dict[str, Any], peers: dict[str, dict[str, Any]]) -> list[str]:
    ours = peers.get(workload["ours"])
    lines = []
    for goal in workload.get("goals", []):
        metric, op, target = goal["metric"], goal["op"], goal["value"]
        if ours is None or metric not in ours["stats"]:
            lines.append(f"- {metric} {op} {target}: **no measurement of ours**")
            continue
        mine = ours["stats"][metric][0]
        if goal["kind"] == "ratio":
            higher = op == ">="
            if goal.get("peer"):
                other_peer = peers.get(goal["peer"])
                other = (
                    (other_peer["stats"][metric][0], goal["peer"])
                    if other_peer and metric in other_peer["stats"]
                    else None
                )
            else:
                other = _best(peers, metric, higher, skip=workload["ours"])
            if other is None or other[0] == 0:
                lines.append(f"- {metric}: {op} {target}x a peer: **no peer measured**")
                continue
            ratio = mine / other[0]
            met = ratio >= target if op == ">=" else ratio <= target
            lines.append(
                f"- {metric} {op} {target}x {other[1]}'s: ours {_fmt(mine)} vs "
                f"{_fmt(other[0])} = {ratio:.2f}x: **{'met' if met else 'missed'}**"
            )
        else:
            met = mine >= target if op == ">=" else mine <= target
            how = "" if met else f" (by {abs(mine - target) / target:.0%})"
            lines.append(
                f"- {metric} {op} {target}: ours {_fmt(mine)}: "
                f"**{'met' if met else 'missed'}**{how}"
            )
    return lines


def _chart(
    charts: Path, key: str, workload: dict[str, Any], peers: dict[str, dict[str, Any]]
) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    metric = workload["primary"]
    rows = [(name, p["stats"][metric]) for name, p in peers.items() if metric in p["stats"]]
    if not rows:
        return None
    rows.sort(key=lambda r: r[1][0], reverse=workload["higher_is_better"])
    names = [r[0] for r in rows]
    medians = [r[1][0] for r in rows]
    low = [r[1][0] - r[1][1] for r in rows]
    high = [r[1][2] - r[1][0] for r in rows]
    colors = ["#c0392b" if n == workload["ours"] else "#7f8c8d" for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
    ax.barh(names, medians, xerr=[low, high], color=colors, capsize=3)
    ax.invert_yaxis()
    unit = workload["metrics"].get(metric, "")
    better = "higher" if workload["higher_is_better"] else "lower"
    ax.set_xlabel(f"{metric} ({unit}), median with min-max; {better} is better")
    ax.set_title(workload["title"])
    fig.tight_layout()
    charts.mkdir(exist_ok=True)
    path = charts / f"{key}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"{charts.name}/{path.name}"


def _table(workload: dict[str, Any], peers: dict[str, dict[str, Any]]) -> list[str]:
    metric, higher = workload["primary"], workload["higher_is_better"]
    best = _best(peers, metric, higher)
    metrics = list(workload["metrics"])
    head = ["peer", *[f"{m} ({workload['metrics'][m]})" for m in metrics], "of best", "runs"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def order(item: tuple[str, dict[str, Any]]) -> float:
        stats = item[1]["stats"].get(metric)
        if stats is None:
            return float("inf")
        return -stats[0] if higher else stats[0]

    for name, peer in sorted(peers.items(), key=order):
        cells = [f"**{name}**" if name == workload["ours"] else name]
        for m in metrics:
            if m in peer["stats"]:
                med, lo, hi = peer["stats"][m]
                cells.append(f"{_fmt(med)} ({_fmt(lo)}-{_fmt(hi)})")
            else:
                cells.append("-")
        if best is not None and metric in peer["stats"] and peer["stats"][metric][0] and best[0]:
            mine = peer["stats"][metric][0]
            cells.append(f"{(mine / best[0]) if higher else (best[0] / mine):.2f}")
        else:
            cells.append("-")
        ok = peer["runs"] - len(peer["errors"])
        cells.append(f"{ok}/{peer['runs']}")
        lines.append("| " + " | ".join(cells) + " |")
    for name, peer in peers.items():
        for error in sorted(set(peer["errors"])):
            lines.append(f"\n{name} failed: `{error[:300]}`")
    return lines


def write_report(results: dict[str, Any], quick: bool = False, partial: bool = False) -> None:
    suffix = "-quick" if quick else "-partial" if partial else ""
    machine = results["machine"]
    out = [
        "# Benchmark results",
        "",
        f"Written by `make {'bench-quick' if quick else 'bench'}` "
        f"(`benches/run.py{' --quick' if quick else ''}`), {machine['date']}: "
        f"{results['rounds']} interleaved rounds; medians with min-max. Ratios compare "
        "peers measured in this one run. Runs on this machine vary by about 20%.",
        "",
        f"- Machine: {machine['cpu']}, {machine['cpus']} CPUs, {machine['memory_gib']} GiB; "
        f"kernel {machine['kernel']}; load average at start "
        + ", ".join(f"{x:.2f}" for x in machine["loadavg_at_start"]),
        f"- Python {machine['python']}; {machine['rustc']}",
        "- What limits ringloom where it misses a target, from profiles: "
        "[python/NOTES.md](python/NOTES.md) for the Python workloads, "
        "[notes/](notes/) for the Rust ones; how each workload is measured: "
        "[rust/README.md](rust/README.md) and the scripts in [python/](python/).",
        "",
    ]
    if machine.get("reruns"):
        out.append(f"- Re-run in the same place: {machine['reruns']}")
    for suite, reason in results.get("unavailable", {}).items():
        out.append(f"- The {suite} suite did not run: {reason}")
    records = results["records"]
    headline = [
        "| workload | ours | best other peer | ratio |",
        "|---|---|---|---|",
    ]
    first_chart = None
    for key, workload in results["workloads"].items():
        peers = _summaries(records, key)
        if not peers:
            continue
        out += ["", f"## {workload['title']} (`{key}`)", ""]
        if workload.get("target"):
            out.append(f"Target: {workload['target']}")
        if workload.get("seen"):
            out.append(f"Seen before: {workload['seen']}")
        if workload.get("notes"):
            out.append(f"Notes: {workload['notes']}")
        out.append("")
        out += _table(workload, peers)
        goal_lines = _goal_lines(workload, peers)
        if goal_lines:
            out += ["", "Goals:", *goal_lines]
        ours_info = peers.get(workload["ours"], {}).get("info")
        if ours_info:
            out += ["", f"ringloom: `{json.dumps(ours_info, sort_keys=True)[:400]}`"]
        note = NOTES / f"{key}.md"
        if note.exists():
            out += ["", note.read_text().strip()]
        chart = _chart(HERE / f"charts{suffix}", key, workload, peers)
        if chart:
            out += ["", f"![{workload['title']}]({chart})"]
            first_chart = first_chart or chart
        metric, higher = workload["primary"], workload["higher_is_better"]
        ours = peers.get(workload["ours"])
        other = _best(peers, metric, higher, skip=workload["ours"])
        if ours and metric in ours["stats"] and other and other[0]:
            mine = ours["stats"][metric][0]
            ratio = mine / other[0] if higher else other[0] / mine
            headline.append(
                f"| {workload['title']} | {_fmt(mine)} {workload['metrics'][metric]} | "
                f"{other[1]} {_fmt(other[0])} | {ratio:.2f}x |"
            )
    (HERE / f"RESULTS{suffix}.md").write_text("\n".join(out) + "\n")
    print(f"== wrote benches/RESULTS{suffix}.md", flush=True)
    if not suffix:
        _update_readme(headline, first_chart)


def _update_readme(headline: list[str], chart: str | None) -> None:
    """Replaces the README's block between the bench markers, if it has them."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start not in text or end not in text:
        return
    body = [
        start,
        "Headline ratios (ours relative to the best other peer, >1 is better; from "
        "`make bench`, details in benches/RESULTS.md):",
        "",
        *headline,
    ]
    if chart:
        body += ["", f"![headline chart](benches/{chart})"]
    body.append(end)
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    readme.write_text(pattern.sub(lambda _m: "\n".join(body), text))
    print("== updated the README's headline table", flush=True)


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "results.json"
    data = json.loads(source.read_text())
    write_report(data, quick=bool(data.get("quick")), partial=bool(data.get("partial")))
