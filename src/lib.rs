//! `ringloom._native`: the Python bindings of ringloom.
//!
//! A [`Loom`](loom::Loom) owns a ringloom runtime whose worker threads stay attached to
//! the interpreter for their whole life. Each virtual thread is a greenlet that its
//! worker's hub (one task per worker, `hub.rs`) switches into; when the greenlet blocks
//! ([`waits::sleep`]) it hands a ringloom future to the hub and switches back, and the
//! hub runs other virtual threads until that future completes.

use pyo3::prelude::*;

mod arena;
mod batch;
mod blocking;
mod bytes_out;
mod errors;
mod exported;
mod file;
mod file_open;
mod frames;
mod gil;
mod greenlet;
mod hub;
mod loom;
mod read_file;
mod ready;
mod running_loop;
mod sock;
mod stats;
mod submitted;
mod sync;
mod vthread;
mod waiter;
mod waits;
mod watchdog;
mod window;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<loom::Loom>()?;
    m.add_class::<waiter::Parker>()?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<sync::Condition>()?;
    m.add_class::<sync::Event>()?;
    m.add_class::<sync::QueueCore>()?;
    sync::install_queue_calls(m.py(), &m.py().get_type::<sync::QueueCore>())?;
    m.add_class::<sync::Lock>()?;
    m.add_class::<sync::RLock>()?;
    m.add_function(wrap_pyfunction!(sync::install_queue_methods, m)?)?;
    m.add_function(wrap_pyfunction!(waits::sleep, m)?)?;
    m.add_function(wrap_pyfunction!(sock::socket_recv, m)?)?;
    m.add_function(wrap_pyfunction!(sock::socket_recv_into, m)?)?;
    m.add_function(wrap_pyfunction!(sock::socket_send, m)?)?;
    m.add_function(wrap_pyfunction!(sock::socket_sendall, m)?)?;
    m.add_function(wrap_pyfunction!(vthread::is_virtual_thread, m)?)?;
    m.add_function(wrap_pyfunction!(waits::wait_fd, m)?)?;
    m.add_function(wrap_pyfunction!(waits::wait_fds, m)?)?;
    m.add_function(wrap_pyfunction!(blocking::blocking, m)?)?;
    m.add_function(wrap_pyfunction!(file::file_readinto, m)?)?;
    m.add_function(wrap_pyfunction!(file::file_read, m)?)?;
    m.add_function(wrap_pyfunction!(file::file_readall, m)?)?;
    m.add_function(wrap_pyfunction!(file::file_write, m)?)?;
    m.add_function(wrap_pyfunction!(file_open::file_open, m)?)?;
    m.add_function(wrap_pyfunction!(read_file::read_file, m)?)?;
    m.add_function(wrap_pyfunction!(vthread::intercepting, m)?)?;
    m.add_function(wrap_pyfunction!(vthread::get_ident, m)?)?;
    m.add_function(wrap_pyfunction!(frames::track_vthreads, m)?)?;
    m.add_function(wrap_pyfunction!(frames::vthread_frames, m)?)?;
    m.add_function(wrap_pyfunction!(frames::vthread_host, m)?)?;
    m.add_function(wrap_pyfunction!(frames::vthread_waits, m)?)?;
    m.add_function(wrap_pyfunction!(running_loop::isolate_running_loops, m)?)?;
    m.add_function(wrap_pyfunction!(vthread::vthread_ident, m)?)?;
    m.add_function(wrap_pyfunction!(vthread::detach_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(vthread::vthread_state, m)?)?;
    m.add_function(wrap_pyfunction!(vthread::set_vthread_state, m)?)?;
    m.add_function(wrap_pyfunction!(loom::forget_after_fork, m)?)?;
    let close_all = wrap_pyfunction!(loom::close_all, m)?;
    m.add_function(close_all.clone())?;
    m.py()
        .import("atexit")?
        .call_method1("register", (close_all,))?;
    Ok(())
}
