//! Each virtual thread's own asyncio running loop.
//!
//! asyncio keeps the running loop per thread state, and the virtual threads of a worker
//! share the worker's thread state: without this, a second `asyncio.run()` on the same
//! worker fails ("cannot be called from a running event loop") and `get_running_loop()`
//! returns another virtual thread's loop. Once enabled (`ringloom.monkey.patch_asyncio`),
//! a virtual thread switching out takes its running loop with it and leaves none behind;
//! switching in, it puts its own back. Through `_asyncio`'s own setter, which keeps the
//! C fast path's cache right. Off, it costs one relaxed load per switch.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

static ENABLED: AtomicBool = AtomicBool::new(false);
static GET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Turns the swap on for every virtual thread from their next switch (idempotent).
#[pyfunction]
pub(crate) fn isolate_running_loops(py: Python<'_>) -> PyResult<()> {
    let asyncio = py.import("_asyncio")?;
    GET.get_or_try_init(py, || {
        asyncio.getattr("_get_running_loop").map(Bound::unbind)
    })?;
    SET.get_or_try_init(py, || {
        asyncio.getattr("_set_running_loop").map(Bound::unbind)
    })?;
    ENABLED.store(true, Ordering::Release);
    Ok(())
}

/// Before the switch in: the virtual thread's saved loop becomes the running one.
pub(crate) fn switch_in(py: Python<'_>, saved: &mut Option<Py<PyAny>>) {
    let Some(running) = saved.take() else {
        return;
    };
    if let Some(set) = SET.get(py) {
        if let Err(err) = set.bind(py).call1((running.bind(py),)) {
            err.write_unraisable(py, None);
        }
    }
    running.drop_ref(py);
}

/// After the switch out: takes the running loop away (into `saved`), if there is one.
pub(crate) fn switch_out(py: Python<'_>, saved: &mut Option<Py<PyAny>>) {
    if !ENABLED.load(Ordering::Acquire) {
        return;
    }
    let (Some(get), Some(set)) = (GET.get(py), SET.get(py)) else {
        return;
    };
    match get.bind(py).call0() {
        Ok(running) if !running.is_none() => {
            if let Err(err) = set.bind(py).call1((py.None(),)) {
                err.write_unraisable(py, None);
            }
            *saved = Some(running.unbind());
        }
        Ok(_) => {}
        Err(err) => err.write_unraisable(py, None),
    }
}
