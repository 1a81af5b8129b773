//! Files: reads from one large file at a fixed queue depth for a fixed time, page cache
//! warm (buffered reads of a file just read in full) or O_DIRECT, through ringloom (one
//! worker), monoio, compio, tokio (pread on its blocking pool) and fio (io_uring engine). The process (and fio, which inherits it) is
//! pinned to one CPU.
//!
//! The file holds, at every 8-byte-aligned offset `o`, the word `stamp(o)`: each read's
//! first word is checked against the offset it was read from.

use std::cell::Cell;
use std::io::{Read, Write};
use std::process::Command;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::obj;
use crate::util::{self, fail, Args, Error, Result};

const ALIGN: usize = 4096;

fn stamp(offset: u64) -> u64 {
    (offset ^ 0x5bd1_e995_u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// `rbench mkfile PATH BYTES`: writes the stamped file unless one of that size exists.
pub fn mkfile(args: &[String]) -> Result<()> {
    let args = Args::parse(args)?;
    let path = args.positional(0, "PATH")?;
    let bytes: u64 = args
        .positional(1, "BYTES")?
        .parse()
        .map_err(|_| Error::Usage("BYTES must be a number".into()))?;
    if !bytes.is_multiple_of(1 << 20) {
        return Err(Error::Usage("BYTES must be a multiple of 1 MiB".into()));
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() == bytes) {
        return Ok(());
    }
    let mut file = std::fs::File::create(path).map_err(fail("create"))?;
    let mut chunk = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < bytes {
        for (i, word) in chunk.chunks_exact_mut(8).enumerate() {
            word.copy_from_slice(&stamp(offset + 8 * i as u64).to_le_bytes());
        }
        file.write_all(&chunk).map_err(fail("write"))?;
        offset += chunk.len() as u64;
    }
    file.sync_all().map_err(fail("fsync"))?;
    Ok(())
}

/// A heap buffer aligned for O_DIRECT.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
    init: usize,
}

// SAFETY: the buffer owns its allocation exclusively; nothing else points into it.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(len: usize) -> AlignedBuf {
        let layout = std::alloc::Layout::from_size_align(len, ALIGN).expect("layout");
        // SAFETY: `len` is non-zero (callers pass a block size).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, len, init: 0 }
    }

    fn first_word(&self) -> Option<u64> {
        if self.init < 8 {
            return None;
        }
        // SAFETY: at least 8 bytes are initialised; read_unaligned has no alignment need.
        Some(u64::from_le(unsafe {
            self.ptr.cast::<u64>().read_unaligned()
        }))
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, ALIGN).expect("layout");
        // SAFETY: allocated in `new` with this very layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

// SAFETY: the allocation never moves and lives as long as the value; `init` <= `len`.
unsafe impl ringloom::IoBuf for AlignedBuf {
    fn stable_ptr(&self) -> *const u8 {
        self.ptr
    }
    fn bytes_init(&self) -> usize {
        self.init
    }
    fn bytes_total(&self) -> usize {
        self.len
    }
}

// SAFETY: as above; the whole allocation is writable.
unsafe impl ringloom::IoBufMut for AlignedBuf {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    unsafe fn set_init(&mut self, pos: usize) {
        self.init = self.init.max(pos.min(self.len));
    }
}

// SAFETY: as for ringloom's trait: a fixed heap allocation of `len` bytes.
unsafe impl monoio::buf::IoBuf for AlignedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr
    }
    fn bytes_init(&self) -> usize {
        self.init
    }
}

// SAFETY: as above; the whole allocation is writable.
unsafe impl monoio::buf::IoBufMut for AlignedBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.ptr
    }
    fn bytes_total(&mut self) -> usize {
        self.len
    }
    unsafe fn set_init(&mut self, pos: usize) {
        self.init = self.init.max(pos.min(self.len));
    }
}

impl compio::buf::IoBuf for AlignedBuf {
    fn as_init(&self) -> &[u8] {
        // SAFETY: the allocation holds `len` >= `init` bytes, all initialised
        // (alloc_zeroed), and the returned slice borrows `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.init) }
    }
}

impl compio::buf::SetLen for AlignedBuf {
    unsafe fn set_len(&mut self, len: usize) {
        self.init = len.min(self.len);
    }
}

impl compio::buf::IoBufMut for AlignedBuf {
    fn as_uninit(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
        // SAFETY: `len` bytes are allocated; MaybeUninit<u8> has u8's layout; the
        // slice borrows `self` mutably, so nothing else reaches the memory meanwhile.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast(), self.len) }
    }
}

