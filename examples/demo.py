"""What ringloom is for, shown: ``python examples/demo.py`` (``make demo``).

Two phases, each in its own ``VirtualThreadPool``:

1. **HTTP.** Unmodified ``requests`` (a plain ``requests.get`` per virtual thread: a new
   connection per request, no keep-alive reuse) fetches ``--requests`` URLs from a
   loopback HTTP server, ``--concurrency`` virtual threads at a time
   (``pool.map``). The server is a separate process (``--serve``): ringloom virtual
   threads written with the plain ``socket`` module, so the client's numbers (memory, OS
   threads, GIL) are the client's alone. It waits ``--server-latency`` ms (default 20)
   before each response, as a remote site would: a round trip within a continent takes
   10-40 ms before the site does any work, and at 0 ms a loopback server measures only
   the client's CPU, not what concurrency is for. Every response is checked: status 200,
   the expected length and the expected bytes. The same ``requests.get`` also runs one
   after another and through a default ``ThreadPoolExecutor()``, each for about a second
   of requests, so the summary compares the three in one run.
2. **Files.** ``--files`` files of 4-64 KiB are written to a temporary directory on disk
   (not tmpfs), synced, and evicted from the page cache (``posix_fadvise(DONTNEED)``)
   before each pass, so every pass reads the disk: sequentially (the reference hashes),
   through a default ``ThreadPoolExecutor()``, and with ``open()`` in virtual threads;
   every hash must match.

A progress line (stderr) is drawn from ``pool.get_stats()`` while a helper thread waits
in ``pool.map``; the summary (stdout) gives each phase's rates beside its baselines, peak
RSS, OS threads at peak and the pools' stats. Exit status 1 on any failed check. The
bodies, the descriptor limit and the file-cache helpers are the benchmarks' own
(``benches/python/_harness.py``).
"""

from __future__ import annotations

import argparse
import builtins
import concurrent.futures
import hashlib
import itertools
import json
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import ringloom  # noqa: F401 - installs the interception layer (ringloom.green)
from ringloom.virtual_thread import DEFAULT_PLATFORM_THREADS, VirtualThreadPool

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches", "python")
)
from _harness import (  # noqa: E402 - found through the path above
    body_for,
    disk_directory,
    evict,
    fs_type,
    raise_nofile,
)

FULL = {"requests": 10_000, "concurrency": 10_000, "files": 2_000}
#: What a remote site's answer takes, at least: a round trip within a continent.
DEFAULT_LATENCY_MS = 20.0
#: How long each baseline (one after another, a thread pool) runs, about.
BASELINE_SECONDS = 1.0
QUICK = {"requests": 300, "concurrency": 300, "files": 60}


# -- process facts ---------------------------------------------------------------------


def _threads() -> list[str]:
    """The names of this process's OS threads (the Python name for Python threads)."""
    python_names = {t.native_id: t.name for t in threading.enumerate()}
    names = []
    for tid in os.listdir("/proc/self/task"):
        name = python_names.get(int(tid))
        if name is None:
            try:
                with open(f"/proc/self/task/{tid}/comm") as f:
                    name = f.read().strip()
            except OSError:  # the thread ended meanwhile
                continue
        names.append(name)
    return names


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- the server (a separate process) --------------------------------------------------


