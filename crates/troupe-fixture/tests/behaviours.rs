//! The fixture does what troupe's own tests rely on it to do.
//!
//! These tests also make `cargo test --workspace` build the `troupe-fixture` binary before any
//! test runs: cargo builds a package's binaries only for that package's integration tests, and
//! the tests of `troupe` and `troupe-cli` find the fixture next to their own executables.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};

fn fixture(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_troupe-fixture"))
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn troupe-fixture")
}

/// Reads the child's stdout until a line starts with `prefix`; returns that line.
fn line_starting(child: &mut Child, prefix: &str) -> String {
    let out = child.stdout.as_mut().expect("piped stdout");
    let mut seen = Vec::new();
    for line in BufReader::new(out).lines() {
        let line = line.expect("read fixture stdout");
        if line.starts_with(prefix) {
            return line;
        }
        seen.push(line);
    }
    panic!("the fixture never printed {prefix:?}; it printed {seen:?}")
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid this test spawned and has not reaped yet.
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0, "kill {pid}");
}

#[test]
fn exits_with_the_code_it_is_told_after_the_delay() {
    let mut child = fixture(&["--exit-after", "20", "--exit-code", "7"]);
    line_starting(&mut child, "fixture exiting with code 7");
    assert_eq!(child.wait().unwrap().code(), Some(7));
}

#[test]
fn ignoring_sigterm_leaves_only_sigkill_to_stop_it() {
    let mut child = fixture(&["--ignore-sigterm"]);
    line_starting(&mut child, "ignoring SIGTERM");
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
        .unwrap();
    assert_ne!(
        ignored & (1 << (libc::SIGTERM - 1)),
        0,
        "SigIgn {ignored:x}"
    );
    signal(child.id(), libc::SIGTERM);
    signal(child.id(), libc::SIGKILL);
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn forks_a_grandchild_of_its_own() {
    let mut child = fixture(&["--fork-grandchild"]);
    let line = line_starting(&mut child, "grandchild pid ");
    let grandchild: u32 = line["grandchild pid ".len()..].parse().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap();
    let ppid: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(ppid, child.id(), "the grandchild is the fixture's child");
    signal(grandchild, libc::SIGKILL);
    signal(child.id(), libc::SIGKILL);
    child.wait().unwrap();
}
