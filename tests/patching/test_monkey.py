"""``ringloom.monkey``: unmodified code that synchronizes with stock ``threading`` and
``queue`` runs on virtual threads.

Patching is process-wide, so each case runs in a child process started the way a user
would (``python -m ringloom run script.py``); the child prints one JSON line of what it
saw, and the assertions are here. A child that hangs is killed at ``HANG_LIMIT``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
HANG_LIMIT = 300


def run_patched(source: str, *args: str, tmp_path: Path) -> dict[str, Any]:
    """Runs ``source`` as a script under ``python -m ringloom run``; its last stdout
    line, as JSON."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(source))
    proc = subprocess.run(
        [sys.executable, "-m", "ringloom", "run", str(script), *args],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr[-3000:]
    return json.loads(lines[-1])  # type: ignore[no-any-return]


def test_the_cases_that_hung_a_worker_run(tmp_path: Path) -> None:
    out = run_patched(
        """
        import asyncio, json, queue, socket, threading, time
        from ringloom import VirtualThreadPool

        results = {}
        with VirtualThreadPool(max_platform_threads=2) as pool:
            # 200 virtual threads sharing one threading.Lock, sleeping while they hold it
            lock = threading.Lock()
            count = 0
            def locked(_):
                global count
                with lock:
                    seen = count
                    time.sleep(0.001)
                    count = seen + 1
            pool.map(locked, range(200))
            results["lock_count"] = count

            # threading.Semaphore(5) around a socket request, from 50
            server = socket.create_server(("127.0.0.1", 0))
            port = server.getsockname()[1]
            def serve():
                while True:
                    conn, _ = server.accept()
                    threading.Thread(target=answer, args=(conn,)).start()
            def answer(conn):
                with conn:
                    conn.sendall(conn.recv(64))
            threading.Thread(target=serve, daemon=True).start()
            sem = threading.Semaphore(5)
            inside = peak = 0
            def request(i):
                global inside, peak
                with sem:
                    inside += 1
                    peak = max(peak, inside)
                    with socket.create_connection(("127.0.0.1", port)) as c:
                        c.sendall(b"%d" % i)
                        reply = c.recv(64)
                    time.sleep(0.002)
                    inside -= 1
                return int(reply)
            results["sem_replies"] = pool.map(request, range(50)) == list(range(50))
            results["sem_peak"] = peak

            # 20 waiting on an Event that one sets after a sleep
            event = threading.Event()
            waiters = [pool.submit(event.wait, 30) for _ in range(20)]
            pool.submit(lambda: (time.sleep(0.05), event.set()))
            results["event"] = [w.result() for w in waiters]

            # a producer and a consumer on queue.Queue(maxsize=4)
            q = queue.Queue(maxsize=4)
            def produce():
                for i in range(500):
                    q.put(i)
                q.put(None)
            def consume():
                got = []
                while (item := q.get()) is not None:
                    got.append(item)
                return got
            consumer = pool.submit(consume)
            pool.submit(produce)
            results["queue"] = consumer.result() == list(range(500))

            # threading.local per virtual thread, across a sleep
            local = threading.local()
            def keep(i):
                local.value = i
                time.sleep(0.01)
                return local.value == i
            results["local_kept"] = sum(pool.map(keep, range(100)))

            # asyncio.run in virtual threads sharing workers
            async def coro(i):
                await asyncio.sleep(0.01)
                return i
            results["asyncio"] = pool.map(lambda i: asyncio.run(coro(i)), range(20))

            # get_ident unique and stable per virtual thread
            def ident(_):
                first = threading.get_ident()
                time.sleep(0.005)
                return first if threading.get_ident() == first else None
            idents = pool.map(ident, range(100))
            results["idents"] = len(set(idents)) if None not in idents else -1
            results["main_ident_in_vt"] = threading.main_thread().ident in idents
        print(json.dumps(results))
        """,
        tmp_path=tmp_path,
    )
    assert out["lock_count"] == 200
    assert out["sem_replies"] and out["sem_peak"] == 5
    assert out["event"] == [True] * 20
    assert out["queue"]
    assert out["local_kept"] == 100
    assert out["asyncio"] == list(range(20))
    assert out["idents"] == 100 and not out["main_ident_in_vt"]


def test_urllib3_pool_with_block_true_shared_by_100(tmp_path: Path) -> None:
    out = run_patched(
        """
        import json, threading, http.server
        import urllib3
        from ringloom import VirtualThreadPool
        from ringloom.threads import OSThread

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def do_GET(self):
                body = self.path.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        OSThread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        http_pool = urllib3.PoolManager(maxsize=4, block=True)
        def fetch(i):
            return http_pool.request("GET", f"{url}/{i}").data.decode()
        with VirtualThreadPool() as pool:
            bodies = pool.map(fetch, range(100))
        server.shutdown()
        print(json.dumps({"ok": bodies == [f"/{i}" for i in range(100)]}))
        """,
        tmp_path=tmp_path,
    )
    assert out["ok"]


def test_a_lock_shared_by_os_threads_and_virtual_threads(tmp_path: Path) -> None:
    out = run_patched(
        """
        import json, threading, time
        from ringloom import VirtualThreadPool
        from ringloom.threads import OSThread

        lock = threading.Lock()
        count = 0
        def bump(times):
            global count
            for _ in range(times):
                with lock:
                    count += 1
        def bump_slowly(_):
            global count
            for _ in range(10):
                with lock:
                    seen = count
                    time.sleep(0)
                    count = seen + 1
        os_threads = [OSThread(target=bump, args=(5_000,)) for _ in range(4)]
        for t in os_threads:
            t.start()
        with VirtualThreadPool() as pool:
            pool.map(bump_slowly, range(1_000))
        for t in os_threads:
            t.join()
        native = {threading.get_native_id()}
        print(json.dumps({"count": count, "expected": 4 * 5_000 + 1_000 * 10}))
        """,
        tmp_path=tmp_path,
    )
    assert out["count"] == out["expected"]


def test_tasks_that_submit_to_their_own_pool_under_patching(tmp_path: Path) -> None:
    """The pool's own lock and its futures' stay stock under patching: a done callback
    takes them on a worker's hub, outside any virtual thread, and a patched lock handed
    over to a parked virtual thread of that worker deadlocked it (seen with 2,000 tasks
    each submitting one more while the main thread submitted)."""
    out = run_patched(
        """
        import faulthandler, json
        from ringloom import VirtualThreadPool

        faulthandler.dump_traceback_later(120, exit=True)  # a deadlock fails, with stacks
        pool = VirtualThreadPool(max_platform_threads=2)

        def give(v):
            return v

        def nested(v):
            return pool.submit(give, v).result(60)

        results = []
        for _ in range(10):
            futures = [pool.submit(nested, i) for i in range(2_000)]
            results.append([f.result(60) for f in futures] == list(range(2_000)))
        pool.shutdown()
        print(json.dumps({"rounds": results}))
        """,
        tmp_path=tmp_path,
    )
    assert out["rounds"] == [True] * 10


def test_thread_pool_executor_of_2000_runs_on_few_os_threads(tmp_path: Path) -> None:
    out = run_patched(
        """
        import json, os, threading, time
        from concurrent.futures import ThreadPoolExecutor

        peak = 0
        running = 0
        lock = threading.Lock()
        # Opens once all 2,000 are in at the same time: each waits there (and then
        # sleeps), so the peak is 2,000 however slowly they were submitted, and only if
        # they can all wait at once.
        everyone_in = threading.Event()
        def nap(i):
            global running, peak
            with lock:
                running += 1
                peak = max(peak, running)
                if running == 2000:
                    everyone_in.set()
            everyone_in.wait(20)
            time.sleep(0.05)
            with lock:
                running -= 1
            return i
        def os_threads():
            return len(os.listdir("/proc/self/task"))
        most = 0
        with ThreadPoolExecutor(2000) as executor:
            futures = [executor.submit(nap, i) for i in range(2000)]
            while not all(f.done() for f in futures):
                most = max(most, os_threads())
                time.sleep(0.01)
            results = [f.result() for f in futures]
        print(json.dumps({"ok": results == list(range(2000)), "peak": peak, "os_threads": most}))
        """,
        tmp_path=tmp_path,
    )
    assert out["ok"]
    # They wait together: far more at once than any OS thread count below.
    assert out["peak"] == 2000
    assert out["os_threads"] <= 64


def test_threading_tcp_server_9000_connections_on_few_os_threads(tmp_path: Path) -> None:
    # The clients are another process (asyncio): each side needs its 9,000 sockets, and
    # the fallback driver a duplicate descriptor per parked wait, which together would
    # pass the 20,000 descriptors a process may have here.
    (tmp_path / "clients.py").write_text(
        textwrap.dedent(
            """
            import asyncio, json, sys

            async def main(port, n):
                conns = await asyncio.gather(
                    *(asyncio.open_connection("127.0.0.1", port) for _ in range(n))
                )
                # Every connection is open before any byte moves: the server holds
                # n handlers at once.
                async def one(i, reader, writer):
                    writer.write(b"%d" % i)
                    await writer.drain()
                    return int(await reader.read(64))
                replies = await asyncio.gather(
                    *(one(i, r, w) for i, (r, w) in enumerate(conns))
                )
                # Closed only once every one was answered: no handler ends before the
                # last one has started.
                for _, writer in conns:
                    writer.close()
                print(json.dumps(replies == list(range(n))))

            asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
            """
        )
    )
    out = run_patched(
        """
        import json, os, resource, socket, socketserver, subprocess, sys, threading, time
        from ringloom.threads import OSThread

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        N = 9_000
        active = peak = 0
        count_lock = threading.Lock()

        class Echo(socketserver.BaseRequestHandler):
            def handle(self):
                global active, peak
                with count_lock:
                    active += 1
                    peak = max(peak, active)
                try:
                    while data := self.request.recv(1024):
                        self.request.sendall(data)
                finally:
                    with count_lock:
                        active -= 1

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            request_queue_size = 4096

        server = Server(("127.0.0.1", 0), Echo)
        OSThread(target=server.serve_forever, daemon=True).start()
        most = 0
        done = threading.Event()
        def sample():
            global most
            while not done.is_set():
                most = max(most, len(os.listdir("/proc/self/task")))
                time.sleep(0.01)
        sampler = OSThread(target=sample)
        sampler.start()
        clients = subprocess.run(
            [sys.executable, "clients.py", str(server.server_address[1]), str(N)],
            capture_output=True, text=True,
        )
        done.set()
        sampler.join()
        server.shutdown()
        print(json.dumps({
            "clients_ok": clients.stdout.strip() == "true",
            "clients_err": clients.stderr[-2000:],
            "peak_handlers": peak,
            "os_threads": most,
        }))
        """,
        tmp_path=tmp_path,
    )
    assert out["clients_ok"], out["clients_err"]
    assert out["peak_handlers"] == 9_000
    # The sampler and the accept loop are OS threads of their own, and the sampler
    # counts itself: still far under one per connection.
    assert out["os_threads"] <= 64


def test_logging_from_1000_virtual_threads_to_a_socket_handler(tmp_path: Path) -> None:
    out = run_patched(
        """
        import json, logging, logging.handlers, pickle, socket, struct, threading, time
        from ringloom import VirtualThreadPool
        from ringloom.threads import OSThread

        server = socket.create_server(("127.0.0.1", 0))
        port = server.getsockname()[1]
        received = []
        def collect():
            conn, _ = server.accept()
            with conn, conn.makefile("rb") as stream:
                while header := stream.read(4):
                    size = struct.unpack(">L", header)[0]
                    received.append(pickle.loads(stream.read(size))["msg"])
        collector = OSThread(target=collect)
        collector.start()
        log = logging.getLogger("vt")
        log.setLevel(logging.INFO)
        handler = logging.handlers.SocketHandler("127.0.0.1", port)
        log.addHandler(handler)
        def emit(i):
            time.sleep(0.001)
            log.info("message %d", i)
        with VirtualThreadPool() as pool:
            pool.map(emit, range(1000))
        handler.close()
        collector.join()
        print(json.dumps({"got": sorted(int(m.split()[1]) for m in received)}))
        """,
        tmp_path=tmp_path,
    )
    assert out["got"] == list(range(1000))


def test_threads_keep_the_thread_contract(tmp_path: Path) -> None:
    out = run_patched(
        """
        import json, sys, threading, time, _thread

        results = {}
        hooked = []
        threading.excepthook = lambda args: hooked.append(type(args.exc_value).__name__)
        t = threading.Thread(target=time.sleep, args=(0.05,), name="napper")
        results["alive_before"] = t.is_alive()
        t.start()
        results["alive"] = t.is_alive()
        results["in_enumerate"] = t in threading.enumerate()
        t.join(0.001)
        results["alive_after_short_join"] = t.is_alive()
        t.join()
        results["alive_after_join"] = t.is_alive()
        results["virtual"] = t.ident >= 1 << 62
        names = []
        def name():
            names.append(threading.current_thread().name)
        t = threading.Thread(target=name, name="named")
        t.start(); t.join()
        results["name"] = names
        t = threading.Thread(target=lambda: 1 / 0)
        t.start(); t.join()
        results["excepthook"] = hooked
        got = []
        lock = _thread.allocate_lock(); lock.acquire()
        def record():
            got.append(_thread.get_ident())
            lock.release()
        ident = _thread.start_new_thread(record, ())
        lock.acquire()
        results["start_new_thread_ident"] = got == [ident]
        results["main_unchanged"] = threading.main_thread() is threading.current_thread()
        timer_fired = threading.Event()
        threading.Timer(0.01, timer_fired.set).start()
        results["timer"] = timer_fired.wait(10)
        barrier = threading.Barrier(5)
        ts = [threading.Thread(target=barrier.wait) for _ in range(5)]
        for t in ts: t.start()
        for t in ts: t.join()
        results["barrier"] = barrier.n_waiting == 0 and not barrier.broken
        print(json.dumps(results), flush=True)
        """,
        tmp_path=tmp_path,
    )
    assert out == {
        "alive_before": False,
        "alive": True,
        "in_enumerate": True,
        "alive_after_short_join": True,
        "alive_after_join": False,
        "virtual": True,
        "name": ["named"],
        "excepthook": ["ZeroDivisionError"],
        "start_new_thread_ident": True,
        "main_unchanged": True,
        "timer": True,
        "barrier": True,
    }


def test_current_frames_reads_an_ended_virtual_thread_as_none(tmp_path: Path) -> None:
    """What distributed's profiler does: note the threads running tasks, then read
    their frames; a virtual thread may end in between (an OS thread of a pool would
    still be there)."""
    out = run_patched(
        """
        import json, sys, threading

        idents = []
        inside = {}
        def task():
            idents.append(threading.get_ident())
            inside["found"] = sys._current_frames()[idents[0]] is not None
        t = threading.Thread(target=task)
        t.start(); t.join()
        frames = sys._current_frames()
        ended = idents[0]
        try:
            frames[12345]  # an OS thread identity that is not there: as stock
            unknown = "no error"
        except KeyError:
            unknown = "KeyError"
        print(json.dumps({
            "inside": inside["found"],
            "ended": frames[ended],
            "listed": ended in frames,
            "get": frames.get(ended, "default"),
            "unknown": unknown,
            "main": threading.main_thread().ident in frames,
        }), flush=True)
        """,
        tmp_path=tmp_path,
    )
    assert out == {
        "inside": True,
        "ended": None,
        "listed": False,
        "get": "default",
        "unknown": "KeyError",
        "main": True,
    }


def test_calls_that_take_a_thread_ident_take_a_virtual_threads(tmp_path: Path) -> None:
    """``signal.pthread_kill`` and ``time.pthread_getcpuclockid`` are given
    ``threading.get_ident()`` values (CPython's test_time does so); a virtual thread's
    is not a ``pthread_t``, and the stock calls crashed the process with it."""
    out = run_patched(
        """
        import json, signal, threading, time

        seen = {}
        started = threading.Event()
        release = threading.Event()
        def task():
            me = threading.get_ident()
            seen["own_clock"] = type(time.pthread_getcpuclockid(me)).__name__
            signal.pthread_kill(me, 0)  # signal 0: only checks the thread exists
            seen["own_kill"] = "ok"
            started.set()
            release.wait()
        t = threading.Thread(target=task)
        t.start()
        started.wait()
        # another virtual thread's identity, from the main thread
        seen["other_clock"] = type(time.pthread_getcpuclockid(t.ident)).__name__
        signal.pthread_kill(t.ident, 0)
        seen["other_kill"] = "ok"
        release.set()
        t.join()
        try:  # a virtual thread identity that no live one has
            signal.pthread_kill(t.ident + 10**9, 0)
            seen["unknown"] = "no error"
        except ProcessLookupError:
            seen["unknown"] = "ProcessLookupError"
        signal.pthread_kill(threading.get_ident(), 0)  # an OS thread's: stock
        seen["main"] = type(time.pthread_getcpuclockid(threading.get_ident())).__name__
        print(json.dumps(seen), flush=True)
        """,
        tmp_path=tmp_path,
    )
    assert out == {
        "own_clock": "int",
        "own_kill": "ok",
        "other_clock": "int",
        "other_kill": "ok",
        "unknown": "ProcessLookupError",
        "main": "int",
    }


def test_a_thread_forks_and_its_child_runs_on_as_the_main_thread(tmp_path: Path) -> None:
    out = run_patched(
        """
        import json, os, socket, threading, time

        def child(w):
            seen = {"main": threading.current_thread() is threading.main_thread()}
            seen["threads"] = len(threading.enumerate())
            start = time.monotonic()
            time.sleep(0.02)
            seen["slept"] = time.monotonic() - start >= 0.02
            a, b = socket.socketpair()
            b.send(b"hi")
            seen["recv"] = a.recv(2).decode()
            t = threading.Thread(target=lambda: seen.__setitem__("thread", "ran"))
            t.start(); t.join()
            os.write(w, json.dumps(seen).encode())

        def fork():
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    child(w)
                finally:
                    os._exit(0)
            os.close(w)
            data = b""
            while chunk := os.read(r, 4096):
                data += chunk
            status = os.waitpid(pid, 0)[1]
            result["child"] = json.loads(data)
            result["code"] = os.waitstatus_to_exitcode(status)

        result = {}
        t = threading.Thread(target=fork)
        t.start(); t.join()
        print(json.dumps(result), flush=True)
        """,
        tmp_path=tmp_path,
    )
    assert out == {
        "child": {"main": True, "threads": 1, "slept": True, "recv": "hi", "thread": "ran"},
        "code": 0,
    }


def test_multiprocessing_pools_work_patched(tmp_path: Path) -> None:
    """multiprocessing's Pool and ProcessPoolExecutor, from the main thread and from a
    thread (a virtual one: its fork start method forks from it), with each start
    method. The pool's handler threads are virtual threads: its worker handler's wait
    on the result pipe spun, holding its worker, while the result handler that drains
    the pipe waited on that worker (a hang in about one run in three)."""
    out = run_patched(
        """
        import concurrent.futures, json, multiprocessing, threading

        def square(x):
            return x * x

        def use(method):
            ctx = multiprocessing.get_context(method)
            with ctx.Pool(2) as pool:
                mapped = pool.map(square, range(20))
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as ex:
                executed = list(ex.map(square, range(20)))
            return mapped == executed == [x * x for x in range(20)]

        if __name__ == "__main__":
            seen = {}
            for method in ("fork", "forkserver", "spawn"):
                for turn in range(3 if method == "fork" else 1):
                    seen[f"main {method} {turn}"] = use(method)
                def in_thread(method=method):
                    seen[f"thread {method}"] = use(method)
                t = threading.Thread(target=in_thread)
                t.start(); t.join()
            print(json.dumps(seen), flush=True)
        """,
        tmp_path=tmp_path,
    )
    assert out and all(out.values()), out
    assert len(out) == 8, out


@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_a_contended_multiprocessing_lock_parks_a_virtual_thread(kind: str, tmp_path: Path) -> None:
    """Two virtual threads of one worker share a multiprocessing lock: the holder
    sleeps with it (an RLock taken twice), the other waits for it (a timed wait gives
    up, and it may not release the RLock it does not hold). A wait in sem_wait held
    the worker, so the holder never woke; and an RLock, which knows its owner by OS
    thread, let the second virtual thread in as if it were a recursive acquire."""
    out = run_patched(
        f"""
        import json, multiprocessing, threading, time
        from ringloom import Loom, submit

        lock = multiprocessing.{kind}()
        order = []
        held = threading.Event()

        def holder():
            with lock:
                if "{kind}" == "RLock":
                    lock.acquire()
                held.set()
                time.sleep(0.05)
                order.append("holder done")
                if "{kind}" == "RLock":
                    lock.release()

        def waiter():
            held.wait()
            gave_up = not lock.acquire(timeout=0.01)
            try:
                if "{kind}" == "RLock":
                    lock.release()
                refused = "no"
            except AssertionError:
                refused = "AssertionError"
            with lock:
                order.append("waiter in")
            return gave_up, refused

        with Loom(workers=1) as loom:
            first = submit(loom, holder)
            second = submit(loom, waiter)
            first.result(timeout=60)
            gave_up, refused = second.result(timeout=60)
        print(json.dumps({{"order": order, "gave_up": gave_up, "refused": refused}}), flush=True)
        """,
        tmp_path=tmp_path,
    )
    assert out == {
        "order": ["holder done", "waiter in"],
        "gave_up": True,
        "refused": "AssertionError" if kind == "RLock" else "no",
    }


def test_a_thread_started_in_a_pool_task_is_not_a_daemon(tmp_path: Path) -> None:
    """As from a ThreadPoolExecutor's worker (CPython's test_daemon_param, run in a
    task): a thread inherits its starter's daemon flag, and a task's stand-in thread
    said daemon, so the exit did not wait for what a task started."""
    out = run_patched(
        """
        import concurrent.futures, json, threading
        from ringloom import VirtualThreadPool

        def made_here():
            return threading.Thread().daemon, threading.current_thread().daemon

        with VirtualThreadPool() as pool:
            in_task = pool.submit(made_here).result()
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            in_executor = ex.submit(made_here).result()
        print(json.dumps({"task": in_task, "executor": in_executor}), flush=True)
        """,
        tmp_path=tmp_path,
    )
    assert out == {"task": [False, False], "executor": [False, False]}


def test_join_returns_once_the_thread_let_go_of_its_objects(tmp_path: Path) -> None:
    """As with an OS thread, nothing of a joined thread is held any more: its
    ``Thread`` (and the ``threading.local`` values it set) die with the last reference,
    whichever worker ran it and however busy the joiner's is."""
    out = run_patched(
        """
        import gc, json, threading, weakref
        from ringloom import VirtualThreadPool

        class Value:
            pass

        def check(rounds):
            alive = 0
            local = threading.local()
            for _ in range(rounds):
                values = []
                thread = threading.Thread(target=lambda: (setattr(local, "v", Value()),
                                                          values.append(weakref.ref(local.v))))
                thread.start()
                thread.join()
                gone = weakref.ref(thread)
                del thread
                gc.collect()
                alive += gone() is not None
            return alive

        with VirtualThreadPool() as pool:
            in_vthread = pool.submit(check, 200).result()
        print(json.dumps({"main": check(200), "vthread": in_vthread}))
        """,
        tmp_path=tmp_path,
    )
    assert out == {"main": 0, "vthread": 0}


def test_a_non_daemon_thread_is_joined_at_exit(tmp_path: Path) -> None:
    script = tmp_path / "late.py"
    script.write_text(
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('late', flush=True))).start()\n"
        "print('main done', flush=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ringloom", "run", str(script)],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["main", "done", "late"]


