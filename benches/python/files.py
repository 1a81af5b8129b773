"""Workloads py.files.warm and py.files.cold: read and blake2b-hash every file of a set
of 4-64 KiB files, files/s.

    python benches/python/files.py PEER MODE --dir DIR [--cpu C]
    python benches/python/files.py make --dir DIR --count N

``make`` writes the set once (``prepare()`` of the suite). MODE ``warm``: every file is
read (and hashed: the reference) once before the clock starts; ``cold``: the page cache
is dropped first (``sync``, then ``1`` into ``/proc/sys/vm/drop_caches``; where that is
refused, ``posix_fadvise(DONTNEED)`` on every file; ``info.cache_drop`` says which).
Peers: ``sequential`` (a plain loop), ``ringloom``
(``VirtualThreadPool(max_virtual_threads=1000).map``, open() and read unmodified),
``ringloom-map_files`` (the batch API: ``VirtualThreadPool().map_files`` hands each file's
contents to the hash),
``threads8`` and ``threads32`` (``ThreadPoolExecutor``), ``gevent`` (the hub's threadpool,
gevent's default size), ``asyncio`` (``asyncio.to_thread`` gathered; the default
executor). The clock runs from before the pool is made (the peer's modules already
imported) until every result is in and the pool is shut down.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from typing import Any, Callable

import _harness as h

MARKER = "complete"


def hash_file(path: str) -> tuple[int, str]:
    with open(path, "rb") as f:
        data = f.read()
    return len(data), hashlib.blake2b(data).hexdigest()


def hash_contents(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.blake2b(data).hexdigest()


def make(directory: str, count: int, seed: int = 5) -> None:
    """Writes ``count`` files of 4-64 KiB (random bytes, fixed seed) once."""
    marker = os.path.join(directory, MARKER)
    if os.path.exists(marker):
        with open(marker) as f:
            if f.read().strip() == str(count):
                return
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(seed)
    for i in range(count):
        with open(os.path.join(directory, f"f{i:06d}.bin"), "wb") as f:
            f.write(rng.randbytes(rng.randint(4 * 1024, 64 * 1024)))
    os.sync()
    with open(marker, "w") as f:
        f.write(str(count))


def list_files(directory: str) -> list[str]:
    return sorted(
        os.path.join(directory, name) for name in os.listdir(directory) if name.endswith(".bin")
    )


def drop_cache(paths: list[str]) -> str:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return "drop_caches=1 after sync"
    except OSError:
        pass
    h.evict(paths)
    return "posix_fadvise DONTNEED per file (drop_caches refused)"


def run_sequential(paths: list[str]) -> tuple[list[tuple[int, str]], dict[str, Any]]:
    return [hash_file(p) for p in paths], {}


def run_ringloom(paths: list[str]) -> tuple[list[tuple[int, str]], dict[str, Any]]:
    from ringloom.virtual_thread import VirtualThreadPool

    # At most 1,000 files open at once: unbounded, all 20,000 virtual threads open their
    # file at once, and 20,000 descriptors is this machine's hard limit (EMFILE; seen).
    with VirtualThreadPool(max_virtual_threads=1000) as pool:
        results = pool.map(hash_file, paths)
        stats = pool.get_stats()
    keys = ("driver", "platform_threads", "parks", "ops_submitted", "blocking_threads")
    return results, {k: stats.get(k) for k in keys}


def run_ringloom_map_files(paths: list[str]) -> tuple[list[tuple[int, str]], dict[str, Any]]:
    from ringloom.virtual_thread import VirtualThreadPool

    # The batch API: each file read whole natively (no file object), at most
    # MAP_FILES_OPEN at once, the contents handed to the function.
    with VirtualThreadPool() as pool:
        results = pool.map_files(hash_contents, paths)
        stats = pool.get_stats()
    keys = ("driver", "platform_threads", "parks", "ops_submitted", "blocking_threads")
    return results, {k: stats.get(k) for k in keys}


def threads(n: int) -> Callable[[list[str]], tuple[list[tuple[int, str]], dict[str, Any]]]:
    def run(paths: list[str]) -> tuple[list[tuple[int, str]], dict[str, Any]]:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(hash_file, paths)), {"max_workers": n}

    return run


def run_gevent(paths: list[str]) -> tuple[list[tuple[int, str]], dict[str, Any]]:
    import gevent

    pool = gevent.get_hub().threadpool
    return list(pool.map(hash_file, paths)), {"threadpool_maxsize": pool.maxsize}


def run_asyncio(paths: list[str]) -> tuple[list[tuple[int, str]], dict[str, Any]]:
    import asyncio

    async def main() -> list[tuple[int, str]]:
        return list(await asyncio.gather(*(asyncio.to_thread(hash_file, p) for p in paths)))

    return asyncio.run(main()), {"executor": f"default, {min(32, (os.cpu_count() or 1) + 4)}"}


PEERS: dict[str, Callable[[list[str]], tuple[list[tuple[int, str]], dict[str, Any]]]] = {
    "sequential": run_sequential,
    "ringloom": run_ringloom,
    "ringloom-map_files": run_ringloom_map_files,
    "threads8": threads(8),
    "threads32": threads(32),
    "gevent": run_gevent,
    "asyncio": run_asyncio,
}
#: What each peer imports, done before the clock starts (see `_harness.preimport`).
IMPORTS: dict[str, tuple[str, ...]] = {
    "sequential": (),
    "ringloom": ("ringloom.virtual_thread",),
    "ringloom-map_files": ("ringloom.virtual_thread",),
    "threads8": ("concurrent.futures",),
    "threads32": ("concurrent.futures",),
    "gevent": ("gevent",),
    "asyncio": ("asyncio",),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("peer", choices=[*PEERS, "make"])
    parser.add_argument("mode", nargs="?", choices=("warm", "cold"), default="warm")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--count", type=int, default=20_000, help="files to make")
    parser.add_argument("--cpu", type=int, default=0, help="pin to this CPU (-1: no pinning)")
    args = parser.parse_args()
    if args.peer == "make":
        make(args.dir, args.count)
        return
    h.pin(args.cpu)
    h.raise_nofile(1 << 16)
    paths = list_files(args.dir)
    if not paths:
        sys.exit(f"no files in {args.dir}: run `files.py make` first")
    reference: list[tuple[int, str]] | None = None
    if args.mode == "warm":
        reference = [hash_file(p) for p in paths]
        cache = "warm: every file read once before"
    else:
        cache = drop_cache(paths)
    h.preimport(*IMPORTS[args.peer])
    watcher = h.Watcher().start()
    start = time.perf_counter()
    results, info = PEERS[args.peer](paths)
    wall = time.perf_counter() - start
    threads_peak = watcher.stop()
    total = sum(n for n, _ in results)
    if reference is not None and results != reference:
        sys.exit("hashes differ from the sequential pass")
    if len(results) != len(paths):
        sys.exit(f"{len(results)} results for {len(paths)} files")
    info.update(
        files=len(paths),
        mib=round(total / (1 << 20), 1),
        wall_s=round(wall, 3),
        cache=cache,
        verified="against a sequential pass" if reference is not None else "count and sizes",
    )
    info.update(h.versions("gevent", "greenlet"))
    h.emit(
        {
            "files_per_s": len(paths) / wall,
            "peak_rss_mib": h.peak_rss_mib(),
            "os_threads": threads_peak,
        },
        info,
    )


if __name__ == "__main__":
    main()
