"""The future a pool's ``submit`` returns keeps the stock ``concurrent.futures.Future``
contract: every test here runs against the stock class too, and both must agree."""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from typing import Any

import pytest
from ringloom._future import ParkingFuture

KINDS = [cf.Future, ParkingFuture]


@pytest.fixture(params=KINDS, ids=lambda kind: kind.__name__)
def make(request: pytest.FixtureRequest) -> type[cf.Future[Any]]:
    kind: type[cf.Future[Any]] = request.param
    return kind


def test_a_result_moves_through_the_states(make: type[cf.Future[Any]]) -> None:
    future = make()
    assert (future.done(), future.running(), future.cancelled()) == (False, False, False)
    assert "state=pending" in repr(future)
    assert future.set_running_or_notify_cancel() is True
    assert future.running() and not future.done()
    assert future.cancel() is False, "a running future cannot be cancelled"
    future.set_result(42)
    assert future.done() and not future.running() and not future.cancelled()
    assert future.result() == 42 and future.exception() is None
    assert "finished returned int" in repr(future)
    with pytest.raises(cf.InvalidStateError):
        future.set_result(1)
    with pytest.raises(cf.InvalidStateError):
        future.set_exception(ValueError())
    assert future.cancel() is False
    with pytest.raises(RuntimeError):
        future.set_running_or_notify_cancel()


def test_an_exception_is_raised_by_result_and_returned_by_exception(
    make: type[cf.Future[Any]],
) -> None:
    future = make()
    error = ValueError("no")
    future.set_exception(error)
    assert future.done()
    with pytest.raises(ValueError) as raised:
        future.result()
    assert raised.value is error
    assert future.exception() is error
    assert "finished raised ValueError" in repr(future)


def test_a_cancelled_future_refuses_to_run_and_raises_cancelled(
    make: type[cf.Future[Any]],
) -> None:
    future = make()
    assert future.cancel() is True
    assert future.cancel() is True, "cancelling twice is still a success"
    assert future.cancelled() and future.done()
    with pytest.raises(cf.CancelledError):
        future.result()
    with pytest.raises(cf.CancelledError):
        future.exception()
    assert future.set_running_or_notify_cancel() is False
    assert future.cancelled()
    with pytest.raises(cf.InvalidStateError):
        future.set_result(1)


def test_waits_on_a_pending_future_time_out(make: type[cf.Future[Any]]) -> None:
    future = make()
    with pytest.raises(TimeoutError):
        future.result(timeout=0)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0.01)


def test_done_callbacks_run_once_in_order_and_late_ones_at_once(
    make: type[cf.Future[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    future = make()
    seen: list[tuple[str, cf.Future[Any]]] = []

    def failing(f: cf.Future[Any]) -> None:
        seen.append(("failing", f))
        raise RuntimeError("callback failed")

    future.add_done_callback(lambda f: seen.append(("first", f)))
    future.add_done_callback(failing)
    future.add_done_callback(lambda f: seen.append(("third", f)))
    assert seen == []
    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        future.set_result(None)
    assert [name for name, _ in seen] == ["first", "failing", "third"]
    assert all(f is future for _, f in seen)
    assert "exception calling callback" in caplog.text
    future.add_done_callback(lambda f: seen.append(("late", f)))
    assert seen[-1] == ("late", future)
    assert len(seen) == 4


def test_cancelling_runs_the_done_callbacks(make: type[cf.Future[Any]]) -> None:
    future = make()
    seen: list[bool] = []
    future.add_done_callback(lambda f: seen.append(f.cancelled()))
    future.cancel()
    assert seen == [True]
    future.set_running_or_notify_cancel()
    assert seen == [True], "only the first transition to done calls them"


def test_a_result_set_on_another_thread_wakes_a_blocked_result(
    make: type[cf.Future[Any]],
) -> None:
    future = make()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(future.result(timeout=30)))
    waiter.start()
    future.set_result("late")
    waiter.join(30)
    assert got == ["late"]


def test_wait_and_as_completed_see_results_set_while_they_wait(
    make: type[cf.Future[Any]],
) -> None:
    futures = [make() for _ in range(4)]
    futures[0].set_result(0)  # done before the wait starts
    futures[1].cancel()
    futures[1].set_running_or_notify_cancel()
    started = threading.Event()

    def finish_the_rest() -> None:
        started.wait(30)
        futures[2].set_result(2)
        futures[3].set_exception(KeyError(3))

    finisher = threading.Thread(target=finish_the_rest)
    finisher.start()
    started.set()
    done, not_done = cf.wait(futures, timeout=30, return_when=cf.ALL_COMPLETED)
    finisher.join(30)
    assert done == set(futures) and not not_done
    first = cf.wait([make(), futures[3]], timeout=30, return_when=cf.FIRST_EXCEPTION)
    assert first.done == {futures[3]}
    assert set(cf.as_completed(futures, timeout=30)) == set(futures)

    pending = make()
    order: list[cf.Future[Any]] = []
    threading.Timer(0.01, lambda: pending.set_result("x")).start()
    for future in cf.as_completed([pending], timeout=30):
        order.append(future)
    assert order == [pending]