def test_registry_and_run_module(tmp_path: Path) -> None:
    (tmp_path / "appmod.py").write_text(
        "import json, sys, threading, queue, time, _thread\n"
        "from ringloom import monkey\n"
        "print(json.dumps({\n"
        "  'argv': sys.argv[1:],\n"
        "  'name': __name__,\n"
        "  'lock_patched': monkey.is_patched('threading', 'Lock'),\n"
        "  'queue_patched': monkey.is_patched('queue'),\n"
        "  'stock_lock': type(monkey.get_original('threading', 'Lock')()).__module__,\n"
        "  'stock_sleep_is_time_sleep': monkey.get_original('time', 'sleep').__module__,\n"
        "  'list': [f.__name__ for f in monkey.get_original('_thread', ['allocate_lock'])],\n"
        "  'simple_queue': queue.SimpleQueue.__module__,\n"
        "  'modules': sorted(monkey.patched()),\n"
        "}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "ringloom", "run", "-m", "appmod", "a", "b"],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["argv"] == ["a", "b"]
    assert out["name"] == "__main__"
    assert out["lock_patched"] and out["queue_patched"]
    assert out["stock_lock"] == "_thread"
    assert out["stock_sleep_is_time_sleep"] == "time"
    assert out["list"] == ["allocate_lock"]
    assert out["simple_queue"] == "queue"
    assert {"_thread", "threading", "queue", "time", "socket"} <= set(out["modules"])


def test_a_bare_import_patches_only_io() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, threading, _thread, ringloom\n"
            "from ringloom import monkey\n"
            "asyncio_at_import = 'asyncio' in sys.modules\n"
            "pool = ringloom.AsyncVirtualThreadPool.__name__\n"
            "print(json.dumps([type(threading.Lock()).__module__,"
            " monkey.is_patched('threading'), monkey.is_patched('time', 'sleep'),"
            " asyncio_at_import, pool]))",
        ],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
    )
    assert proc.returncode == 0, proc.stderr
    # The asyncio pool (and asyncio) load on first use, not at import.
    assert json.loads(proc.stdout) == ["_thread", False, True, False, "AsyncVirtualThreadPool"]


