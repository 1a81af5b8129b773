//! How to open a file: `std::fs::OpenOptions`, submitted as an OPENAT.

use std::future::Future;
use std::io;
use std::path::Path;

use super::{cstring, File};
use crate::op::OpenAt;

/// Options for opening a file, with the same meaning and the same refusals as
/// `std::fs::OpenOptions`, so code can switch between the two without surprises.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
    mode: u32,
    custom_flags: i32,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions::new()
    }
}

impl OpenOptions {
    /// Everything off, and mode `0o666` (narrowed by the umask) for created files.
    pub fn new() -> OpenOptions {
        OpenOptions {
            read: false,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: 0o666,
            custom_flags: 0,
        }
    }

    pub fn read(&mut self, read: bool) -> &mut Self {
        self.read = read;
        self
    }

    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }

    /// Every write goes to the end of the file, whatever offset it names (`O_APPEND`),
    /// so concurrent appenders never overwrite each other.
    pub fn append(&mut self, append: bool) -> &mut Self {
        self.append = append;
        self
    }

    pub fn truncate(&mut self, truncate: bool) -> &mut Self {
        self.truncate = truncate;
        self
    }

    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// Fails with [`io::ErrorKind::AlreadyExists`] if the path exists (`O_CREAT|O_EXCL`):
    /// the check and the creation are one atomic step, unlike checking first.
    pub fn create_new(&mut self, create_new: bool) -> &mut Self {
        self.create_new = create_new;
        self
    }

    /// Permission bits for a file this open creates (before the umask).
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }

    /// Extra `O_*` flags, such as `O_DIRECT` or `O_NOFOLLOW`. The access mode bits are
    /// ignored: they come from `read`, `write` and `append`.
    pub fn custom_flags(&mut self, flags: i32) -> &mut Self {
        self.custom_flags = flags;
        self
    }

    /// Opens `path`. Invalid combinations (nothing to read or write; truncating or
    /// creating without write access) fail with [`io::ErrorKind::InvalidInput`], as in std.
    pub fn open(
        &self,
        path: impl AsRef<Path>,
    ) -> impl Future<Output = io::Result<File>> + Send + 'static {
        let prepared = self
            .flags()
            .and_then(|flags| Ok((cstring(path.as_ref())?, flags)));
        let mode = self.mode;
        async move {
            let (path, flags) = prepared?;
            let fd = OpenAt::submit(None, path, flags, mode).await?;
            Ok(File::from_owned(fd, flags & libc::O_DIRECT != 0))
        }
    }

    fn flags(&self) -> io::Result<i32> {
        Ok(self.access_mode()? | self.creation_mode()? | (self.custom_flags & !libc::O_ACCMODE))
    }

    fn access_mode(&self) -> io::Result<i32> {
        match (self.read, self.write, self.append) {
            (true, false, false) => Ok(libc::O_RDONLY),
            (false, true, false) => Ok(libc::O_WRONLY),
            (true, true, false) => Ok(libc::O_RDWR),
            (false, _, true) => Ok(libc::O_WRONLY | libc::O_APPEND),
            (true, _, true) => Ok(libc::O_RDWR | libc::O_APPEND),
            (false, false, false) => Err(invalid("open with neither read, write nor append")),
        }
    }

    fn creation_mode(&self) -> io::Result<i32> {
        if !self.write && !self.append && (self.truncate || self.create || self.create_new) {
            return Err(invalid("truncate or create without write access"));
        }
        if self.append && self.truncate && !self.create_new {
            return Err(invalid("append together with truncate"));
        }
        Ok(match (self.create, self.truncate, self.create_new) {
            (false, false, false) => 0,
            (true, false, false) => libc::O_CREAT,
            (false, true, false) => libc::O_TRUNC,
            (true, true, false) => libc::O_CREAT | libc::O_TRUNC,
            (_, _, true) => libc::O_CREAT | libc::O_EXCL,
        })
    }
}

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, what)
}
