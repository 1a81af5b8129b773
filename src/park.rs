//! Blocking calls that park a virtual thread, and block the plain way elsewhere.

use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::vthread;

/// Sleeps for `seconds`. In a virtual thread this parks it on a ringloom timer and the
/// worker runs others meanwhile; elsewhere it behaves as `time.sleep` (the GIL is
/// released while the thread sleeps).
#[pyfunction]
pub(crate) fn sleep(py: Python<'_>, seconds: f64) -> PyResult<()> {
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err("sleep length must be a non-negative number"))?;
    if let Some(parked) = vthread::park(py, Box::pin(ringloom::time::sleep(duration))) {
        return parked;
    }
    py.detach(|| std::thread::sleep(duration));
    py.check_signals()
}

/// Whether the caller runs in a virtual thread (its blocking calls park it).
#[pyfunction]
pub(crate) fn in_virtual_thread(py: Python<'_>) -> PyResult<bool> {
    vthread::in_virtual_thread(py)
}
