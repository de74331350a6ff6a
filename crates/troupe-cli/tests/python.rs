//! The Python package in `python/`, run by `cargo test`: its pytest suite against real etcd and
//! NATS with this build's `troupe` (TROUPE_BIN) and the package from source (PYTHONPATH, no
//! install), and the plugin's promise that a failing test's report shows the node logs and the
//! kept state directory.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python that has pytest: $TROUPE_PYTHON, else `python3` on PATH, else Debian's
/// /usr/bin/python3 (python3-pytest, which .ci/setup installs).
fn python() -> String {
    if let Ok(p) = std::env::var("TROUPE_PYTHON") {
        return p;
    }
    for candidate in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import pytest"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.to_string();
        }
    }
    panic!(
        "no python3 with pytest (hint: apt-get install python3-pytest, as .ci/setup does, or set TROUPE_PYTHON)"
    );
}

struct Outcome {
    code: Option<i32>,
    output: String,
}

/// `python -m pytest ARGS` from the repository root, its stdout and stderr in one file; killed
/// (its whole process group) if it has not ended by the deadline.
fn pytest(args: &[&str], deadline: Duration) -> Outcome {
    let out = tempfile::NamedTempFile::new().unwrap();
    let src = repo().join("python/src");
    let pythonpath = match std::env::var_os("PYTHONPATH") {
        Some(p) if !p.is_empty() => {
            let mut all = src.into_os_string();
            all.push(":");
            all.push(p);
            all
        }
        _ => src.into_os_string(),
    };
    let mut child = Command::new(python())
        .args([
            "-m",
            "pytest",
            "-p",
            "troupe.pytest_plugin",
            "-p",
            "no:cacheprovider",
        ])
        .args(args)
        .current_dir(repo())
        .env("TROUPE_BIN", env!("CARGO_BIN_EXE_troupe"))
        .env("PYTHONPATH", pythonpath)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("TROUPE_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(out.reopen().unwrap())
        .stderr(out.reopen().unwrap())
        .process_group(0)
        .spawn()
        .expect("run python3 -m pytest");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > deadline {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(out.path()).unwrap_or_default();
    assert!(
        status.is_some(),
        "pytest did not end within {deadline:?}:\n{output}"
    );
    Outcome {
        code: status.and_then(|s| s.code()),
        output,
    }
}

#[test]
fn the_python_suite_passes_against_real_etcd_and_nats() {
    let run = pytest(&["python/tests", "-v"], Duration::from_secs(900));
    assert_eq!(run.code, Some(0), "pytest failed:\n{}", run.output);
    let summary = run.output.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "{}",
        run.output
    );
    assert!(
        run.output
            .contains("test_a_new_leader_takes_writes_after_the_leader_is_killed PASSED"),
        "the README's failover test did not run:\n{}",
        run.output
    );
}

#[test]
fn a_failing_test_shows_the_node_logs_and_keeps_the_state_dir() {
    let run = pytest(
        &["python/tests/data/fails_with_logs.py"],
        Duration::from_secs(300),
    );
    let out = &run.output;
    assert_eq!(run.code, Some(1), "expected one failed test:\n{out}");
    assert!(out.contains("1 failed"), "{out}");
    assert!(out.contains("failing on purpose"), "{out}");
    // A report section per node with the end of its log: etcd's own words.
    assert!(out.contains("troupe logs: main-1"), "{out}");
    assert!(out.contains(r#""msg":"serving client traffic"#), "{out}");
    // The state directory is named in the failure report, kept, and the cluster is down.
    let marker = "troupe: state directory kept ";
    assert!(out.contains(marker), "{out}");
    let kept = out
        .lines()
        .find_map(|l| l.strip_prefix("state directory kept: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no kept state directory in the summary:\n{out}"));
    assert!(kept.join("nodes/main-1/node.log").exists(), "{out}");
    let status = Command::new(env!("CARGO_BIN_EXE_troupe"))
        .args(["status", "--state-dir"])
        .arg(&kept)
        .output()
        .unwrap();
    assert_eq!(
        status.status.code(),
        Some(5),
        "the cluster still runs after the test: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    std::fs::remove_dir_all(&kept).unwrap();
}
