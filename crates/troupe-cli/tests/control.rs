//! The control plane from outside Rust: a detached supervisor driven from a shell script and
//! from Python, its permissions, and what happens when it is killed.

#[path = "../../troupe/tests/common/mod.rs"]
mod common;
use common::{alive, wait_until};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use assert_cmd::cargo::cargo_bin;
use predicates::prelude::*;

fn etcd_spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/etcd/cluster.toml")
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scripts")
        .join(name)
}

/// A state dir whose run is forced down (by proven pids) when the test ends, pass or fail.
struct Run {
    _dir: tempfile::TempDir,
    state: PathBuf,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Run { _dir: dir, state }
    }

    fn troupe(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(cargo_bin("troupe"));
        c.env("TROUPE_STATE_DIR", &self.state);
        c
    }

    fn up(&self) {
        self.troupe()
            .arg("up")
            .arg(etcd_spec())
            .arg("--detach")
            .assert()
            .success();
    }

    fn status(&self) -> troupe_spec::Descriptor {
        let out = self.troupe().args(["status", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.troupe().args(["down", "--force"]).output();
    }
}

#[test]
fn a_shell_script_alone_drives_leader_failover_on_a_detached_etcd_cluster() {
    let run = Run::new();
    let bin_dir = cargo_bin("troupe").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg(script("failover.sh"))
        .arg(etcd_spec())
        .env("PATH", path)
        .env("TROUPE_STATE_DIR", &run.state)
        .output()
        .unwrap();
    assert_passes(&out, "failover.sh");
}

#[test]
fn python_with_the_standard_library_reads_status_and_env_and_connects_over_mtls() {
    let run = Run::new();
    run.up();
    let out = Command::new("python3")
        .arg(script("client.py"))
        .arg(cargo_bin("troupe"))
        .env("TROUPE_STATE_DIR", &run.state)
        .output()
        .unwrap();
    assert_passes(&out, "client.py");
}

#[test]
fn the_control_socket_and_keys_are_private_and_a_second_up_is_refused() {
    let run = Run::new();
    run.up();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&run.state), 0o700);
    assert_eq!(mode(&run.state.join("control.sock")), 0o600);
    assert_eq!(mode(&run.state.join("tls/ca.key")), 0o600);
    for n in run.status().nodes {
        let tls = n.tls.unwrap();
        assert_eq!(mode(&tls.key), 0o600);
        assert_eq!(mode(&tls.client_key), 0o600);
    }
    run.troupe()
        .arg("up")
        .arg(etcd_spec())
        .arg("--detach")
        .assert()
        .code(4)
        .stderr(predicate::str::contains("in use by a running troupe"));
    // A target that names nothing is a wrong command line: exit 2, with the did-you-mean.
    run.troupe()
        .args(["kill", "main:leadr"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("did you mean `main:leader`?"));
    run.troupe()
        .args(["kill", "main-9"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no node or cluster named `main-9`",
        ));
    run.troupe().arg("down").assert().success();
    run.troupe()
        .arg("status")
        .assert()
        .code(5)
        .stderr(predicate::str::contains("no troupe is running"));
}

#[test]
fn a_killed_supervisor_takes_its_nodes_with_it_and_the_state_dir_can_be_reused() {
    let run = Run::new();
    run.up();
    let d = run.status();
    let pids: Vec<u32> = d.nodes.iter().map(|n| n.pid.unwrap()).collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.supervisor_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the nodes to die with their supervisor",
        || pids.iter().all(|p| !alive(*p)),
    );
    run.troupe()
        .arg("kill")
        .arg("main-1")
        .assert()
        .code(5)
        .stderr(predicate::str::contains("down --force"));
    run.troupe().args(["down", "--force"]).assert().success();
    run.up();
    assert!(
        run.status()
            .nodes
            .iter()
            .all(|n| n.state == troupe_spec::NodeState::Ready)
    );
    run.troupe().arg("down").assert().success();
}

/// A client script exited 0 and printed PASS.
fn assert_passes(out: &std::process::Output, script: &str) {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "{script} failed:\n{stdout}\n{stderr}"
    );
}

/// One spec, many variants: `--set` changes the node count and the binary (as a built-from-source
/// server would need) for a detached run, validated like the file; a bad override is refused
/// before anything starts, naming it.
#[test]
fn set_overrides_spec_keys_for_a_detached_run_and_a_bad_one_is_refused() {
    let run = Run::new();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("fx.toml");
    std::fs::write(
        &spec,
        r#"
[clusters.fx]
nodes = 1
binary = "no-such-server-on-path"
ports = ["api"]
args = ["--listen", "{{ node.addrs.api }}"]

[[clusters.fx.ready]]
tcp = "api"
"#,
    )
    .unwrap();
    let fixture = cargo_bin("troupe-fixture");
    run.troupe()
        .arg("up")
        .arg(&spec)
        .arg("--detach")
        .arg("--set")
        .arg(format!("clusters.fx.binary={}", fixture.display()))
        .args(["--set", "clusters.fx.nodes=3"])
        .args(["--set", "clusters.fx.ready.0.timeout=20s"])
        .assert()
        .success();
    let d = run.status();
    assert_eq!(d.nodes.len(), 3);
    assert!(
        d.nodes
            .iter()
            .all(|n| n.state == troupe_spec::NodeState::Ready)
    );
    run.troupe().arg("down").assert().success();

    let bad = tempfile::tempdir().unwrap();
    assert_cmd::Command::new(cargo_bin("troupe"))
        .env("TROUPE_STATE_DIR", bad.path().join("state"))
        .arg("up")
        .arg(&spec)
        .args(["--set", "clusters.fx.network=namespacs"])
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("did you mean \"namespaces\"").and(
                predicates::str::contains("as read with --set clusters.fx.network=namespacs"),
            ),
        );
    assert!(
        !bad.path().join("state").exists(),
        "a refused spec made a state dir"
    );
}

