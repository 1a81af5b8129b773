//! Files and directories through the ring.
//!
//! Each call is a submission on the calling worker's ring (a blocking-pool job under the
//! fallback driver), so a slow disk parks only the task that asked, never the worker.
//! Reads and writes take owned buffers and hand them back ([`crate::BufResult`]), because
//! the kernel may still be filling or draining the memory after a future is dropped.
//!
//! The free functions convert their path before returning, so their futures are
//! `Send + 'static` whatever path type they were given and can be spawned directly. Paths
//! with an interior NUL byte fail with [`io::ErrorKind::InvalidInput`]; relative paths
//! resolve against the process's working directory, as they do in `std::fs`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

mod contents;
mod dir;
mod file;
mod metadata;
mod open_options;
mod window;

pub use contents::{read, write};
pub use dir::{create_dir, create_dir_all, remove_dir, remove_file, rename};
pub use file::File;
pub use metadata::{metadata, symlink_metadata, FileType, Metadata};
pub use open_options::OpenOptions;

/// The kernel takes NUL-terminated paths; a NUL inside would silently cut the path short
/// and name a different file, so it is refused instead.
fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "path contains an interior NUL byte",
        )
    })
}

/// Offsets travel to the kernel as signed 64-bit values, and ringloom's read and write
/// ops read `u64::MAX` as "the file position"; anything above `i64::MAX` would therefore
/// fail obscurely or touch the wrong bytes.
fn check_pos(pos: u64) -> io::Result<()> {
    if pos > i64::MAX as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "file offset larger than i64::MAX",
        ));
    }
    Ok(())
}