#[derive(Clone, Copy)]
struct Plan {
    random: bool,
    block: u64,
    blocks: u64,
    depth: usize,
    length: Duration,
}

impl Plan {
    /// The offset of a reader's next read: random blocks from the reader's own
    /// generator, or the next block of one shared sequence.
    fn next(&self, rng: &mut u64, sequence: &AtomicU64) -> u64 {
        let index = if self.random {
            // xorshift64*
            *rng ^= *rng >> 12;
            *rng ^= *rng << 25;
            *rng ^= *rng >> 27;
            rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % self.blocks
        } else {
            sequence.fetch_add(1, Ordering::Relaxed) % self.blocks
        };
        index * self.block
    }
}

/// A distinct, non-zero generator state for each reader.
fn seed(reader: usize) -> u64 {
    0x9e37_79b9_7f4a_7c15u64 ^ (reader as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

fn check(
    result: std::io::Result<usize>,
    buf: &AlignedBuf,
    plan: &Plan,
    offset: u64,
) -> std::io::Result<()> {
    let n = result?;
    if n as u64 != plan.block {
        return Err(std::io::Error::other(format!(
            "short read at {offset}: {n} of {} bytes",
            plan.block
        )));
    }
    if buf.first_word() != Some(stamp(offset)) {
        return Err(std::io::Error::other(format!(
            "wrong data at {offset}: not the stamped file (recreate it with mkfile)"
        )));
    }
    Ok(())
}

/// `rbench files PEER PATTERN CACHE PATH [--secs S] [--cpu C] [--depth D]`
pub fn run(args: &[String]) -> Result<()> {
    let args = Args::parse(args)?;
    let peer = args.positional(0, "PEER")?.to_string();
    let pattern = args.positional(1, "PATTERN")?.to_string();
    let cache = args.positional(2, "CACHE")?.to_string();
    let path = args.positional(3, "PATH")?.to_string();
    let secs: f64 = args.option("secs", 5.0)?;
    let cpu: usize = args.option("cpu", 0)?;
    let (random, block, default_depth) = match pattern.as_str() {
        "rand4k" => (true, 4096u64, 64usize),
        "seq128k" => (false, 128 * 1024, 8),
        _ => return Err(Error::Usage(format!("unknown pattern {pattern:?}"))),
    };
    let depth: usize = args.option("depth", default_depth)?;
    let direct = match cache.as_str() {
        "warm" => false,
        "direct" => true,
        _ => return Err(Error::Usage(format!("unknown cache mode {cache:?}"))),
    };
    let size = std::fs::metadata(&path)
        .map_err(fail("the test file"))?
        .len();
    if size < block || !size.is_multiple_of(block) {
        return Err(Error::Failed(format!(
            "{path}: size {size} is not a multiple of {block}"
        )));
    }
    let plan = Plan {
        random,
        block,
        blocks: size / block,
        depth,
        length: Duration::from_secs_f64(secs),
    };
    let pinned = util::pin_to_cpu(cpu)?;
    if !direct {
        warm(&path)?;
    }

    let mut info = util::base_info();
    info.insert("peer".into(), json!(peer));
    info.insert("file_bytes".into(), json!(size));
    info.insert("block_bytes".into(), json!(block));
    info.insert("queue_depth".into(), json!(depth));
    info.insert("o_direct".into(), json!(direct));
    info.insert("seconds".into(), json!(secs));
    info.insert("pinned_cpu".into(), json!(pinned.then_some(cpu)));
    info.insert("path".into(), json!(path));

    let (ops, elapsed) = match peer.as_str() {
        "ringloom" => {
            let rt = ringloom::Runtime::builder()
                .workers(1)
                .build()
                .map_err(fail("ringloom runtime"))?;
            let path = path.clone();
            let result = rt
                .block_on(rt.spawn(ringloom_reads(path, direct, plan)))
                .map_err(fail("ringloom task"))?
                .map_err(fail("ringloom reads"))?;
            util::ringloom_info(&rt, &mut info);
            result
        }
        "monoio" => {
            info.insert(
                "ring".into(),
                json!("monoio default (1024 entries, no flags)"),
            );
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .build()
                .map_err(fail("monoio runtime"))?;
            rt.block_on(monoio_reads(path.clone(), direct, plan))
                .map_err(fail("monoio reads"))?
        }
        "compio" => {
            let rt = compio::runtime::Runtime::new().map_err(fail("compio runtime"))?;
            info.insert("driver".into(), json!(format!("{:?}", rt.driver_type())));
            rt.block_on(compio_reads(path.clone(), direct, plan))
                .map_err(fail("compio reads"))?
        }
        "tokio" => {
            info.insert(
                "flavor".into(),
                json!("current_thread, reads on spawn_blocking"),
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(fail("tokio runtime"))?;
            rt.block_on(tokio_reads(path.clone(), direct, plan))
                .map_err(fail("tokio reads"))?
        }
        "fio" => fio(&path, direct, &plan, &mut info)?,
        _ => return Err(Error::Usage(format!("unknown peer {peer:?}"))),
    };
    let secs = elapsed.as_secs_f64();
    let bytes = ops as f64 * block as f64;
    util::emit(
        obj! {
            "iops" => ops as f64 / secs,
            "gib_per_s" => bytes / secs / (1u64 << 30) as f64,
        },
        info,
    );
    Ok(())
}

/// Reads the whole file through the page cache, so that buffered reads find it there.
fn warm(path: &str) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(fail("open for warming"))?;
    let mut chunk = vec![0u8; 1 << 20];
    while file.read(&mut chunk).map_err(fail("warming read"))? > 0 {}
    Ok(())
}

async fn ringloom_reads(
    path: String,
    direct: bool,
    plan: Plan,
) -> std::io::Result<(u64, Duration)> {
    let mut options = ringloom::fs::OpenOptions::new();
    options.read(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = Arc::new(options.open(&path).await?);
    let sequence = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + plan.length;
    let mut readers = Vec::with_capacity(plan.depth);
    for reader in 0..plan.depth {
        let file = file.clone();
        let sequence = sequence.clone();
        readers.push(ringloom::spawn(async move {
            let mut rng =
                0x9e37_79b9_7f4a_7c15u64 ^ (reader as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let mut buf = AlignedBuf::new(plan.block as usize);
            let mut ops = 0u64;
            while Instant::now() < end {
                let offset = plan.next(&mut rng, &sequence);
                buf.init = 0;
                let (result, returned) = file.read_at(buf, offset).await;
                buf = returned;
                check(result, &buf, &plan, offset)?;
                ops += 1;
            }
            Ok::<u64, std::io::Error>(ops)
        }));
    }
    let mut ops = 0;
    for reader in readers {
        ops += reader
            .await
            .map_err(|err| std::io::Error::other(err.to_string()))??;
    }
    Ok((ops, start.elapsed()))
}

async fn monoio_reads(path: String, direct: bool, plan: Plan) -> std::io::Result<(u64, Duration)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = monoio::fs::OpenOptions::new();
    options.read(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = Rc::new(options.open(&path).await?);
    let sequence = Rc::new(AtomicU64::new(0));
    let failed = Rc::new(Cell::new(None::<std::io::Error>));
    let start = Instant::now();
    let end = start + plan.length;
    let mut readers = Vec::with_capacity(plan.depth);
    for reader in 0..plan.depth {
        let file = file.clone();
        let sequence = sequence.clone();
        let failed = failed.clone();
        readers.push(monoio::spawn(async move {
            let mut rng =
                0x9e37_79b9_7f4a_7c15u64 ^ (reader as u64 + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            let mut buf = AlignedBuf::new(plan.block as usize);
            let mut ops = 0u64;
            while Instant::now() < end {
                let offset = plan.next(&mut rng, &sequence);
                buf.init = 0;
                let (result, returned) = file.read_at(buf, offset).await;
                buf = returned;
                if let Err(err) = check(result, &buf, &plan, offset) {
                    failed.set(Some(err));
                    break;
                }
                ops += 1;
            }
            ops
        }));
    }
    let mut ops = 0;
    for reader in readers {
        ops += reader.await;
    }
    let elapsed = start.elapsed();
    match failed.take() {
        Some(err) => Err(err),
        None => Ok((ops, elapsed)),
    }
}

async fn compio_reads(path: String, direct: bool, plan: Plan) -> std::io::Result<(u64, Duration)> {
    use compio::io::AsyncReadAt;
    let mut options = compio::fs::OpenOptions::new();
    options.read(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = Rc::new(options.open(&path).await?);
    let sequence = Rc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + plan.length;
    let mut readers = Vec::with_capacity(plan.depth);
    for reader in 0..plan.depth {
        let file = file.clone();
        let sequence = sequence.clone();
        readers.push(compio::runtime::spawn(async move {
            let mut rng = seed(reader);
            let mut buf = AlignedBuf::new(plan.block as usize);
            let mut ops = 0u64;
            while Instant::now() < end {
                let offset = plan.next(&mut rng, &sequence);
                buf.init = 0;
                let compio::BufResult(result, returned) = file.read_at(buf, offset).await;
                buf = returned;
                check(result, &buf, &plan, offset)?;
                ops += 1;
            }
            Ok::<u64, std::io::Error>(ops)
        }));
    }
    let mut ops = 0;
    for reader in readers {
        ops += reader
            .await
            .map_err(|_| std::io::Error::other("a compio reader panicked"))??;
    }
    Ok((ops, start.elapsed()))
}

/// tokio has no positioned read in `tokio::fs` (its `File` keeps a cursor); what it does
/// for any file read, and what its users do for a positioned one, is a `pread` on the
/// blocking pool.
async fn tokio_reads(path: String, direct: bool, plan: Plan) -> std::io::Result<(u64, Duration)> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = Arc::new(options.open(&path)?);
    let sequence = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + plan.length;
    let mut readers = Vec::with_capacity(plan.depth);
    for reader in 0..plan.depth {
        let file = file.clone();
        let sequence = sequence.clone();
        readers.push(tokio::spawn(async move {
            let mut rng = seed(reader);
            let mut buf = AlignedBuf::new(plan.block as usize);
            let mut ops = 0u64;
            while Instant::now() < end {
                let offset = plan.next(&mut rng, &sequence);
                let file = file.clone();
                let (result, returned) = tokio::task::spawn_blocking(move || {
                    // SAFETY: `len` bytes are allocated (and zeroed) and owned by `buf`,
                    // which this closure owns while the slice lives.
                    let slice = unsafe { std::slice::from_raw_parts_mut(buf.ptr, buf.len) };
                    let result = file.read_at(slice, offset);
                    if let Ok(n) = result {
                        buf.init = n;
                    }
                    (result, buf)
                })
                .await
                .map_err(std::io::Error::other)?;
                buf = returned;
                check(result, &buf, &plan, offset)?;
                ops += 1;
            }
            Ok::<u64, std::io::Error>(ops)
        }));
    }
    let mut ops = 0;
    for reader in readers {
        ops += reader.await.map_err(std::io::Error::other)??;
    }
    Ok((ops, start.elapsed()))
}

/// fio with its io_uring engine, same file, block, depth and time; it inherits the CPU
/// this process is pinned to.
fn fio(
    path: &str,
    direct: bool,
    plan: &Plan,
    info: &mut serde_json::Map<String, Value>,
) -> Result<(u64, Duration)> {
    let version = Command::new("fio")
        .arg("--version")
        .output()
        .map_err(fail("fio (install it: apt-get install fio)"))?;
    info.insert(
        "fio_version".into(),
        json!(String::from_utf8_lossy(&version.stdout).trim()),
    );
    let millis = plan.length.as_millis().max(1);
    let output = Command::new("fio")
        .args([
            "--name=rbench",
            &format!("--filename={path}"),
            "--readonly",
            &format!("--rw={}", if plan.random { "randread" } else { "read" }),
            &format!("--bs={}", plan.block),
            &format!("--iodepth={}", plan.depth),
            "--ioengine=io_uring",
            &format!("--direct={}", u8::from(direct)),
            // fio drops the file's pages before a job by default: keep them for "warm".
            "--invalidate=0",
            // No posix_fadvise hints: ringloom and monoio give none either.
            "--fadvise_hint=0",
            "--norandommap",
            "--randrepeat=0",
            "--time_based",
            &format!("--runtime={millis}ms"),
            "--output-format=json",
        ])
        .output()
        .map_err(fail("running fio"))?;
    if !output.status.success() {
        return Err(Error::Failed(format!(
            "fio failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let json_start = text
        .find('{')
        .ok_or_else(|| Error::Failed("no JSON from fio".into()))?;
    let report: Value = serde_json::from_str(&text[json_start..]).map_err(fail("fio's JSON"))?;
    let read = &report["jobs"][0]["read"];
    let ios = read["total_ios"]
        .as_u64()
        .ok_or_else(|| Error::Failed("fio's JSON has no read.total_ios".into()))?;
    let runtime_ms = read["runtime"]
        .as_u64()
        .ok_or_else(|| Error::Failed("fio's JSON has no read.runtime".into()))?;
    info.insert("fio_iops".into(), read["iops"].clone());
    Ok((ios, Duration::from_millis(runtime_ms.max(1))))
}
