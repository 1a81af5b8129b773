//! A virtual thread between its submission and the worker that will run it.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::identity::new_ident;
use super::VThread;
use crate::batch::Sink;
use crate::gil::with_gil;
use crate::stats::Counters;

/// A virtual thread on its way to a worker, in the `Send` starter task.
pub(crate) struct Unstarted {
    call: Option<(Py<PyAny>, Py<PyTuple>)>,
    sink: Option<Sink>,
    intercept: bool,
    priority: u8,
    counters: Arc<Counters>,
    ident: u64,
}

impl Unstarted {
    /// `func(*args)`, whose outcome goes to `sink`.
    pub(crate) fn new(
        func: Py<PyAny>,
        args: Py<PyTuple>,
        sink: Sink,
        intercept: bool,
        priority: u8,
        counters: Arc<Counters>,
    ) -> Unstarted {
        Unstarted {
            call: Some((func, args)),
            sink: Some(sink),
            intercept,
            priority,
            counters,
            ident: new_ident(),
        }
    }

    /// The identity the virtual thread will have.
    pub(crate) fn ident(&self) -> u64 {
        self.ident
    }

    /// The counters of its `Loom`, which also name the `Loom` (see `hub::adopt`).
    pub(crate) fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Called on the worker that will run it: from here on it stays there.
    pub(crate) fn into_vthread(mut self) -> VThread {
        VThread {
            call: self.call.take(),
            sink: self.sink.take(),
            greenlet: None,
            intercept: self.intercept,
            priority: self.priority,
            counters: self.counters.clone(),
            parked: false,
            ident: self.ident,
            state: None,
            running_loop: None,
        }
    }
}

impl Drop for Unstarted {
    /// A starter dropped unpolled (runtime shut down) fails its call and drops its
    /// objects with the GIL: PyO3 cannot tell on a worker whether the GIL is held (see
    /// `gil.rs`).
    fn drop(&mut self) {
        if self.call.is_some() || self.sink.is_some() {
            with_gil(|py| {
                if let Some(sink) = self.sink.take() {
                    let err = pyo3::exceptions::PyRuntimeError::new_err(
                        "the ringloom runtime shut down before this virtual thread started",
                    );
                    sink.deliver(py, Err(err));
                }
                self.call = None;
            });
        }
    }
}
