//! `rbench`: the Rust workloads of ringloom's benchmarks, one measurement per process.
//!
//! Each measuring subcommand prints, as its last stdout line, one JSON object
//! `{"metrics": {...}, "info": {...}}` (the contract with `benches/run.py`).
//! See README.md beside Cargo.toml for what each workload does.

mod echo;
mod files;
mod nop;
mod tasks;
mod util;

use std::process::ExitCode;

const USAGE: &str = "usage:
  rbench echo PEER [--conns N] [--secs S] [--warmup S] [--server-cpu C] [--client-cpu C]
      PEER: ringloom | tokio | monoio | monoio-coop | monoio-defer | compio
  rbench serve PEER [--cpu C]             (the echo server; run by `echo`)
  rbench spawn PEER [--tasks N]           PEER: ringloom | tokio | monoio | compio
  rbench timers PEER [--tasks N] [--ms M]
  rbench mkfile PATH BYTES                (creates the file the file workloads read)
  rbench files PEER PATTERN CACHE PATH [--secs S] [--cpu C]
      PEER: ringloom | monoio | compio | tokio | fio; PATTERN: rand4k | seq128k; CACHE: warm | direct
  rbench nop PEER BATCH [--secs S] [--cpu C]   PEER: ringloom | bare";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match command.as_str() {
        "echo" => echo::run(rest),
        "serve" => echo::serve(rest),
        "spawn" => tasks::spawn(rest),
        "timers" => tasks::timers(rest),
        "mkfile" => files::mkfile(rest),
        "files" => files::run(rest),
        "nop" => nop::run(rest),
        _ => Err(util::Error::Usage(format!("unknown command {command:?}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(util::Error::Usage(message)) => {
            eprintln!("rbench: {message}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(util::Error::Failed(message)) => {
            eprintln!("rbench: {message}");
            ExitCode::FAILURE
        }
    }
}