/// `troupe run --set` reaches every spec the scenario brings up that has the key's cluster, and
/// an `up` step's own `set` (a template of the scenario's parameters) applies after it; a `--set`
/// for a cluster no spec has is refused before anything starts.
#[test]
fn run_set_and_up_step_set_override_the_specs_a_scenario_brings_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fx.toml"),
        r#"
[clusters.fx]
nodes = 1
binary = "no-such-server-on-path"
ports = ["api"]
args = ["--listen", "{{ node.addrs.api }}"]

[[clusters.fx.ready]]
tcp = "api"
timeout = "1s"
"#,
    )
    .unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        r#"
[env]
FIXTURE = "missing"

[[step]]
name = "up"
up = "fx.toml"
set = ["clusters.fx.binary={{ env.FIXTURE }}", "clusters.fx.ready.0.timeout=20s"]

[[step]]
name = "two nodes"
sh = "test {{ nodes | length }} -eq 2"
"#,
    )
    .unwrap();
    let fixture = cargo_bin("troupe-fixture");
    let run = |sets: &[&str]| {
        let mut c = assert_cmd::Command::new(cargo_bin("troupe"));
        // A failing run keeps its directory: keep it in the test's.
        let run_dir = tempfile::tempdir_in(dir.path()).unwrap().keep();
        c.env("FIXTURE", &fixture)
            .arg("run")
            .arg(&scenario)
            .arg("--run-dir")
            .arg(run_dir);
        for s in sets {
            c.args(["--set", s]);
        }
        c.assert()
    };
    run(&["clusters.fx.nodes=2"]).success();
    // Without it the spec's one node fails the check: the override was what made it pass.
    run(&[])
        .code(1)
        .stdout(predicate::str::contains("two nodes"));
    run(&["clusters.nope.nodes=2"]).code(2).stderr(
        predicate::str::contains("--set clusters.nope.nodes=2")
            .and(predicate::str::contains("no spec this scenario brings up")),
    );
}

/// Two nodes claim to lead: a scenario's `wait = "leader"` fails saying so (marked here as a
/// known failure), and the scenario can count the claimants and read the recorded window.
#[test]
fn a_scenario_sees_a_split_brain_as_one_and_can_count_the_claimants() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fx.toml"),
        format!(
            r#"
[clusters.fx]
nodes = 3
binary = "{bin}"
ports = ["api"]
args = ["--listen", "{{{{ node.addrs.api }}}}"]

[clusters.fx.role]
command = ["echo", "{{{{ node.name }}}}"]
leader = "^fx-[13]$"
interval = "10ms"

[[clusters.fx.ready]]
tcp = "api"
timeout = "20s"
"#,
            bin = cargo_bin("troupe-fixture").display()
        ),
    )
    .unwrap();
    let scenario = dir.path().join("s.toml");
    std::fs::write(
        &scenario,
        r#"
[[step]]
name = "up"
up = "fx.toml"

[[step]]
name = "one leader"
wait = "leader"
cluster = "fx"
timeout = "500ms"
known_failure = "fx-1 and fx-3 both claim to lead"

[[step]]
name = "count them"
sh = "test {{ clusters.fx.leaders | length }} -eq 2 && test '{{ clusters.fx.split_brains[0].nodes | join(',') }}' = fx-1,fx-3"
"#,
    )
    .unwrap();
    assert_cmd::Command::new(cargo_bin("troupe"))
        .arg("run")
        .arg(&scenario)
        .assert()
        .success()
        .stdout(predicate::str::contains("split brain"));
}

/// From the shell: `troupe wait leader` fails on a split brain naming the claimants, and
/// `troupe wait any-leader` is how a test asks for a claimant anyway.
#[test]
fn wait_leader_fails_on_a_split_brain_and_wait_any_leader_names_the_claimants() {
    let run = Run::new();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("split.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[clusters.fx]
nodes = 3
binary = "{bin}"
ports = ["api"]
args = ["--listen", "{{{{ node.addrs.api }}}}"]

[clusters.fx.role]
command = ["echo", "{{{{ node.name }}}}"]
leader = "^fx-[13]$"
interval = "10ms"

[[clusters.fx.ready]]
tcp = "api"
timeout = "20s"
"#,
            bin = cargo_bin("troupe-fixture").display()
        ),
    )
    .unwrap();
    run.troupe()
        .arg("up")
        .arg(&spec)
        .arg("--detach")
        .assert()
        .success();
    run.troupe()
        .args(["wait", "leader", "--timeout", "500ms"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("split brain").and(predicate::str::contains("fx-1, fx-3")),
        );
    run.troupe()
        .args(["wait", "any-leader", "--timeout", "10s"])
        .assert()
        .success()
        .stdout("fx-1\n")
        .stderr(predicate::str::contains("fx-1 fx-3"));
    run.troupe()
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("SPLIT BRAIN: fx-1, fx-3"));
    run.troupe().arg("down").assert().success();
}
