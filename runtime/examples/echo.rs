//! The demo: an echo server and a client driving 1,000 concurrent connections over
//! loopback, 1 KiB messages, every byte checked. Prints throughput and the driver in use.
//!
//! `cargo run --release --example echo -- [connections] [seconds]`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringloom::net::{TcpListener, TcpStream};

const MESSAGE: usize = 1024;

fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads and writes one live rlimit struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(wanted.max(limit.rlim_cur));
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

async fn serve(stream: TcpStream) {
    let mut buf = vec![0u8; MESSAGE];
    loop {
        let (read, returned) = stream.read(buf).await;
        buf = returned;
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.truncate(n);
                let (written, returned) = stream.write_all(buf).await;
                buf = returned;
                if written.is_err() {
                    return;
                }
                buf.resize(MESSAGE, 0);
            }
        }
    }
}

/// One client connection: sends messages stamped with its id and a counter, checks that
/// each comes back intact, until `stop`.
async fn client(
    address: std::net::SocketAddr,
    id: u64,
    stop: Instant,
    done: Arc<AtomicU64>,
) -> std::io::Result<u64> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let mut out = vec![0u8; MESSAGE];
    let mut back = vec![0u8; MESSAGE];
    let mut sent = 0u64;
    while Instant::now() < stop {
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = (id as usize * 31 + sent as usize * 7 + i) as u8;
        }
        let (written, returned) = stream.write_all(out).await;
        out = returned;
        written?;
        back.clear();
        while back.len() < MESSAGE {
            let chunk = Vec::with_capacity(MESSAGE - back.len());
            let (read, chunk) = stream.read(chunk).await;
            if read? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            back.extend_from_slice(&chunk);
        }
        if back != out {
            return Err(std::io::Error::other(format!(
                "connection {id}: echo differs"
            )));
        }
        sent += 1;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(sent)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let connections: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    raise_fd_limit(connections * 2 + 256);

    let rt = ringloom::Runtime::new()?;
    let stats_before = rt.stats();
    println!(
        "ringloom echo demo: {} workers, driver {}",
        stats_before.workers.len(),
        stats_before
            .driver
            .map_or("none".to_string(), |kind| kind.to_string())
    );
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    ringloom::spawn(serve(stream));
                }
                Err(err) => eprintln!("accept: {err}"),
            }
        }
    });

    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let stop = started + Duration::from_secs(seconds);
    let results = rt.block_on({
        let done = done.clone();
        async move {
            let clients: Vec<_> = (0..connections)
                .map(|id| ringloom::spawn(client(address, id, stop, done.clone())))
                .collect();
            let mut progress = ringloom::time::interval(Duration::from_secs(1));
            progress.tick().await;
            let mut last = 0;
            while Instant::now() < stop {
                progress.tick().await;
                let now = done.load(Ordering::Relaxed);
                println!("  {:>8} round trips/s", now - last);
                last = now;
            }
            let mut results = Vec::new();
            for client in clients {
                results.push(client.await);
            }
            results
        }
    });
    let elapsed = started.elapsed();
    let mut failed = 0;
    let mut total = 0;
    for result in results {
        match result {
            Ok(Ok(sent)) => total += sent,
            Ok(Err(err)) => {
                failed += 1;
                eprintln!("client error: {err}");
            }
            Err(err) => {
                failed += 1;
                eprintln!("client task failed: {err}");
            }
        }
    }
    let stats = rt.stats();
    println!(
        "{connections} connections, {total} round trips of {MESSAGE} bytes in {:.2?}: {:.0} round trips/s, {:.1} MiB/s each way, every byte verified",
        elapsed,
        total as f64 / elapsed.as_secs_f64(),
        (total as f64 * MESSAGE as f64) / elapsed.as_secs_f64() / (1024.0 * 1024.0)
    );
    println!("{stats}");
    if failed > 0 {
        return Err(std::io::Error::other(format!(
            "{failed} connections failed"
        )));
    }
    Ok(())
}
