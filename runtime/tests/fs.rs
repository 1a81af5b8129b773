//! Integration tests for `ringloom::fs`. They run under whichever driver the environment
//! selects; `RINGLOOM_DRIVER=fallback` runs them on the epoll + blocking-pool driver.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ringloom::fs::{self, File, OpenOptions};
use ringloom::Runtime;

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 128 * 1024;

fn runtime() -> Runtime {
    Runtime::builder().workers(2).build().unwrap()
}

/// A directory of its own for each test, removed even when the test fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("ringloom-fs-{}-{}", std::process::id(), test));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One step of xorshift64*: cheap, varied, and a pure function of its input, so the
/// expected content of any offset can be recomputed.
fn mix(x: u64) -> u64 {
    let mut x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// `len` bytes whose every 8-byte word is `mix` of its offset.
fn pattern(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    for word in 0..len.div_ceil(8) {
        out.extend_from_slice(&mix(word as u64).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compares without printing megabytes when it fails.
fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    if actual == expected {
        return;
    }
    if let Some(at) = actual.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {at}: {:#04x} != {:#04x}",
            actual[at], expected[at]
        );
    }
}

fn kind<T: std::fmt::Debug>(result: io::Result<T>) -> io::ErrorKind {
    result.expect_err("expected an error").kind()
}

/// Polls `fut` once and drops it: an operation abandoned mid-flight.
async fn poll_once_then_drop<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = Box::pin(fut);
    match std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

#[test]
fn large_file_random_reads() {
    const SIZE: usize = 64 * MIB;
    const WRITERS: usize = 8;
    let dir = TempDir::new("large");
    let path = dir.join("big");
    let expected = Arc::new(pattern(SIZE));
    let rt = runtime();
    let started = std::time::Instant::now();
    rt.block_on(async {
        let file = Arc::new(File::create(&path).await.unwrap());
        // Several tasks write interleaved chunks, so writes to one file come from both
        // workers at once.
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (file, expected) = (file.clone(), expected.clone());
                ringloom::spawn(async move {
                    for chunk in (writer..SIZE / CHUNK).step_by(WRITERS) {
                        let at = chunk * CHUNK;
                        let data = expected[at..at + CHUNK].to_vec();
                        let (result, data) = file.write_all_at(data, at as u64).await;
                        result.unwrap();
                        assert_eq!(data.len(), CHUNK);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
        file.sync_all().await.unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), SIZE as u64);
        let file = Arc::try_unwrap(file).unwrap();
        file.close().await.unwrap();

        let file = File::open(&path).await.unwrap();
        let mut rng = 0x5eed_u64;
        for i in 0..2000 {
            rng = mix(rng);
            let len = 1 + (rng % CHUNK as u64) as usize;
            rng = mix(rng);
            let at = (rng % (SIZE - len + 1) as u64) as usize;
            let want = &expected[at..at + len];
            match i % 3 {
                0 => {
                    let (result, buf) =
                        file.read_exact_at(Vec::with_capacity(len), at as u64).await;
                    result.unwrap();
                    assert_same(&buf, want, &format!("read_exact_at({at}, {len}) into Vec"));
                }
                1 => {
                    let buf = vec![0u8; len].into_boxed_slice();
                    let (result, buf) = file.read_exact_at(buf, at as u64).await;
                    result.unwrap();
                    assert_same(&buf, want, &format!("read_exact_at({at}, {len}) into Box"));
                }
                _ => {
                    let (result, buf) = file.read_at(Vec::with_capacity(len), at as u64).await;
                    let n = result.unwrap();
                    assert!(n > 0 && n <= len);
                    assert_same(&buf, &want[..n], &format!("read_at({at}, {len})"));
                }
            }
        }
        file.close().await.unwrap();

        let whole = fs::read(&path).await.unwrap();
        assert_same(&whole, &expected, "fs::read of the whole file");
    });
    eprintln!(
        "64 MiB write + 2000 random reads + fs::read: {:?}",
        started.elapsed()
    );
}

#[test]
fn open_errors() {
    let dir = TempDir::new("errors");
    let rt = runtime();
    rt.block_on(async {
        let missing = dir.join("missing");
        assert_eq!(kind(File::open(&missing).await), io::ErrorKind::NotFound);
        assert_eq!(kind(fs::read(&missing).await), io::ErrorKind::NotFound);
        assert_eq!(kind(fs::metadata(&missing).await), io::ErrorKind::NotFound);
        assert_eq!(
            kind(fs::remove_file(&missing).await),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(fs::remove_dir(&missing).await),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(fs::rename(&missing, dir.join("other")).await),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            kind(File::create(dir.join("no-such-dir/file")).await),
            io::ErrorKind::NotFound
        );

        let existing = dir.join("existing");
        fs::write(&existing, "x").await.unwrap();
        let create_new = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&existing)
            .await;
        assert_eq!(kind(create_new), io::ErrorKind::AlreadyExists);
        assert_eq!(
            kind(fs::create_dir(&existing).await),
            io::ErrorKind::AlreadyExists
        );
        // create_dir_all must not mistake an existing file for a directory.
        assert!(fs::create_dir_all(&existing).await.is_err());

        let nul = dir.join("bad\0name");
        assert_eq!(kind(File::open(&nul).await), io::ErrorKind::InvalidInput);
        assert_eq!(kind(File::create(&nul).await), io::ErrorKind::InvalidInput);
        assert_eq!(kind(fs::read(&nul).await), io::ErrorKind::InvalidInput);
        assert_eq!(
            kind(fs::write(&nul, "x").await),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(kind(fs::metadata(&nul).await), io::ErrorKind::InvalidInput);
        assert_eq!(
            kind(fs::symlink_metadata(&nul).await),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(fs::remove_file(&nul).await),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(fs::remove_dir(&nul).await),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(fs::create_dir(&nul).await),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(fs::create_dir_all(&nul).await),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(fs::rename(&existing, &nul).await),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            kind(fs::rename(&nul, &existing).await),
            io::ErrorKind::InvalidInput
        );

        // The combinations std refuses.
        for options in [
            OpenOptions::new().clone(),
            OpenOptions::new().read(true).create(true).clone(),
            OpenOptions::new().read(true).truncate(true).clone(),
            OpenOptions::new().append(true).truncate(true).clone(),
        ] {
            assert_eq!(
                kind(options.open(&existing).await),
                io::ErrorKind::InvalidInput,
                "{options:?}"
            );
        }

        let file = File::open(&existing).await.unwrap();
        let (result, _) = file.read_at(Vec::with_capacity(1), u64::MAX).await;
        assert_eq!(kind(result), io::ErrorKind::InvalidInput);
        // A read-only file refuses writes with the kernel's error, not a panic.
        let (result, _) = file.write_at("y", 0).await;
        assert!(result.is_err());
    });
}

#[test]
fn metadata_and_paths() {
    let dir = TempDir::new("paths");
    let rt = runtime();
    rt.block_on(async {
        let a = dir.join("a");
        fs::write(&a, b"hello, ring".as_slice()).await.unwrap();
        assert_eq!(fs::read(&a).await.unwrap(), b"hello, ring");

        let meta = fs::metadata(&a).await.unwrap();
        let std_meta = std::fs::metadata(&a).unwrap();
        assert_eq!(meta.len(), 11);
        assert!(meta.is_file() && !meta.is_dir() && !meta.is_symlink());
        assert!(meta.file_type().is_file());
        assert_eq!(meta.ino(), std_meta.ino());
        assert_eq!(meta.dev(), std_meta.dev());
        assert_eq!(meta.nlink(), 1);
        assert_eq!(meta.uid(), std_meta.uid());
        assert_eq!(meta.gid(), std_meta.gid());
        assert_eq!(meta.mode(), std_meta.mode());
        assert_eq!(meta.permissions(), std_meta.permissions());
        assert_eq!(meta.blocks(), std_meta.blocks());
        assert_eq!(meta.modified().unwrap(), std_meta.modified().unwrap());
        assert_eq!(meta.accessed().unwrap(), std_meta.accessed().unwrap());
        match (meta.created(), std_meta.created()) {
            (Ok(ours), Ok(theirs)) => assert_eq!(ours, theirs),
            (Err(_), Err(_)) => {}
            (ours, theirs) => panic!("created: {ours:?} vs std's {theirs:?}"),
        }
        let _ = format!("{meta:?}");

        let file = File::open(&a).await.unwrap();
        let by_fd = file.metadata().await.unwrap();
        assert_eq!((by_fd.ino(), by_fd.len()), (meta.ino(), 11));
        file.close().await.unwrap();

        let dir_meta = fs::metadata(&dir.0).await.unwrap();
        assert!(dir_meta.is_dir() && !dir_meta.is_file());

        let link = dir.join("link");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        assert!(fs::metadata(&link).await.unwrap().is_file());
        let link_meta = fs::symlink_metadata(&link).await.unwrap();
        assert!(link_meta.is_symlink() && !link_meta.is_file());
        assert!(link_meta.file_type().is_symlink());

        let b = dir.join("b");
        fs::rename(&a, &b).await.unwrap();
        assert_eq!(kind(fs::metadata(&a).await), io::ErrorKind::NotFound);
        assert_eq!(fs::read(&b).await.unwrap(), b"hello, ring");
        assert_eq!(fs::metadata(&b).await.unwrap().ino(), meta.ino());
        fs::remove_file(&b).await.unwrap();
        assert_eq!(kind(fs::metadata(&b).await), io::ErrorKind::NotFound);
        assert_eq!(kind(File::open(&b).await), io::ErrorKind::NotFound);
        assert_eq!(kind(fs::remove_file(&b).await), io::ErrorKind::NotFound);

        let single = dir.join("single");
        fs::create_dir(&single).await.unwrap();
        assert!(fs::metadata(&single).await.unwrap().is_dir());
        let deep = dir.join("x/y/z");
        fs::create_dir_all(&deep).await.unwrap();
        assert!(fs::metadata(&deep).await.unwrap().is_dir());
        fs::create_dir_all(&deep).await.unwrap();
        fs::create_dir_all(dir.join("x/y/z/../w")).await.unwrap();
        assert!(fs::metadata(dir.join("x/y/w")).await.unwrap().is_dir());
        fs::create_dir_all("").await.unwrap();
        // Not empty: removing it must fail and leave it there.
        assert!(fs::remove_dir(dir.join("x")).await.is_err());
        for path in ["x/y/z", "x/y/w", "x/y", "x", "single"] {
            fs::remove_dir(dir.join(path)).await.unwrap();
        }
        assert_eq!(
            kind(fs::metadata(dir.join("x")).await),
            io::ErrorKind::NotFound
        );
        let file_path = dir.join("file");
        fs::write(&file_path, vec![1, 2, 3]).await.unwrap();
        assert!(fs::remove_dir(&file_path).await.is_err());
        let made_dir = dir.join("made");
        fs::create_dir(&made_dir).await.unwrap();
        assert!(fs::remove_file(&made_dir).await.is_err());

        let empty = dir.join("empty");
        fs::write(&empty, Vec::new()).await.unwrap();
        assert_eq!(fs::read(&empty).await.unwrap(), Vec::<u8>::new());
        assert!(fs::metadata(&empty).await.unwrap().is_empty());

        // write replaces: a shorter second write leaves nothing of the first behind.
        fs::write(&empty, String::from("longer contents"))
            .await
            .unwrap();
        fs::write(&empty, "short").await.unwrap();
        assert_eq!(fs::read(&empty).await.unwrap(), b"short");

        // /proc reports a size of 0 for files that have content.
        let status = fs::read("/proc/self/status").await.unwrap();
        assert!(!status.is_empty());
        assert!(
            status.starts_with(b"Name:"),
            "{}",
            String::from_utf8_lossy(&status)
        );
        assert!(status.ends_with(b"\n"));
        // Usually larger than the first probe, which exercises growing the buffer.
        let smaps = fs::read("/proc/self/smaps").await.unwrap();
        assert!(smaps.ends_with(b"\n") && smaps.windows(5).any(|w| w == b"Size:"));
    });
}

#[test]
fn relative_paths_follow_the_working_directory() {
    let dir = TempDir::new("relative");
    let cwd = std::env::current_dir().unwrap();
    // Climb to / from the working directory, then down to the temp dir: a relative path
    // to it that works without changing the (process-wide) working directory.
    let mut relative = PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.push(dir.join("rel").strip_prefix("/").unwrap());
    assert!(relative.is_relative());
    let rt = runtime();
    rt.block_on(async {
        fs::write(&relative, "relative").await.unwrap();
        assert_eq!(std::fs::read(dir.join("rel")).unwrap(), b"relative");
        assert_eq!(fs::read(&relative).await.unwrap(), b"relative");
        fs::remove_file(&relative).await.unwrap();
        assert!(!dir.join("rel").exists());
    });
}

#[test]
fn many_tasks_each_with_a_file() {
    const TASKS: usize = 200;
    let dir = Arc::new(TempDir::new("tasks"));
    let rt = runtime();
    rt.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let dir = dir.clone();
                ringloom::spawn(async move {
                    let path = dir.join(&format!("task-{task}"));
                    let contents = format!("task {task};").repeat(task % 37 + 1).into_bytes();
                    let file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .await
                        .unwrap();
                    // Second half first, so each file is written out of order.
                    let half = contents.len() / 2;
                    let (result, _) = file
                        .write_all_at(contents[half..].to_vec(), half as u64)
                        .await;
                    result.unwrap();
                    let (result, _) = file.write_all_at(contents[..half].to_vec(), 0).await;
                    result.unwrap();
                    file.sync_data().await.unwrap();
                    let (result, back) = file
                        .read_exact_at(Vec::with_capacity(contents.len()), 0)
                        .await;
                    result.unwrap();
                    assert_eq!(back, contents, "task {task}");
                    file.close().await.unwrap();
                    assert_eq!(fs::read(&path).await.unwrap(), contents, "task {task}");
                    fs::remove_file(&path).await.unwrap();
                    task
                })
            })
            .collect();
        let mut finished = 0;
        for (task, handle) in tasks.into_iter().enumerate() {
            assert_eq!(handle.await.unwrap(), task);
            finished += 1;
        }
        assert_eq!(finished, TASKS);
    });
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}

