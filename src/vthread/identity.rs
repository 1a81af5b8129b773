//! Who the caller is: a virtual thread's identity (`threading.get_ident()` in it, once
//! patched), the Python layer's object for it, and whether it may park or intercept.

use std::cell::Cell;
use std::sync::atomic::Ordering;

use pyo3::prelude::*;

use super::CURRENT;
use crate::greenlet;

/// Identities of virtual threads start here: above any OS thread's ident (a pthread_t,
/// an address below 2^47 on Linux), so the two kinds never collide.
const FIRST_IDENT: u64 = 1 << 62;

static NEXT_IDENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(FIRST_IDENT);

/// A new virtual thread identity, unique for the life of the process.
pub(crate) fn new_ident() -> u64 {
    NEXT_IDENT.fetch_add(1, Ordering::Relaxed)
}

/// The identity of the virtual thread the caller runs in, or `None` outside one (also
/// in a greenlet that user code started inside a virtual thread).
pub(crate) fn current_ident(py: Python<'_>) -> PyResult<Option<u64>> {
    let Some((expected, ident)) =
        CURRENT.with(|c| c.borrow().as_ref().map(|slot| (slot.greenlet, slot.ident)))
    else {
        return Ok(None);
    };
    Ok((greenlet::current(py)?.as_ptr() == expected).then_some(ident))
}

/// `threading.get_ident()` as virtual threads see it: the virtual thread's identity,
/// or the OS thread's ident outside one.
pub(crate) fn ident(py: Python<'_>) -> PyResult<u64> {
    Ok(match current_ident(py)? {
        Some(ident) => ident,
        // SAFETY: a plain query of the calling thread.
        None => (unsafe { pyo3::ffi::PyThread_get_thread_ident() }) as u64,
    })
}

/// `get_ident()`: the calling virtual thread's identity (unique per virtual thread,
/// stable while it lives, never an OS thread's), or the OS thread's ident outside one.
#[pyfunction]
pub(crate) fn get_ident(py: Python<'_>) -> PyResult<u64> {
    ident(py)
}

/// The identity of the calling virtual thread, or None outside one.
#[pyfunction]
pub(crate) fn vthread_ident(py: Python<'_>) -> PyResult<Option<u64>> {
    current_ident(py)
}

/// The object the Python layer keeps for the calling virtual thread (None until it
/// sets one, and outside virtual threads). Dropped when the virtual thread ends.
#[pyfunction]
pub(crate) fn vthread_state(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
    if current_ident(py)?.is_none() {
        return Ok(None);
    }
    Ok(CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|slot| slot.state.as_ref().map(|state| state.clone_ref(py)))
    }))
}

/// Sets the object `vthread_state()` returns in the calling virtual thread; False (and
/// nothing kept) outside one.
#[pyfunction]
pub(crate) fn set_vthread_state(py: Python<'_>, state: Py<PyAny>) -> PyResult<bool> {
    if current_ident(py)?.is_none() {
        return Ok(false);
    }
    let old = CURRENT.with(|c| {
        c.borrow_mut()
            .as_mut()
            .and_then(|slot| slot.state.replace(state))
    });
    if let Some(old) = old {
        old.drop_ref(py);
    }
    Ok(true)
}

/// `in_virtual_thread()`: whether the caller runs in a virtual thread (its blocking
/// calls park it).
#[pyfunction]
#[pyo3(name = "in_virtual_thread")]
pub(crate) fn is_virtual_thread(py: Python<'_>) -> PyResult<bool> {
    in_virtual_thread(py)
}

/// Whether the caller is a virtual thread's own greenlet (so it may park).
pub(crate) fn in_virtual_thread(py: Python<'_>) -> PyResult<bool> {
    if detached() {
        return Ok(false);
    }
    let Some(expected) = CURRENT.with(|c| c.borrow().as_ref().map(|slot| slot.greenlet)) else {
        return Ok(false);
    };
    Ok(greenlet::current(py)?.as_ptr() == expected)
}

/// Whether the caller is a virtual thread's own greenlet started with interception on:
/// the interception layer (patched `time.sleep`, sockets, files) parks it only then.
/// False outside virtual threads and in one submitted with `is_blocking=False`.
#[pyfunction]
pub(crate) fn intercepting(py: Python<'_>) -> PyResult<bool> {
    if detached() {
        return Ok(false);
    }
    let Some((expected, intercept)) = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map(|slot| (slot.greenlet, slot.intercept))
    }) else {
        return Ok(false);
    };
    Ok(intercept && greenlet::current(py)?.as_ptr() == expected)
}

thread_local! {
    /// Set in a forked child on the thread that called fork from a virtual thread: it
    /// runs on as a plain thread (see [`detach_after_fork`]).
    static DETACHED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is a forked child's copy of a virtual thread.
pub(crate) fn detached() -> bool {
    DETACHED.with(Cell::get)
}

/// In a child forked by a virtual thread: the calling thread keeps the virtual thread's
/// identity (which `threading`'s own after-fork step has made the child's main thread)
/// but stops being one that parks: its blocking calls block, as on a plain thread,
/// instead of reaching the ring, which the child shares with its parent, and its hub
/// is never switched to again (see `run_calls`). False outside a virtual thread.
#[pyfunction]
pub(crate) fn detach_after_fork(py: Python<'_>) -> PyResult<bool> {
    let inside = in_virtual_thread(py)?;
    if inside {
        DETACHED.with(|d| d.set(true));
    }
    Ok(inside)
}