def test_run_refuses_bad_input(tmp_path: Path) -> None:
    for args, message in (
        (["run"], "usage"),
        (["run", "-m"], "module name"),
        (["run", str(tmp_path / "missing.py")], "no such file"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "ringloom", *args], capture_output=True, text=True
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stdout + proc.stderr


SUITES = [
    "test.test_threading.LockTests",
    "test.test_threading.PyRLockTests",
    "test.test_threading.CRLockTests",
    "test.test_threading.EventTests",
    "test.test_threading.ConditionTests",
    "test.test_threading.ConditionAsRLockTests",
    "test.test_threading.SemaphoreTests",
    "test.test_threading.BoundedSemaphoreTests",
    "test.test_threading.BarrierTests",
    "test.test_queue",
    "test.test_threading_local",
]


def run_cpython_suites(*args: str) -> dict[str, Any]:
    """Runs CPython suites through stdlib/run_suites.py with the documented skips, in
    a directory of their own (their tests make files in the current one); the run
    must succeed. Returns its summary (counts and failures)."""
    with tempfile.TemporaryDirectory() as cwd:
        return _run_cpython_suites_in(cwd, *args)


def _run_cpython_suites_in(cwd: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            str(HERE / "stdlib" / "run_suites.py"),
            "--skip-file",
            str(HERE / "stdlib" / "skips.txt"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("where", ["main", "vthread"])
def test_cpython_lock_queue_and_local_suites_pass_patched(where: str) -> None:
    summary = run_cpython_suites(
        "--where",
        where,
        *SUITES,
    )
    # 198 tests, the one stock skip, and the three documented in skips.txt.
    assert summary["run"] == 198, summary
    assert summary["skipped"] == 4, summary


@pytest.mark.parametrize("where", ["main", "vthread"])
def test_cpython_queue_suite_passes_on_ringloom_queues(where: str) -> None:
    # test_queue imports fresh copies of `queue`, which no patch reaches: this run puts
    # ringloom.queues' classes in them, so the suite tests those (the run above tests
    # the stock classes over the patched locks).
    summary = run_cpython_suites(
        "--ringloom-queues",
        "--where",
        where,
        "test.test_queue",
    )
    assert summary["run"] == 54 and summary["skipped"] == 3, summary


@pytest.mark.parametrize("where", ["main", "vthread"])
def test_cpython_threading_suite_passes_patched_but_for_documented_cases(where: str) -> None:
    summary = run_cpython_suites("--where", where, "test.test_threading")
    # 197 tests: 2 skipped stock, 6 documented in skips.txt, the other 189 pass; inside
    # a virtual thread 5 more are documented (the main thread's own: interrupt_main,
    # main_thread()), and 184 pass.
    skipped = 8 if where == "main" else 13
    assert summary["run"] == 197 and summary["skipped"] == skipped, summary


def test_cpython_io_suites_pass_in_virtual_threads_but_for_documented_cases() -> None:
    # test_io, test_fileio and test_file inside a virtual thread: every open() there is
    # ringloom's (reads and writes through RingFileIO, parking where they must wait).
    summary = run_cpython_suites(
        "--where",
        "vthread",
        "test.test_io",
        "test.test_fileio",
        "test.test_file",
    )
    # 755 tests: 4 skipped stock, 17 documented in skips.txt (signal handlers, which
    # only the main thread may install, and io.__all__), the other 734 pass.
    assert summary["run"] == 755 and summary["skipped"] == 21, summary


def test_cpython_select_time_and_subprocess_suites_pass_in_virtual_threads() -> None:
    # select.select and poll park there (and read their arguments as stock: poll's
    # timeouts, a second poll() of one object at once); time.pthread_getcpuclockid is given
    # threading.get_ident() values (a virtual thread's crashed the stock call); and
    # subprocess with a preexec_fn forks from the virtual thread (its child used to
    # exit at once).
    summary = run_cpython_suites(
        "--where",
        "vthread",
        "test.test_select",
        "test.test_selectors",
        "test.test_poll",
        "test.test_epoll",
        "test.test_time",
        "test.test_subprocess",
    )
    # 534 tests: 86 skipped stock, 13 documented in skips.txt (signal handlers, which
    # only the main thread may install), the other 435 pass.
    assert summary["run"] == 534 and summary["skipped"] == 99, summary


def test_cpython_thread_fork_and_server_suites_pass_in_virtual_threads() -> None:
    # Each forks from its virtual thread somewhere (test_thread's fork in a thread,
    # test_fcntl's lockf children, the forking servers, test_logging's fork and
    # multiprocessing cases), which was refused before.
    summary = run_cpython_suites(
        "--where",
        "vthread",
        "test.test_thread",
        "test.test_fcntl",
        "test.test_socketserver",
        "test.test_tempfile",
        "test.test_logging",
    )
    # 386 tests: 6 skipped stock, 1 documented in skips.txt (a signal handler).
    assert summary["run"] == 386 and summary["skipped"] == 7, summary


MULTIPROCESSING_CLASSES = [
    f"multiprocessing_fork_suites.With{kind}Test{what}"
    for kind in ("Processes", "Threads")
    for what in ("Lock", "Semaphore", "Condition", "Event", "Barrier", "Queue", "Pool")
]


def test_cpython_multiprocessing_suites_pass_in_virtual_threads() -> None:
    # multiprocessing's locks, semaphores, conditions, events, barriers, queues and
    # pools (fork start method) used from a virtual thread, with child processes
    # forked from it and the pools' handler threads virtual.
    summary = run_cpython_suites("--where", "vthread", *MULTIPROCESSING_CLASSES)
    # 122 tests: 4 skipped stock, 1 documented in skips.txt (SIGINT to the main thread).
    assert summary["run"] == 122 and summary["skipped"] == 5, summary


DASK_CLUSTER = """
import json, time
from distributed import Client, LocalCluster, get_worker

def nap(i):
    start = time.time()
    # Long enough that the scheduler has handed out every task before the first ones
    # end, on a loaded machine too (at 0.5 s a CI run under load saw 975 at once).
    time.sleep(2)
    return i, get_worker().address, start, time.time()

if __name__ == "__main__":
    from ringloom.dask import VirtualThreadExecutorPlugin

    with LocalCluster(
        n_workers=2, threads_per_worker=1000, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        client.register_plugin(VirtualThreadExecutorPlugin())
        begun = time.perf_counter()
        results = client.gather(client.map(nap, range(2000), pure=False))
        wall = time.perf_counter() - begun
    # How many slept at once: the most intervals open at one instant.
    edges = sorted([(s, 1) for *_, s, _ in results] + [(e, -1) for *_, e in results])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    print(json.dumps({
        "order": [r[0] for r in results] == list(range(2000)),
        "workers": len({r[1] for r in results}),
        "most_at_once": most,
        "wall_s": round(wall, 2),
    }))
"""


def test_dask_workers_run_tasks_in_virtual_threads(tmp_path: Path) -> None:
    if os.environ.get("RINGLOOM_REQUIRE_DASK") != "1":
        pytest.importorskip("distributed")
    script = tmp_path / "cluster.py"
    script.write_text(DASK_CLUSTER)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=HANG_LIMIT,
        cwd=tmp_path,
        # The errors below are what this test looks for; the watchdog's report of a
        # stretch without a park (distributed's own GC callback, on a loaded machine)
        # would name ringloom too, and has tests of its own.
        env={**os.environ, "RINGLOOM_WATCHDOG_MS": "off"},
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print("dask: 2,000 tasks of time.sleep(2) on 2 workers:", out)
    assert out["order"] and out["workers"] == 2
    # get_worker() answered in every task (it raises otherwise), and the sleeps
    # overlapped by the thousand: no OS thread per task holds them back.
    assert out["most_at_once"] >= 1000
    # No worker logged the errors virtual threads caused before: the profiler looking
    # their identities up in sys._current_frames() (KeyError), get_worker() failing.
    # (distributed may log a heartbeat lost while the cluster closes: not ours.)
    for error in ("KeyError", "No worker found", "ringloom"):
        assert error not in proc.stderr, proc.stderr[-4000:]


def test_daemon_threads_parked_at_exit_stop_quietly(tmp_path: Path) -> None:
    # As daemon OS threads: left where they stand, nothing of theirs runs or is
    # reported (unwinding them once printed a GreenletExit per thread, and a KeyError
    # from threading's bookkeeping run under the worker's identity).
    script = tmp_path / "daemons.py"
    script.write_text(
        textwrap.dedent(
            """
            import socket, socketserver, time
            from ringloom.threads import OSThread

            class Echo(socketserver.BaseRequestHandler):
                def handle(self):
                    while data := self.request.recv(1024):
                        self.request.sendall(data)

            class Server(socketserver.ThreadingTCPServer):
                daemon_threads = True
                # The default backlog of 5 overflows while the 50 connect in a loop, and
                # each dropped SYN is retried after a second (stock threads alike).
                request_queue_size = 64

            server = Server(("127.0.0.1", 0), Echo)
            OSThread(target=server.serve_forever, daemon=True).start()
            conns = [socket.create_connection(server.server_address) for _ in range(50)]
            for c in conns:
                c.sendall(b"x")
                assert c.recv(1) == b"x"
            print("done", flush=True)
            """
        )
    )
    for _ in range(3):
        proc = subprocess.run(
            [sys.executable, "-m", "ringloom", "run", str(script)],
            capture_output=True,
            text=True,
            timeout=HANG_LIMIT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.split() == ["done"]
        assert proc.stderr == ""


def test_virtual_threads_unwound_at_close_run_as_themselves(tmp_path: Path) -> None:
    out = run_patched(
        """
        import json, threading, time
        from ringloom import VirtualThreadPool

        seen = []
        local = threading.local()
        started = threading.Barrier(21)
        def task(i):
            local.i = i
            ident = threading.get_ident()
            try:
                started.wait()
                time.sleep(60)
            finally:
                seen.append(threading.get_ident() == ident and local.i == i)
        pool = VirtualThreadPool()
        for i in range(20):
            pool.submit(task, i)
        started.wait()  # every task is inside its try block
        # Ctrl-C leaving a `with` block: the running tasks are stopped.
        pool.__exit__(KeyboardInterrupt, KeyboardInterrupt(), None)
        print(json.dumps(seen))
        """,
        tmp_path=tmp_path,
    )
    assert out == [True] * 20
