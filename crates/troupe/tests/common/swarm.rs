//! A one-host Docker Swarm for tests, and the nats-server image they run.
//!
//! [`Swarm::join`] makes the local Engine a swarm manager (`docker swarm init --advertise-addr
//! 127.0.0.1`) when it is in no swarm, and the last test to leave leaves it again, only if a
//! test initialised it. Users are counted by pid in a locked file, so tests in several
//! processes (nextest, parallel binaries) share one swarm and a crashed test does not keep it
//! forever. Without a reachable Engine these panic: tests that need Docker fail, never skip.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

const STATE: &str = "/tmp/troupe-test-swarm.users";

/// One test's use of the swarm; leaving happens on drop.
pub struct Swarm(());

/// Runs `docker ARGS`, panicking with its output when it fails.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect(
        "the docker client runs (these tests need Docker: install docker.io and start dockerd)",
    );
    assert!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The file of users, locked, and what it says: whether a test initialised the swarm, and
/// the pids of the tests that use it.
fn locked() -> (File, bool, Vec<u32>) {
    let mut f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(STATE)
        .unwrap();
    f.lock().unwrap();
    let mut text = String::new();
    f.read_to_string(&mut text).unwrap();
    let mut lines = text.lines();
    let ours = lines.next() == Some("initialised-by-tests");
    let pids = lines
        .filter_map(|l| l.trim().parse().ok())
        // Tests that died without leaving no longer count.
        .filter(|p: &u32| Path::new(&format!("/proc/{p}")).exists())
        .collect();
    (f, ours, pids)
}

fn store(mut f: File, ours: bool, pids: &[u32]) {
    let mut text = String::from(if ours {
        "initialised-by-tests\n"
    } else {
        "found\n"
    });
    for p in pids {
        text.push_str(&format!("{p}\n"));
    }
    f.set_len(0).unwrap();
    f.rewind().unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Swarm {
    pub fn join() -> Swarm {
        let (f, mut ours, mut pids) = locked();
        let state = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
        if state != "active" {
            docker(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
            ours = true;
        }
        pids.push(std::process::id());
        store(f, ours, &pids);
        Swarm(())
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        let (f, ours, mut pids) = locked();
        if let Some(i) = pids.iter().position(|p| *p == std::process::id()) {
            pids.remove(i);
        }
        if pids.is_empty() && ours {
            docker(&["swarm", "leave", "--force"]);
            store(f, false, &pids);
        } else {
            store(f, ours, &pids);
        }
    }
}

/// Builds the example's nats-server image (FROM scratch, from the host's nats-server and its
/// libraries; no registry) and returns its name.
pub fn nats_image() -> String {
    let script: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/nats-swarm/build-image.sh")
        .canonicalize()
        .unwrap();
    let out = Command::new(&script).output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Everything of the Engine labelled `label` (`key=value`) that a swarm run can leave:
/// services, networks, configs, secrets, volumes and containers, as `kind id` lines.
pub fn labelled(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    let mut found = Vec::new();
    for kind in ["service", "network", "config", "secret", "volume"] {
        let ids = docker(&[kind, "ls", "--quiet", "--filter", &filter]);
        found.extend(ids.lines().map(|id| format!("{kind} {id}")));
    }
    let ids = docker(&["ps", "--all", "--quiet", "--filter", &filter]);
    found.extend(ids.lines().map(|id| format!("container {id}")));
    found
}
