//! Who the caller is: a virtual thread's identity (`threading.get_ident()` in it, once
//! patched), the Python layer's object for it, and whether it may park or intercept.

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
    let Some((expected, intercept)) = CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .map(|slot| (slot.greenlet, slot.intercept))
    }) else {
        return Ok(false);
    };
    Ok(intercept && greenlet::current(py)?.as_ptr() == expected)
}

/// In a child forked by a virtual thread that execs next (`subprocess` with a
/// `preexec_fn`): the calling thread stops being a virtual thread, so what runs before
/// the exec blocks as on a plain thread instead of reaching the ring, which the child
/// shares with its parent. The slot is leaked, not dropped: its objects belong to the
/// parent's worker. False if there was nothing to leave.
#[pyfunction]
pub(crate) fn leave_virtual_thread_after_fork() -> bool {
    CURRENT.with(|c| match c.try_borrow_mut() {
        Ok(mut slot) => slot.take().map(std::mem::forget).is_some(),
        Err(_) => false,
    })
}
