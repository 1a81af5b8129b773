//! Where io_uring cannot be set up, the runtime picks the fallback driver by itself, says
//! so once, and works. A child process forbids `io_uring_setup` with a seccomp filter
//! (as Docker's default profile does) and then runs real I/O.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

const CHILD: &str = "RINGLOOM_TEST_SECCOMP_CHILD";

/// Makes `io_uring_setup` fail with EPERM for this thread and the threads it starts.
fn forbid_io_uring() {
    const NR_IO_URING_SETUP: u32 = 425;
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let ret_errno = libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA);
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let ld_abs = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    let mut filter = [
        // seccomp_data.arch is at offset 4: other architectures are let through.
        stmt(ld_abs, 4),
        jump(jeq, AUDIT_ARCH_X86_64, 0, 3),
        // seccomp_data.nr is at offset 0.
        stmt(ld_abs, 0),
        jump(jeq, NR_IO_URING_SETUP, 0, 1),
        stmt(ret, ret_errno),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let program = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments; then a pointer to a live, well-formed
    // program that the kernel copies during the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &program as *const libc::sock_fprog
            ),
            0,
            "seccomp filter refused: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn child() {
    env_logger::builder()
        .is_test(false)
        .filter_level(log::LevelFilter::Info)
        .init();
    forbid_io_uring();
    let rt = ringloom::Runtime::builder()
        .workers(2)
        .build()
        .expect("runtime starts without io_uring");
    assert_eq!(rt.stats().driver_name(), "fallback");
    let dir = std::env::temp_dir().join(format!("ringloom-auto-fallback-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data");
    let echoed = rt.block_on(async move {
        // A file round trip through the blocking pool.
        ringloom::fs::write(path.clone(), vec![7u8; 100_000])
            .await
            .unwrap();
        assert_eq!(
            ringloom::fs::read(path.clone()).await.unwrap(),
            vec![7u8; 100_000]
        );
        ringloom::fs::remove_file(path).await.unwrap();
        // A timer.
        ringloom::time::sleep(Duration::from_millis(2)).await;
        // A TCP echo through epoll.
        let listener = ringloom::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = ringloom::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (n, buf) = stream.read(vec![0u8; 64]).await;
            let n = n.unwrap();
            let (written, _) = stream.write_all(buf[..n].to_vec()).await;
            written.unwrap();
        });
        let client = ringloom::net::TcpStream::connect(address).await.unwrap();
        let (written, _) = client.write_all(b"hello over epoll".to_vec()).await;
        written.unwrap();
        let (n, buf) = client.read(vec![0u8; 64]).await;
        server.await.unwrap();
        String::from_utf8(buf[..n.unwrap()].to_vec()).unwrap()
    });
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(echoed, "hello over epoll");
    let mut out = std::io::stdout();
    writeln!(out, "child: driver={} echo ok", rt.stats().driver_name()).unwrap();
}

#[test]
fn io_uring_forbidden_by_seccomp_falls_back() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(exe)
        .args([
            "--exact",
            "io_uring_forbidden_by_seccomp_falls_back",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env_remove("RINGLOOM_DRIVER")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("child: driver=fallback echo ok"),
        "{stdout}"
    );
    // Said once, through `log`, with the reason — not once per worker or per block_on.
    let announcements = stderr.matches("fallback driver").count();
    assert_eq!(
        announcements, 1,
        "expected one announcement, got:\n{stderr}"
    );
    assert!(stderr.contains("io_uring unavailable"), "{stderr}");
}

#[test]
fn forced_fallback_is_reported() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let rt = ringloom::Runtime::builder()
        .workers(1)
        .fallback(true)
        .build()
        .unwrap();
    assert_eq!(rt.stats().driver_name(), "fallback");
    assert_eq!(
        rt.block_on(async { ringloom::spawn(async { 1 }).await.unwrap() }),
        1
    );
}
