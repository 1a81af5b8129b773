"""Soak: a mixed load through one ``VirtualThreadPool`` for a while, with the process's
RSS, descriptors, OS threads and the rings' in-flight ops sampled every second; it fails
on growth after the warm-up, on a task that failed unexpectedly, and on a future that
never ended.

    python benches/soak.py [--seconds S] [--warmup W] [--report DIR]

The load, all on loopback: HTTP GETs (``http.client``) to a server in a child process,
batches of files written, read back and hashed, sleeps, a shared ``ringloom.Lock``
held across a park, and cancellations (calls queued behind the pool's bound and
cancelled, waits that time out). ``--seconds`` defaults to ``SOAK_S`` or 600.
``--report DIR`` writes the samples (``soak.json``) and, with matplotlib, the curve
(``soak.png``) there. The curve is printed every 10 samples either way.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import ringloom
from ringloom.virtual_thread import VirtualThreadPool

SERVER = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"x" * 2048
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # the stock 5 drops handshakes under 200 clients
server = Server(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""

#: Tasks in flight at once (the pool's bound: more are queued, and some cancelled there).
BOUND = 200
#: Growth allowed between the first and the last quarter after the warm-up.
RSS_SLACK_MIB = 24.0
RSS_SLACK_RATIO = 0.15


class Load:
    """The calls the soak submits, and what it counts."""

    def __init__(self, port: int, directory: str) -> None:
        self.port = port
        self.directory = directory
        self.lock = ringloom.Lock()
        self.shared = 0
        self.count_lock = threading.Lock()
        self.done: dict[str, int] = {}

    def _count(self, kind: str) -> None:
        with self.count_lock:
            self.done[kind] = self.done.get(kind, 0) + 1

    def http(self) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            for _ in range(3):  # keep-alive: three requests on one connection
                conn.request("GET", "/")
                body = conn.getresponse().read()
                assert len(body) == 2048, len(body)
        finally:
            conn.close()
        self._count("http")
        return len(body)

    def files(self, seed: int) -> str:
        digest = hashlib.blake2b()
        paths = []
        for i in range(4):
            path = os.path.join(self.directory, f"{seed}-{i}")
            with open(path, "wb") as f:
                f.write(random.Random(seed + i).randbytes(4096 * (1 + i)))
            paths.append(path)
        for path in paths:
            with open(path, "rb") as f:
                digest.update(f.read())
            os.unlink(path)
        self._count("files")
        return digest.hexdigest()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)
        self._count("sleep")

    def locked(self) -> None:
        with self.lock:
            before = self.shared
            time.sleep(0.001)  # parks while holding it: the others must wait
            self.shared = before + 1
        self._count("lock")


def wait_briefly(future: cf.Future[Any]) -> bool:
    """A wait that gives up after a millisecond; whether the future was done by then."""
    try:
        future.exception(timeout=0.001)
    except TimeoutError:
        return False
    except cf.CancelledError:
        pass
    return True


def collect(future: cf.Future[Any], unexpected: list[BaseException]) -> None:
    """Waits for a future (a minute at most); keeps its error unless it was cancelled."""
    try:
        future.result(timeout=60)
    except cf.CancelledError:
        pass
    except BaseException as err:  # noqa: BLE001 - reported with the other problems
        unexpected.append(err)


def sample(pool: VirtualThreadPool) -> dict[str, float]:
    with open("/proc/self/statm") as f:
        rss_pages = int(f.read().split()[1])
    stats = pool.get_stats()
    return {
        "rss_mib": rss_pages * os.sysconf("SC_PAGE_SIZE") / 2**20,
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": len(os.listdir("/proc/self/task")),
        "in_flight": stats.get("ops_submitted", 0) - stats.get("ops_completed", 0),
        "completed": stats["completed_threads"],
        "active": stats["active_threads"],
        "pending": stats["pending"],
    }


def growth(samples: list[dict[str, float]], warmup: int) -> list[str]:
    """What grew between the first and the last quarter of the samples after warm-up.
    Descriptors and threads come and go with the work in flight (sockets, files, the
    blocking pool): they are checked once the pool is shut down instead (see `run`)."""
    steady = samples[warmup:]
    quarter = max(1, len(steady) // 4)
    first, last = steady[:quarter], steady[-quarter:]

    def median(window: list[dict[str, float]], key: str) -> float:
        return statistics.median(s[key] for s in window)

    problems = []
    rss0, rss1 = median(first, "rss_mib"), median(last, "rss_mib")
    if rss1 - rss0 > max(RSS_SLACK_MIB, RSS_SLACK_RATIO * rss0):
        problems.append(f"RSS grew from {rss0:.1f} to {rss1:.1f} MiB")
    in_flight = max(s["in_flight"] for s in last)
    if in_flight > 4 * BOUND:
        problems.append(f"{in_flight:.0f} ring ops in flight at the end (bound {BOUND})")
    return problems


def run(seconds: float, warmup: float) -> tuple[list[dict[str, float]], list[str], Load]:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    problems: list[str] = []
    assert server.stdout is not None
    port = int(server.stdout.readline())
    samples: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as directory:
        load = Load(port, directory)
        before = {
            "fds": len(os.listdir("/proc/self/fd")),
            "threads": len(os.listdir("/proc/self/task")),
        }
        pool = VirtualThreadPool(max_virtual_threads=BOUND)
        futures: list[cf.Future[Any]] = []
        unexpected: list[BaseException] = []
        rng = random.Random(1)
        start = time.monotonic()
        submitted = cancelled = timed_out = 0
        stop = threading.Event()

        def sampler() -> None:
            # An OS thread of its own: the submitting loop blocks in its waits.
            while not stop.wait(1.0):
                samples.append({"t": time.monotonic() - start, **sample(pool)})
                if len(samples) % 10 == 0:
                    print(curve_line(samples[-1]), flush=True)

        watcher = threading.Thread(target=sampler, name="soak-sampler", daemon=True)
        watcher.start()
        try:
            while time.monotonic() - start < seconds:
                kind = rng.random()
                if kind < 0.3:
                    futures.append(pool.submit(load.http))
                elif kind < 0.5:
                    futures.append(pool.submit(load.files, submitted))
                elif kind < 0.75:
                    futures.append(pool.submit(load.sleep, rng.uniform(0, 0.02)))
                elif kind < 0.9:
                    futures.append(pool.submit(load.locked))
                else:
                    # Queued behind the bound, most likely: cancelled before it starts.
                    doomed = pool.submit(load.sleep, 5)
                    cancelled += doomed.cancel()
                    futures.append(doomed)
                submitted += 1
                if len(futures) >= 2 * BOUND:
                    # Collect the oldest half; one wait in twenty gives up early first.
                    for future in futures[:BOUND]:
                        if rng.random() < 0.05 and not wait_briefly(future):
                            timed_out += 1
                        collect(future, unexpected)
                    del futures[:BOUND]
            for future in futures:
                collect(future, unexpected)
            stop.set()
            watcher.join()
            pool.shutdown(wait=True)
            samples.append({"t": time.monotonic() - start, **sample(pool)})
        finally:
            stop.set()
            server.kill()
            server.wait()
        stats = pool.get_stats()
        ended = stats["completed_threads"] + stats["cancelled"]
        if ended != submitted:
            problems.append(f"{submitted} submitted, {ended} ended (completed or cancelled)")
        if unexpected:
            problems.append(f"{len(unexpected)} tasks failed, first: {unexpected[0]!r}")
        if load.shared != load.done.get("lock", 0):
            problems.append(f"the lock lost updates: {load.shared} != {load.done.get('lock')}")
        # Every descriptor and thread the load used is given back once the pool is shut
        # down (counted in /proc: the runtime's threads are not Python threads).
        after = samples[-1]
        if after["fds"] > before["fds"]:
            problems.append(f"{after['fds']:.0f} fds open after shutdown, {before['fds']} before")
        if after["threads"] > before["threads"]:
            problems.append(
                f"{after['threads']:.0f} OS threads after shutdown, {before['threads']} before"
            )
        warm = sum(1 for s in samples if s["t"] < warmup)
        problems += growth(samples[:-1], warm)
        print(
            f"submitted {submitted}, cancelled {cancelled}, early timeouts {timed_out}, "
            f"done {load.done}",
            flush=True,
        )
    return samples, problems, load


def curve_line(s: dict[str, float]) -> str:
    return (
        f"t={s['t']:6.0f}s rss={s['rss_mib']:7.1f} MiB fds={s['fds']:4.0f} "
        f"threads={s['threads']:3.0f} in_flight={s['in_flight']:4.0f} "
        f"completed={s['completed']:8.0f}"
    )


def write_report(directory: str, samples: list[dict[str, float]], problems: list[str]) -> None:
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "soak.json"), "w") as f:
        json.dump({"samples": samples, "problems": problems}, f, indent=1)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(8, 8), sharex=True)
    for ax, key, label in zip(
        axes,
        ("rss_mib", "fds", "threads", "in_flight"),
        ("RSS (MiB)", "open fds", "OS threads", "ring ops in flight"),
    ):
        ax.plot(t, [s[key] for s in samples])
        ax.set_ylabel(label)
    axes[-1].set_xlabel("seconds")
    fig.suptitle("ringloom soak: one VirtualThreadPool under a mixed load")
    fig.tight_layout()
    fig.savefig(os.path.join(directory, "soak.png"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_S", 600)))
    parser.add_argument("--warmup", type=float, default=None, help="default: 20%% of the run")
    parser.add_argument("--report", default=None, help="directory for soak.json and soak.png")
    args = parser.parse_args()
    if args.seconds < 10:
        parser.error("--seconds must be at least 10")
    warmup = args.warmup if args.warmup is not None else args.seconds * 0.2
    samples, problems, _ = run(args.seconds, warmup)
    if args.report:
        write_report(args.report, samples, problems)
    print(curve_line(samples[-1]))
    for problem in problems:
        print("SOAK FAILED:", problem)
    if not problems:
        print(f"soak passed: {args.seconds:.0f} s, {len(samples)} samples, no growth")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
