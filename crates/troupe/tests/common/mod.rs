//! Helpers shared by the integration tests of `troupe` and of the `troupe` command (which
//! includes this file by path).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `troupe-fixture` binary, built by `cargo test --workspace` next to this test binary.
pub fn fixture_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("troupe-fixture");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p troupe-fixture` first)",
        bin.display()
    );
    bin
}

pub fn example(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(rel)
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start())
                .unwrap_or("");
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Polls `cond` every few milliseconds until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pid the fixture printed into its log (`<prefix> <pid>`).
pub fn pid_from_log(log: &str, prefix: &str) -> u32 {
    log.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` line in log:\n{log}"))
}
