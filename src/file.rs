//! File descriptor reads and writes for the patched `open()`, `os.read` and `os.write`
//! (`ringloom.green`); the opens are in `file_open`.
//!
//! In a virtual thread each call first tries to finish without blocking: `preadv2` or
//! `pwritev2` with `RWF_NOWAIT` (the page cache has the data, the pipe has room). That
//! costs one syscall and no switch, which is most calls on a warm machine. A write to a
//! regular file that lands in the page cache is done in place (`page_cache_writes`). A
//! read or write that would block parks the virtual thread: on a pipe, terminal or
//! socket until a ring poll says the descriptor is ready (then it tries again), on a
//! regular file until a ring read or write completes. A ring op reads into or writes
//! from a buffer of its own, so a virtual thread killed while parked leaves the kernel
//! writing into memory that is still the op's (how it names the descriptor: `op_fd`).
//! Outside virtual threads these are the plain blocking syscalls with the GIL released.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use pyo3::exceptions::{PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use ringloom::op::{OpFd, Read, Write};

use crate::bytes_out::BytesOut;
use crate::errors::os_error;
use crate::exported::Exported;
use crate::frames::ParkedOn;
use crate::vthread;
use crate::waits::{self, park_for};

/// What a whole-file read asks for at a time once the expected size is read.
const READ_CHUNK: usize = 64 * 1024;

/// `-1` (the file position, as `os.read` uses) or a non-negative offset, as the ring
/// takes it (`u64::MAX` is "the file position").
fn ring_offset(offset: i64) -> PyResult<u64> {
    match offset {
        -1 => Ok(u64::MAX),
        o if o >= 0 => Ok(o as u64),
        _ => Err(PyValueError::new_err("offset must be -1 or non-negative")),
    }
}

/// The descriptor an op on `fd` names, and whether it is lent (see `submit_lent`).
///
/// Under io_uring the number is lent: the kernel resolves it to the file when it takes
/// the entry, which `submit_lent` makes happen at once, and holds the file from then on.
/// A duplicate would cost a descriptor per op and, worse, closing it when the op ends
/// drops every `fcntl`/`lockf` lock the process holds on the file (POSIX releases them
/// on the close of any descriptor of the file). The fallback driver runs the call later,
/// on another thread, so there the op owns a duplicate (and the locks caveat holds; the
/// README says so), or lends the number when no descriptor is left for a duplicate.
fn op_fd(fd: RawFd) -> io::Result<(OpFd, bool)> {
    let lend = matches!(
        ringloom::driver::current_kind(),
        Some(ringloom::driver::DriverKind::Uring(_))
    );
    if lend {
        // SAFETY: `borrowed` wants the number open until the op completes. The kernel
        // takes the file at submission, which `submit_lent` does before this virtual
        // thread parks: from then on closing or reusing the number does not reach the
        // op. Until then the window is that of a plain syscall on a number another thread
        // may close (the caller's own file object stays open while it waits here).
        return Ok((unsafe { OpFd::borrowed(fd) }, true));
    }
    // SAFETY: the borrow lasts only for the dup call; an fd that is not open makes the dup
    // fail with EBADF.
    match unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() {
        Ok(own) => Ok((OpFd::from(own), false)),
        // Out of descriptors: the call lends the number rather than fail with EMFILE
        // where a stock read or write would not.
        Err(err) if crate::waits::out_of_descriptors(&err) => {
            // SAFETY: the blocking-pool call acts on the number as a stock call on
            // another thread would: if the caller's file is closed and the number reused
            // meanwhile, it reads or writes the other file, as a plain `os.read` racing
            // a close would; the memory it uses is the op's own, kept until it returns.
            let lent = unsafe { OpFd::borrowed(fd) };
            Ok((lent, false))
        }
        Err(err) => Err(err),
    }
}

/// After queuing an op on a lent descriptor: hands it to the kernel now.
fn submit_lent(lent: bool) -> PyResult<()> {
    if lent {
        ringloom::driver::submit_now().map_err(os_error)?;
    }
    Ok(())
}

