//! Black-box tests of the `troupe` command against real etcd and the fixture.

#[path = "../../troupe/tests/common/mod.rs"]
mod common;
use common::{alive, wait_until};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use predicates::prelude::*;
use troupe_spec::Descriptor;

fn troupe() -> assert_cmd::Command {
    assert_cmd::Command::new(cargo_bin("troupe"))
}

fn etcd_spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/etcd/cluster.toml")
}

/// A `troupe up` in the background, SIGKILLed (by pid) if the test fails half-way.
struct Up {
    child: Child,
    state: PathBuf,
}

impl Up {
    fn spawn(spec: &Path, state: &Path) -> Up {
        Up::spawn_with(spec, state, &[])
    }

    /// `troupe up SPEC --state-dir STATE ARGS...`.
    fn spawn_with(spec: &Path, state: &Path, args: &[&str]) -> Up {
        let child = Command::new(cargo_bin("troupe"))
            .arg("up")
            .arg(spec)
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Up {
            child,
            state: state.to_path_buf(),
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Waits for cluster.json (written once every node is ready).
    fn ready(&mut self, limit: Duration) -> Descriptor {
        let path = self.state.join("cluster.json");
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                return serde_json::from_str(&text).expect("descriptor parses");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let out = self.child.wait_with_output_ref();
                panic!("troupe up exited with {status} before ready:\n{out}");
            }
            assert!(
                Instant::now() < deadline,
                "troupe up not ready after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

trait OutputRef {
    fn wait_with_output_ref(&mut self) -> String;
}

impl OutputRef for Child {
    fn wait_with_output_ref(&mut self) -> String {
        use std::io::Read;
        let mut s = String::new();
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = kill(self.pid(), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

#[test]
fn help_teaches_the_commands_and_exit_codes() {
    troupe()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("up").and(predicate::str::contains("Exit codes")));
    troupe()
        .args(["up", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Ctrl-C").and(predicate::str::contains("--state-dir")));
}

#[test]
fn an_invalid_spec_is_reported_with_its_place_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.toml");
    std::fs::write(&spec, "[clusters.main]\nnodes = 3\nbianry = \"etcd\"\n").unwrap();
    for cmd in ["check", "up"] {
        troupe().arg(cmd).arg(&spec).assert().code(2).stderr(
            predicate::str::contains("bad.toml:3:1")
                .and(predicate::str::contains("key `clusters.main.bianry`"))
                .and(predicate::str::contains("did you mean `binary`?")),
        );
    }
    assert!(
        !dir.path().join(".troupe").exists(),
        "an invalid spec created a state dir"
    );
}

#[test]
fn check_accepts_the_etcd_example() {
    troupe()
        .arg("check")
        .arg(etcd_spec())
        .assert()
        .success()
        .stdout(predicate::str::contains("ok (1 cluster, 3 nodes)"));
}

#[test]
fn certs_writes_the_gen_certs_layout_with_private_keys() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    troupe()
        .args([
            "certs",
            "--cluster",
            "cluster-a",
            "--cluster",
            "cluster-b",
            "--cluster",
            "cluster-c",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut expected = vec!["ca.key".to_string(), "ca.pem".into()];
    for c in ["cluster-a", "cluster-b", "cluster-c"] {
        for kind in ["client", "server"] {
            expected.push(format!("{c}-{kind}.key"));
            expected.push(format!("{c}-{kind}.pem"));
        }
    }
    expected.sort();
    assert_eq!(names, expected);
    let mode = std::fs::metadata(out.join("cluster-b-client.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    troupe()
        .args(["certs", "--cluster", "a", "--key-type", "dsa", "--out"])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("p256"));
}

#[test]
fn sigkill_of_troupe_up_leaves_no_node_alive() {
    let dir = tempfile::tempdir().unwrap();
    let mut up = Up::spawn(&etcd_spec(), &dir.path().join("state"));
    let d = up.ready(Duration::from_secs(60));
    let pids: Vec<u32> = d
        .nodes
        .iter()
        .map(|n| n.pid.expect("ready nodes have pids"))
        .collect();
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|p| alive(*p)));
    kill(up.pid(), Signal::SIGKILL).unwrap();
    up.child.wait().unwrap();
    wait_until(
        Duration::from_secs(10),
        "every etcd to die with troupe",
        || pids.iter().all(|p| !alive(*p)),
    );
}

#[test]
fn eight_concurrent_ups_of_one_spec_all_come_up_on_disjoint_ports_and_stop_cleanly() {
    eight_concurrent_ups(&[]);
}

#[test]
fn eight_concurrent_docker_ups_of_one_spec_come_up_on_disjoint_ports_and_leave_no_container() {
    let runs = eight_concurrent_ups(&["--set", "clusters.main.runtime=docker"]);
    for run in runs {
        let label = format!("troupe.run={}", run.expect("each docker run is recorded"));
        assert!(
            container_states(&label).is_empty(),
            "{label} left containers"
        );
    }
}

/// Eight `troupe up ARGS...` of the etcd example at once: disjoint ports, and every node gone
/// after SIGTERM. Returns each run's container label value, if it used containers.
fn eight_concurrent_ups(args: &[&str]) -> Vec<Option<String>> {
    let dir = tempfile::tempdir().unwrap();
    let mut ups: Vec<Up> = (0..8)
        .map(|i| Up::spawn_with(&etcd_spec(), &dir.path().join(format!("run{i}")), args))
        .collect();
    let mut ports = Vec::new();
    let mut pids = Vec::new();
    let mut runs = Vec::new();
    for up in &mut ups {
        let d = up.ready(Duration::from_secs(120));
        runs.push(
            std::fs::read_to_string(up.state.join("docker.run"))
                .ok()
                .map(|r| r.trim().to_string()),
        );
        for n in &d.nodes {
            ports.extend(n.ports.values().copied());
            pids.push(n.pid.unwrap());
        }
    }
    assert_eq!(ports.len(), 8 * 3 * 2);
    let mut unique = ports.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        ports.len(),
        "two runs got the same port: {ports:?}"
    );
    for up in &ups {
        kill(up.pid(), Signal::SIGTERM).unwrap();
    }
    for up in &mut ups {
        let status = up.child.wait().unwrap();
        assert!(
            status.success(),
            "troupe up exited with {status} after SIGTERM"
        );
    }
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "a node survived a graceful stop"
    );
    runs
}

#[test]
fn a_second_up_on_a_running_state_dir_is_refused_and_a_foreign_dir_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut up = Up::spawn(&etcd_spec(), &state);
    up.ready(Duration::from_secs(60));
    troupe()
        .arg("up")
        .arg(etcd_spec())
        .arg("--state-dir")
        .arg(&state)
        .assert()
        .code(4)
        .stderr(
            predicate::str::contains("in use by a running troupe")
                .and(predicate::str::contains(up.child.id().to_string())),
        );

    let foreign = dir.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    troupe()
        .arg("up")
        .arg(etcd_spec())
        .arg("--state-dir")
        .arg(&foreign)
        .assert()
        .code(4)
        .stderr(predicate::str::contains("not made by troupe"));
    assert_eq!(
        std::fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn sigkill_of_troupe_up_also_takes_down_the_grandchildren_of_its_nodes() {
    let fixture = cargo_bin("troupe-fixture");
    assert!(
        fixture.exists(),
        "run the tests with `cargo test --workspace` to build troupe-fixture"
    );
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("forks.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[clusters.fx]
nodes = 2
binary = "{}"
ports = ["main"]
args = ["--fork-grandchild", "--listen", "{{{{ node.addrs.main }}}}"]
[[clusters.fx.ready]]
tcp = "main"
timeout = "10s"
"#,
            fixture.display()
        ),
    )
    .unwrap();
    let mut up = Up::spawn(&spec, &dir.path().join("state"));
    let d = up.ready(Duration::from_secs(30));
    let mut pids = Vec::new();
    for n in &d.nodes {
        pids.push(n.pid.unwrap());
        let log = std::fs::read_to_string(&n.log).unwrap();
        let grandchild: u32 = log
            .lines()
            .find_map(|l| l.strip_prefix("grandchild pid "))
            .and_then(|p| p.trim().parse().ok())
            .expect("the fixture logs its grandchild's pid");
        pids.push(grandchild);
    }
    assert!(pids.iter().all(|p| alive(*p)));
    kill(up.pid(), Signal::SIGKILL).unwrap();
    up.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let survivors: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    // Whatever the verdict, leave nothing behind: these pids are the ones this test started.
    for p in &survivors {
        let _ = kill(Pid::from_raw(*p as i32), Signal::SIGKILL);
    }
    assert!(
        survivors.is_empty(),
        "processes survived SIGKILL of troupe: {survivors:?}"
    );
}

/// The states (`running`, `exited`, ...) of the containers labelled `label`. The Engine must
/// be reachable: this fails, never skips, without it.
fn container_states(label: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "--all", "--filter", &format!("label={label}")])
        .args(["--format", "{{.State}}"])
        .output()
        .expect("the docker client runs");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The run's containers, networks and volumes (`docker ps|network ls|volume ls` filtered by
/// `label`), one `kind name` line each. The Engine must be reachable: this fails, never skips,
/// without it.
fn docker_objects(label: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (kind, args) in [
        ("container", ["ps", "--all", "--format", "{{.Names}}"]),
        ("network", ["network", "ls", "--format", "{{.Name}}"]),
        ("volume", ["volume", "ls", "--format", "{{.Name}}"]),
    ] {
        let out = Command::new("docker")
            .args(args)
            .args(["--filter", &format!("label={label}")])
            .output()
            .expect("the docker client runs");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(|l| format!("{kind} {l}")),
        );
    }
    found
}

/// A two-node docker spec of the fixture (which forks a grandchild), on the host's network or
/// on a network of the run's own.
fn docker_fixture_spec(dir: &Path, network: &str) -> PathBuf {
    let fixture = cargo_bin("troupe-fixture");
    let spec = dir.join(format!("docker-{network}.toml"));
    std::fs::write(
        &spec,
        format!(
            r#"
[clusters.fx]
nodes = 2
binary = "{}"
runtime = "docker"
network = "{network}"
ports = ["main"]
args = ["--fork-grandchild", "--listen", "{{{{ node.addrs.main }}}}"]
[[clusters.fx.ready]]
tcp = "main"
timeout = "30s"
"#,
            fixture.display()
        ),
    )
    .unwrap();
    spec
}

/// Waits (bounded) until nothing labelled with the run is left on the Engine.
fn wait_nothing_left(run: &str, what: &str) {
    let label = format!("troupe.run={}", run.trim());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = docker_objects(&label);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what} left {left:?}");
        std::thread::sleep(Duration::from_millis(100)); // a poll interval under a deadline
    }
}

/// Containers are children of the Engine, not of troupe: when a foreground `troupe up` is
/// SIGKILLed, its keeper kills their first processes and asks the Engine to remove every
/// container and then the network, so nothing labelled with the run is left, with no later
/// `up` or `down --force`.
fn sigkill_of_foreground_up_leaves_nothing(network: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spec = docker_fixture_spec(dir.path(), network);
    let state = dir.path().join("state");
    let mut up = Up::spawn(&spec, &state);
    up.ready(Duration::from_secs(60));
    let run = std::fs::read_to_string(state.join("docker.run")).expect("the run is recorded");
    let label = format!("troupe.run={}", run.trim());
    let mut objects = docker_objects(&label);
    objects.sort();
    let networks = usize::from(network == "namespaces");
    assert_eq!(objects.len(), 2 + networks, "{objects:?}");
    assert_eq!(container_states(&label), ["running", "running"]);
    kill(up.pid(), Signal::SIGKILL).unwrap();
    up.child.wait().unwrap();
    wait_nothing_left(&run, "SIGKILL of troupe up");
    // Nothing for `down --force` to do, and it says so without failing.
    troupe()
        .args(["down", "--force", "--state-dir"])
        .arg(&state)
        .assert()
        .success();
}

#[test]
fn sigkill_of_troupe_up_on_docker_leaves_no_container() {
    sigkill_of_foreground_up_leaves_nothing("host");
}

#[test]
fn sigkill_of_troupe_up_on_docker_namespaces_leaves_no_container_or_network() {
    sigkill_of_foreground_up_leaves_nothing("namespaces");
}

/// The same for `troupe up --detach`: SIGKILL of the supervisor it left running.
fn sigkill_of_detached_supervisor_leaves_nothing(network: &str) {
    let dir = tempfile::tempdir().unwrap();
    let spec = docker_fixture_spec(dir.path(), network);
    let state = dir.path().join("state");
    troupe()
        .arg("up")
        .arg(&spec)
        .arg("--detach")
        .arg("--state-dir")
        .arg(&state)
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let text = std::fs::read_to_string(state.join("cluster.json")).expect("a descriptor");
    let d: Descriptor = serde_json::from_str(&text).unwrap();
    let run = std::fs::read_to_string(state.join("docker.run")).expect("the run is recorded");
    let label = format!("troupe.run={}", run.trim());
    assert_eq!(container_states(&label), ["running", "running"]);
    kill(Pid::from_raw(d.supervisor_pid as i32), Signal::SIGKILL).unwrap();
    wait_nothing_left(&run, "SIGKILL of the detached supervisor");
}

#[test]
fn sigkill_of_up_detach_supervisor_on_docker_leaves_no_container() {
    sigkill_of_detached_supervisor_leaves_nothing("host");
}

#[test]
fn sigkill_of_up_detach_supervisor_on_docker_namespaces_leaves_no_container_or_network() {
    sigkill_of_detached_supervisor_leaves_nothing("namespaces");
}

#[test]
fn sigterm_right_after_ready_stops_troupe_up_instead_of_being_swallowed() {
    let fixture = cargo_bin("troupe-fixture");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("quick.toml");
    std::fs::write(
        &spec,
        format!(
            "[clusters.fx]\nnodes = 1\nbinary = \"{}\"\nports = [\"main\"]\nargs = [\"--listen\", \"{{{{ node.addrs.main }}}}\"]\n[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"10s\"\n",
            fixture.display()
        ),
    )
    .unwrap();
    // The race needs the signal to land while the start is finishing: try a few times.
    for round in 0..5 {
        let mut up = Up::spawn(&spec, &dir.path().join(format!("state{round}")));
        up.ready(Duration::from_secs(30));
        kill(up.pid(), Signal::SIGTERM).unwrap();
        wait_until(
            Duration::from_secs(10),
            "troupe up to exit after SIGTERM",
            || up.child.try_wait().unwrap().is_some(),
        );
    }
}

/// SIGTERM to `troupe up --detach` at any moment, even before its supervisor exists, leaves no
/// supervisor behind: a signal that lands before the spawn is remembered and passed on.
#[test]
fn sigterm_to_up_detach_at_any_moment_leaves_no_supervisor_behind() {
    let fixture = cargo_bin("troupe-fixture");
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("slow.toml");
    std::fs::write(
        &spec,
        format!(
            "[clusters.fx]\nnodes = 1\nbinary = \"{}\"\nports = [\"main\"]\nargs = [\"--ready-after\", \"3000\", \"--listen\", \"{{{{ node.addrs.main }}}}\"]\n[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"20s\"\n",
            fixture.display()
        ),
    )
    .unwrap();
    // The supervisors of this test, found by their state directory (read only; nothing is
    // signalled by pattern).
    let supervisors = |state: &Path| -> Vec<u32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("--ready-fd") && c.contains(&*state.to_string_lossy())
                })
            })
            .collect()
    };
    // Signal moments swept across the start, the spawn of the supervisor among them.
    for (round, delay_us) in (0..60u64).map(|i| i * 150).enumerate() {
        let state = dir.path().join(format!("state{round}"));
        let mut child = Command::new(cargo_bin("troupe"))
            .arg("up")
            .arg(&spec)
            .arg("--detach")
            .arg("--state-dir")
            .arg(&state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(delay_us)); // the moment of the signal, not a wait
        kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
        wait_until(
            Duration::from_secs(20),
            "troupe up --detach to exit",
            || child.try_wait().unwrap().is_some(),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut left = supervisors(&state);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            left = supervisors(&state);
        }
        if !left.is_empty() {
            // Ours, by pid: stop them (their nodes go with them) before failing.
            for pid in &left {
                let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
            }
            panic!("SIGTERM after {delay_us} µs left supervisors {left:?} running");
        }
    }
}

