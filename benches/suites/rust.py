"""The Rust workloads: ringloom beside tokio, monoio, compio, a bare io-uring loop and fio.

tokio's file peer is a ``pread`` on its blocking pool per read: ``tokio::fs`` has no
positioned read, and that pool is what it uses for every file read.

Every case runs ``benches/rust/target/release/rbench`` (its own cargo workspace, built by
``prepare``), one measurement per process; see ``benches/rust/README.md`` for how each
workload is measured.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .common import Case, Goal, SuiteUnavailable, Workload, install_package

ROOT = Path(__file__).resolve().parents[2]
CRATE = ROOT / "benches" / "rust"
RBENCH = CRATE / "target" / "release" / "rbench"

MIB = 1 << 20
FILE_BYTES = {True: 256 * MIB, False: 1024 * MIB}

# Peer labels, as the report shows them.
TOKIO = "tokio (current_thread)"
MONOIO = "monoio"
MONOIO_COOP = "monoio (COOP_TASKRUN)"
MONOIO_DEFER = "monoio (SINGLE_ISSUER+DEFER_TASKRUN)"
COMPIO = "compio"
FIO = "fio (io_uring engine)"
TOKIO_FS = "tokio (pread on spawn_blocking)"
BARE = "io-uring (bare loop)"

_ECHO_PEERS = {
    "ringloom": "ringloom",
    TOKIO: "tokio",
    MONOIO: "monoio",
    MONOIO_COOP: "monoio-coop",
    MONOIO_DEFER: "monoio-defer",
    COMPIO: "compio",
}
_TASK_PEERS = {"ringloom": "ringloom", TOKIO: "tokio", MONOIO: "monoio", COMPIO: "compio"}
_FILE_PEERS = {
    "ringloom": "ringloom",
    MONOIO: "monoio",
    COMPIO: "compio",
    TOKIO_FS: "tokio",
    FIO: "fio",
}
_NOP_PEERS = {"ringloom": "ringloom", BARE: "bare"}

_FILE_SEEN = (
    "4 KiB random warm: monoio 744k IOPS, compio 690k, fio 479k, tokio::fs 75k; "
    "direct: fio 66k, monoio 59k"
)
_FILE_CASES = {
    # key: (pattern, cache, title)
    "rust.files.rand4k.warm": ("rand4k", "warm", "4 KiB random reads, depth 64, page cache warm"),
    "rust.files.seq128k.warm": (
        "seq128k",
        "warm",
        "128 KiB sequential reads, depth 8, page cache warm",
    ),
    "rust.files.rand4k.direct": ("rand4k", "direct", "4 KiB random reads, depth 64, O_DIRECT"),
    "rust.files.seq128k.direct": (
        "seq128k",
        "direct",
        "128 KiB sequential reads, depth 8, O_DIRECT",
    ),
}


def _file_workload(pattern: str, cache: str, title: str) -> Workload:
    primary = "iops" if pattern == "rand4k" else "gib_per_s"
    other = MONOIO if cache == "warm" else FIO
    return Workload(
        title=f"Files: {title} (a 1 GiB file; quick: 256 MiB)",
        primary=primary,
        higher_is_better=True,
        metrics={"iops": "IOPS", "gib_per_s": "GiB/s"},
        target=f">= {other} ({'warm' if cache == 'warm' else 'O_DIRECT'})",
        seen=_FILE_SEEN,
        goals=(Goal(primary, ">=", 1.0, kind="ratio", peer=other),),
    )


WORKLOADS: dict[str, Workload] = {
    "rust.echo": Workload(
        title="Echo: one server thread, 1,000 connections, 1 KiB ping-pong, 10 s (quick: 1 s)",
        primary="req_per_s",
        higher_is_better=True,
        metrics={
            "req_per_s": "req/s",
            "p50_us": "µs",
            "p99_us": "µs",
            "server_cpu": "CPUs",
            "client_cpu": "CPUs",
        },
        target=">= 1.1x the best peer in req/s, p99 no worse than the best peer's",
        seen=(
            "tokio current-thread about 95k req/s; monoio about 75k with its default ring "
            "and 94-97k with COOP_TASKRUN or SINGLE_ISSUER+DEFER_TASKRUN; compio 68-100k"
        ),
        goals=(
            Goal("req_per_s", ">=", 1.1, kind="ratio"),
            Goal("p99_us", "<=", 1.0, kind="ratio"),
        ),
    ),
    "rust.spawn": Workload(
        title="Spawn: 1,000,000 tasks spawned, then awaited (one thread)",
        primary="tasks_per_s",
        higher_is_better=True,
        metrics={"tasks_per_s": "tasks/s", "peak_rss_mib": "MiB"},
        target=">= monoio on both",
        seen="monoio 8.1M/s and 94 MiB; tokio current-thread 2.1M/s and 322 MiB",
        goals=(
            Goal("tasks_per_s", ">=", 1.0, kind="ratio", peer=MONOIO),
            Goal("peak_rss_mib", "<=", 1.0, kind="ratio", peer=MONOIO),
        ),
    ),
    "rust.timers": Workload(
        title="Timers: 1,000,000 concurrent 1 s sleeps (one thread)",
        primary="total_s",
        higher_is_better=False,
        metrics={"total_s": "s", "peak_rss_mib": "MiB"},
        target="<= 1.2 s and <= 250 MiB",
        seen=(
            "tokio current-thread 1.36 s / 445 MiB, compio 2.0 s / 292 MiB, monoio 3.1 s / 995 MiB"
        ),
        goals=(Goal("total_s", "<=", 1.2), Goal("peak_rss_mib", "<=", 250.0)),
    ),
    **{key: _file_workload(*spec) for key, spec in _FILE_CASES.items()},
    "rust.nop.single": Workload(
        title="NOP round trips, one at a time (ringloom's op path vs a bare io-uring loop)",
        primary="ops_per_s",
        higher_is_better=True,
        metrics={"ops_per_s": "ops/s", "ns_per_op": "ns"},
        target=">= 70% of the bare loop one at a time",
        seen="bare loop 2.3-2.7M ops/s one at a time",
        goals=(Goal("ops_per_s", ">=", 0.7, kind="ratio", peer=BARE),),
    ),
    "rust.nop.batch32": Workload(
        title="NOP round trips in batches of 32 (ringloom's op path vs a bare io-uring loop)",
        primary="ops_per_s",
        higher_is_better=True,
        metrics={"ops_per_s": "ops/s", "ns_per_op": "ns"},
        target=">= 80% of the bare loop at batch 32",
        seen="bare loop 10.7-11.1M ops/s in batches of 32",
        goals=(Goal("ops_per_s", ">=", 0.8, kind="ratio", peer=BARE),),
    ),
}


def _fs_type(path: Path) -> str:
    """The type of the file system holding ``path`` (longest mount point prefix)."""
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def data_file(quick: bool) -> Path:
    """Where the file workloads' file lives: the crate's target directory, or /var/tmp
    if that is on a file system without O_DIRECT (tmpfs)."""
    name = f"rbench-{FILE_BYTES[quick] // MIB}m.dat"
    for directory in (CRATE / "target", Path("/var/tmp")):
        directory.mkdir(parents=True, exist_ok=True)
        if _fs_type(directory) not in ("tmpfs", "ramfs", "overlay"):
            return directory / name
    return CRATE / "target" / name


def _run(argv: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.SubprocessError) as err:
        raise SuiteUnavailable(f"{what}: {err}") from err
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-6:])
        raise SuiteUnavailable(f"{what} failed (exit {done.returncode}): {tail}")


def prepare(quick: bool) -> None:
    if not shutil.which("cargo"):
        raise SuiteUnavailable("cargo is not installed")
    _run(["cargo", "build", "--release", "--quiet"], "cargo build --release in benches/rust", CRATE)
    install_package("fio", "fio")
    _run([str(RBENCH), "mkfile", str(data_file(quick)), str(FILE_BYTES[quick])], "test file")


def cases(quick: bool) -> list[Case]:
    rbench = str(RBENCH)
    out: list[Case] = []
    echo_secs, echo_warmup = ("1", "0.2") if quick else ("10", "1")
    for peer, name in _ECHO_PEERS.items():
        argv = [rbench, "echo", name, "--conns", "1000", "--secs", echo_secs]
        argv += ["--warmup", echo_warmup, "--server-cpu", "0", "--client-cpu", "1"]
        out.append(Case("rust.echo", peer, argv, timeout=120))
    for peer, name in _TASK_PEERS.items():
        argv = [rbench, "spawn", name, "--tasks", "1000000", "--cpu", "0"]
        out.append(Case("rust.spawn", peer, argv, timeout=120))
    for peer, name in _TASK_PEERS.items():
        argv = [rbench, "timers", name, "--tasks", "1000000", "--ms", "1000", "--cpu", "0"]
        out.append(Case("rust.timers", peer, argv, timeout=120))
    path = str(data_file(quick))
    file_secs = "0.5" if quick else "5"
    for key, (pattern, cache, _title) in _FILE_CASES.items():
        for peer, name in _FILE_PEERS.items():
            argv = [rbench, "files", name, pattern, cache, path, "--secs", file_secs, "--cpu", "0"]
            out.append(Case(key, peer, argv, timeout=120))
    nop_secs = "0.3" if quick else "3"
    for key, batch in (("rust.nop.single", "1"), ("rust.nop.batch32", "32")):
        for peer, name in _NOP_PEERS.items():
            argv = [rbench, "nop", name, batch, "--secs", nop_secs, "--cpu", "0"]
            out.append(Case(key, peer, argv, timeout=60))
    return out
