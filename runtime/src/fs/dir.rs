//! Creating, removing and renaming paths.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use super::{cstring, metadata};
use crate::op::{MkDirAt, RenameAt, UnlinkAt};

/// Removes a file or symlink (never a directory: see [`remove_dir`]).
pub fn remove_file(
    path: impl AsRef<Path>,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let path = cstring(path.as_ref());
    async move { UnlinkAt::submit(None, path?, 0).await }
}

/// Removes an empty directory.
pub fn remove_dir(path: impl AsRef<Path>) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let path = cstring(path.as_ref());
    async move { UnlinkAt::submit(None, path?, libc::AT_REMOVEDIR).await }
}

/// Renames `from` to `to`, atomically replacing `to` if it is a file (or an empty
/// directory when `from` is one), so readers see either the old or the new file.
pub fn rename(
    from: impl AsRef<Path>,
    to: impl AsRef<Path>,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let paths = cstring(from.as_ref()).and_then(|from| Ok((from, cstring(to.as_ref())?)));
    async move {
        let (from, to) = paths?;
        RenameAt::submit(None, from, None, to).await
    }
}

/// Creates a directory (mode `0o777`, narrowed by the umask); its parent must exist.
pub fn create_dir(path: impl AsRef<Path>) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let path = cstring(path.as_ref());
    async move { MkDirAt::submit(None, path?, 0o777).await }
}

/// Creates a directory and any missing parents. A directory that already exists, or
/// that another task or process creates meanwhile, counts as success, so concurrent
/// callers can share paths.
pub fn create_dir_all(
    path: impl AsRef<Path>,
) -> impl Future<Output = io::Result<()>> + Send + 'static {
    let path = path.as_ref().to_path_buf();
    async move {
        // Try the deepest first: usually only it (or nothing) is missing.
        let mut missing: Vec<PathBuf> = Vec::new();
        let mut current = path.as_path();
        loop {
            if current.as_os_str().is_empty() {
                break;
            }
            match create_dir(current).await {
                Ok(()) => break,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    missing.push(current.to_path_buf());
                    match current.parent() {
                        Some(parent) => current = parent,
                        None => return Err(err),
                    }
                }
                Err(_) if is_dir(current).await => break,
                Err(err) => return Err(err),
            }
        }
        for dir in missing.iter().rev() {
            match create_dir(dir).await {
                Ok(()) => {}
                Err(_) if is_dir(dir).await => {}
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }
}

async fn is_dir(path: &Path) -> bool {
    metadata(path).await.is_ok_and(|meta| meta.is_dir())
}