#[test]
fn reads_at_and_past_the_end() {
    let dir = TempDir::new("eof");
    let path = dir.join("ten");
    let rt = runtime();
    rt.block_on(async {
        fs::write(&path, b"0123456789".as_slice()).await.unwrap();
        let file = File::open(&path).await.unwrap();
        for pos in [10, 11, 4096, 1 << 40, i64::MAX as u64 - 16] {
            let (result, buf) = file.read_at(Vec::with_capacity(16), pos).await;
            assert_eq!(result.unwrap(), 0, "read_at({pos})");
            assert!(buf.is_empty());
        }
        // Straddling the end: only what exists.
        let (result, buf) = file.read_at(Vec::with_capacity(16), 6).await;
        assert_eq!(result.unwrap(), 4);
        assert_eq!(buf, b"6789");

        let (result, buf) = file.read_exact_at(Vec::with_capacity(8), 5).await;
        assert_eq!(kind(result), io::ErrorKind::UnexpectedEof);
        assert_eq!(buf, b"56789");
        let (result, buf) = file
            .read_exact_at(vec![0u8; 4].into_boxed_slice(), 20)
            .await;
        assert_eq!(kind(result), io::ErrorKind::UnexpectedEof);
        assert_eq!(&buf[..], &[0; 4]);
        let (result, buf) = file.read_exact_at(Vec::with_capacity(10), 0).await;
        result.unwrap();
        assert_eq!(buf, b"0123456789");

        // A read into a Vec that already holds data overwrites from the start.
        let mut held = Vec::with_capacity(4);
        held.extend_from_slice(b"abcd");
        let (result, held) = file.read_at(held, 8).await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(held, b"89cd");
    });
}