/// Whether `fd` is in non-blocking mode, where stock Python reports EAGAIN instead of
/// waiting (FileIO returns None).
fn nonblocking(fd: RawFd) -> io::Result<bool> {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_NONBLOCK != 0)
}

/// What a `RWF_NOWAIT` attempt says about a call.
enum Attempt {
    Done(usize),
    /// It would block.
    WouldBlock,
    /// The descriptor does not take the flag: ask the ring.
    Unsupported,
}

/// One `preadv2`/`pwritev2` attempt with `RWF_NOWAIT`, retried on EINTR.
fn attempt(
    py: Python<'_>,
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    offset: i64,
    write: bool,
) -> PyResult<Attempt> {
    let iov = libc::iovec {
        iov_base: ptr.cast(),
        iov_len: len,
    };
    loop {
        // SAFETY: `iov` describes memory the caller holds (a Python buffer export) for
        // the duration of this call, which never blocks (RWF_NOWAIT).
        let n = unsafe {
            if write {
                libc::pwritev2(fd, &iov, 1, offset, libc::RWF_NOWAIT)
            } else {
                libc::preadv2(fd, &iov, 1, offset, libc::RWF_NOWAIT)
            }
        };
        if n >= 0 {
            return Ok(Attempt::Done(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => py.check_signals()?,
            Some(libc::EAGAIN) if nonblocking(fd).map_err(os_error)? => return Err(os_error(err)),
            Some(libc::EAGAIN) => return Ok(Attempt::WouldBlock),
            Some(libc::EOPNOTSUPP) => return Ok(Attempt::Unsupported),
            _ => return Err(os_error(err)),
        }
    }
}

/// Tries the call without blocking and, while a pipe, terminal or socket is not ready,
/// parks until poll says it is and tries again: that costs no thread in the fallback
/// driver either. `None` when the ring must do it: a regular file whose data is not in
/// the page cache (the kernel reads it in), or a descriptor that refuses RWF_NOWAIT.
fn without_blocking(
    py: Python<'_>,
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    offset: i64,
    write: bool,
) -> PyResult<Option<usize>> {
    let mut polled = false;
    loop {
        match attempt(py, fd, ptr, len, offset, write)? {
            Attempt::Done(n) => return Ok(Some(n)),
            Attempt::Unsupported => return Ok(None),
            Attempt::WouldBlock => {
                if !polled && regular_file(fd).map_err(os_error)? {
                    return Ok(None);
                }
                polled = true;
                let events = if write { libc::POLLOUT } else { libc::POLLIN };
                waits::wait(py, &[(fd, events as u32)], None, true)?;
            }
        }
    }
}

fn regular_file(fd: RawFd) -> io::Result<bool> {
    // SAFETY: `st` is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer; a closed fd gives EBADF.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFREG)
}

/// The plain blocking call, GIL released, retried on EINTR after checking signals.
pub(crate) fn blocking_call(
    py: Python<'_>,
    call: impl Fn() -> isize + Send + Sync,
) -> PyResult<usize> {
    loop {
        let n = py.detach(&call);
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(os_error(err));
        }
        py.check_signals()?;
    }
}

/// `read(2)` at the file position (`offset == -1`), else `pread(2)`.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the duration of the call.
unsafe fn raw_read(fd: RawFd, ptr: *mut u8, len: usize, offset: i64) -> isize {
    // SAFETY: the caller's promise covers the memory; the fd is only a number to the call.
    unsafe {
        if offset < 0 {
            libc::read(fd, ptr.cast(), len)
        } else {
            libc::pread(fd, ptr.cast(), len, offset)
        }
    }
}

/// `write(2)` at the file position (`offset == -1`), else `pwrite(2)`.
///
/// # Safety
/// `ptr` must be valid for reads of `len` bytes for the duration of the call.
unsafe fn raw_write(fd: RawFd, ptr: *const u8, len: usize, offset: i64) -> isize {
    // SAFETY: the caller's promise covers the memory; the fd is only a number to the call.
    unsafe {
        if offset < 0 {
            libc::write(fd, ptr.cast(), len)
        } else {
            libc::pwrite(fd, ptr.cast(), len, offset)
        }
    }
}

/// A writable contiguous view of `buffer`, as stock `readinto` takes it (`w*`).
fn writable(buffer: &Bound<'_, PyAny>) -> PyResult<Exported> {
    Exported::get(buffer, true).map_err(|_| {
        PyTypeError::new_err(format!(
            "readinto() argument must be read-write bytes-like object, not {}",
            type_name(buffer)
        ))
    })
}

/// A contiguous view of `data`, as stock `write` takes it (`y*`).
fn readable(data: &Bound<'_, PyAny>) -> PyResult<Exported> {
    Exported::get(data, false).map_err(|_| {
        PyTypeError::new_err(format!(
            "a bytes-like object is required, not '{}'",
            type_name(data)
        ))
    })
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map_or_else(|_| "object".to_owned(), |name| name.to_string())
}

/// Reads into `buffer` from `fd` at `offset` (-1: the file position) and returns the
/// number of bytes read (0 at end of file). Parks a virtual thread while the read waits
/// on the ring; a non-blocking descriptor with nothing to read raises BlockingIOError.
#[pyfunction]
#[pyo3(signature = (fd, buffer, offset = -1))]
pub(crate) fn file_readinto(
    py: Python<'_>,
    fd: RawFd,
    buffer: &Bound<'_, PyAny>,
    offset: i64,
) -> PyResult<usize> {
    let at = ring_offset(offset)?;
    let view = writable(buffer)?;
    let (ptr, len) = (view.ptr(), view.len());
    let addr = ptr as usize;
    if !vthread::in_virtual_thread(py)? {
        // SAFETY: the buffer export is held for the call and describes `len` bytes.
        return blocking_call(py, || unsafe { raw_read(fd, addr as *mut u8, len, offset) });
    }
    if let Some(n) = without_blocking(py, fd, ptr, len, offset, false)? {
        return Ok(n);
    }
    let data = ring_read(py, fd, len, at)?;
    // SAFETY: the export is still held (`view` lives to the end of this function) and
    // the ring read at most `len` bytes.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) };
    Ok(data.len())
}

/// Reads up to `size` bytes from `fd` at `offset` (-1: the file position), as `os.read`
/// and `os.pread` do, parking a virtual thread while the read waits on the ring.
#[pyfunction]
#[pyo3(signature = (fd, size, offset = -1))]
pub(crate) fn file_read<'py>(
    py: Python<'py>,
    fd: RawFd,
    size: usize,
    offset: i64,
) -> PyResult<Bound<'py, PyBytes>> {
    let at = ring_offset(offset)?;
    let mut data = BytesOut::with_capacity(py, size)?;
    let (ptr, _) = data.spare();
    let n = if !vthread::in_virtual_thread(py)? {
        let addr = ptr as usize;
        // SAFETY: the room is `size` writable bytes, alive for the call.
        blocking_call(py, || unsafe {
            raw_read(fd, addr as *mut u8, size, offset)
        })?
    } else if let Some(n) = without_blocking(py, fd, ptr, size, offset, false)? {
        n
    } else {
        let read = ring_read(py, fd, size, at)?;
        // SAFETY: the room is `size` writable bytes and the ring read at most `size`.
        unsafe { std::ptr::copy_nonoverlapping(read.as_ptr(), ptr, read.len()) };
        read.len()
    };
    // SAFETY: the read wrote n bytes at the start of the room.
    unsafe { data.advance(n) };
    data.finish(py)
}

