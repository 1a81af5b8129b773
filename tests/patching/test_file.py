"""open(), io.open, pathlib, os.read/os.write, subprocess and concurrent.futures.wait
park intercepting virtual threads; stock behaviour elsewhere.

"Parks" is shown the only way that cannot be faked: on a single worker, a virtual thread
blocked in the call would hold the worker forever, so the virtual thread that would
unblock it could never run and the test would time out.
"""

from __future__ import annotations

import array
import builtins
import concurrent.futures as cf
import ctypes
import io
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

import pytest
import ringloom
from ringloom import Loom
from ringloom.green import file as green_file
from ringloom.green import os as green_os
from support import evicted, open_fds

TIMEOUT = 30


def run(loom: Loom, fn: Any, *args: Any) -> Any:
    return ringloom.submit(loom, fn, *args).result(timeout=TIMEOUT)


def test_open_io_open_and_pathlib_are_patched() -> None:
    assert builtins.open is green_file.patched_open
    assert io.open is green_file.patched_open
    assert green_file.stock_open is not green_file.open
    assert os.read is green_os.read and os.write is green_os.write


class StoresOpen:
    """A class that keeps ``open`` as an attribute, as CPython's test_file does."""

    open = io.open

    def write_and_read(self, path: pathlib.Path) -> bytes:
        with self.open(path, "wb", 0) as f:
            f.write(b"kept")
        with self.open(path, "rb") as f:
            return f.read()


def test_open_stored_in_a_class_is_not_bound(loom: Loom, tmp_path: pathlib.Path) -> None:
    # A plain function would be bound and get the instance as its file argument.
    assert StoresOpen().write_and_read(tmp_path / "plain") == b"kept"
    assert run(loom, StoresOpen().write_and_read, tmp_path / "ring") == b"kept"


