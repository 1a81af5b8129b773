//! NOP round trips: ringloom's op path (`ringloom::op::Nop` awaited on a worker) against a
//! bare `io-uring` crate loop on a ring of the same size and setup flags, one op at a
//! time and in batches (BATCH ops submitted, then all awaited).

use std::time::{Duration, Instant};

use io_uring::{opcode, IoUring};
use serde_json::json;

use crate::obj;
use crate::util::{self, fail, Args, Error, Result};

/// ringloom's default ring size (`Builder::ring_entries`), used by both sides.
const RING_ENTRIES: u32 = 256;

pub fn run(args: &[String]) -> Result<()> {
    let args = Args::parse(args)?;
    let peer = args.positional(0, "PEER")?.to_string();
    let batch: usize = args
        .positional(1, "BATCH")?
        .parse()
        .map_err(|_| Error::Usage("BATCH must be a number".into()))?;
    if batch == 0 || batch > RING_ENTRIES as usize {
        return Err(Error::Usage(format!("BATCH must be 1..={RING_ENTRIES}")));
    }
    let secs: f64 = args.option("secs", 3.0)?;
    let warmup: f64 = args.option("warmup", 0.3)?;
    let cpu: usize = args.option("cpu", 0)?;
    let pinned = util::pin_to_cpu(cpu)?;
    let warmup = Duration::from_secs_f64(warmup);
    let measure = Duration::from_secs_f64(secs);

    // Both sides use the flags ringloom's driver picks on this kernel.
    let rt = ringloom::Runtime::builder()
        .workers(1)
        .ring_entries(RING_ENTRIES)
        .build()
        .map_err(fail("ringloom runtime"))?;
    let features = match rt.stats().driver {
        Some(ringloom::driver::DriverKind::Uring(features)) => features,
        other => {
            return Err(Error::Failed(format!(
                "ringloom is not on io_uring here ({other:?}): no NOP comparison"
            )))
        }
    };
    let mut info = util::base_info();
    info.insert("peer".into(), json!(peer));
    info.insert("batch".into(), json!(batch));
    info.insert("ring_entries".into(), json!(RING_ENTRIES));
    info.insert("seconds".into(), json!(secs));
    info.insert("pinned_cpu".into(), json!(pinned.then_some(cpu)));

    let (ops, elapsed) = match peer.as_str() {
        "ringloom" => {
            let before = rt.stats().total();
            let result = rt
                .block_on(rt.spawn(async move {
                    let warm_ops = ringloom_loop(batch, warmup).await?;
                    let start = Instant::now();
                    let ops = ringloom_loop(batch, measure).await?;
                    Ok::<_, std::io::Error>((warm_ops, ops, start.elapsed()))
                }))
                .map_err(fail("ringloom task"))?
                .map_err(fail("ringloom nop"))?;
            let after = rt.stats().total();
            util::ringloom_info(&rt, &mut info);
            let (warm_ops, ops, elapsed) = result;
            // How often the worker entered the kernel, per op (warm-up included).
            let enters = after.ring_enters - before.ring_enters;
            info.insert(
                "ring_enters_per_op".into(),
                json!(enters as f64 / (warm_ops + ops) as f64),
            );
            (ops, elapsed)
        }
        "bare" => {
            drop(rt);
            let mut builder = IoUring::builder();
            if features.single_issuer {
                builder.setup_single_issuer();
            }
            if features.defer_taskrun {
                builder.setup_defer_taskrun();
            }
            if features.coop_taskrun {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            let mut ring = builder.build(RING_ENTRIES).map_err(fail("io_uring"))?;
            info.insert("ring".into(), json!(format!("io_uring ({features})")));
            bare_loop(&mut ring, batch, warmup)?;
            let start = Instant::now();
            let ops = bare_loop(&mut ring, batch, measure)?;
            (ops, start.elapsed())
        }
        _ => return Err(Error::Usage(format!("unknown peer {peer:?}"))),
    };
    util::emit(
        obj! {
            "ops_per_s" => ops as f64 / elapsed.as_secs_f64(),
            "ns_per_op" => elapsed.as_nanos() as f64 / ops as f64,
        },
        info,
    );
    Ok(())
}

async fn ringloom_loop(batch: usize, length: Duration) -> std::io::Result<u64> {
    let end = Instant::now() + length;
    let mut ops = 0u64;
    let mut pending = Vec::with_capacity(batch);
    while Instant::now() < end {
        if batch == 1 {
            ringloom::op::Nop::submit().await?;
        } else {
            pending.extend((0..batch).map(|_| ringloom::op::Nop::submit()));
            for op in pending.drain(..) {
                op.await?;
            }
        }
        ops += batch as u64;
    }
    Ok(ops)
}

fn bare_loop(ring: &mut IoUring, batch: usize, length: Duration) -> Result<u64> {
    let end = Instant::now() + length;
    let mut ops = 0u64;
    let nop = opcode::Nop::new().build();
    while Instant::now() < end {
        for _ in 0..batch {
            // SAFETY: a NOP carries no pointers; the ring has room (batch <= entries and
            // the queue is empty at the start of each round).
            unsafe { ring.submission().push(&nop) }.map_err(fail("sq push"))?;
        }
        ring.submit_and_wait(batch)
            .map_err(fail("submit_and_wait"))?;
        let mut reaped = 0;
        while reaped < batch {
            for cqe in ring.completion() {
                if cqe.result() < 0 {
                    return Err(Error::Failed(format!("nop failed: {}", cqe.result())));
                }
                reaped += 1;
            }
            if reaped < batch {
                ring.submit_and_wait(batch - reaped).map_err(fail("wait"))?;
            }
        }
        ops += batch as u64;
    }
    Ok(ops)
}
