//! Network faults on nodes in network namespaces: rules really cut traffic and heal restores
//! it, every fault is journaled and shown, and nothing is left on the machine after `down`, or
//! after `down --force` of a crashed run.
//!
//! Under root (as in CI) the tests without `rootless` in their name take root's path: named
//! namespaces on the host. The `rootless_*` tests run troupe as `nobody` (from a root test
//! process, through `setpriv`), so CI also proves the path without root: a user namespace of
//! troupe's own, reached through `troupe exec`. Run by a user without root, every test here
//! takes that path, and the `rootless_*` ones run troupe as that user.

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

/// The uid and gid troupe runs as in the `rootless_*` tests when the test process is root.
const NOBODY: u32 = 65534;

/// A user's `PATH` as Debian sets it: without `/usr/sbin`, where `ip`, `tc` and `nft` are.
const USER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

struct Run {
    _dir: tempfile::TempDir,
    state: PathBuf,
    /// Run troupe through `setpriv` as `nobody` (the test process is root).
    nobody: bool,
    troupe_bin: PathBuf,
    /// The user namespace of a rootless run's supervisor, to prove it is gone after `down`.
    userns: Option<PathBuf>,
}

impl Run {
    fn up(spec_path: &Path) -> Run {
        Run::start(spec_path, tempfile::tempdir().unwrap(), false)
    }

    /// The run's directory, writable by `nobody` when the test process is root.
    fn rootless_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        dir
    }

    /// troupe started without root: as `nobody` when the test process is root, else as the
    /// test's own (unprivileged) user. `dir` comes from [`Run::rootless_dir`].
    fn up_rootless(spec_path: &Path, dir: tempfile::TempDir) -> Run {
        let nobody = nix::unistd::geteuid().is_root();
        let mut run = Run::start(spec_path, dir, nobody);
        let status = run.status();
        assert!(status.rootless, "the run says it is rootless: {status:?}");
        run.userns = std::fs::read_link(format!("/proc/{}/ns/user", status.supervisor_pid)).ok();
        assert!(run.userns.is_some(), "the supervisor's user namespace");
        run
    }

    fn start(spec_path: &Path, dir: tempfile::TempDir, nobody: bool) -> Run {
        let state = dir.path().join("state");
        let troupe_bin = if nobody {
            runnable_by_nobody(&cargo_bin("troupe"), dir.path())
        } else {
            cargo_bin("troupe")
        };
        let mut run = Run {
            _dir: dir,
            state,
            nobody,
            troupe_bin,
            userns: None,
        };
        run.troupe()
            .arg("up")
            .arg(spec_path)
            .arg("--detach")
            .assert()
            .success();
        if !nix::unistd::geteuid().is_root() {
            run.userns =
                std::fs::read_link(format!("/proc/{}/ns/user", run.status().supervisor_pid)).ok();
        }
        run
    }

    fn troupe(&self) -> assert_cmd::Command {
        let mut c = if self.nobody {
            let mut c = assert_cmd::Command::new("setpriv");
            c.args([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".into(),
            ])
            .arg(&self.troupe_bin)
            .env("HOME", self._dir.path())
            .env("PATH", USER_PATH);
            c
        } else {
            assert_cmd::Command::new(&self.troupe_bin)
        };
        c.env("TROUPE_STATE_DIR", &self.state);
        c
    }

    /// `troupe exec -- ARGS`: where the nodes are reachable, whichever path the run took.
    fn exec(&self, args: &[&str]) -> std::process::Output {
        self.troupe()
            .args(["exec", "--", "env", "PATH=/usr/sbin:/sbin:/usr/bin:/bin"])
            .args(args)
            .output()
            .unwrap()
    }

    /// `troupe status --json`.
    fn status(&self) -> troupe_spec::Descriptor {
        let out = self.troupe().args(["status", "--json"]).output().unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status --json: {e}: {out:?}"))
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

    /// What is left of the run: on the host, its namespaces, links and rules; for a rootless
    /// run, also any process still in its user namespace (which holds the namespaces and the
    /// private /run/netns mount: they go with the last one).
    fn leftovers(&self, prefix: &str) -> Vec<String> {
        let mut out = leftovers(prefix);
        if let Some(ns) = &self.userns {
            out.extend(
                in_user_namespace(ns)
                    .iter()
                    .map(|p| format!("process {p} in {}", ns.display())),
            );
        }
        out
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.troupe().args(["down", "--force"]).output();
    }
}

