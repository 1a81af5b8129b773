//! Taking the GIL on a worker thread, without PyO3's per-thread GIL count.
//!
//! Workers keep their thread state for life but hold the GIL only while they run Python
//! (see `loom.rs`). PyO3 counts GIL acquisitions per OS thread, and a greenlet parked
//! inside a `#[pyfunction]` (such as `sleep`) leaves its call's +1 on that count while
//! other code runs on the thread: after such a switch `Python::attach` believes the GIL
//! is held when it is not, skips taking it, and the next Python call crashes. So the
//! worker takes the GIL itself, through
//! the interpreter's own counted API, which greenlet switches do not disturb.

use pyo3::ffi;
use pyo3::Python;

/// Gives the GIL back when dropped, also when the closure panics.
struct Release(ffi::PyGILState_STATE);

impl Drop for Release {
    fn drop(&mut self) {
        // SAFETY: pairs with the `PyGILState_Ensure` of `with_gil`, on the same thread,
        // in reverse order of any nested pair.
        unsafe { ffi::PyGILState_Release(self.0) }
    }
}

/// Runs `f` holding the GIL. On a worker this resumes its long-lived thread state; where
/// the GIL is held already it only counts a nesting.
pub(crate) fn with_gil<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
    // SAFETY: the interpreter is initialized (this code runs in its extension module,
    // and a `Loom` closes its workers before it is dropped); `Ensure` is valid from any
    // thread, with or without the GIL.
    let release = Release(unsafe { ffi::PyGILState_Ensure() });
    // SAFETY: the GIL is held from the `Ensure` above until `release` drops, after `f`
    // has returned, and the token cannot escape `f` (it is bound by the closure's 'py).
    let result = f(unsafe { Python::assume_attached() });
    drop(release);
    result
}

/// A value holding Python references that is let go of with the GIL held wherever it is
/// dropped. For what the runtime owns (a task's output, a job on the blocking pool): it
/// may be dropped on a worker whose greenlets wait inside `#[pyfunction]` frames, where
/// PyO3's attach count is above zero even with the GIL released, so `Py`'s own drop
/// would decref without the GIL.
pub(crate) struct GilDrop<T>(Option<T>);

impl<T> GilDrop<T> {
    pub(crate) fn new(value: T) -> GilDrop<T> {
        GilDrop(Some(value))
    }

    /// The value, for a caller that holds the GIL and takes over letting go of it.
    pub(crate) fn into_inner(mut self) -> T {
        self.0.take().expect("taken only once")
    }
}

impl<T> Drop for GilDrop<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            with_gil(|_py| drop(value));
        }
    }
}