#[test]
fn a_signal_early_in_troupe_run_interrupts_it_instead_of_killing_it() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("long.toml");
    std::fs::write(
        &scenario,
        "[[step]]\nname = \"wait a while\"\nsleep = \"30s\"\n",
    )
    .unwrap();
    let out = dir.path().join("out.log");
    let mut child = Command::new(cargo_bin("troupe"))
        .arg("run")
        .arg(&scenario)
        // An interrupted run keeps its directory: keep it in the test's.
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // As soon as the step has started: the handlers must already be in place.
    wait_until(Duration::from_secs(10), "the step to start", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("wait a while")
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    wait_until(Duration::from_secs(10), "troupe run to exit", || {
        child.try_wait().unwrap().is_some()
    });
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "troupe run died of the signal instead of stopping"
    );
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("(interrupted)")
    );
}

#[test]
fn until_and_converge_steps_capture_what_they_waited_for() {
    let fixture = cargo_bin("troupe-fixture");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fx.toml"),
        format!(
            "[clusters.fx]\nnodes = 2\nbinary = \"{}\"\nports = [\"main\"]\nargs = [\"--listen\", \"{{{{ node.addrs.main }}}}\"]\n[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"10s\"\n",
            fixture.display()
        ),
    )
    .unwrap();
    let count = dir.path().join("attempts");
    let scenario = dir.path().join("capture.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"
[[step]]
name = "up"
up = "fx.toml"

[[step]]
name = "third time lucky"
until = 'n=$(( $(cat {count} 2>/dev/null || echo 0) + 1 )); echo $n > {count}; echo "try $n"; [ $n -ge 3 ]'
interval = "5ms"
capture = "TRIES"

[[step]]
name = "every node sees the same cluster"
converge = "echo cluster-{{{{ node.cluster }}}}"
capture = "AGREED"

[[step]]
name = "both were captured"
sh = 'test "$TRIES" = "try 3" && test "{{{{ vars.AGREED }}}}" = "cluster-fx"'

[[finally]]
name = "down"
down = true
"#,
            count = count.display()
        ),
    )
    .unwrap();
    let out = Command::new(cargo_bin("troupe"))
        .arg("run")
        .arg(&scenario)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[path = "../../troupe/tests/common/swarm.rs"]