/// `bin` if `nobody` can run it where it is (or the test process is not root: then it runs
/// troupe as itself), else a copy in `dir` (a target directory under a home only root can
/// enter, as CI's may be).
fn runnable_by_nobody(bin: &Path, dir: &Path) -> PathBuf {
    if !nix::unistd::geteuid().is_root() {
        return bin.to_path_buf();
    }
    let ok = Command::new("setpriv")
        .args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
            "test".into(),
            "-x".into(),
        ])
        .arg(bin)
        .status()
        .unwrap()
        .success();
    if ok {
        return bin.to_path_buf();
    }
    let copy = dir.join(bin.file_name().unwrap());
    std::fs::copy(bin, &copy).unwrap();
    copy
}

/// Every process whose user namespace is `ns` (as `/proc/<pid>/ns/user` reads).
fn in_user_namespace(ns: &Path) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/user")).is_ok_and(|l| l == ns)
                && common::alive(*pid)
        })
        .collect()
}

/// A network tool from `PATH` or, for a user whose `PATH` lacks it, `/usr/sbin` or `/sbin`.
fn tool(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

fn leftovers(prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ns = Command::new(tool("ip"))
        .args(["netns", "list"])
        .output()
        .unwrap();
    out.extend(
        String::from_utf8_lossy(&ns.stdout)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string),
    );
    let id = prefix.trim_start_matches("troupe-").trim_end_matches('-');
    let links = Command::new(tool("ip"))
        .args(["-br", "link"])
        .output()
        .unwrap();
    out.extend(
        String::from_utf8_lossy(&links.stdout)
            .lines()
            .filter(|l| l.contains(&format!("tr{id}")) || l.starts_with(&format!("trb{id}")))
            .map(str::to_string),
    );
    let tables = Command::new(tool("nft"))
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

/// Whether `node`'s namespace can open a TCP connection to `ip:port` (through `troupe exec`,
/// so also for a rootless run).
fn connects(run: &Run, netns: &str, ip: &str, port: u16) -> bool {
    run.exec(&[
        "ip",
        "netns",
        "exec",
        netns,
        "timeout",
        "1",
        "bash",
        "-c",
        &format!("exec 3<>/dev/tcp/{ip}/{port}"),
    ])
    .status
    .success()
}

/// Whether the host (or, for a rootless run, troupe's own namespace) reaches `ip:port`.
fn host_connects(run: &Run, ip: &str, port: u16) -> bool {
    run.exec(&[
        "timeout",
        "1",
        "bash",
        "-c",
        &format!("exec 3<>/dev/tcp/{ip}/{port}"),
    ])
    .status
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
    assert!(connects(&run, &ns("main-1"), &ip("main-2"), peer));

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
        !connects(&run, &ns("main-1"), &ip("main-2"), peer),
        "main-1 still reaches main-2"
    );
    assert!(
        !connects(&run, &ns("main-3"), &ip("main-1"), peer),
        "main-3 still reaches main-1"
    );
    assert!(
        connects(&run, &ns("main-2"), &ip("main-3"), peer),
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
        connects(&run, &ns("main-1"), &ip("main-2"), peer),
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
    let host_reaches = host_connects(&run, &ip("main-3"), client);
    assert!(
        !host_reaches,
        "the host still reaches an isolated --host node"
    );

    run.troupe().arg("down").assert().success();
    wait_until(
        Duration::from_secs(10),
        "no namespace, link or rule of the run to remain",
        || run.leftovers(&prefix).is_empty(),
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
    if run.userns.is_none() {
        assert!(
            !leftovers(&prefix).is_empty(),
            "a crashed run leaves its network until cleaned"
        );
    } else {
        // Rootless: the namespaces die with the supervisor and the nodes it took along.
        wait_until(
            Duration::from_secs(10),
            "the crashed rootless run's namespaces to go with its processes",
            || run.leftovers(&prefix).is_empty(),
        );
    }
    run.troupe().args(["down", "--force"]).assert().success();
    wait_until(
        Duration::from_secs(10),
        "down --force to remove the network",
        || run.leftovers(&prefix).is_empty(),
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
        .args(["--user", "--map-root-user", "--net"])
        .arg(tool("tc"))
        .args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"])
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
    // Through `troupe exec`, so also from a rootless run's own namespace.
    let round_trip = || {
        let started = std::time::Instant::now();
        let out = run.exec(&["curl", "-sS", "-m", "5", &format!("http://{addr}/")]);
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(body.ends_with("ok"), "{out:?}");
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

/// A spec of `n` fixture nodes in namespaces, in `dir`, with a fixture `nobody` can run.
fn fixture_spec(dir: &Path, n: u32) -> PathBuf {
    let fixture = runnable_by_nobody(&cargo_bin("troupe-fixture"), dir);
    let path = dir.join("fx.toml");
    std::fs::write(
        &path,
        format!(
            "[clusters.fx]\nnodes = {n}\nbinary = \"{}\"\nnetwork = \"namespaces\"\nports = [\"main\"]\nargs = [\"--listen\", \"{{{{ node.addrs.main }}}}\"]\n[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"10s\"\n",
            fixture.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn rootless_up_detach_a_partition_really_cuts_heal_restores_and_down_leaves_no_process_or_namespace()
 {
    let dir = Run::rootless_dir();
    let spec_path = fixture_spec(dir.path(), 3);
    let run = Run::up_rootless(&spec_path, dir);
    let prefix = run.netns_prefix();
    run.troupe()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("rootless:").and(predicate::str::contains("troupe exec")));
    let status = run.status();
    let port = status.nodes[0].ports["main"];
    let ip = |i: usize| status.nodes[i].host.clone();
    let ns = |n: &str| format!("{prefix}{n}");
    // Nothing of the run on the host: its namespaces are troupe's own.
    assert!(leftovers(&prefix).is_empty(), "{:?}", leftovers(&prefix));
    let fetch = |from: Option<&str>, i: usize| {
        let url = format!("http://{}:{port}/", ip(i));
        let mut args = vec![];
        if let Some(n) = from {
            args.extend(["ip", "netns", "exec", n]);
        }
        args.extend(["curl", "-sS", "-m", "1", &url]);
        let out = run.exec(&args);
        out.status.success() && String::from_utf8_lossy(&out.stdout).ends_with("ok")
    };
    let (ns1, ns2) = (ns("fx-1"), ns("fx-2"));
    assert!(fetch(None, 0), "troupe exec reaches fx-1");
    assert!(fetch(Some(&ns1), 1), "fx-1 reaches fx-2");

    run.troupe()
        .args(["partition", "fx-1 | fx-2 fx-3"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "fault 1: partition fx-1 | fx-2 fx-3",
        ));
    assert!(!fetch(Some(&ns1), 1), "fx-1 still reaches fx-2");
    assert!(fetch(Some(&ns2), 2), "the majority side was cut too");
    run.troupe()
        .arg("heal")
        .assert()
        .success()
        .stdout(predicate::str::contains("healed 1 fault"));
    assert!(fetch(Some(&ns1), 1), "heal did not restore fx-1 -> fx-2");

    run.troupe()
        .args(["isolate", "fx-3", "--host"])
        .assert()
        .success();
    assert!(
        !fetch(None, 2),
        "troupe exec still reaches an isolated --host node"
    );
    assert!(fetch(None, 0), "the isolation cut fx-1 off too");

    run.troupe().arg("down").assert().success();
    wait_until(
        Duration::from_secs(10),
        "no process, namespace or rule of the rootless run to remain",
        || run.leftovers(&prefix).is_empty(),
    );
    run.troupe().args(["exec", "--", "true"]).assert().code(5);
}

#[test]
fn rootless_down_force_after_a_supervisor_crash_leaves_no_process_or_namespace() {
    let dir = Run::rootless_dir();
    let spec_path = fixture_spec(dir.path(), 2);
    let run = Run::up_rootless(&spec_path, dir);
    let prefix = run.netns_prefix();
    run.troupe().args(["isolate", "fx-1"]).assert().success();
    let status = run.status();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(status.supervisor_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the nodes and namespaces to go with the supervisor",
        || run.leftovers(&prefix).is_empty(),
    );
    run.troupe().args(["down", "--force"]).assert().success();
    assert!(
        run.journal().contains("\"op\":\"destroyed\""),
        "{}",
        run.journal()
    );
}

/// The etcd partition suite, without root: 3 real etcd members, the leader isolated and healed.
#[test]
fn rootless_etcd_partition_scenario_passes() {
    let dir = Run::rootless_dir();
    let suite = dir.path().join("etcd-partition");
    std::fs::create_dir(&suite).unwrap();
    for e in std::fs::read_dir(spec("etcd-partition")).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), suite.join(e.file_name())).unwrap();
        }
    }
    let nobody = nix::unistd::geteuid().is_root();
    let troupe = if nobody {
        runnable_by_nobody(&cargo_bin("troupe"), dir.path())
    } else {
        cargo_bin("troupe")
    };
    let mut cmd = if nobody {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ])
        .arg(&troupe)
        .env("HOME", dir.path())
        .env("PATH", USER_PATH);
        c
    } else {
        Command::new(&troupe)
    };
    let out = cmd
        .arg("run")
        .arg(suite.join("scenario.toml"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .current_dir(&suite)
        .output()
        .unwrap();
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{console}");
    assert!(console.contains("PASSED: etcd-partition"), "{console}");
}

/// `troupe exec --new`: a fresh user and network namespace for a command (such as `cargo test`
/// with troupe::Cluster), root there, with its own /run/netns; nothing of it on the host.
#[test]
fn rootless_exec_new_gives_a_command_namespaces_of_its_own() {
    let dir = Run::rootless_dir();
    let nobody = nix::unistd::geteuid().is_root();
    let troupe = if nobody {
        runnable_by_nobody(&cargo_bin("troupe"), dir.path())
    } else {
        cargo_bin("troupe")
    };
    let name = format!("troupe-test-exec-new-{}", std::process::id());
    let script =
        format!("PATH=/usr/sbin:/sbin:$PATH; id -u && ip netns add {name} && ip netns list");
    let mut cmd = if nobody {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ])
        .arg(&troupe)
        .env("PATH", USER_PATH);
        c
    } else {
        Command::new(&troupe)
    };
    let out = cmd
        .args(["exec", "--new", "--", "sh", "-c", &script])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.starts_with("0\n") && text.contains(&name), "{text}");
    let host = Command::new(tool("ip"))
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&host.stdout).contains(&name),
        "the namespace leaked to the host"
    );
}

