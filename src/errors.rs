//! OS errors as Python raises them.

use std::io;

use pyo3::exceptions::PyOSError;
use pyo3::PyErr;

/// The error as stock Python raises it: `OSError(errno, strerror)`, which picks the
/// subclass (FileNotFoundError, ConnectionResetError, BlockingIOError, ...) from the
/// errno and keeps `errno` set, where PyO3's own conversion leaves it None.
pub(crate) fn os_error(err: io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => {
            // std's message is strerror's with " (os error N)" after it.
            let message = err.to_string();
            let suffix = format!(" (os error {errno})");
            let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
            PyOSError::new_err((errno, message))
        }
        None => err.into(),
    }
}