/// `FileIO.readall`: from the file position to the end, the first read sized by what
/// `fstat` says is left plus one byte (so the read that sees the end needs no growth),
/// as stock. In a virtual thread it is one call instead of a Python loop over
/// `file_read`. None when a non-blocking descriptor has nothing yet (stock FileIO
/// returns None); data read before such a descriptor runs dry is returned.
#[pyfunction]
pub(crate) fn file_readall(py: Python<'_>, fd: RawFd) -> PyResult<Option<Bound<'_, PyBytes>>> {
    let mut first = READ_CHUNK;
    // SAFETY: `st` is plain data that fstat fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer; a closed fd gives EBADF, seen by the read.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        // SAFETY: lseek with SEEK_CUR and 0 only reports the position.
        let position = unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) };
        if position >= 0 && st.st_size >= position {
            first = (st.st_size - position) as usize + 1;
        }
    }
    read_to_end(py, fd, first)
}

/// Reads from the file position to the end into one `bytes` object (read in place, see
/// `BytesOut`), the first read asking for `first` bytes, later ones for more as it
/// fills. None when a non-blocking descriptor has nothing yet.
pub(crate) fn read_to_end(
    py: Python<'_>,
    fd: RawFd,
    first: usize,
) -> PyResult<Option<Bound<'_, PyBytes>>> {
    let in_vthread = vthread::in_virtual_thread(py)?;
    let mut data = BytesOut::with_capacity(py, first)?;
    loop {
        // Grown only when full: the byte past the expected end is room for the read
        // that sees the end.
        if data.spare().1 == 0 {
            data.reserve(py, READ_CHUNK.max(data.len()))?;
        }
        let read = if in_vthread {
            read_in_vthread(py, fd, &mut data)
        } else {
            let (addr, spare) = data.spare();
            let addr = addr as usize;
            // SAFETY: the spare room is `spare` writable bytes, alive for the call.
            let read = blocking_call(py, || unsafe { raw_read(fd, addr as *mut u8, spare, -1) });
            if let Ok(n) = read {
                // SAFETY: the read wrote n bytes there.
                unsafe { data.advance(n) };
            }
            read
        };
        match read {
            Ok(0) => break,
            Ok(_) => {}
            // Asked of the raised value: `os_error`'s lazy OSError only becomes the
            // BlockingIOError subclass once made.
            Err(err)
                if err
                    .value(py)
                    .is_instance_of::<pyo3::exceptions::PyBlockingIOError>() =>
            {
                if data.len() == 0 {
                    return Ok(None);
                }
                break;
            }
            Err(err) => return Err(err),
        }
    }
    data.finish(py).map(Some)
}