#[test]
fn options_close_and_conversions() {
    let dir = TempDir::new("options");
    let path = dir.join("f");
    let rt = runtime();
    rt.block_on(async {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .await
            .unwrap();
        let (result, _) = file.write_all_at("hello", 0).await;
        result.unwrap();
        // Writing past the end leaves a hole that reads back as zeros.
        let (result, _) = file.write_at(vec![b'!'], 7).await;
        assert_eq!(result.unwrap(), 1);
        let meta = file.metadata().await.unwrap();
        assert_eq!(meta.len(), 8);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        file.allocate(0, 4096).await.unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), 4096);
        file.close().await.unwrap();
        let contents = fs::read(&path).await.unwrap();
        assert_eq!(&contents[..8], b"hello\0\0!");
        assert!(contents[8..].iter().all(|&b| b == 0));

        // Appending ignores the offset.
        let file = OpenOptions::new().append(true).open(&path).await.unwrap();
        let (result, _) = file.write_all_at("+tail", 0).await;
        result.unwrap();
        drop(file);
        let contents = fs::read(&path).await.unwrap();
        assert_eq!(contents.len(), 4096 + 5);
        assert!(contents.ends_with(b"+tail"));
        assert!(contents.starts_with(b"hello"));

        // Truncating empties; create alone keeps what is there.
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .open(&path)
            .await
            .unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), 4096 + 5);
        drop(file);
        let file = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .await
            .unwrap();
        assert_eq!(file.metadata().await.unwrap().len(), 0);
        drop(file);

        // Custom flags pass through; O_NOFOLLOW refuses a symlink.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let nofollow = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&link)
            .await;
        assert!(nofollow.is_err());

        // To and from std.
        fs::write(&path, "shared").await.unwrap();
        let file = File::options().read(true).open(&path).await.unwrap();
        let mut std_file = file.into_std().unwrap();
        let mut text = String::new();
        io::Read::read_to_string(&mut std_file, &mut text).unwrap();
        assert_eq!(text, "shared");
        let file = File::from(std_file);
        let (result, buf) = file.read_at(Vec::with_capacity(3), 3).await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(buf, b"red");
        let raw = file.into_std().unwrap().into_raw_fd();
        // SAFETY: `raw` was just released by the std File; nothing else owns it.
        let file = unsafe { File::from_raw_fd(raw) };
        assert_eq!(file.as_raw_fd(), raw);
        file.sync_all().await.unwrap();
        file.close().await.unwrap();
    });
}

fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags; any number is a valid argument.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

#[test]
fn abandoned_write_never_lands_in_another_file() {
    let dir = TempDir::new("abandoned");
    let first = dir.join("first");
    let second = dir.join("second");
    let rt = runtime();
    rt.block_on(async {
        for round in 0..20 {
            let file = File::create(&first).await.unwrap();
            let fd = file.as_raw_fd();
            // Started, then dropped: the kernel (or the blocking pool) may still be
            // about to write.
            let outcome = poll_once_then_drop(file.write_at(vec![1u8; MIB], 0)).await;
            drop(file);
            // Takes the lowest free descriptor number, which is `fd` if dropping the
            // File released it.
            let mut other = std::fs::File::create(&second).unwrap();
            io::Write::write_all(&mut other, b"x").unwrap();
            assert!(
                outcome.is_some() || other.as_raw_fd() != fd,
                "round {round}: the descriptor was released while a write was in flight"
            );
            drop(other);
            // The abandoned write holds `fd` open until it has landed (or been
            // cancelled); wait for that before looking at the files.
            let mut waited = 0;
            while outcome.is_none() && fd_is_open(fd) && waited < 500 {
                ringloom::time::sleep(Duration::from_millis(1)).await;
                waited += 1;
            }
            assert_eq!(
                std::fs::read(&second).unwrap(),
                b"x",
                "round {round}: a dropped write went to the wrong file"
            );
            let len = std::fs::metadata(&first).unwrap().len();
            assert!(len == 0 || len == MIB as u64, "round {round}: {len}");
        }
    });
}

