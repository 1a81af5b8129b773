//! Whole-file reads and writes.

use std::collections::TryReserveError;
use std::future::Future;
use std::io;
use std::path::Path;

use super::window::Window;
use super::{File, OpenOptions};
use crate::buf::IoBuf;
use crate::op::Read;

/// How much to read when the buffer is full and the end of the file may or may not have
/// been reached.
const PROBE: usize = 8 * 1024;

/// Reads a whole file.
///
/// The size STATX reports is only a starting capacity: files in /proc report 0 and any
/// file may grow or shrink while it is read, so reading goes on until a read returns 0.
pub fn read(path: impl AsRef<Path>) -> impl Future<Output = io::Result<Vec<u8>>> + Send + 'static {
    let open = OpenOptions::new().read(true).open(path);
    async move {
        let file = open.await?;
        let contents = read_to_end(&file).await?;
        // Nothing was written, so closing has nothing to report worth failing over.
        let _ = file.close().await;
        Ok(contents)
    }
}

async fn read_to_end(file: &File) -> io::Result<Vec<u8>> {
    let hint = file.metadata().await.map_or(0, |meta| meta.len());
    let mut buf = Vec::new();
    buf.try_reserve_exact(usize::try_from(hint).unwrap_or(usize::MAX))
        .map_err(out_of_memory)?;
    // A buffer filled exactly to the hint is the common case of an unchanged file: a
    // small separate read confirms the end without doubling a large buffer.
    let mut probed = false;
    loop {
        if buf.len() == buf.capacity() {
            if !probed {
                probed = true;
                let (result, probe) = file
                    .read_at(Vec::with_capacity(PROBE), buf.len() as u64)
                    .await;
                match result {
                    Ok(0) => return Ok(buf),
                    Ok(_) => {
                        buf.try_reserve(probe.len()).map_err(out_of_memory)?;
                        buf.extend_from_slice(&probe);
                    }
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                    Err(err) => return Err(err),
                }
                continue;
            }
            // Amortised doubling: the file is larger than it said.
            buf.try_reserve(PROBE).map_err(out_of_memory)?;
        }
        let filled = buf.len();
        // SAFETY: the window starts at the Vec's length; all bytes before it are
        // initialised.
        let window = unsafe { Window::new(buf, filled) };
        let (result, window) = Read::submit(file.op_fd(), window, filled as u64).await;
        buf = window.into_inner();
        match result {
            Ok(0) => return Ok(buf),
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
}

fn out_of_memory(_: TryReserveError) -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        "not enough memory to hold the file",
    )
}

/// Replaces a file's contents with `contents`, creating the file if needed.
///
/// `contents` is moved to the kernel rather than copied: a `Vec<u8>`, `String`,
/// `Box<[u8]>`, or static text or bytes (`"..."`, `b"...".as_slice()`). Borrowed data
/// must be copied first (`to_vec()`), since the kernel may read it after a dropped future
/// is gone.
pub fn write<B: IoBuf>(
    path: impl AsRef<Path>,
    contents: B,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let create = File::create(path);
    async move {
        let file = create.await?;
        let (result, _) = file.write_all_at(contents, 0).await;
        result?;
        // Some filesystems (NFS) report failed writes only at close.
        file.close().await
    }
}