/// One read at the file position into the spare room of `data`, parking while the ring
/// reads what the page cache does not have; returns how many bytes it added. The ring
/// reads into a buffer of its own (copied in after), which the kernel may keep writing
/// if this thread is killed while it waits.
fn read_in_vthread(py: Python<'_>, fd: RawFd, data: &mut BytesOut) -> PyResult<usize> {
    let (ptr, spare) = data.spare();
    if let Some(n) = without_blocking(py, fd, ptr, spare, -1, false)? {
        // SAFETY: the read wrote n bytes there.
        unsafe { data.advance(n) };
        return Ok(n);
    }
    let read = ring_read(py, fd, spare, u64::MAX)?;
    // The room did not move: nothing resized `data` while the ring read.
    let (ptr, spare) = data.spare();
    let n = read.len().min(spare);
    // SAFETY: `ptr` has `spare` writable bytes, and `n` is at most that.
    unsafe { std::ptr::copy_nonoverlapping(read.as_ptr(), ptr, n) };
    // SAFETY: just written.
    unsafe { data.advance(n) };
    Ok(n)
}

/// A ring read of up to `len` bytes into a buffer the op owns until the kernel is done
/// with it (whatever becomes of this thread); returns it holding what was read.
fn ring_read(py: Python<'_>, fd: RawFd, len: usize, at: u64) -> PyResult<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve_exact(len)
        .map_err(|_| PyMemoryError::new_err(format!("cannot allocate {len} bytes")))?;
    let (op_fd, lent) = op_fd(fd).map_err(os_error)?;
    let op = Read::submit(op_fd, buf, at);
    submit_lent(lent)?;
    let parked = park_for(py, op, ParkedOn::File("READ")).expect("checked: a virtual thread");
    let (result, buf) = parked?;
    result.map_err(os_error)?;
    Ok(buf)
}

