"""The demo (``examples/demo.py``, what ``make demo`` runs), small, in both drivers."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
sys.path.insert(0, str(EXAMPLES))
import demo  # noqa: E402 - examples/demo.py, found through the path above

SUMMARY_KEYS = (
    "driver:",
    "http:",
    "http baseline:",
    "http threads:",
    "http pool:",
    "server:",
    "files:",
    "files baseline:",
    "files threads:",
    "files pool:",
    "peak memory:",
    "OS threads:",
    "result:",
)


def run_demo(*args: str, driver: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("RINGLOOM_DRIVER", None)
    if driver is not None:
        env["RINGLOOM_DRIVER"] = driver
    return subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("driver", [None, "fallback"], ids=["default", "fallback"])
def test_demo_quick(driver: str | None) -> None:
    pytest.importorskip("requests")
    proc = run_demo("--quick", driver=driver)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    lines = [line.strip() for line in proc.stdout.splitlines()]
    for key in SUMMARY_KEYS:
        assert any(line.startswith(key) for line in lines), f"no {key!r} line:\n{output}"
    assert "result:          OK" in proc.stdout
    assert f"{demo.QUICK['requests']}/{demo.QUICK['requests']} verified" in proc.stdout
    assert f"{demo.QUICK['files']}/{demo.QUICK['files']} hashes match" in proc.stdout
    # The same work through a thread pool and one after another, in the same run.
    assert "the thread pool" in proc.stdout and "one after another)" in proc.stdout
    assert f"server latency {demo.DEFAULT_LATENCY_MS:g} ms" in proc.stdout
    if driver == "fallback":
        assert "driver:          fallback" in proc.stdout
    assert "\r" in proc.stderr or "http  [" in proc.stderr  # the progress line


def test_demo_options() -> None:
    pytest.importorskip("requests")
    proc = run_demo(
        "--requests",
        "20",
        "--concurrency",
        "5",
        "--files",
        "3",
        "--server-latency",
        "20",
        driver=None,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "20 requests (plain requests.get, one connection each), 5 at once" in proc.stdout
    assert "server latency 20 ms" in proc.stdout
    assert "3/3 hashes match" in proc.stdout


def test_cli_usage_and_bad_input() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "ringloom", "--help"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "run" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "ringloom", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr
    assert run_demo("--concurrency", "0", driver=None).returncode == 2


class WrongBody(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = b"x" * len(demo.body_for(int(self.path.rsplit("/", 1)[1])))
        status = 500 if self.path.endswith("/3") else 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def wrong_server() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), WrongBody)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_verification_catches_wrong_responses(wrong_server: str) -> None:
    pytest.importorskip("requests")
    fetch = demo.make_fetch(wrong_server)
    assert fetch(1) == "request 1: body differs"
    assert fetch(3) == "request 3: status 500"
    assert "ConnectionError" in (demo.make_fetch("http://127.0.0.1:1")(0) or "")


def test_bodies_differ_in_length_and_content() -> None:
    bodies = [demo.body_for(i) for i in range(50)]
    assert len({len(b) for b in bodies}) > 40
    assert all(256 <= len(b) < 4096 for b in bodies)
    assert demo.body_for(7).startswith(b"00000007|")


def resident_pages(path: str) -> int:
    """Pages of ``path`` in the page cache now (``mincore`` over a shared mapping)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int]
    libc.mmap.argtypes += [ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = os.path.getsize(path)
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
            return sum(byte & 1 for byte in vec.raw)
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def test_the_file_phase_reads_from_disk() -> None:
    directory = demo.disk_directory()
    try:
        assert demo.fs_type(directory) != "tmpfs"
        paths, _ = demo.make_files(directory, 4)
        for path in paths:
            with open(path, "rb") as f:
                f.read()
        assert all(resident_pages(p) > 0 for p in paths)
        demo.evict(paths)
        assert [resident_pages(p) for p in paths] == [0] * len(paths)
    finally:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
    assert demo.fs_type("/proc/self") == "proc"
