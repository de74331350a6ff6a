//! Network faults on nodes in network namespaces (needs root, as CI has): rules really cut
//! traffic and heal restores it, every fault is journaled and shown, and nothing is left on the
//! machine after `down`, or after `down --force` of a crashed run.

#[path = "../../troupe/tests/common/mod.rs"]
mod common;
use common::wait_until;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use assert_cmd::cargo::cargo_bin;
use predicates::prelude::*;

fn spec(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

struct Run {
    _dir: tempfile::TempDir,
    state: PathBuf,
}

impl Run {
    fn up(spec_path: &Path) -> Run {
        assert!(
            nix::unistd::geteuid().is_root(),
            "network namespaces need root (CI runs as root)"
        );
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let run = Run { _dir: dir, state };
        run.troupe()
            .arg("up")
            .arg(spec_path)
            .arg("--detach")
            .assert()
            .success();
        run
    }

    fn troupe(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(cargo_bin("troupe"));
        c.env("TROUPE_STATE_DIR", &self.state);
        c
    }

    /// `troupe status --json`.
    fn status(&self) -> troupe_spec::Descriptor {
        let out = self.troupe().args(["status", "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(self.state.join("network.journal")).unwrap_or_default()
    }

    /// The run's id, as it names its namespaces (`troupe-<id>-<node>`).
    fn netns_prefix(&self) -> String {
        let j = self.journal();
        let name = j
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|e| e["kind"] == "netns")
            .and_then(|e| e["name"].as_str().map(str::to_string))
            .expect("the journal lists the namespaces");
        // `troupe-<id>-<node>`, and node names have dashes of their own.
        let mut parts = name.splitn(3, '-');
        format!("{}-{}-", parts.next().unwrap(), parts.next().unwrap())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.troupe().args(["down", "--force"]).output();
    }
}

fn leftovers(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    out.extend(
        String::from_utf8_lossy(&ns.stdout)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string),
    );
    let id = prefix.trim_start_matches("troupe-").trim_end_matches('-');
    let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
    out.extend(
        String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter(|l| l.contains(&format!("tr{id}")) || l.starts_with(&format!("trb{id}")))
            .map(str::to_string),
    );
    let tables = Command::new("nft")
        .args(["list", "tables"])
        .output()
        .unwrap();
    out.extend(
        String::from_utf8_lossy(&tables.stdout)
            .lines()
            .filter(|l| l.contains(&format!("troupe_{id}")))
            .map(str::to_string),
    );
    out
}

/// Whether `node`'s namespace can open a TCP connection to `ip:port`.
fn connects(netns: &str, ip: &str, port: u16) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            netns,
            "timeout",
            "1",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{ip}/{port}"),
        ])
        .status()
        .unwrap()
        .success()
}

#[test]
fn a_partition_really_cuts_is_journaled_and_shown_and_heal_restores_it_and_down_leaves_nothing() {
    let run = Run::up(&spec("etcd-partition/cluster.toml"));
    let prefix = run.netns_prefix();
    let status = run.status();
    let ip = |n: &str| {
        status
            .nodes
            .iter()
            .find(|x| x.name == n)
            .unwrap()
            .host
            .clone()
    };
    let peer = status.nodes[0].ports["peer"];
    let ns = |n: &str| format!("{prefix}{n}");
    assert!(connects(&ns("main-1"), &ip("main-2"), peer));

    run.troupe()
        .args(["partition", "main-1 | main-2 main-3"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "fault 1: partition main-1 | main-2 main-3",
        ));
    assert!(
        run.journal().contains("\"op\":\"fault\""),
        "journaled: {}",
        run.journal()
    );
    assert!(
        !connects(&ns("main-1"), &ip("main-2"), peer),
        "main-1 still reaches main-2"
    );
    assert!(
        !connects(&ns("main-3"), &ip("main-1"), peer),
        "main-3 still reaches main-1"
    );
    assert!(
        connects(&ns("main-2"), &ip("main-3"), peer),
        "the majority side was cut too"
    );
    run.troupe()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "fault 1: partition main-1 | main-2 main-3 (active",
        ));

    run.troupe()
        .arg("heal")
        .assert()
        .success()
        .stdout(predicate::str::contains("healed 1 fault"));
    assert!(
        connects(&ns("main-1"), &ip("main-2"), peer),
        "heal did not restore main-1 -> main-2"
    );
    run.troupe()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("(healed after"));

    run.troupe()
        .args(["isolate", "main-3", "--host"])
        .assert()
        .success();
    let client = status.nodes[2].ports["client"];
    let host_reaches = Command::new("timeout")
        .args([
            "1",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{}/{client}", ip("main-3")),
        ])
        .status()
        .unwrap()
        .success();
    assert!(
        !host_reaches,
        "the host still reaches an isolated --host node"
    );

    run.troupe().arg("down").assert().success();
    wait_until(
        Duration::from_secs(10),
        "no namespace, link or rule of the run to remain",
        || leftovers(&prefix).is_empty(),
    );
}