/// What the library test does when re-run by [`rootless_library_refuses_namespaces_with_a_hint_and_starts_them_under_troupe_exec_new`].
const LIBRARY_ROLE: &str = "TROUPE_TEST_LIBRARY_ROLE";

/// troupe::Cluster cannot enter a user namespace (a test process has threads): without root it
/// refuses namespaces, naming the way out; under `troupe exec --new` the same test starts them
/// and reaches its nodes. Re-runs this test binary as `nobody` when the test process is root.
#[test]
fn rootless_library_refuses_namespaces_with_a_hint_and_starts_them_under_troupe_exec_new() {
    const NAME: &str =
        "rootless_library_refuses_namespaces_with_a_hint_and_starts_them_under_troupe_exec_new";
    let spec_text = |fixture: &str| {
        format!(
            "[clusters.fx]\nnodes = 2\nbinary = \"{fixture}\"\nnetwork = \"namespaces\"\nports = [\"main\"]\nargs = [\"--listen\", \"{{{{ node.addrs.main }}}}\"]\n[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"10s\"\n"
        )
    };
    match std::env::var(LIBRARY_ROLE).as_deref() {
        Ok("refuse") => {
            let fixture = std::env::var("TROUPE_TEST_FIXTURE").unwrap();
            let err = troupe::Cluster::from_toml("fx.toml", spec_text(&fixture))
                .start()
                .err()
                .expect("namespaces without root are refused");
            let text = format!("{:?}", miette::Report::new(err));
            assert!(
                text.contains("needs root or a user namespace")
                    && text.contains("troupe exec --new -- cargo test"),
                "{text}"
            );
            return;
        }
        Ok("start") => {
            let fixture = std::env::var("TROUPE_TEST_FIXTURE").unwrap();
            let cluster = troupe::Cluster::from_toml("fx.toml", spec_text(&fixture))
                .start()
                .unwrap();
            let node = cluster.node("fx-2").unwrap();
            assert!(node.host().starts_with("10.213."), "{}", node.host());
            std::net::TcpStream::connect(node.addr("main")).expect("the node is reachable inside");
            return;
        }
        _ => {}
    }
    let dir = Run::rootless_dir();
    let nobody = nix::unistd::geteuid().is_root();
    let exe = runnable_by_nobody(&std::env::current_exe().unwrap(), dir.path());
    let troupe = runnable_by_nobody(&cargo_bin("troupe"), dir.path());
    let fixture = runnable_by_nobody(&cargo_bin("troupe-fixture"), dir.path());
    let as_user = |program: &Path| {
        let mut c = if nobody {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".into(),
            ])
            .arg(program)
            .env("PATH", USER_PATH);
            c
        } else {
            Command::new(program)
        };
        c.env("HOME", dir.path())
            .env("TMPDIR", dir.path())
            .env("TROUPE_TEST_FIXTURE", &fixture)
            .current_dir(dir.path());
        c
    };
    let refuse = as_user(&exe)
        .args(["--exact", NAME, "--nocapture"])
        .env(LIBRARY_ROLE, "refuse")
        .output()
        .unwrap();
    assert!(
        refuse.status.success() && String::from_utf8_lossy(&refuse.stdout).contains("1 passed"),
        "{refuse:?}"
    );
    let start = as_user(&troupe)
        .args(["exec", "--new", "--"])
        .arg(&exe)
        .args(["--exact", NAME, "--nocapture"])
        .env(LIBRARY_ROLE, "start")
        .output()
        .unwrap();
    assert!(start.status.success(), "{start:?}");
    assert!(
        String::from_utf8_lossy(&start.stdout).contains("1 passed"),
        "{start:?}"
    );
}