/// Writes `data` to `fd` at `offset` (-1: the file position) and returns the number of
/// bytes written, parking a virtual thread while the write waits on the ring.
/// `nowait_first=False` skips the `RWF_NOWAIT` attempt, for descriptors known not to
/// take it. `in_place=True` says `fd` is a regular file whose writes go to the page
/// cache: written at once, the GIL let go of, no park (see `page_cache_writes`).
///
/// On a blocking descriptor the write takes everything, as the stock call does (the
/// kernel waits for room in a pipe or socket): a part taken without waiting is followed
/// by the rest. A failure after some bytes went reports those, as a short write.
#[pyfunction]
#[pyo3(signature = (fd, data, offset = -1, nowait_first = true, in_place = false))]
pub(crate) fn file_write(
    py: Python<'_>,
    fd: RawFd,
    data: &Bound<'_, PyAny>,
    offset: i64,
    nowait_first: bool,
    in_place: bool,
) -> PyResult<usize> {
    ring_offset(offset)?;
    let view = readable(data)?;
    let (ptr, len) = (view.ptr(), view.len());
    if in_place || !vthread::in_virtual_thread(py)? {
        let addr = ptr as usize;
        // SAFETY: the buffer export is held for the call and describes `len` bytes.
        return blocking_call(py, || unsafe {
            raw_write(fd, addr as *const u8, len, offset)
        });
    }
    let mut done = 0;
    loop {
        let at = if offset < 0 { -1 } else { offset + done as i64 };
        // SAFETY: `done` is at most `len`, so this stays inside the held export.
        let rest = unsafe { ptr.add(done) };
        match write_once(py, fd, rest, len - done, at, nowait_first) {
            Ok(n) => {
                done += n;
                if done == len || n == 0 {
                    return Ok(done);
                }
            }
            // As a short write; the next write meets the error again. Anything else (a
            // signal handler's exception, the thread killed) goes up as it came.
            Err(err)
                if done > 0
                    && err
                        .value(py)
                        .is_instance_of::<pyo3::exceptions::PyOSError>() =>
            {
                return Ok(done)
            }
            Err(err) => return Err(err),
        }
        if nonblocking(fd).map_err(os_error)? {
            return Ok(done);
        }
    }
}

/// One write from a virtual thread: without waiting if the descriptor takes it, else
/// through the ring. `ptr` is `len` readable bytes held by the caller for the call.
fn write_once(
    py: Python<'_>,
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
    offset: i64,
    nowait_first: bool,
) -> PyResult<usize> {
    let addr = ptr as usize;
    let in_place = || {
        // SAFETY: the caller holds `len` readable bytes at `ptr` for the call.
        blocking_call(py, || unsafe {
            raw_write(fd, addr as *const u8, len, offset)
        })
    };
    if nowait_first {
        if let Some(n) = without_blocking(py, fd, ptr, len, offset, true)? {
            return Ok(n);
        }
        // Refused (most file systems refuse it for buffered writes to regular files).
        if page_cache_writes(fd).map_err(os_error)? {
            return in_place();
        }
    } else if nonblocking(fd).map_err(os_error)? {
        // A non-blocking descriptor never blocks the call.
        return in_place();
    }
    let (op_fd, lent) = op_fd(fd).map_err(os_error)?;
    // SAFETY: the caller holds `len` readable bytes at `ptr` while this copies them.
    let owned = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }.to_vec();
    let op = Write::submit(op_fd, owned, ring_offset(offset)?);
    submit_lent(lent)?;
    let parked = park_for(py, op, ParkedOn::File("WRITE")).expect("checked: a virtual thread");
    let (result, _buf) = parked?;
    result.map_err(os_error)
}

/// Whether `fd` is a regular file whose writes land in the page cache (no `O_DIRECT`,
/// `O_SYNC` or `O_DSYNC`): such a write is done in place, far cheaper than a ring trip
/// through io-wq, and never parks (see `ringloom.green.file`'s write routes).
fn page_cache_writes(fd: RawFd) -> io::Result<bool> {
    if !regular_file(fd)? {
        return Ok(false);
    }
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & (libc::O_DIRECT | libc::O_SYNC | libc::O_DSYNC) == 0)
}