def serve(workers: int, latency: float = 0.0) -> int:
    """Serves ``GET /item/<i>`` on a loopback port until stdin closes; prints the port,
    then (at the end) a JSON line of its own numbers. ``latency``: seconds each response
    waits (``time.sleep``, which parks the server's virtual thread), to stand for a
    remote server."""
    raise_nofile(1 << 20)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(65535)  # the kernel caps it at net.core.somaxconn
    served = itertools.count()
    connections = itertools.count()
    pool = VirtualThreadPool(max_platform_threads=workers)

    def handle(conn: socket.socket) -> None:
        next(connections)
        with conn:
            buf = b""
            while True:
                end = buf.find(b"\r\n\r\n")
                while end < 0:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    end = buf.find(b"\r\n\r\n")
                head, buf = buf[:end], buf[end + 4 :]
                request_line = head.split(b"\r\n", 1)[0].split(b" ")
                path = request_line[1] if len(request_line) == 3 else b""
                if request_line[0] == b"GET" and path.startswith(b"/item/"):
                    status, body = b"200 OK", body_for(int(path[6:]))
                else:
                    status, body = b"404 Not Found", b"not found\n"
                close = b"connection: close" in head.lower()
                if latency > 0:
                    time.sleep(latency)
                conn.sendall(
                    b"HTTP/1.1 %s\r\nContent-Type: application/octet-stream\r\n"
                    b"Content-Length: %d\r\n%s\r\n%s"
                    % (status, len(body), b"Connection: close\r\n" if close else b"", body)
                )
                next(served)
                if close:
                    return

    def acceptor() -> None:
        while True:
            conn, _ = listener.accept()  # parks the virtual thread
            pool.submit(handle, conn)

    for _ in range(workers):
        pool.submit(acceptor)
    print(listener.getsockname()[1], flush=True)
    peak_threads = 0
    while True:  # until the client closes our stdin
        peak_threads = max(peak_threads, len(os.listdir("/proc/self/task")))
        if not sys.stdin.buffer.read1(1):
            break
    stats = pool.get_stats()
    report = {
        "pid": os.getpid(),
        "served": next(served),
        "connections": next(connections),
        "maxrss_mib": _maxrss_mib(),
        "threads": peak_threads,
        "driver": stats.get("driver"),
        "parks": stats.get("parks"),
        "workers": workers,
    }
    print(json.dumps(report), flush=True)
    os._exit(0)  # the acceptors park forever: no orderly shutdown needed


class Server:
    """The server process, seen from the client."""

    def __init__(self, workers: int, latency_ms: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                "--workers",
                str(workers),
                "--server-latency",
                str(latency_ms),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"the demo server did not start (said {line!r})")
        self.port = int(line)

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            out = self.proc.stdout.read()
            self.proc.wait(timeout=30)
            return dict(json.loads(out.decode().strip().splitlines()[-1]))
        except Exception as err:  # noqa: BLE001 - reported, never fatal to the summary
            self.proc.kill()
            self.proc.wait()
            return {"error": f"{type(err).__name__}: {err}"}


# -- running a phase with a progress line ---------------------------------------------


class Phase:
    """``pool.map(fn, items)`` in a helper OS thread while the main thread draws
    progress from ``pool.get_stats()`` and samples the OS threads."""

    def __init__(self, name: str, unit: str) -> None:
        self.name = name
        self.unit = unit
        self.seconds = 0.0
        self.results: list[Any] = []
        self.error: BaseException | None = None
        self.stats: dict[str, Any] = {}
        self.peak_threads = 0
        self.peak_thread_names: list[str] = []
        self.peak_active = 0
        self.peak_parked = 0
        self.completed_before = 0

    def run(self, pool: VirtualThreadPool, fn: Callable[[Any], Any], items: list[Any]) -> None:
        total = len(items)
        out: dict[str, Any] = {}

        def call_map() -> None:
            try:
                out["results"] = pool.map(fn, items)
            except BaseException as err:  # noqa: BLE001 - reported by the main thread
                out["error"] = err

        tty = sys.stderr.isatty()
        self.completed_before = pool.get_stats()["completed_threads"]
        start = time.perf_counter()
        caller = threading.Thread(target=call_map, name="demo-map-caller", daemon=True)
        caller.start()
        last_draw = 0.0
        while True:
            caller.join(0.05)
            done = not caller.is_alive()
            stats = pool.get_stats()
            names = _threads()
            if len(names) > self.peak_threads:
                self.peak_threads, self.peak_thread_names = len(names), names
            self.peak_active = max(self.peak_active, stats["active_threads"])
            self.peak_parked = max(self.peak_parked, stats["parked"])
            now = time.perf_counter()
            if done or now - last_draw >= (0.1 if tty else 1.0):
                last_draw = now
                self._draw(stats, total, now - start, len(names), tty)
            if done:
                break
        self.seconds = time.perf_counter() - start
        sys.stderr.write("\n")
        sys.stderr.flush()
        self.stats = pool.get_stats()
        self.results = out.get("results", [])
        self.error = out.get("error")

    def _draw(
        self, stats: dict[str, Any], total: int, elapsed: float, threads: int, tty: bool
    ) -> None:
        done = stats["completed_threads"] - self.completed_before
        width = 30
        filled = width * done // max(total, 1)
        rate = done / elapsed if elapsed > 0 else 0.0
        line = (
            f"{self.name:<5} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done:>6}/{total} {rate:8.0f} {self.unit}/s  "
            f"running {stats['active_threads']:>5}  parked {stats['parked']:>5}  "
            f"OS threads {threads}  {elapsed:5.1f} s"
        )
        sys.stderr.write(("\r" if tty else "") + line + ("" if tty else "\n"))
        sys.stderr.flush()


