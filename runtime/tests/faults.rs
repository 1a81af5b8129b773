//! Injected kernel faults (feature `fault-injection`; `make test` runs this file under
//! both drivers): refused submissions delay ops but lose none, and an op the kernel
//! fails reports its own error while the runtime and the descriptor go on working.

mod common;

use std::io::ErrorKind;
use std::time::Duration;

use common::{assert_fds_return_to, hang_guard, open_fds, settle};
use ringloom::driver::FaultPlan;
use ringloom::net::{TcpListener, TcpStream};
use ringloom::op::Nop;

/// The tests of this file run one at a time: one counts the process's descriptors.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn runtime_with(plan: &FaultPlan, workers: usize, ring_entries: u32) -> ringloom::Runtime {
    ringloom::Runtime::builder()
        .workers(workers)
        .ring_entries(ring_entries)
        .inject_faults(plan.clone())
        .build()
        .expect("runtime builds")
}

fn message(task: usize, round: usize) -> Vec<u8> {
    format!("task {task} round {round} ")
        .into_bytes()
        .repeat(1 + (task + round) % 7)
}

async fn read_exact(stream: &TcpStream, len: usize) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    while got.len() < len {
        let (result, chunk) = stream.read(Vec::with_capacity(len - got.len())).await;
        let n = result.expect("read");
        assert!(n > 0, "peer closed with {} of {len} bytes sent", got.len());
        got.extend_from_slice(&chunk[..n]);
    }
    got
}