mod swarm;

/// What a SIGKILLed troupe's keeper could not remove (here: the keeper is killed first, as if
/// the Engine had been unreachable when troupe died) the next `up` on that state directory,
/// and `down --force`, remove by the crashed run's label; Ctrl-C of a foreground `up` removes
/// its own.
#[test]
fn a_crashed_swarm_run_is_removed_by_the_next_up_and_by_down_force_and_ctrl_c_removes_its_own() {
    let _swarm = swarm::Swarm::join();
    let image = swarm::nats_image();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("swarm.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[clusters.crash]
nodes = 2
binary = "nats-server"
runtime = "swarm"
image = "{image}"
ports = ["client"]
args = ["--addr", "{{{{ node.bind }}}}", "--port", "{{{{ node.ports.client }}}}"]
[[clusters.crash.ready]]
tcp = "client"
timeout = "60s"
"#
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    // Should the test fail half-way, what its runs left still goes (before the swarm does,
    // which would leave the volumes), by the state directory's run record.
    struct DownForce(PathBuf);
    impl Drop for DownForce {
        fn drop(&mut self) {
            let _ = Command::new(cargo_bin("troupe"))
                .args(["down", "--force", "--state-dir"])
                .arg(&self.0)
                .output();
        }
    }
    let _down = DownForce(state.clone());
    let run_of = |state: &Path| {
        let run = std::fs::read_to_string(state.join("swarm.run")).expect("the run is recorded");
        format!("troupe.run={}", run.trim())
    };
    let crash = |state: &Path| {
        let mut up = Up::spawn(&spec, state);
        // A stopped run's cluster.json stays; its run record does not.
        wait_until(Duration::from_secs(90), "up to be ready", || {
            state.join("swarm.run").exists() && state.join("cluster.json").exists()
        });
        let label = run_of(state);
        // troupe's only child here is its keeper (the tasks are the Engine's).
        let keepers = children(up.pid());
        assert_eq!(keepers.len(), 1, "one keeper: {keepers:?}");
        kill(keepers[0], Signal::SIGKILL).unwrap();
        kill(up.pid(), Signal::SIGKILL).unwrap();
        up.child.wait().unwrap();
        let left = swarm::labelled(&label);
        assert!(
            left.len() >= 4,
            "a crashed run leaves its services: {left:?}"
        );
        label
    };

    // The next `up` removes the crashed run's objects before it starts its own.
    let crashed = crash(&state);
    let mut up = Up::spawn(&spec, &state);
    // The crashed run's cluster.json is there until the new up opens the directory: wait for
    // the new run's record and then its descriptor.
    wait_until(Duration::from_secs(90), "the next up to be ready", || {
        state.join("swarm.run").exists()
            && run_of(&state) != crashed
            && state.join("cluster.json").exists()
    });
    let left = swarm::labelled(&crashed);
    assert!(
        left.is_empty(),
        "the next up removed the crashed run: {left:?}"
    );
    let label = run_of(&state);
    assert_ne!(label, crashed);
    // Ctrl-C: a graceful down of everything the run made.
    kill(up.pid(), Signal::SIGINT).unwrap();
    let status = up.child.wait().unwrap();
    assert!(
        status.code().is_some(),
        "troupe up exits after Ctrl-C: {status:?}"
    );
    let left = swarm::labelled(&label);
    assert!(left.is_empty(), "Ctrl-C left: {left:?}");

    // `down --force` removes a crashed run's objects too.
    let crashed = crash(&state);
    troupe()
        .args(["down", "--force", "--state-dir"])
        .arg(&state)
        .assert()
        .success();
    let left = swarm::labelled(&crashed);
    assert!(left.is_empty(), "down --force left: {left:?}");
}

/// The children of `pid`, from /proc (read only).
fn children(pid: Pid) -> Vec<Pid> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        found.extend(
            list.split_whitespace()
                .map(|c| Pid::from_raw(c.parse().unwrap())),
        );
    }
    found
}

