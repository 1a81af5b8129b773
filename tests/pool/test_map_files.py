"""``VirtualThreadPool.map_files``: every file read whole and handed to the function in a
virtual thread, results in input order, descriptors bounded, stock errors."""

from __future__ import annotations

import hashlib
import os
import pathlib
import resource
import threading

import pytest
from ringloom import _native
from ringloom.virtual_thread import VirtualThreadPool
from support import TIMEOUT, evicted, open_fds, wait_until

SIZES = [0, 1, 4095, 4096, 4097, 65_536, 300_000]


def make(directory: pathlib.Path, count: int) -> list[pathlib.Path]:
    paths = []
    for i in range(count):
        path = directory / f"{i:05d}.bin"
        path.write_bytes(os.urandom(SIZES[i % len(SIZES)]))
        paths.append(path)
    return paths


def digest(data: bytes) -> tuple[int, str]:
    return len(data), hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("cold", [False, True])
def test_contents_in_order_warm_and_from_the_disk(tmp_path: pathlib.Path, cold: bool) -> None:
    paths = make(tmp_path, 70)
    expected = [digest(p.read_bytes()) for p in paths]
    if cold and sum(evicted(p) for p in paths if p.stat().st_size) < len(paths) // 2:
        pytest.skip("the page cache keeps these files (tmpfs?): few reads from the disk")
    with VirtualThreadPool(2) as pool:
        # str, bytes and path-like paths, as open() takes them.
        mixed = [(str(p), os.fsencode(p), p)[i % 3] for i, p in enumerate(paths)]
        assert pool.map_files(digest, mixed, timeout=TIMEOUT) == expected
        stats = pool.get_stats()
    assert stats["completed_threads"] == len(paths)
    if cold:
        assert stats["parks"] > 0  # the reads that missed the cache parked


def test_the_first_error_in_input_order_names_its_file(tmp_path: pathlib.Path) -> None:
    paths = make(tmp_path, 20)
    missing = tmp_path / "missing.bin"
    directory = tmp_path / "a-directory"
    directory.mkdir()
    with VirtualThreadPool(2) as pool:
        with pytest.raises(FileNotFoundError) as info:
            pool.map_files(len, [*paths[:5], missing, *paths[5:], directory])
        assert info.value.filename == missing
        assert info.value.errno == 2
        with pytest.raises(IsADirectoryError) as is_dir:
            pool.map_files(len, [directory, *paths])
        assert is_dir.value.filename == directory
        # The function's own exception comes back as it was raised.
        with pytest.raises(ZeroDivisionError):
            pool.map_files(lambda data: 1 // 0, paths)
        assert pool.map_files(len, paths) == [p.stat().st_size for p in paths]
        assert pool.map_files(len, []) == []


def test_descriptors_stay_bounded_beyond_the_limit(tmp_path: pathlib.Path) -> None:
    """More files than the process may open at once, each read from the disk (so each
    holds its descriptor while it parks): all read, none refused."""
    paths = make(tmp_path, 400)
    if sum(evicted(p) for p in paths if p.stat().st_size) < 200:
        pytest.skip("the page cache keeps these files (tmpfs?): few reads park")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with VirtualThreadPool(2) as pool:
        assert pool.map_files(len, paths[:2]) == [p.stat().st_size for p in paths[:2]]
        low = open_fds() + 64
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
        try:
            sizes = pool.map_files(len, paths, timeout=TIMEOUT)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert sizes == [p.stat().st_size for p in paths]


def test_at_once_bounds_the_calls_running_together(tmp_path: pathlib.Path) -> None:
    paths = make(tmp_path, 60)
    lock = threading.Lock()
    running = [0, 0]  # now, most

    def call(data: bytes) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        _native.sleep(0.002)  # parks: the others start meanwhile
        with lock:
            running[0] -= 1
        return len(data)

    with VirtualThreadPool(2) as pool:
        assert pool.map_files(call, paths, at_once=5) == [p.stat().st_size for p in paths]
        assert running[1] == 5
        with pytest.raises(ValueError):
            pool.map_files(len, paths, at_once=-1)


def test_a_full_bounded_pool_reads_the_files_as_places_free(tmp_path: pathlib.Path) -> None:
    paths = make(tmp_path, 30)
    release = threading.Event()
    with VirtualThreadPool(2, max_virtual_threads=2) as pool:
        holders = [pool.submit(release.wait, TIMEOUT) for _ in range(2)]
        wait_until(lambda: pool.get_stats()["active_threads"] == 2)
        got: list[list[int]] = []
        mapper = threading.Thread(target=lambda: got.append(pool.map_files(len, paths)))
        mapper.start()
        wait_until(lambda: pool.get_stats()["pending"] > 0)  # queued behind the bound
        release.set()
        mapper.join(TIMEOUT)
        assert [h.result(TIMEOUT) for h in holders] == [True, True]
    assert got == [[p.stat().st_size for p in paths]]


def test_read_file_outside_virtual_threads_is_the_plain_read(tmp_path: pathlib.Path) -> None:
    data = os.urandom(100_000)
    (tmp_path / "f").write_bytes(data)
    assert _native.read_file(tmp_path / "f") == data
    with pytest.raises(FileNotFoundError) as info:
        _native.read_file(str(tmp_path / "nope"))
    assert info.value.filename == str(tmp_path / "nope")
    with pytest.raises(TypeError):
        _native.read_file(3.5)  # type: ignore[arg-type]
