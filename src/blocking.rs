//! `blocking(fn, *args, **kwargs)`: a call that cannot become a ring submission (DNS
//! resolution, a C extension doing its own I/O) runs on the runtime's blocking pool while
//! the virtual thread that made it is parked.

use std::cell::RefCell;
use std::rc::Rc;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::gil::{with_gil, GilDrop};
use crate::vthread;

/// What the pool sends back: its Python objects are let go of with the GIL wherever the
/// runtime drops them (a result nobody waits for any more is dropped on a worker).
type Outcome = Result<GilDrop<PyResult<Py<PyAny>>>, ringloom::JoinError>;

/// The call, carried to a pool thread; dropped unrun (the pool shut down), it lets go of
/// its objects with the GIL.
struct Job {
    call: GilDrop<Call>,
}

/// The callable, its positional and its keyword arguments.
type Call = (Py<PyAny>, Py<PyTuple>, Option<Py<PyDict>>);

impl Job {
    fn run(self) -> GilDrop<PyResult<Py<PyAny>>> {
        // The pool thread is no Python thread: the bridge's GIL helper gives it a thread
        // state for the call. The objects are let go of while it is held.
        with_gil(|py| {
            let (func, args, kwargs) = self.call.into_inner();
            let result = func
                .bind(py)
                .call(args.bind(py), kwargs.as_ref().map(|k| k.bind(py)))
                .map(Bound::unbind);
            func.drop_ref(py);
            args.drop_ref(py);
            if let Some(kwargs) = kwargs {
                kwargs.drop_ref(py);
            }
            GilDrop::new(result)
        })
    }
}

/// Calls `func(*args, **kwargs)`. In a virtual thread the call runs on the runtime's
/// blocking pool and the virtual thread parks until it returns (its exception is raised
/// here); elsewhere it is a plain call.
#[pyfunction]
#[pyo3(signature = (func, /, *args, **kwargs))]
pub(crate) fn blocking(
    py: Python<'_>,
    func: Bound<'_, PyAny>,
    args: Bound<'_, PyTuple>,
    kwargs: Option<Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    if !func.is_callable() {
        return Err(PyTypeError::new_err("blocking() needs a callable"));
    }
    if !vthread::in_virtual_thread(py)? {
        return func.call(&args, kwargs.as_ref()).map(Bound::unbind);
    }
    let job = Job {
        call: GilDrop::new((func.unbind(), args.unbind(), kwargs.map(Bound::unbind))),
    };
    let handle = ringloom::spawn_blocking(move || job.run());
    let done: Rc<RefCell<Option<Outcome>>> = Rc::default();
    let slot = done.clone();
    let wait = async move {
        let outcome = handle.await;
        *slot.borrow_mut() = Some(outcome);
    };
    match vthread::park(py, Box::pin(wait), crate::frames::ParkedOn::Blocking) {
        Some(parked) => parked?,
        None => {
            return Err(PyRuntimeError::new_err(
                "blocking() left its virtual thread",
            ))
        }
    }
    let outcome = done.borrow_mut().take();
    match outcome {
        // The GIL is held here: the result is handed to Python as it is.
        Some(Ok(result)) => result.into_inner(),
        Some(Err(err)) => Err(PyRuntimeError::new_err(format!(
            "the blocking call failed in the pool: {err}"
        ))),
        None => Err(PyRuntimeError::new_err(
            "blocking() resumed before its call returned",
        )),
    }
}
