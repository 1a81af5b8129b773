//! Echo: a server with one thread of work (one ringloom worker, tokio current-thread,
//! monoio, compio) in a child process pinned to one CPU, and one load generator pinned to
//! another, the same for every server: a bare io_uring loop that keeps every connection
//! busy with one 1 KiB message at a time, checks every echoed byte and records each round
//! trip in a histogram.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use io_uring::{opcode, types, IoUring};
use serde_json::{json, Map, Value};

use crate::obj;
use crate::util::{self, fail, Args, Error, Result};

const MESSAGE: usize = 1024;
const BACKLOG: i32 = 4096;

// ---------------------------------------------------------------------------------------
// The servers.

/// `rbench serve PEER [--cpu C]`: binds 127.0.0.1 on a free port, prints
/// `{"port": N, "info": {...}}`, and echoes until killed.
pub fn serve(args: &[String]) -> Result<()> {
    let args = Args::parse(args)?;
    let peer = args.positional(0, "PEER")?.to_string();
    let cpu: usize = args.option("cpu", 0)?;
    util::raise_fd_limit();
    // Before any runtime exists, so every thread it starts inherits the CPU.
    let pinned = util::pin_to_cpu(cpu)?;
    let listener = listen()?;
    let port = listener
        .local_addr()
        .map_err(fail("listener address"))?
        .port();
    let mut info = Map::new();
    info.insert("server_pinned_cpu".into(), json!(pinned.then_some(cpu)));
    let announce = |info: Map<String, Value>| {
        println!("{}", json!({ "port": port, "info": info }));
    };
    match peer.as_str() {
        "tokio" => {
            info.insert("flavor".into(), json!("current_thread"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(fail("tokio runtime"))?;
            announce(info);
            rt.block_on(tokio_server(listener))
        }
        "monoio" | "monoio-coop" | "monoio-defer" => {
            let mut urb = io_uring_06::IoUring::builder();
            let ring = match peer.as_str() {
                "monoio-coop" => {
                    urb.setup_coop_taskrun().setup_taskrun_flag();
                    "COOP_TASKRUN|TASKRUN_FLAG"
                }
                "monoio-defer" => {
                    urb.setup_single_issuer().setup_defer_taskrun();
                    "SINGLE_ISSUER|DEFER_TASKRUN"
                }
                _ => "no optional flags",
            };
            info.insert("ring".into(), json!(format!("{ring}, 1024 entries")));
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .uring_builder(urb)
                .build()
                .map_err(fail("monoio runtime"))?;
            announce(info);
            rt.block_on(monoio_server(listener))
        }
        "compio" => {
            let rt = compio::runtime::Runtime::new().map_err(fail("compio runtime"))?;
            info.insert("driver".into(), json!(format!("{:?}", rt.driver_type())));
            announce(info);
            rt.block_on(compio_server(listener))
        }
        "ringloom" => {
            let rt = ringloom::Runtime::builder()
                .workers(1)
                .build()
                .map_err(fail("ringloom runtime"))?;
            util::ringloom_info(&rt, &mut info);
            announce(info);
            // Accepting and echoing run on the one worker; this thread only waits.
            rt.block_on(rt.spawn(ringloom_server(listener)))
                .map_err(fail("ringloom server task"))?
        }
        _ => Err(Error::Usage(format!("unknown server {peer:?}"))),
    }
}

/// One listening socket for every server, with the same backlog.
fn listen() -> Result<std::net::TcpListener> {
    // SAFETY: plain socket creation; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(fail("socket")(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: sockaddr_in is plain data; all-zero is valid.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    // SAFETY: `one` and `addr` are live values of the sizes passed; `fd` is open.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        if libc::bind(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ) != 0
        {
            -1
        } else {
            libc::listen(fd, BACKLOG)
        }
    };
    if rc != 0 {
        return Err(fail("bind/listen")(std::io::Error::last_os_error()));
    }
    Ok(std::net::TcpListener::from(owned))
}

async fn tokio_server(listener: std::net::TcpListener) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    listener
        .set_nonblocking(true)
        .map_err(fail("nonblocking"))?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(fail("listener"))?;
    loop {
        let (mut stream, _) = listener.accept().await.map_err(fail("accept"))?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; MESSAGE];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

async fn monoio_server(listener: std::net::TcpListener) -> Result<()> {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let listener = monoio::net::TcpListener::from_std(listener).map_err(fail("listener"))?;
    loop {
        let (mut stream, _) = listener.accept().await.map_err(fail("accept"))?;
        let _ = stream.set_nodelay(true);
        monoio::spawn(async move {
            let mut buf = Vec::with_capacity(MESSAGE);
            loop {
                buf.clear();
                let (read, returned) = stream.read(buf).await;
                buf = returned;
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let (written, returned) = stream.write_all(buf).await;
                        buf = returned;
                        if written.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

async fn compio_server(listener: std::net::TcpListener) -> Result<()> {
    use compio::io::{AsyncRead, AsyncWriteExt};
    let listener = compio::net::TcpListener::from_std(listener).map_err(fail("listener"))?;
    loop {
        let (mut stream, _) = listener.accept().await.map_err(fail("accept"))?;
        let _ = stream.set_nodelay(true);
        compio::runtime::spawn(async move {
            let mut buf = Vec::with_capacity(MESSAGE);
            loop {
                buf.clear();
                let compio::BufResult(read, returned) = stream.read(buf).await;
                buf = returned;
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let compio::BufResult(written, returned) = stream.write_all(buf).await;
                        buf = returned;
                        if written.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .detach();
    }
}

async fn ringloom_server(listener: std::net::TcpListener) -> Result<()> {
    let listener = ringloom::net::TcpListener::from_std(listener).map_err(fail("listener"))?;
    loop {
        let (stream, _) = listener.accept().await.map_err(fail("accept"))?;
        let _ = stream.set_nodelay(true);
        ringloom::spawn(async move {
            let mut buf = Vec::with_capacity(MESSAGE);
            loop {
                buf.clear();
                let (read, returned) = stream.read(buf).await;
                buf = returned;
                match read {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let (written, returned) = stream.write_all(buf).await;
                        buf = returned;
                        if written.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------------------
// The load generator.

/// Kills the server when the measurement ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rbench echo PEER ...`: starts the server, drives it, prints the result line.
pub fn run(args: &[String]) -> Result<()> {
    let args = Args::parse(args)?;
    let peer = args.positional(0, "PEER")?.to_string();
    let conns: usize = args.option("conns", 1000)?;
    let secs: f64 = args.option("secs", 10.0)?;
    let warmup: f64 = args.option("warmup", 1.0)?;
    let server_cpu: usize = args.option("server-cpu", 0)?;
    let client_cpu: usize = args.option("client-cpu", 1)?;
    util::raise_fd_limit();

    let exe = std::env::current_exe().map_err(fail("own path"))?;
    let child = Command::new(exe)
        .args(["serve", &peer, "--cpu", &server_cpu.to_string()])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(fail("starting the server"))?;
    let mut server = Server(child);
    let mut line = String::new();
    let stdout = server.0.stdout.take().expect("piped stdout");
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(fail("reading the server's port"))?;
    let hello: Value = serde_json::from_str(line.trim())
        .map_err(|_| Error::Failed(format!("server {peer} did not start: {line:?}")))?;
    let port = hello["port"]
        .as_u64()
        .ok_or_else(|| Error::Failed(format!("no port from the server: {line:?}")))?;
    let server_pid = server.0.id().to_string();

    let client_pinned = util::pin_to_cpu(client_cpu)?;
    let address = SocketAddr::from(([127, 0, 0, 1], port as u16));
    let outcome = drive(address, conns, warmup, secs, &server_pid)?;
    // The server must have survived the whole run.
    if let Ok(Some(status)) = server.0.try_wait() {
        return Err(Error::Failed(format!(
            "server exited during the run: {status}"
        )));
    }
    drop(server);

    let mut info = util::base_info();
    info.insert("peer".into(), json!(peer));
    info.insert("connections".into(), json!(conns));
    info.insert("message_bytes".into(), json!(MESSAGE));
    info.insert("seconds".into(), json!(secs));
    info.insert("warmup_seconds".into(), json!(warmup));
    info.insert(
        "client".into(),
        json!("bare io_uring loop (io-uring crate)"),
    );
    info.insert("client_ring".into(), json!(outcome.client_ring));
    info.insert(
        "client_pinned_cpu".into(),
        json!(client_pinned.then_some(client_cpu)),
    );
    if let Some(server_info) = hello["info"].as_object() {
        for (key, value) in server_info {
            info.insert(key.clone(), value.clone());
        }
    }
    let h = &outcome.latency;
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    util::emit(
        obj! {
            "req_per_s" => outcome.requests as f64 / outcome.elapsed,
            "p50_us" => us(0.50),
            "p99_us" => us(0.99),
            "p999_us" => us(0.999),
            "max_us" => h.max() as f64 / 1000.0,
            // Fractions of one CPU used during the measured window.
            "server_cpu" => outcome.server_cpu,
            "client_cpu" => outcome.client_cpu,
        },
        info,
    );
    Ok(())
}

struct Outcome {
    requests: u64,
    elapsed: f64,
    latency: Histogram<u64>,
    server_cpu: f64,
    client_cpu: f64,
    client_ring: &'static str,
}

struct Conn {
    fd: OwnedFd,
    out: Box<[u8]>,
    back: Box<[u8]>,
    sent: usize,
    got: usize,
    seq: u64,
    started: Instant,
}

impl Conn {
    fn fill(&mut self, id: usize) {
        let base = (id as u64)
            .wrapping_mul(31)
            .wrapping_add(self.seq.wrapping_mul(7));
        for (i, byte) in self.out.iter_mut().enumerate() {
            *byte = base.wrapping_add(i as u64) as u8;
        }
        self.sent = 0;
        self.got = 0;
    }
}

const SEND: u64 = 0;
const RECV: u64 = 1;

fn client_ring(entries: u32) -> Result<(IoUring, &'static str)> {
    let mut builder = IoUring::builder();
    builder.setup_single_issuer().setup_defer_taskrun();
    if let Ok(ring) = builder.build(entries) {
        return Ok((ring, "SINGLE_ISSUER|DEFER_TASKRUN"));
    }
    let ring = IoUring::new(entries).map_err(fail("client io_uring"))?;
    Ok((ring, "no optional flags"))
}

fn push(ring: &mut IoUring, entry: io_uring::squeue::Entry) -> Result<()> {
    loop {
        // SAFETY: every entry points into a `Conn` buffer (boxed, so it does not move)
        // that is never freed (see `drive`).
        if unsafe { ring.submission().push(&entry) }.is_ok() {
            return Ok(());
        }
        ring.submit().map_err(fail("client submit"))?;
    }
}

fn send_entry(conn: &Conn, index: usize) -> io_uring::squeue::Entry {
    let rest = &conn.out[conn.sent..];
    opcode::Send::new(
        types::Fd(conn.fd.as_raw_fd()),
        rest.as_ptr(),
        rest.len() as u32,
    )
    .build()
    .user_data((index as u64) << 1 | SEND)
}

fn recv_entry(conn: &mut Conn, index: usize) -> io_uring::squeue::Entry {
    let rest = &mut conn.back[conn.got..];
    opcode::Recv::new(
        types::Fd(conn.fd.as_raw_fd()),
        rest.as_mut_ptr(),
        rest.len() as u32,
    )
    .build()
    .user_data((index as u64) << 1 | RECV)
}

fn drive(
    address: SocketAddr,
    conns: usize,
    warmup: f64,
    secs: f64,
    server_pid: &str,
) -> Result<Outcome> {
    // Never freed: when the ring is dropped it may still hold receives into these
    // buffers, and the process ends right after the measurement anyway.
    let mut connections = std::mem::ManuallyDrop::new(Vec::with_capacity(conns));
    for _ in 0..conns {
        let stream = std::net::TcpStream::connect(address).map_err(fail("connect"))?;
        stream.set_nodelay(true).map_err(fail("nodelay"))?;
        let fd: RawFd = stream.into_raw_fd();
        connections.push(Conn {
            // SAFETY: the descriptor was just released by its TcpStream.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            out: vec![0u8; MESSAGE].into_boxed_slice(),
            back: vec![0u8; MESSAGE].into_boxed_slice(),
            sent: 0,
            got: 0,
            seq: 0,
            started: Instant::now(),
        });
    }
    let entries = ((conns * 2).next_power_of_two() as u32).clamp(64, 32768);
    let (mut ring, ring_flags) = client_ring(entries)?;
    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).map_err(fail("histogram"))?;

    let start = Instant::now();
    for (index, conn) in connections.iter_mut().enumerate() {
        conn.fill(index);
        conn.started = start;
        push(&mut ring, send_entry(conn, index))?;
        push(&mut ring, recv_entry(conn, index))?;
    }
    // The measured window opens after the warm-up, and only once every connection has
    // completed a round trip: a connection whose handshake the server had not finished
    // (a retransmitted SYN-ACK costs a second or more) would otherwise put its setup
    // into the latency tail.
    let measure_from = start + Duration::from_secs_f64(warmup);
    let give_up = start + Duration::from_secs_f64(warmup.max(1.0) + 30.0);
    let mut end = give_up;
    let mut fresh = connections.len();
    let mut measuring = false;
    let mut requests = 0u64;
    let mut window_start = measure_from;
    let mut cpu_at_start = (0.0, 0.0);
    let mut completions = Vec::with_capacity(entries as usize * 2);
    loop {
        ring.submit_and_wait(1)
            .map_err(fail("client submit_and_wait"))?;
        let now = Instant::now();
        if !measuring && now >= measure_from && fresh == 0 {
            measuring = true;
            window_start = now;
            end = now + Duration::from_secs_f64(secs);
            cpu_at_start = (
                util::cpu_seconds(server_pid).unwrap_or(f64::NAN),
                util::cpu_seconds("self").unwrap_or(f64::NAN),
            );
        }
        if !measuring && now >= give_up {
            return Err(Error::Failed(format!(
                "{fresh} connections had no echo back after {:?}",
                now - start
            )));
        }
        if measuring && now >= end {
            let elapsed = now.duration_since(window_start).as_secs_f64();
            let server = util::cpu_seconds(server_pid).unwrap_or(f64::NAN) - cpu_at_start.0;
            let client = util::cpu_seconds("self").unwrap_or(f64::NAN) - cpu_at_start.1;
            return Ok(Outcome {
                requests,
                elapsed,
                latency,
                server_cpu: server / elapsed,
                client_cpu: client / elapsed,
                client_ring: ring_flags,
            });
        }
        completions.clear();
        completions.extend(ring.completion().map(|cqe| (cqe.user_data(), cqe.result())));
        for &(user_data, result) in &completions {
            let index = (user_data >> 1) as usize;
            let conn = &mut connections[index];
            if result <= 0 {
                let what = if user_data & 1 == SEND {
                    "send"
                } else {
                    "recv"
                };
                return Err(Error::Failed(format!(
                    "connection {index}: {what} returned {}",
                    if result == 0 {
                        "end of stream".to_string()
                    } else {
                        std::io::Error::from_raw_os_error(-result).to_string()
                    }
                )));
            }
            if user_data & 1 == SEND {
                conn.sent += result as usize;
                if conn.sent < MESSAGE {
                    let entry = send_entry(conn, index);
                    push(&mut ring, entry)?;
                    continue;
                }
            } else {
                conn.got += result as usize;
                if conn.got < MESSAGE {
                    let entry = recv_entry(conn, index);
                    push(&mut ring, entry)?;
                    continue;
                }
            }
            // A round trip ends when both the whole message went out and came back.
            if conn.sent < MESSAGE || conn.got < MESSAGE {
                continue;
            }
            if conn.back != conn.out {
                return Err(Error::Failed(format!(
                    "connection {index}: echoed bytes differ from those sent (message {})",
                    conn.seq
                )));
            }
            if conn.seq == 0 {
                fresh -= 1;
            }
            if measuring {
                requests += 1;
                let nanos = now.duration_since(conn.started).as_nanos() as u64;
                latency.saturating_record(nanos.max(1));
            }
            conn.seq += 1;
            conn.fill(index);
            conn.started = now;
            let entry = send_entry(conn, index);
            push(&mut ring, entry)?;
            let entry = recv_entry(conn, index);
            push(&mut ring, entry)?;
        }
    }
}
