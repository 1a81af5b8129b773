//! Spawn (N tasks spawned, then awaited) and timers (N concurrent sleeps), one thread of
//! each runtime: tokio current-thread, monoio, compio, ringloom with one worker.
//!
//! The process is pinned to one CPU. The clock starts before the first spawn and stops when the last task has been
//! awaited; runtime construction is outside it. Peak memory is the process's VmHWM at
//! the end (so it includes the runtime and the Vec of join handles, alike for all).

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::obj;
use crate::util::{self, fail, Args, Error, Result};

/// What one task does.
#[derive(Clone, Copy)]
enum Work {
    /// Returns its index (the spawn workload).
    Nothing,
    /// Sleeps this long (the timers workload).
    Sleep(Duration),
}

pub fn spawn(args: &[String]) -> Result<()> {
    let args = Args::parse(args)?;
    let peer = args.positional(0, "PEER")?;
    let tasks: usize = args.option("tasks", 1_000_000)?;
    let cpu: usize = args.option("cpu", 0)?;
    let (elapsed, info) = run(peer, tasks, Work::Nothing, cpu)?;
    let secs = elapsed.as_secs_f64();
    util::emit(
        obj! {
            "tasks_per_s" => tasks as f64 / secs,
            "peak_rss_mib" => util::peak_rss_mib(),
            "elapsed_s" => secs,
        },
        info,
    );
    Ok(())
}

pub fn timers(args: &[String]) -> Result<()> {
    let args = Args::parse(args)?;
    let peer = args.positional(0, "PEER")?;
    let tasks: usize = args.option("tasks", 1_000_000)?;
    let ms: u64 = args.option("ms", 1000)?;
    let cpu: usize = args.option("cpu", 0)?;
    let (elapsed, mut info) = run(peer, tasks, Work::Sleep(Duration::from_millis(ms)), cpu)?;
    info.insert("sleep_ms".into(), json!(ms));
    let secs = elapsed.as_secs_f64();
    util::emit(
        obj! {
            "total_s" => secs,
            "peak_rss_mib" => util::peak_rss_mib(),
            // The time beyond the sleep itself.
            "overhead_s" => secs - ms as f64 / 1000.0,
        },
        info,
    );
    Ok(())
}

fn run(peer: &str, tasks: usize, work: Work, cpu: usize) -> Result<(Duration, Map<String, Value>)> {
    // Before the runtime exists, so that its threads inherit the CPU.
    let pinned = util::pin_to_cpu(cpu)?;
    let mut info = util::base_info();
    info.insert("pinned_cpu".into(), json!(pinned.then_some(cpu)));
    info.insert("peer".into(), json!(peer));
    info.insert("tasks".into(), json!(tasks));
    let elapsed = match peer {
        "tokio" => {
            info.insert("flavor".into(), json!("current_thread"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .map_err(fail("tokio runtime"))?;
            rt.block_on(tokio_tasks(tasks, work))?
        }
        "monoio" => {
            info.insert(
                "ring".into(),
                json!("monoio default (1024 entries, no flags)"),
            );
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .build()
                .map_err(fail("monoio runtime"))?;
            rt.block_on(monoio_tasks(tasks, work))?
        }
        "compio" => {
            let rt = compio::runtime::Runtime::new().map_err(fail("compio runtime"))?;
            info.insert("driver".into(), json!(format!("{:?}", rt.driver_type())));
            rt.block_on(compio_tasks(tasks, work))?
        }
        "ringloom" => {
            let rt = ringloom::Runtime::builder()
                .workers(1)
                .build()
                .map_err(fail("ringloom runtime"))?;
            // The whole workload runs on the worker, as the peers run on their one thread.
            let elapsed = rt
                .block_on(rt.spawn(ringloom_tasks(tasks, work)))
                .map_err(fail("ringloom driver task"))??;
            util::ringloom_info(&rt, &mut info);
            elapsed
        }
        _ => return Err(Error::Usage(format!("unknown peer {peer:?}"))),
    };
    Ok((elapsed, info))
}

fn check(sum: usize, tasks: usize, work: Work) -> Result<()> {
    let expected = match work {
        Work::Nothing => tasks * tasks.saturating_sub(1) / 2,
        Work::Sleep(_) => tasks,
    };
    if sum != expected {
        return Err(Error::Failed(format!(
            "tasks returned a sum of {sum}, expected {expected}"
        )));
    }
    Ok(())
}

async fn tokio_tasks(tasks: usize, work: Work) -> Result<Duration> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    // Two loops, so that a spawned task's future never carries a sleep's state.
    match work {
        Work::Nothing => {
            for i in 0..tasks {
                handles.push(tokio::spawn(async move { i }));
            }
        }
        Work::Sleep(d) => {
            for _ in 0..tasks {
                handles.push(tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    1
                }));
            }
        }
    }
    let mut sum = 0;
    for handle in handles {
        sum += handle.await.map_err(fail("tokio task"))?;
    }
    let elapsed = start.elapsed();
    check(sum, tasks, work)?;
    Ok(elapsed)
}

async fn monoio_tasks(tasks: usize, work: Work) -> Result<Duration> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    // Two loops, so that a spawned task's future never carries a sleep's state.
    match work {
        Work::Nothing => {
            for i in 0..tasks {
                handles.push(monoio::spawn(async move { i }));
            }
        }
        Work::Sleep(d) => {
            for _ in 0..tasks {
                handles.push(monoio::spawn(async move {
                    monoio::time::sleep(d).await;
                    1
                }));
            }
        }
    }
    let mut sum = 0;
    for handle in handles {
        sum += handle.await;
    }
    let elapsed = start.elapsed();
    check(sum, tasks, work)?;
    Ok(elapsed)
}

async fn compio_tasks(tasks: usize, work: Work) -> Result<Duration> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    // Two loops, so that a spawned task's future never carries a sleep's state.
    match work {
        Work::Nothing => {
            for i in 0..tasks {
                handles.push(compio::runtime::spawn(async move { i }));
            }
        }
        Work::Sleep(d) => {
            for _ in 0..tasks {
                handles.push(compio::runtime::spawn(async move {
                    compio::time::sleep(d).await;
                    1
                }));
            }
        }
    }
    let mut sum = 0;
    for handle in handles {
        sum += handle
            .await
            .map_err(|_| Error::Failed("a compio task panicked".into()))?;
    }
    let elapsed = start.elapsed();
    check(sum, tasks, work)?;
    Ok(elapsed)
}

async fn ringloom_tasks(tasks: usize, work: Work) -> Result<Duration> {
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    // Two loops, so that a spawned task's future never carries a sleep's state.
    match work {
        Work::Nothing => {
            for i in 0..tasks {
                handles.push(ringloom::spawn(async move { i }));
            }
        }
        Work::Sleep(d) => {
            for _ in 0..tasks {
                handles.push(ringloom::spawn(async move {
                    ringloom::time::sleep(d).await;
                    1
                }));
            }
        }
    }
    let mut sum = 0;
    for handle in handles {
        sum += handle.await.map_err(fail("ringloom task"))?;
    }
    let elapsed = start.elapsed();
    check(sum, tasks, work)?;
    Ok(elapsed)
}