/// SIGKILL of a foreground `troupe up` and of `up --detach`'s supervisor on a swarm: the keeper
/// deletes every service, config, secret, volume and the network of the run (and the tasks'
/// containers go with their services), checked by label.
#[test]
fn sigkill_of_troupe_up_on_swarm_leaves_nothing_labelled_with_the_run() {
    let _swarm = swarm::Swarm::join();
    let image = swarm::nats_image();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("swarm.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[tls]
[clusters.killed]
nodes = 2
binary = "nats-server"
runtime = "swarm"
image = "{image}"
ports = ["client"]
args = ["--addr", "{{{{ node.bind }}}}", "--port", "{{{{ node.ports.client }}}}",
  "--tlscert", "{{{{ node.tls.cert }}}}", "--tlskey", "{{{{ node.tls.key }}}}"]
[[clusters.killed.ready]]
tcp = "client"
timeout = "60s"
"#
        ),
    )
    .unwrap();
    let label_of = |state: &Path| {
        let run = std::fs::read_to_string(state.join("swarm.run")).expect("the run is recorded");
        format!("troupe.run={}", run.trim())
    };
    let nothing_left = |label: &str, after: &str| {
        wait_until(Duration::from_secs(60), after, || {
            swarm::labelled(label).is_empty()
        });
    };

    let state = dir.path().join("foreground");
    let mut up = Up::spawn(&spec, &state);
    wait_until(Duration::from_secs(90), "up to be ready", || {
        state.join("swarm.run").exists() && state.join("cluster.json").exists()
    });
    let label = label_of(&state);
    let made = swarm::labelled(&label);
    for kind in ["service", "network", "config", "secret", "volume"] {
        assert!(
            made.iter().any(|o| o.starts_with(kind)),
            "the run made a {kind}: {made:?}"
        );
    }
    kill(up.pid(), Signal::SIGKILL).unwrap();
    up.child.wait().unwrap();
    nothing_left(&label, "the keeper to remove the foreground run's objects");

    let state = dir.path().join("detached");
    troupe()
        .arg("up")
        .arg(&spec)
        .arg("--detach")
        .arg("--state-dir")
        .arg(&state)
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let text = std::fs::read_to_string(state.join("cluster.json")).expect("a descriptor");
    let d: Descriptor = serde_json::from_str(&text).unwrap();
    let label = label_of(&state);
    assert!(!swarm::labelled(&label).is_empty());
    kill(Pid::from_raw(d.supervisor_pid as i32), Signal::SIGKILL).unwrap();
    nothing_left(&label, "the keeper to remove the detached run's objects");
}