/// Where the host never had a named namespace, /run/netns does not exist and only the host's
/// root could create it: troupe mounts a tmpfs of its own on /run instead. Simulated by hiding
/// the host's /run under an empty tmpfs first.
#[test]
fn rootless_exec_new_works_where_the_host_has_no_run_netns() {
    let dir = Run::rootless_dir();
    let nobody = nix::unistd::geteuid().is_root();
    let troupe = runnable_by_nobody(&cargo_bin("troupe"), dir.path());
    let inner = format!(
        "mount -t tmpfs tmpfs /run && test ! -e /run/netns && exec {} exec --new -- sh -c 'PATH=/usr/sbin:/sbin:$PATH; ip netns add t && ip netns list'",
        troupe.display()
    );
    let mut cmd = if nobody {
        let mut c = Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
            "unshare".into(),
        ]);
        c
    } else {
        Command::new("unshare")
    };
    let out = cmd
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &inner])
        .env("PATH", USER_PATH)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("t"),
        "{out:?}"
    );
}

/// Containers on a run's Docker network get their faults inside the Engine's namespaces, which a
/// user namespace of troupe's own cannot enter: without root, `up` refuses before anything
/// starts and says why, instead of starting containers whose faults would be skipped.
#[test]
fn rootless_docker_namespaces_are_refused_with_the_reason() {
    let dir = Run::rootless_dir();
    let spec = dir.path().join("docker-ns.toml");
    std::fs::write(
        &spec,
        "[clusters.c]\nnodes = 2\nbinary = \"sleep\"\nargs = [\"1000\"]\nruntime = \"docker\"\nnetwork = \"namespaces\"\n",
    )
    .unwrap();
    let nobody = nix::unistd::geteuid().is_root();
    let troupe_bin = runnable_by_nobody(&cargo_bin("troupe"), dir.path());
    let mut cmd = if nobody {
        let mut c = assert_cmd::Command::new("setpriv");
        c.args([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
        ])
        .arg(&troupe_bin)
        .env("HOME", dir.path())
        .env("PATH", USER_PATH);
        c
    } else {
        assert_cmd::Command::new(&troupe_bin)
    };
    cmd.arg("up")
        .arg(&spec)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .timeout(Duration::from_secs(60))
        .assert()
        .failure()
        .stderr(predicates::str::contains(
            "with `runtime = \"docker\"` needs root",
        ));
}