/// Echo over loopback, bursts of NOPs far larger than the submission queue, file writes
/// and reads, and sleeps, from `tasks` tasks at once. Returns the bytes echoed.
fn mixed_load(rt: &ringloom::Runtime, tasks: usize, rounds: usize) -> usize {
    let dir = std::env::temp_dir().join(format!("ringloom-faults-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let files = dir.clone();
    let echoed = rt.block_on(async move {
        let server = ringloom::spawn(async move {
            let mut connections = Vec::new();
            for _ in 0..tasks {
                let (stream, _) = listener.accept().await.expect("accept");
                connections.push(ringloom::spawn(async move {
                    let mut echoed = 0;
                    loop {
                        let (result, buf) = stream.read(Vec::with_capacity(4096)).await;
                        let n = result.expect("server read");
                        if n == 0 {
                            return echoed;
                        }
                        let (result, _) = stream.write_all(buf[..n].to_vec()).await;
                        result.expect("server write");
                        echoed += n;
                    }
                }));
            }
            let mut total = 0;
            for connection in connections {
                total += connection.await.unwrap();
            }
            total
        });
        let clients: Vec<_> = (0..tasks)
            .map(|task| {
                let path = files.join(format!("file-{task}"));
                ringloom::spawn(async move {
                    let stream = TcpStream::connect(addr).await.expect("connect");
                    for round in 0..rounds {
                        let sent = message(task, round);
                        let (result, sent) = stream.write_all(sent).await;
                        result.expect("client write");
                        assert_eq!(read_exact(&stream, sent.len()).await, sent);
                        let nops: Vec<_> = (0..40).map(|_| Nop::submit()).collect();
                        for nop in nops {
                            nop.await.expect("nop");
                        }
                        ringloom::time::sleep(Duration::from_millis(1)).await;
                    }
                    let file = ringloom::fs::File::options()
                        .read(true)
                        .write(true)
                        .create(true)
                        .open(&path)
                        .await
                        .expect("create");
                    let contents = message(task, rounds).repeat(50);
                    let (result, contents) = file.write_all_at(contents, 0).await;
                    result.expect("file write");
                    let (result, back) = file.read_exact_at(vec![0u8; contents.len()], 0).await;
                    result.expect("file read");
                    assert_eq!(back, contents);
                    file.close().await.expect("close");
                    stream.shutdown(std::net::Shutdown::Write).await.unwrap();
                    let (result, _) = stream.read(Vec::with_capacity(8)).await;
                    assert_eq!(result.unwrap(), 0);
                })
            })
            .collect();
        for client in clients {
            client.await.unwrap();
        }
        server.await.unwrap()
    });
    std::fs::remove_dir_all(&dir).unwrap();
    echoed
}

fn expected_echo(tasks: usize, rounds: usize) -> usize {
    (0..tasks)
        .flat_map(|task| (0..rounds).map(move |round| message(task, round).len()))
        .sum()
}

#[test]
fn refused_enters_delay_ops_and_lose_none() {
    let _serial = one_at_a_time();
    // EAGAIN: the kernel had no memory for requests; EBUSY: its completion queue was
    // full; EINTR: a signal. Each leaves the entries queued for the next enter.
    for errno in [libc::EAGAIN, libc::EBUSY, libc::EINTR] {
        let fds = open_fds();
        let plan = FaultPlan::new().refuse_enters(2, errno);
        let echoed = hang_guard(Duration::from_secs(120), {
            let plan = plan.clone();
            move || {
                // A 4-entry submission queue: the NOP bursts overflow it every round.
                let rt = runtime_with(&plan, 2, 4);
                let echoed = mixed_load(&rt, 40, 10);
                settle(&rt);
                echoed
            }
        });
        assert_eq!(echoed, expected_echo(40, 10), "errno {errno}");
        // Dozens at least: each of the 400 sleeps parks a worker, and every other
        // park's enter is refused (how many exactly depends on timing).
        assert!(
            plan.injected() >= 10,
            "errno {errno}: only {} enters refused",
            plan.injected()
        );
        assert_fds_return_to(fds);
    }
}

#[test]
fn a_read_the_kernel_fails_returns_its_error_and_the_next_one_works() {
    let _serial = one_at_a_time();
    let plan = FaultPlan::new().fail_ops("Read", 3, libc::ENOMEM);
    let rt = runtime_with(&plan, 1, 64);
    let path = std::env::temp_dir().join(format!("ringloom-enomem-{}", std::process::id()));
    let contents: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &contents).unwrap();
    let (failed, read) = hang_guard(Duration::from_secs(60), {
        let path = path.clone();
        move || {
            rt.block_on(async move {
                let file = ringloom::fs::File::open(&path).await.unwrap();
                let (mut failed, mut read) = (0, 0);
                for i in 0..300usize {
                    let offset = (i * 4096) % contents.len();
                    let (result, buf) = file.read_at(Vec::with_capacity(4096), offset as u64).await;
                    match result {
                        Ok(n) => {
                            assert_eq!(buf[..n], contents[offset..offset + n]);
                            read += 1;
                        }
                        Err(err) => {
                            assert_eq!(err.raw_os_error(), Some(libc::ENOMEM), "{err}");
                            assert!(buf.is_empty(), "a failed read filled its buffer");
                            failed += 1;
                        }
                    }
                }
                file.close().await.unwrap();
                (failed, read)
            })
        }
    });
    std::fs::remove_file(&path).unwrap();
    assert_eq!((failed, read), (100, 200));
    assert_eq!(plan.injected(), 100);
}

#[test]
fn a_receive_the_kernel_fails_loses_no_data_on_the_socket() {
    let _serial = one_at_a_time();
    let plan = FaultPlan::new().fail_ops("Recv", 2, libc::ENOMEM);
    let rt = runtime_with(&plan, 1, 64);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sender = std::thread::spawn(move || {
        use std::io::Write;
        let (mut peer, _) = listener.accept().unwrap();
        for i in 0..200u32 {
            peer.write_all(&i.to_le_bytes()).unwrap();
        }
    });
    let (got, errors) = hang_guard(Duration::from_secs(60), move || {
        rt.block_on(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut got, mut errors) = (Vec::new(), 0);
            loop {
                let (result, buf) = stream.read(Vec::with_capacity(4)).await;
                match result {
                    Ok(0) => return (got, errors),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(err) => {
                        assert_eq!(err.kind(), ErrorKind::OutOfMemory, "{err}");
                        errors += 1;
                    }
                }
            }
        })
    });
    sender.join().unwrap();
    let expected: Vec<u8> = (0..200u32).flat_map(|i| i.to_le_bytes()).collect();
    assert_eq!(
        got, expected,
        "bytes lost or reordered around failed receives"
    );
    assert!(errors >= 200, "{errors} receives failed");
    assert_eq!(plan.injected(), errors);
}
