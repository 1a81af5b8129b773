//! `Event`: a flag that waiters park on until it is set.

use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::prelude::*;

use crate::waiter::{self, Waiter};

#[derive(Default)]
struct State {
    flag: bool,
    /// Waiting now, in arrival order; `set` wakes them all.
    waiters: Vec<Arc<Waiter>>,
}

/// An event flag with `threading.Event`'s interface: `wait` parks a virtual thread and
/// blocks an OS thread (GIL released, Ctrl-C seen within 50 ms); either may `set` it.
///
/// Example::
///
///     done = ringloom.Event()
///     pool.submit(work_then, done.set)
///     done.wait(5.0)
#[pyclass(module = "ringloom._native", frozen, weakref, subclass)]
pub(crate) struct Event {
    state: Mutex<State>,
}

impl Event {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the flag and wakes every waiter (from Rust: no Python runs).
    pub(crate) fn set_flag(&self) {
        let waiters = {
            let mut state = self.lock();
            state.flag = true;
            std::mem::take(&mut state.waiters)
        };
        for waiter in waiters {
            waiter.unpark();
        }
    }
}

#[pymethods]
impl Event {
    #[new]
    fn new() -> Event {
        Event {
            state: Mutex::default(),
        }
    }

    fn is_set(&self) -> bool {
        self.lock().flag
    }

    /// `threading.Event`'s old alias.
    #[pyo3(name = "isSet")]
    fn is_set_alias(&self) -> bool {
        self.is_set()
    }

    /// Sets the flag; every waiter wakes, and later waits return at once.
    fn set(&self) {
        self.set_flag();
    }

    /// Clears the flag: later waits block until the next `set`.
    fn clear(&self) {
        self.lock().flag = false;
    }

    /// Waits until the flag is set (True) or `timeout` seconds pass (the flag then,
    /// False unless it was set meanwhile). A negative timeout is a ValueError.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let timeout = waiter::check_timeout(timeout)?;
        let waiter = {
            let mut state = self.lock();
            if state.flag {
                return Ok(true);
            }
            if timeout.is_some_and(|t| t.is_zero()) {
                return Ok(false);
            }
            let waiter = Arc::new(Waiter::default());
            state.waiters.push(waiter.clone());
            waiter
        };
        let woken = waiter::wait(py, &waiter, timeout);
        if !matches!(woken, Ok(true)) {
            // Timed out or interrupted: leave the queue (a `set` may have taken us out).
            let mut state = self.lock();
            state.waiters.retain(|other| !Arc::ptr_eq(other, &waiter));
            if woken.is_ok() {
                return Ok(state.flag);
            }
        }
        woken
    }

    /// How many wait now (for tests and debugging).
    #[getter]
    fn _waiting(&self) -> usize {
        self.lock().waiters.len()
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let state = if slf.get().is_set() { "set" } else { "unset" };
        Ok(format!(
            "<{} at {:#x}: {state}>",
            slf.get_type().qualname()?,
            slf.as_ptr() as usize
        ))
    }
}
