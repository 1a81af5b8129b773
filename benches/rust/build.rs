//! Passes the locked versions of ringloom's peers to the binary, for the report's info.

use std::fs;

fn main() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut versions = Vec::new();
    let mut name = String::new();
    for line in lock.lines() {
        if let Some(rest) = line.strip_prefix("name = ") {
            name = rest.trim_matches('"').to_string();
        } else if let Some(rest) = line.strip_prefix("version = ") {
            let wanted = [
                "ringloom",
                "tokio",
                "monoio",
                "compio",
                "compio-runtime",
                "compio-driver",
                "io-uring",
            ];
            if wanted.contains(&name.as_str()) {
                versions.push(format!("{name}={}", rest.trim_matches('"')));
            }
        }
    }
    println!("cargo:rustc-env=RBENCH_VERSIONS={}", versions.join(","));
}