#[test]
fn down_force_removes_the_network_of_a_crashed_run() {
    let run = Run::up(&spec("etcd-partition/cluster.toml"));
    let prefix = run.netns_prefix();
    run.troupe().args(["isolate", "main-1"]).assert().success();
    let status = run.status();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(status.supervisor_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the supervisor to be gone", || {
        run.troupe().arg("status").output().unwrap().status.code() == Some(5)
    });
    assert!(
        !leftovers(&prefix).is_empty(),
        "a crashed run leaves its network until cleaned"
    );
    run.troupe().args(["down", "--force"]).assert().success();
    wait_until(
        Duration::from_secs(10),
        "down --force to remove the network",
        || leftovers(&prefix).is_empty(),
    );
}

#[test]
fn a_fault_on_a_host_network_cluster_is_refused_not_skipped() {
    let run = Run::up(&spec("etcd/cluster.toml"));
    run.troupe()
        .args(["isolate", "main-1"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "network faults need nodes in network namespaces",
        ));
    run.troupe().arg("down").assert().success();
}

/// Whether this kernel has the netem qdisc, asked in a namespace of the test's own.
fn kernel_has_netem() -> bool {
    Command::new("unshare")
        .args([
            "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
        ])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn degrade_in_namespaces_delays_traffic_or_is_refused_where_the_kernel_has_no_netem() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("fx.toml");
    std::fs::write(
        &spec_path,
        format!(
            "[clusters.fx]\nnodes = 2\nbinary = \"{}\"\nnetwork = \"namespaces\"\nports = [\"main\"]\nargs = [\"--listen\", \"{{{{ node.addrs.main }}}}\"]\n[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"10s\"\n",
            cargo_bin("troupe-fixture").display()
        ),
    )
    .unwrap();
    let run = Run::up(&spec_path);
    let status = run.status();
    let node = &status.nodes[0];
    let addr = format!("{}:{}", node.host, node.ports["main"]);
    let round_trip = || {
        let started = std::time::Instant::now();
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut body = String::new();
        std::io::Read::read_to_string(&mut s, &mut body).unwrap();
        assert!(body.ends_with("ok"), "{body}");
        started.elapsed()
    };
    round_trip();

    let degrade = run
        .troupe()
        .args(["degrade", "fx-1", "--delay", "150ms"])
        .output()
        .unwrap();
    if kernel_has_netem() {
        assert!(degrade.status.success(), "{degrade:?}");
        // The SYN-ACK and the answer both leave fx-1 through its delayed interface.
        let took = round_trip();
        assert!(
            took >= Duration::from_millis(300),
            "a round trip took {took:?}"
        );
        run.troupe().arg("heal").assert().success();
    } else {
        assert_eq!(degrade.status.code(), Some(1), "{degrade:?}");
        let err = String::from_utf8_lossy(&degrade.stderr);
        assert!(
            err.contains("no netem") && err.contains("network = \"proxies\""),
            "{err}"
        );
        assert!(
            !run.journal().contains("\"op\":\"fault\""),
            "a refused fault was journaled: {}",
            run.journal()
        );
    }
    run.troupe().arg("down").assert().success();
}