# -- the two jobs ----------------------------------------------------------------------


def make_fetch(base: str) -> Callable[[int], str | None]:
    import requests  # unmodified; its sockets park through ringloom.green

    def fetch(i: int) -> str | None:
        """None when the response is right, else what was wrong."""
        try:
            response = requests.get(f"{base}/item/{i}", timeout=60)
        except Exception as err:  # noqa: BLE001 - every failure is counted, not raised
            return f"request {i}: {type(err).__name__}: {err}"
        expected = body_for(i)
        if response.status_code != 200:
            return f"request {i}: status {response.status_code}"
        if len(response.content) != len(expected):
            return f"request {i}: {len(response.content)} bytes, expected {len(expected)}"
        if response.content != expected:
            return f"request {i}: body differs"
        return None

    return fetch


def hash_file(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.blake2b(f.read()).hexdigest()


def make_files(directory: str, count: int, seed: int = 7) -> tuple[list[str], int]:
    rng = random.Random(seed)
    paths, total = [], 0
    for i in range(count):
        size = rng.randint(4 * 1024, 64 * 1024)
        path = os.path.join(directory, f"f{i:05d}.bin")
        with open(path, "wb") as f:
            f.write(rng.randbytes(size))
        paths.append(path)
        total += size
    os.sync()  # written back, so that eviction can drop every page
    return paths, total


def _pool_line(stats: dict[str, Any]) -> str:
    keys = (
        "driver platform_threads completed_threads failed parks ops_submitted ops_completed "
        "ring_enters polls tasks_stolen blocking_threads"
    ).split()
    return ", ".join(f"{k} {stats[k]}" for k in keys if k in stats)


def _open_is_intercepted() -> bool:
    return getattr(builtins.open, "__module__", "").startswith("ringloom")


# -- the demo --------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python examples/demo.py",
        description="Unmodified requests from virtual threads against a loopback HTTP "
        "server, then files read with open() and hashed in virtual threads; every "
        "response and hash is verified (exit status 1 on any failure).",
    )
    parser.add_argument("--requests", type=int, help=f"HTTP requests (default {FULL['requests']})")
    parser.add_argument(
        "--concurrency",
        type=int,
        help=f"virtual threads at once, max_virtual_threads (default {FULL['concurrency']})",
    )
    parser.add_argument("--files", type=int, help=f"files to hash (default {FULL['files']})")
    parser.add_argument(
        "--workers",
        type=int,
        default=DEFAULT_PLATFORM_THREADS,
        help=f"ringloom workers (OS threads) per pool (default {DEFAULT_PLATFORM_THREADS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small defaults for tests: {QUICK['requests']} requests, "
        f"{QUICK['concurrency']} concurrent, {QUICK['files']} files",
    )
    parser.add_argument(
        "--server-latency",
        type=float,
        default=DEFAULT_LATENCY_MS,
        metavar="MS",
        help="milliseconds the server waits before each response, as a remote site "
        f"would (default {DEFAULT_LATENCY_MS:g}: a round trip within a continent; "
        "0: loopback speed)",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.server_latency < 0:
        parser.error(f"--server-latency must be >= 0: {args.server_latency}")
    for key in ("requests", "concurrency", "files", "workers"):
        if getattr(args, key) < (1 if key in ("concurrency", "workers") else 0):
            parser.error(f"--{key} is too small: {getattr(args, key)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        return serve(args.workers, args.server_latency / 1000)
    try:
        import requests  # noqa: F401
    except ImportError:
        print("the demo needs `requests`: pip install requests", file=sys.stderr)
        return 2

    failures: list[str] = []
    # Each in-flight request holds its socket (and, while it waits, a duplicate for the
    # ring poll): ask for room for both.
    nofile = raise_nofile(2 * args.concurrency + 1024)
    rss_start = _maxrss_mib()
    threads_start = len(_threads())
    print(
        f"ringloom demo: {args.requests} requests ({args.concurrency} virtual threads at "
        f"once), {args.files} files; {args.workers} workers per pool; "
        f"RLIMIT_NOFILE {nofile}; Python {sys.version.split()[0]}, pid {os.getpid()}",
        flush=True,
    )

    # -- phase 1: HTTP --
    server = Server(args.workers, args.server_latency)
    base = f"http://127.0.0.1:{server.port}"
    print(
        f"server: {base}, a separate process (pid {server.proc.pid}): ringloom virtual "
        f"threads over the plain socket module, {args.workers} workers; "
        f"{args.server_latency:g} ms added latency per response",
        flush=True,
    )
    # The client's ceiling without virtual threads: the same requests.get, one after
    # another on this (stock, not intercepted) thread. requests' own CPU cost per call
    # runs under the one GIL either way.
    latency = args.server_latency / 1000
    # About BASELINE_SECONDS of requests each (a loop at 20 ms does 50 a second).
    per_second = 1 / latency if latency > 0 else 200
    baseline_n = min(args.requests, max(3, int(BASELINE_SECONDS * per_second)))
    fetch = make_fetch(base)
    t0 = time.perf_counter()
    failures.extend(r for r in map(fetch, range(baseline_n)) if r is not None)
    baseline_seconds = time.perf_counter() - t0
    # The same calls through the standard library's thread pool, at its default size.
    with concurrent.futures.ThreadPoolExecutor() as threads:
        tpe_workers = threads._max_workers
        tpe_n = min(
            args.requests, max(3 * tpe_workers, int(tpe_workers * BASELINE_SECONDS * per_second))
        )
        t0 = time.perf_counter()
        failures.extend(r for r in threads.map(fetch, range(tpe_n)) if r is not None)
        tpe_seconds = time.perf_counter() - t0
    http = Phase("http", "req")
    try:
        with VirtualThreadPool(
            max_platform_threads=args.workers, max_virtual_threads=args.concurrency
        ) as pool:
            pool.submit(lambda: None).result()  # start the runtime, to name its driver
            driver = pool.get_stats()["driver"]
            print(f"driver: {driver}", flush=True)
            http.run(pool, fetch, list(range(args.requests)))
    finally:
        server_report = server.stop()
    rss_http = _maxrss_mib()
    if http.error is not None:
        failures.append(f"http: pool.map raised {type(http.error).__name__}: {http.error}")
    bad = [r for r in http.results if r is not None]
    failures.extend(bad)
    http_ok = len(http.results) - len(bad)

    # -- phase 2: files --
    directory = disk_directory()
    file_system = fs_type(directory)
    try:
        t0 = time.perf_counter()
        paths, total_bytes = make_files(directory, args.files)
        gen_seconds = time.perf_counter() - t0
        evict(paths)
        t0 = time.perf_counter()
        reference = [hash_file(p) for p in paths]
        seq_seconds = time.perf_counter() - t0
        evict(paths)
        with concurrent.futures.ThreadPoolExecutor() as threads:
            t0 = time.perf_counter()
            by_threads = list(threads.map(hash_file, paths))
            files_tpe_seconds = time.perf_counter() - t0
        failures.extend(
            f"file {p}: thread pool hash differs"
            for p, got, want in zip(paths, by_threads, reference)
            if got != want
        )
        evict(paths)
        files = Phase("files", "file")
        with VirtualThreadPool(
            max_platform_threads=args.workers, max_virtual_threads=args.concurrency
        ) as pool:
            files.run(pool, hash_file, paths)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if files.error is not None:
        failures.append(f"files: pool.map raised {type(files.error).__name__}: {files.error}")
    mismatched = [
        paths[i] for i, (got, want) in enumerate(zip(files.results, reference)) if got != want
    ]
    if len(files.results) != len(reference) and files.error is None:
        failures.append(f"files: {len(files.results)} results for {len(reference)} files")
    failures.extend(f"file {p}: hash differs" for p in mismatched)
    files_ok = len(files.results) - len(mismatched)
    rss_end = _maxrss_mib()

    # -- summary --
    def rate(n: int, seconds: float) -> float:
        return n / seconds if seconds > 0 else 0.0

    def times(ours: float, theirs: float) -> str:
        return f"{ours / theirs:.1f}x" if theirs > 0 else "n/a"

    http_rate = rate(args.requests, http.seconds)
    files_rate = rate(args.files, files.seconds)
    cold = (
        "evicted from the page cache before each pass"
        if file_system != "tmpfs"
        else "on tmpfs: every pass reads memory"
    )

    mib = total_bytes / (1 << 20)
    open_note = (
        "open() is intercepted: cached reads run at once, reads that must wait park"
        if _open_is_intercepted()
        else "open()/read are stock: they run on the worker (not intercepted yet)"
    )
    peak_threads = max(http.peak_threads, files.peak_threads)
    names = (
        http.peak_thread_names
        if http.peak_threads >= files.peak_threads
        else (files.peak_thread_names)
    )
    lines = [
        ("driver", f"{driver}"),
        (
            "http",
            f"{args.requests} requests (plain requests.get, one connection each), "
            f"{args.concurrency} at once, server latency {args.server_latency:g} ms: "
            f"{http.seconds:.2f} s, "
            f"{http_rate:.0f} requests/s "
            f"({times(http_rate, rate(tpe_n, tpe_seconds))} the thread pool, "
            f"{times(http_rate, rate(baseline_n, baseline_seconds))} one after another); "
            f"{http_ok}/{args.requests} verified (status 200, length, bytes); "
            f"peak {http.peak_active} running, {http.peak_parked} parked",
        ),
        (
            "http baseline",
            f"{baseline_n} requests.get one after another on the main thread (no pool): "
            f"{baseline_seconds:.2f} s, {rate(baseline_n, baseline_seconds):.0f} requests/s",
        ),
        (
            "http threads",
            f"{tpe_n} requests.get through ThreadPoolExecutor() (default max_workers="
            f"{tpe_workers}): {tpe_seconds:.2f} s, {rate(tpe_n, tpe_seconds):.0f} requests/s",
        ),
        ("http pool", _pool_line(http.stats) + " (1 warm-up task included)"),
        (
            "server",
            ", ".join(f"{k} {v}" for k, v in server_report.items())
            + " (a separate process; not counted below)",
        ),
        (
            "files",
            f"{args.files} files, {mib:.1f} MiB: {files.seconds:.2f} s, "
            f"{files_rate:.0f} files/s, "
            f"{mib / files.seconds if files.seconds > 0 else 0.0:.0f} MiB/s "
            f"({times(files_rate, rate(args.files, files_tpe_seconds))} the thread pool, "
            f"{times(files_rate, rate(args.files, seq_seconds))} sequential); "
            f"{files_ok}/{args.files} hashes match the sequential pass",
        ),
        (
            "files baseline",
            f"sequential (no pool): {seq_seconds:.2f} s, "
            f"{rate(args.files, seq_seconds):.0f} files/s; written and synced in "
            f"{gen_seconds:.2f} s ({file_system}), {cold}; {open_note}",
        ),
        (
            "files threads",
            f"ThreadPoolExecutor() (default max_workers={tpe_workers}): "
            f"{files_tpe_seconds:.2f} s, {rate(args.files, files_tpe_seconds):.0f} files/s; "
            "hashes match",
        ),
        ("files pool", _pool_line(files.stats)),
        (
            "peak memory",
            f"{rss_end:.1f} MiB ru_maxrss (after http {rss_http:.1f} MiB; "
            f"{rss_start:.1f} MiB at start)",
        ),
        (
            "OS threads",
            f"{peak_threads} at peak ({threads_start} at start): " + ", ".join(sorted(names)),
        ),
        ("result", "OK" if not failures else f"FAILED ({len(failures)} failures)"),
    ]
    print("\nsummary")
    for key, value in lines:
        print(f"  {key + ':':<16} {value}")
    for failure in failures[:20]:
        print(f"  failure: {failure}", file=sys.stderr)
    if len(failures) > 20:
        print(f"  ... and {len(failures) - 20} more", file=sys.stderr)
    sys.stdout.flush()
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