/// A buffer aligned to 4 KiB, as `O_DIRECT` reads need.
struct Aligned {
    ptr: *mut u8,
    init: usize,
}

const ALIGNED_BYTES: usize = 4096;

impl Aligned {
    fn new() -> Aligned {
        let layout = std::alloc::Layout::from_size_align(ALIGNED_BYTES, ALIGNED_BYTES).unwrap();
        // SAFETY: the layout is not zero-sized.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null());
        Aligned { ptr, init: 0 }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(ALIGNED_BYTES, ALIGNED_BYTES).unwrap();
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

// SAFETY: the buffer owns its allocation; nothing else points into it.
unsafe impl Send for Aligned {}

// SAFETY: the allocation never moves while the value lives; `init` <= its length.
unsafe impl ringloom::IoBuf for Aligned {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }
    fn bytes_init(&self) -> usize {
        self.init
    }
    fn bytes_total(&self) -> usize {
        ALIGNED_BYTES
    }
}

// SAFETY: as above; the kernel writes at most `bytes_total` bytes.
unsafe impl ringloom::IoBufMut for Aligned {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    unsafe fn set_init(&mut self, n: usize) {
        self.init = self.init.max(n);
    }
}

/// Ring enters made while `tasks` tasks each read `reads` blocks of `file` in turn.
fn enters_while_reading(rt: &Runtime, file: Arc<File>, tasks: u64, reads: u64) -> u64 {
    let before = rt.stats().total().ring_enters;
    rt.block_on(rt.spawn(async move {
        let mut readers = Vec::new();
        for task in 0..tasks {
            let file = file.clone();
            readers.push(ringloom::spawn(async move {
                let mut buf = Aligned::new();
                for read in 0..reads {
                    let offset = (task * reads + read) * ALIGNED_BYTES as u64;
                    let (result, back) = file.read_at(buf, offset).await;
                    assert_eq!(result.unwrap(), ALIGNED_BYTES);
                    // SAFETY: the read filled all of it.
                    assert!(
                        unsafe { std::slice::from_raw_parts(back.ptr, ALIGNED_BYTES) }
                            .iter()
                            .all(|&b| b == 7)
                    );
                    buf = back;
                    buf.init = 0;
                }
            }));
        }
        for reader in readers {
            reader.await.unwrap();
        }
    }))
    .unwrap();
    rt.stats().total().ring_enters - before
}

/// Reads of a file opened with `O_DIRECT` go to the kernel as they are made (they wait
/// for the device, beside which an enter is cheap), not with the worker's next batch:
/// 8 tasks reading 4 blocks each make an enter per read, where the same reads of a
/// cached file share one enter per round of the 8.
#[test]
fn direct_reads_are_submitted_as_they_are_made() {
    const TASKS: u64 = 8;
    const READS: u64 = 4;
    let rt = Runtime::builder().workers(1).build().unwrap();
    if rt.stats().driver_name() != "io_uring" {
        return; // the fallback driver has no ring to enter
    }
    let dir = TempDir::new("direct_submits");
    let path = dir.join("blocks");
    std::fs::write(&path, vec![7u8; (TASKS * READS) as usize * ALIGNED_BYTES]).unwrap();
    let open = |flags| {
        let path = path.clone();
        rt.block_on(async move {
            OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(&path)
                .await
        })
    };
    let direct = match open(libc::O_DIRECT) {
        Ok(file) => Arc::new(file),
        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
            eprintln!(
                "skipped: the file system of {} refuses O_DIRECT",
                path.display()
            );
            return;
        }
        Err(err) => panic!("open with O_DIRECT: {err}"),
    };
    let cached = Arc::new(open(0).unwrap());
    let cached_enters = enters_while_reading(&rt, cached, TASKS, READS);
    let direct_enters = enters_while_reading(&rt, direct.clone(), TASKS, READS);
    assert!(
        direct_enters >= TASKS * READS,
        "{direct_enters} enters for {} direct reads",
        TASKS * READS
    );
    assert!(
        cached_enters < TASKS * READS,
        "{cached_enters} enters for {} cached reads: not batched",
        TASKS * READS
    );
    // Adopted descriptors are asked for their flags.
    let adopted = File::from(Arc::try_unwrap(direct).ok().unwrap().into_std().unwrap());
    assert!(enters_while_reading(&rt, Arc::new(adopted), TASKS, READS) >= TASKS * READS);
}
