//! Shared pieces: arguments, CPU pinning, peak memory, versions, the result line.

use std::fmt::Display;
use std::str::FromStr;

use serde_json::{json, Map, Value};

pub enum Error {
    Usage(String),
    Failed(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Turns any displayable error into a measurement failure with context.
pub fn fail<E: Display>(what: &str) -> impl FnOnce(E) -> Error + '_ {
    move |err| Error::Failed(format!("{what}: {err}"))
}

/// Positional arguments and `--name value` options.
pub struct Args {
    positional: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    pub fn parse(args: &[String]) -> Result<Args> {
        let mut positional = Vec::new();
        let mut options = Vec::new();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let value = iter
                    .next()
                    .ok_or_else(|| Error::Usage(format!("--{name} needs a value")))?;
                options.push((name.to_string(), value.clone()));
            } else {
                positional.push(arg.clone());
            }
        }
        Ok(Args {
            positional,
            options,
        })
    }

    pub fn positional(&self, index: usize, what: &str) -> Result<&str> {
        self.positional
            .get(index)
            .map(String::as_str)
            .ok_or_else(|| Error::Usage(format!("missing {what}")))
    }

    pub fn option<T: FromStr>(&self, name: &str, default: T) -> Result<T> {
        match self.options.iter().rev().find(|(n, _)| n == name) {
            None => Ok(default),
            Some((_, value)) => value
                .parse()
                .map_err(|_| Error::Usage(format!("--{name}: cannot parse {value:?}"))),
        }
    }
}

/// Pins the calling thread (and the threads it starts later) to one CPU. Returns false
/// where the machine has fewer CPUs than that (no pinning then).
pub fn pin_to_cpu(cpu: usize) -> Result<bool> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpu >= cpus || cpu >= libc::CPU_SETSIZE as usize {
        return Ok(false);
    }
    // SAFETY: cpu_set_t is plain data, all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE (checked above), so the macro stays inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a live cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(Error::Failed(format!(
            "sched_setaffinity to CPU {cpu}: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(true)
}

/// Raises the soft limit of open files to the hard limit (1,000 connections need 2,000
/// descriptors between client and server).
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads and writes one live rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A line of /proc/self/status in KiB (VmHWM: peak resident set; VmRSS: now).
pub fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory of this process so far, in MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM").map_or(f64::NAN, |kib| kib as f64 / 1024.0)
}

/// User + system CPU seconds a process has used (from /proc/PID/stat).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Locked versions of ringloom and its peers (from Cargo.lock, by build.rs), and the
/// kernel.
pub fn base_info() -> Map<String, Value> {
    let mut info = Map::new();
    for pair in env!("RBENCH_VERSIONS").split(',') {
        if let Some((name, version)) = pair.split_once('=') {
            let key = format!("{name}_version");
            // io-uring appears twice (0.7 for ringloom, 0.6 for monoio): keep both.
            match info.get_mut(&key) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(version);
                }
                _ => {
                    info.insert(key, json!(version));
                }
            }
        }
    }
    if let Ok(kernel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        info.insert("kernel".into(), json!(kernel.trim()));
    }
    info
}

/// What a ringloom runtime chose: driver name and ring setup flags.
pub fn ringloom_info(rt: &ringloom::Runtime, info: &mut Map<String, Value>) {
    let stats = rt.stats();
    info.insert("driver".into(), json!(stats.driver_name()));
    if let Some(kind) = stats.driver {
        info.insert("ring".into(), json!(kind.to_string()));
    }
    info.insert("workers".into(), json!(stats.workers.len()));
}

/// Prints the result line (the last line of stdout).
pub fn emit(metrics: Map<String, Value>, info: Map<String, Value>) {
    println!("{}", json!({ "metrics": metrics, "info": info }));
}

/// A JSON object from key-value pairs.
#[macro_export]
macro_rules! obj {
    ($($key:expr => $value:expr),* $(,)?) => {{
        let mut map = serde_json::Map::new();
        $(map.insert($key.to_string(), serde_json::json!($value));)*
        map
    }};
}
