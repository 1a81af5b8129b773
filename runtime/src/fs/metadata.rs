//! File metadata, from STATX.

use std::ffi::CString;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::cstring;
use crate::op::{OpFd, Statx};

/// Everything `Metadata` reports; birth time is asked for too, though not every
/// filesystem records it.
const MASK: u32 = libc::STATX_BASIC_STATS | libc::STATX_BTIME;

/// Metadata of a file, following symlinks (like `std::fs::metadata`).
pub fn metadata(
    path: impl AsRef<Path>,
) -> impl Future<Output = io::Result<Metadata>> + Send + 'static {
    let path = cstring(path.as_ref());
    async move { statx(None, path?, 0).await }
}

/// Metadata of a path itself: for a symlink, of the link rather than its target.
pub fn symlink_metadata(
    path: impl AsRef<Path>,
) -> impl Future<Output = io::Result<Metadata>> + Send + 'static {
    let path = cstring(path.as_ref());
    async move { statx(None, path?, libc::AT_SYMLINK_NOFOLLOW).await }
}

/// `dir` `None` resolves `path` against the working directory.
pub(super) async fn statx(dir: Option<OpFd>, path: CString, flags: i32) -> io::Result<Metadata> {
    let stx = Statx::submit(dir, path, flags, MASK).await?;
    Ok(Metadata { stx })
}

/// Metadata of a file, as STATX reported it when asked.
#[derive(Clone)]
pub struct Metadata {
    stx: libc::statx,
}

impl Metadata {
    pub fn file_type(&self) -> FileType {
        FileType {
            mode: u32::from(self.stx.stx_mode) & libc::S_IFMT,
        }
    }

    pub fn is_file(&self) -> bool {
        self.file_type().is_file()
    }

    pub fn is_dir(&self) -> bool {
        self.file_type().is_dir()
    }

    /// Only true from [`symlink_metadata`] (or for an `O_PATH | O_NOFOLLOW` descriptor):
    /// the other ways follow links.
    pub fn is_symlink(&self) -> bool {
        self.file_type().is_symlink()
    }

    /// Size in bytes. For files in /proc and similar this is often 0 though they have
    /// content, so treat it as a hint when reading.
    pub fn len(&self) -> u64 {
        self.stx.stx_size
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As std's, so it can be handed to `std::fs::set_permissions`.
    pub fn permissions(&self) -> std::fs::Permissions {
        std::fs::Permissions::from_mode(self.mode())
    }

    /// The raw `st_mode`: file type and permission bits.
    pub fn mode(&self) -> u32 {
        u32::from(self.stx.stx_mode)
    }

    pub fn modified(&self) -> io::Result<SystemTime> {
        self.time(self.stx.stx_mtime, libc::STATX_MTIME, "modification time")
    }

    pub fn accessed(&self) -> io::Result<SystemTime> {
        self.time(self.stx.stx_atime, libc::STATX_ATIME, "access time")
    }

    /// Fails with [`io::ErrorKind::Unsupported`] where the filesystem (or kernel) does
    /// not record creation times.
    pub fn created(&self) -> io::Result<SystemTime> {
        self.time(self.stx.stx_btime, libc::STATX_BTIME, "creation time")
    }

    /// Inode number: with [`Metadata::dev`], it tells whether two paths are the same file.
    pub fn ino(&self) -> u64 {
        self.stx.stx_ino
    }

    /// The device holding the file, encoded like `st_dev`.
    pub fn dev(&self) -> u64 {
        libc::makedev(self.stx.stx_dev_major, self.stx.stx_dev_minor)
    }

    pub fn nlink(&self) -> u64 {
        u64::from(self.stx.stx_nlink)
    }

    pub fn uid(&self) -> u32 {
        self.stx.stx_uid
    }

    pub fn gid(&self) -> u32 {
        self.stx.stx_gid
    }

    /// Allocated size in 512-byte units; less than `len` for sparse files.
    pub fn blocks(&self) -> u64 {
        self.stx.stx_blocks
    }

    /// The I/O size the filesystem prefers.
    pub fn blksize(&self) -> u64 {
        u64::from(self.stx.stx_blksize)
    }

    /// STATX may leave out fields a filesystem does not keep; reporting a zeroed field as
    /// 1970 would be a lie.
    fn time(&self, ts: libc::statx_timestamp, field: u32, what: &str) -> io::Result<SystemTime> {
        if self.stx.stx_mask & field == 0 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{what} is not available for this file"),
            ));
        }
        let secs = Duration::from_secs(ts.tv_sec.unsigned_abs());
        let whole = if ts.tv_sec >= 0 {
            UNIX_EPOCH.checked_add(secs)
        } else {
            UNIX_EPOCH.checked_sub(secs)
        };
        whole
            .and_then(|time| time.checked_add(Duration::from_nanos(u64::from(ts.tv_nsec))))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what} out of SystemTime's range"),
                )
            })
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metadata")
            .field("file_type", &self.file_type())
            .field("len", &self.len())
            .field("mode", &format_args!("{:#o}", self.mode()))
            .field("ino", &self.ino())
            .field("nlink", &self.nlink())
            .field("uid", &self.uid())
            .field("gid", &self.gid())
            .field("modified", &self.modified().ok())
            .finish_non_exhaustive()
    }
}

/// What kind of file a [`Metadata`] describes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileType {
    /// The `S_IFMT` bits of the mode.
    mode: u32,
}

impl FileType {
    pub fn is_file(&self) -> bool {
        self.mode == libc::S_IFREG
    }

    pub fn is_dir(&self) -> bool {
        self.mode == libc::S_IFDIR
    }

    pub fn is_symlink(&self) -> bool {
        self.mode == libc::S_IFLNK
    }

    pub fn is_fifo(&self) -> bool {
        self.mode == libc::S_IFIFO
    }

    pub fn is_socket(&self) -> bool {
        self.mode == libc::S_IFSOCK
    }

    pub fn is_block_device(&self) -> bool {
        self.mode == libc::S_IFBLK
    }

    pub fn is_char_device(&self) -> bool {
        self.mode == libc::S_IFCHR
    }
}

impl fmt::Debug for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.mode {
            libc::S_IFREG => "file",
            libc::S_IFDIR => "dir",
            libc::S_IFLNK => "symlink",
            libc::S_IFIFO => "fifo",
            libc::S_IFSOCK => "socket",
            libc::S_IFBLK => "block device",
            libc::S_IFCHR => "char device",
            _ => "unknown",
        };
        f.write_str(name)
    }
}