def test_outside_virtual_threads_open_is_stock(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "stock.txt"
    path.write_text("x")
    with open(path, "rb") as f:
        assert type(f.raw) is io.FileIO


def test_in_virtual_threads_files_are_ring_files(loom: Loom, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ring.txt"
    path.write_text("abc")

    def kinds() -> list[type]:
        opened = open(path), io.open(path, "rb"), path.open("r+b")  # noqa: UP020
        text, binary, both = opened
        with text, binary, both:
            return [type(text.buffer.raw), type(binary.raw), type(both.raw), type(both)]

    assert run(loom, kinds) == [
        green_file.RingFileIO,
        green_file.RingFileIO,
        green_file.RingFileIO,
        io.BufferedRandom,
    ]


def scenario(directory: str) -> list[Any]:
    """Every mode and layer, run once stock (OS thread) and once in a virtual thread."""
    base = pathlib.Path(directory)
    seen: list[Any] = []
    with open(base / "t.txt", "w", encoding="utf-8", newline="") as f:
        seen.append(f.write("line one\r\nline two\nünï\n"))
        seen.append((f.mode, f.name == str(base / "t.txt"), f.encoding))
    with open(base / "t.txt", encoding="utf-8") as f:
        seen.append(f.readlines())
    with open(base / "t.txt", encoding="utf-8", newline="") as f:
        seen.append(f.read())
    seen.append((base / "t.txt").read_bytes())
    (base / "b.bin").write_bytes(bytes(range(256)) * 1000)
    with open(base / "b.bin", "r+b") as f:
        f.seek(1000)
        seen.append(f.read(10))
        f.seek(5)
        f.write(b"XYZ")
        f.seek(0)
        seen.append(f.read(12))
        seen.append(f.tell())
    with open(base / "b.bin", "ab") as f:
        f.write(b"tail")
    with open(base / "b.bin", "rb", buffering=0) as f:
        seen.append(type(f).__mro__[-3].__name__)  # FileIO either way
        seen.append(len(f.readall()))
        seen.append(f.read(5))
    with open(base / "x.bin", "xb") as f:
        f.write(b"new")
    try:
        open(base / "x.bin", "x")
    except FileExistsError as err:
        seen.append((err.errno, err.filename == base / "x.bin"))
    big = os.urandom(3 << 20)
    with open(base / "big", "wb") as f:
        f.write(big)
    with open(base / "big", "rb") as f:
        seen.append(f.read() == big)
    with open(base / "big", "rb") as f:
        buf = bytearray(1 << 20)
        seen.append((f.readinto(buf), bytes(buf) == big[: 1 << 20]))
    return seen


def test_same_results_as_stock(loom: Loom, tmp_path: pathlib.Path) -> None:
    (tmp_path / "stock").mkdir()
    (tmp_path / "ring").mkdir()
    stock = scenario(str(tmp_path / "stock"))
    ring = run(loom, scenario, str(tmp_path / "ring"))
    assert ring == stock
    assert ring[2] == ["line one\n", "line two\n", "ünï\n"]


def test_errors_are_the_stock_errors(loom: Loom, tmp_path: pathlib.Path) -> None:
    (tmp_path / "w").write_text("only for writing")

    def errors() -> list[Any]:
        seen: list[Any] = []
        attempts: list[Any] = [
            lambda: open(tmp_path / "missing"),
            lambda: open(tmp_path),
            lambda: open(tmp_path / "w", "rw"),
            lambda: open(tmp_path / "w", "rt", buffering=0),  # noqa: UP015
            lambda: open(tmp_path / "w", "rb", encoding="utf-8"),
            lambda: open(str(tmp_path / "w") + "\0"),
            lambda: open(tmp_path / "w", "w").read(),
        ]
        for attempt in attempts:
            try:
                attempt()
            except Exception as err:  # noqa: BLE001 - the type is what is compared
                seen.append((type(err), getattr(err, "errno", None), str(err)))
        f = open(tmp_path / "w", "rb")
        f.close()
        try:
            f.read()
        except ValueError as err:
            seen.append(str(err))
        with open(tmp_path / "w", "rb", buffering=0) as raw:
            try:
                raw.readinto(b"read-only")
            except TypeError as err:
                seen.append(type(err))
        return seen

    assert run(loom, errors) == errors()


def test_pipe_read_parks_until_another_virtual_thread_writes(one_worker: Loom) -> None:
    r, w = os.pipe()

    def reader() -> bytes:
        with open(r, "rb") as f:
            return f.read()  # to EOF

    def writer() -> None:
        with open(w, "wb") as f:
            f.write(b"through the ring")

    got = ringloom.submit(one_worker, reader)
    ringloom.submit(one_worker, writer).result(timeout=TIMEOUT)
    assert got.result(timeout=TIMEOUT) == b"through the ring"


def test_read_to_eof_grows_past_what_fstat_said(one_worker: Loom) -> None:
    """A pipe has no size: the read-all grows its result chunk by chunk, parking between
    the writer's pieces, and returns every byte once."""
    r, w = os.pipe()
    pieces = [os.urandom(n) for n in (1, 70_000, 3, 200_000, 65_536)]

    def reader() -> bytes:
        with open(r, "rb") as f:
            return f.read()

    def writer() -> None:
        with open(w, "wb", buffering=0) as f:
            for piece in pieces:
                f.write(piece)
                time.sleep(0)  # the reader runs between pieces

    got = ringloom.submit(one_worker, reader)
    ringloom.submit(one_worker, writer).result(timeout=TIMEOUT)
    assert got.result(timeout=TIMEOUT) == b"".join(pieces)


def test_a_write_to_a_blocking_pipe_takes_everything(one_worker: Loom) -> None:
    """Stock ``os.write`` on a blocking pipe waits for room and writes it all; so does the
    parked one, though the pipe holds less than the data."""
    r, w = os.pipe()
    data = os.urandom(300_000)

    def reader() -> bytes:
        with open(r, "rb") as f:
            return f.read()

    def writer() -> int:
        try:
            return os.write(w, data)
        finally:
            os.close(w)

    got = ringloom.submit(one_worker, reader)
    assert ringloom.submit(one_worker, writer).result(timeout=TIMEOUT) == len(data)
    assert got.result(timeout=TIMEOUT) == data


def test_reads_return_exact_bytes_objects(loom: Loom, tmp_path: pathlib.Path) -> None:
    """Sized and whole reads at any position give the stock results (the result object
    is filled in place, then shrunk to what was read)."""
    data = os.urandom(200_000)
    path = tmp_path / "data"
    path.write_bytes(data)

    def reads() -> list[Any]:
        seen: list[Any] = []
        with open(path, "rb", buffering=0) as f:
            seen.append(f.read(0))
            seen.append(f.read(10))
            f.seek(150_000)
            seen.append(f.read(100_000))  # short: the file ends first
            seen.append(f.read(5))  # at the end
            f.seek(199_999)
            seen.append(f.readall())
            f.seek(7)
            seen.append(f.readall())
        fd = os.open(path, os.O_RDONLY)
        try:
            seen.append(os.pread(fd, 50, 1_000))
            seen.append(os.read(fd, 0))
        finally:
            os.close(fd)
        return seen

    got = run(loom, reads)
    assert got == reads()
    assert [type(x) for x in got] == [bytes] * len(got)
    assert got[5] == data[7:]


def test_fifo_open_and_read_park(one_worker: Loom, tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def reader() -> str:
        with open(fifo) as f:  # blocks until a writer opens: parks instead
            return f.read()

    def writer() -> None:
        with open(fifo, "w") as f:
            f.write("hello fifo")

    got = ringloom.submit(one_worker, reader)
    ringloom.submit(one_worker, writer).result(timeout=TIMEOUT)
    assert got.result(timeout=TIMEOUT) == "hello fifo"


def test_os_read_and_write_park(one_worker: Loom) -> None:
    r, w = os.pipe()
    try:
        got = ringloom.submit(one_worker, os.read, r, 100)
        assert ringloom.submit(one_worker, os.write, w, b"abc").result(timeout=TIMEOUT) == 3
        assert got.result(timeout=TIMEOUT) == b"abc"
    finally:
        os.close(r)
        os.close(w)


def test_nonblocking_descriptors_keep_stock_semantics(loom: Loom) -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:

        def empty() -> list[Any]:
            seen: list[Any] = []
            try:
                os.read(r, 10)
            except BlockingIOError as err:
                seen.append(err.errno)
            with open(r, "rb", buffering=0, closefd=False) as f:
                seen.append(f.read(10))
            return seen

        assert run(loom, empty) == empty()
    finally:
        os.close(r)
        os.close(w)


def test_read_all_of_a_nonblocking_pipe_is_stock(loom: Loom) -> None:
    """Empty: None; with data: what is there, without waiting for the end."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:

        def reads() -> list[Any]:
            with open(r, "rb", closefd=False) as f:
                seen = [f.read()]
                os.write(w, b"some")
                seen.append(f.read())
                seen.append(f.read())
            return seen

        assert run(loom, reads) == reads() == [None, b"some", None]
    finally:
        os.close(r)
        os.close(w)


def test_any_buffer_exporter_reads_and_writes_as_stock(loom: Loom, tmp_path: pathlib.Path) -> None:
    """Stock reads into and writes from any contiguous buffer (``w*``, ``y*``): arrays of
    ints, ctypes objects; a read-only one is a TypeError naming it."""
    path = tmp_path / "exporters"

    def scenario() -> list[Any]:
        seen: list[Any] = []
        ints = array.array("i", range(10))
        with open(path, "wb", buffering=0) as f:
            seen.append(f.write(ints))
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            seen.append(os.write(null, ints))
        finally:
            os.close(null)
        block = (ctypes.c_char * 8)()
        with open(path, "rb", buffering=0) as f:
            seen.append(f.readinto(block))
            seen.append(bytes(block))
            try:
                f.readinto(b"read-only")
            except TypeError as err:
                seen.append(str(err))
        return seen

    assert run(loom, scenario) == scenario()


def test_page_cache_writes_are_in_place_device_writes_go_to_the_ring(
    loom: Loom, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "writes"

    def write(flags: int) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | flags)
        with open(fd, "wb", buffering=0) as f:
            return sum(f.write(b"%d\n" % i) + os.write(fd, b"+") for i in range(100))

    expected = sum(len(b"%d\n" % i) + 1 for i in range(100))
    before = loom.stats()["ops_submitted"]
    assert run(loom, write, 0) == expected
    assert loom.stats()["ops_submitted"] == before  # written in place
    assert path.read_bytes() == b"".join(b"%d\n+" % i for i in range(100))
    before = loom.stats()["ops_submitted"]
    assert run(loom, write, os.O_DSYNC) == expected
    assert loom.stats()["ops_submitted"] - before >= 200  # waits for the disk: the ring
    assert path.read_bytes() == b"".join(b"%d\n+" % i for i in range(100))


@pytest.mark.parametrize("workers", [1, 2])
def test_virtual_threads_share_a_file_object_for_writing(
    workers: int, tmp_path: pathlib.Path
) -> None:
    """Many virtual threads appending to one buffered file, as OS threads may: every
    record lands whole (a write used to park inside the buffered layer's lock, and the
    next writer on that worker got "reentrant call")."""
    path = tmp_path / "shared"
    records = [b"%06d:" % i + b"x" * (i % 300) + b"\n" for i in range(5_000)]
    with ringloom.VirtualThreadPool(workers) as pool:
        out = pool.submit(open, path, "ab").result(timeout=TIMEOUT)
        assert type(out.raw) is green_file.RingFileIO
        pool.map(out.write, records, timeout=TIMEOUT)
        pool.submit(out.close).result(timeout=TIMEOUT)
    assert sorted(path.read_bytes().splitlines(keepends=True)) == records


def test_subprocess_run_parks(one_worker: Loom, tmp_path: pathlib.Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def cat() -> bytes:
        # Reads the child's stdout and waits for its exit: both would hold the worker.
        return subprocess.run(["cat", str(fifo)], capture_output=True, check=True).stdout

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(b"fed")

    got = ringloom.submit(one_worker, cat)
    ringloom.submit(one_worker, feed).result(timeout=TIMEOUT)
    assert got.result(timeout=TIMEOUT) == b"fed"


def test_waitpid_for_a_reaped_or_unknown_child_is_stock(loom: Loom) -> None:
    def unknown() -> int | None:
        try:
            os.waitpid(2**22 + 12345, 0)
        except ChildProcessError as err:
            return err.errno
        return None

    assert run(loom, unknown) == unknown()


@pytest.mark.parametrize("how", ["wait", "as_completed"])
def test_futures_wait_inside_a_virtual_thread_parks(how: str) -> None:
    with ringloom.VirtualThreadPool(max_platform_threads=1) as pool:
        release = ringloom.Event()

        def waiter() -> list[int]:
            futures = [pool.submit(lambda i=i: release.wait() and i) for i in range(5)]
            pool.submit(release.set)
            if how == "wait":
                done, not_done = cf.wait(futures, timeout=TIMEOUT)
                assert not not_done
                return sorted(f.result() for f in done)
            return sorted(f.result() for f in cf.as_completed(futures, timeout=TIMEOUT))

        assert pool.submit(waiter).result(timeout=TIMEOUT) == [0, 1, 2, 3, 4]


def test_futures_wait_outside_virtual_threads_is_stock() -> None:
    with ringloom.VirtualThreadPool() as pool:
        futures = [pool.submit(pow, 2, i) for i in range(10)]
        done, _ = cf.wait(futures, timeout=TIMEOUT)
        assert sorted(f.result() for f in done) == [2**i for i in range(10)]


def test_a_parked_read_dropped_at_close_leaks_nothing() -> None:
    baseline = open_fds()
    r, w = os.pipe()
    loom = Loom(workers=1)
    started = ringloom.Event()

    def reader() -> bytes:
        started.set()
        return os.read(r, 10)  # never gets data

    future = ringloom.submit(loom, reader)
    assert started.wait(TIMEOUT)
    loom.close()  # the read is in flight: its task is dropped, its op cancelled
    with pytest.raises((RuntimeError, BaseException)):
        future.result(timeout=TIMEOUT)
    os.close(r)
    os.close(w)
    # The fallback driver's cleanup finishes on its own threads: wait for it (bounded).
    deadline = time.monotonic() + TIMEOUT
    while open_fds() != baseline and time.monotonic() < deadline:
        time.sleep(0.01)
    assert open_fds() == baseline


def test_not_intercepting_virtual_threads_use_stock_files(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "plain"
    path.write_text("plain")
    with ringloom.VirtualThreadPool() as pool:

        def kind() -> type:
            with open(path, "rb") as f:
                return type(f.raw)

        assert pool.submit(kind, is_blocking=False).result(timeout=TIMEOUT) is io.FileIO
        assert pool.submit(kind).result(timeout=TIMEOUT) is green_file.RingFileIO


def test_many_virtual_threads_hash_files(loom: Loom, tmp_path: pathlib.Path) -> None:
    import hashlib

    for i in range(200):
        (tmp_path / f"{i}.dat").write_bytes(os.urandom(1000 + 97 * i))

    def digest(i: int) -> str:
        with open(tmp_path / f"{i}.dat", "rb") as f:
            return hashlib.blake2b(f.read()).hexdigest()

    futures = [ringloom.submit(loom, digest, i) for i in range(200)]
    assert [f.result(timeout=TIMEOUT) for f in futures] == [digest(i) for i in range(200)]


def test_reads_from_the_disk_are_exact(loom: Loom, tmp_path: pathlib.Path) -> None:
    sizes = [0, 1, 4095, 4096, 65537, 300_000]
    contents = {}
    for i, size in enumerate(sizes):
        contents[i] = os.urandom(size)
        (tmp_path / f"{i}.dat").write_bytes(contents[i])
    if not all(evicted(tmp_path / f"{i}.dat") for i in range(1, len(sizes))):
        pytest.skip("the page cache keeps these files (tmpfs?): no read from the disk")

    def read(i: int, skip: int) -> bytes:
        with open(tmp_path / f"{i}.dat", "rb") as f:
            f.seek(skip)
            return f.read()

    before = loom.stats()["ops_submitted"]
    cases = [(i, skip) for i in range(len(sizes)) for skip in (0, 3)]
    futures = [ringloom.submit(loom, read, i, skip) for i, skip in cases]
    for (i, skip), future in zip(cases, futures):
        assert future.result(timeout=TIMEOUT) == contents[i][skip:], (i, skip)
    assert loom.stats()["ops_submitted"] > before  # the reads went to the ring


def test_print_to_a_file_in_a_virtual_thread(loom: Loom, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "printed"

    def write() -> None:
        with open(path, "w") as f:
            print("printed", 42, file=f)
            print("to stdout", file=sys.stdout, end="")

    run(loom, write)
    assert path.read_text() == "printed 42\n"


LOCK_PROBE = """
import fcntl, sys
with open(sys.argv[1], "r+b") as f:
    try:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("held")
    else:
        print("free")
"""


@pytest.mark.skipif(
    os.environ.get("RINGLOOM_DRIVER") == "fallback",
    reason="the fallback driver runs a parked write on another thread with a duplicate "
    "descriptor, whose close drops the process's POSIX locks (documented in the README)",
)
def test_a_ring_write_keeps_the_process_posix_locks(loom: Loom, tmp_path: pathlib.Path) -> None:
    import fcntl

    path = tmp_path / "locked.bin"
    path.write_bytes(b"\0" * 16)

    def probe() -> str:
        out = subprocess.run(
            [sys.executable, "-c", LOCK_PROBE, str(path)], capture_output=True, text=True
        )
        return out.stdout.strip()

    with open(os.open(path, os.O_RDWR | os.O_DSYNC), "r+b", buffering=0) as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        assert probe() == "held"
        # An O_DSYNC write waits for the disk, so it goes to the ring: with a duplicate
        # descriptor, its close at the end of the op dropped the lock.
        written = run(loom, lambda: [os.write(f.fileno(), b"x" * 8) for _ in range(20)])
        assert written == [8] * 20
        assert probe() == "held"
        assert run(loom, lambda: os.pread(f.fileno(), 8, 0)) == b"x" * 8
        assert probe() == "held"


# -- descriptors stay bounded ---------------------------------------------------------

# Run in a child with a low descriptor limit: the pool's own descriptors (rings, eventfds)
# count too, so the limit is what is open at the start plus ROOM.
DESCRIPTOR_CHILD = r"""
import errno, os, resource, sys, time
import ringloom
from ringloom.green import file as green_file

ROOM, case, directory = int(sys.argv[1]), sys.argv[2], sys.argv[3]
paths = [os.path.join(directory, name) for name in sorted(os.listdir(directory))]
pool = ringloom.VirtualThreadPool(max_platform_threads=2)
pool.submit(int).result()  # the runtime's own descriptors exist from here on
start = len(os.listdir("/proc/self/fd"))
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (start + ROOM, hard))

def hold_then_read(path):
    with open(path, "rb") as f:
        time.sleep(0.01)  # every call holds its file across a park
        return f.read()

if case == "map":
    data = pool.map(hold_then_read, paths)
    assert data == [p.encode() for p in paths], "every file read, in order"
    print("ok", len(data))
elif case == "none-of-ours":
    green_file.DESCRIPTOR_WAIT = 3600.0  # a wait here would hang the test
    spare = []
    try:
        while True:
            spare.append(os.open(paths[0], os.O_RDONLY))
    except OSError as err:
        assert err.errno == errno.EMFILE
    def try_open():
        try:
            open(paths[1], "rb").close()
        except OSError as err:
            return err.errno
    print("errno", pool.submit(try_open).result(timeout=60))
elif case == "deadline":
    green_file.DESCRIPTOR_WAIT = 0.2
    release = ringloom.Event()  # parks the holders
    opened = []
    def hold(path):
        with open(path, "rb"):
            opened.append(path)
            release.wait()
    holders = [pool.submit(hold, p) for p in paths[:ROOM - 2]]
    while len(opened) < ROOM - 2:
        time.sleep(0.01)
    spare = []
    try:
        while True:  # none left after this
            spare.append(os.open(paths[0], os.O_RDONLY))
    except OSError as err:
        assert err.errno == errno.EMFILE
    def try_open():
        try:
            open(paths[-1], "rb").close()
        except OSError as err:
            return err.errno
    result = pool.submit(try_open).result(timeout=60)
    release.set()
    for holder in holders:
        holder.result(timeout=60)
    print("errno", result)
pool.shutdown()
"""


def run_descriptor_child(tmp_path: pathlib.Path, case: str, files: int, room: int) -> str:
    for i in range(files):
        path = tmp_path / f"f{i:05d}"
        path.write_bytes(str(path).encode())
    child = subprocess.run(
        [sys.executable, "-c", DESCRIPTOR_CHILD, str(room), case, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    return child.stdout.strip().splitlines()[-1]


def test_a_map_over_more_files_than_descriptors_waits_for_closes(
    tmp_path: pathlib.Path,
) -> None:
    assert run_descriptor_child(tmp_path, "map", files=600, room=64) == "ok 600"


def test_out_of_descriptors_with_none_of_ours_open_fails_at_once(
    tmp_path: pathlib.Path,
) -> None:
    assert run_descriptor_child(tmp_path, "none-of-ours", files=2, room=16) == "errno 24"


def test_out_of_descriptors_fails_after_the_wait_if_none_is_closed(
    tmp_path: pathlib.Path,
) -> None:
    assert run_descriptor_child(tmp_path, "deadline", files=40, room=24) == "errno 24"
