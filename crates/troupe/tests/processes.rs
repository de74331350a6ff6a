//! Hostile processes, played by `troupe-fixture`: a node that crashes at start, one that never
//! becomes ready, one that ignores SIGTERM, one that forks a grandchild. Each is handled and
//! nothing is left running.

mod common;

use std::time::Duration;

use troupe::{Cluster, Error, NodeState, StartReason};

fn spec(args: &str, extra: &str) -> String {
    format!(
        r#"
[clusters.fx]
nodes = 1
binary = "{bin}"
ports = ["main"]
args = [{args}]
{extra}
"#,
        bin = common::fixture_bin().display()
    )
}

fn start_failure(spec_text: String) -> troupe::StartFailure {
    match Cluster::from_toml("fixture.toml", spec_text).start() {
        Err(Error::Start(f)) => *f,
        Err(other) => panic!("expected a start failure, got {other:?}"),
        Ok(_) => panic!("the cluster started"),
    }
}

#[test]
fn a_node_that_crashes_at_start_fails_the_start_at_once_with_its_exit_code_and_log() {
    let f = start_failure(spec(
        r#""--exit-after", "20", "--exit-code", "3""#,
        "[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"60s\"",
    ));
    assert_eq!(f.node, "fx-1");
    match &f.reason {
        StartReason::Exited { status } => assert_eq!(status, "exit code 3"),
        other => panic!("expected an early exit, got {other:?}"),
    }
    assert!(
        f.log_tail.iter().any(|l| l.contains("exiting with code 3")),
        "{:?}",
        f.log_tail
    );
    let text = f.to_string();
    assert!(
        text.contains("node `fx-1` exited before it was ready (exit code 3)"),
        "{text}"
    );
}

#[test]
fn a_node_that_never_becomes_ready_times_out_with_what_was_last_seen_and_is_stopped() {
    let f = start_failure(spec(
        "",
        "[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"300ms\"",
    ));
    match &f.reason {
        StartReason::Timeout { probe, last, .. } => {
            assert!(probe.contains("tcp connect"), "{probe}");
            assert!(last.contains("refused"), "{last}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let log = f.log_tail.join("\n");
    let pid = common::pid_from_log(&log, "fixture started, pid ");
    assert!(
        !common::alive(pid),
        "the node that never became ready is still running"
    );
}

#[test]
fn a_node_that_ignores_sigterm_is_killed_after_its_grace_period() {
    let cluster = Cluster::from_toml(
        "fixture.toml",
        spec(
            r#""--ignore-sigterm", "--listen", "{{ node.addrs.main }}""#,
            "[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"10s\"\n[clusters.fx.stop]\ngrace = \"200ms\"",
        ),
    )
    .start()
    .unwrap();
    let node = cluster.node("fx-1").unwrap();
    let pid = node.pid().unwrap();
    common::wait_until(
        Duration::from_secs(5),
        "the fixture to ignore SIGTERM",
        || {
            std::fs::read_to_string(node.log())
                .unwrap_or_default()
                .contains("ignoring SIGTERM")
        },
    );
    cluster.stop_node("fx-1").unwrap();
    let after = cluster.node("fx-1").unwrap();
    assert_eq!(after.state(), NodeState::Stopped);
    assert_eq!(after.0.exit.as_deref(), Some("killed by SIGKILL"));
    assert!(!common::alive(pid));
}

#[test]
fn a_node_that_forks_a_grandchild_leaves_nothing_behind() {
    let cluster = Cluster::from_toml(
        "fixture.toml",
        spec(
            r#""--fork-grandchild", "--listen", "{{ node.addrs.main }}""#,
            "[[clusters.fx.ready]]\nlog = 'fixture ready'\ntimeout = \"10s\"",
        ),
    )
    .start()
    .unwrap();
    let node = cluster.node("fx-1").unwrap();
    let log = std::fs::read_to_string(node.log()).unwrap();
    let grandchild = common::pid_from_log(&log, "grandchild pid ");
    assert!(common::alive(grandchild));
    let pid = node.pid().unwrap();
    cluster.stop();
    assert!(!common::alive(pid));
    common::wait_until(Duration::from_secs(5), "the grandchild to be gone", || {
        !std::path::Path::new(&format!("/proc/{grandchild}")).exists()
    });
}

#[test]
fn templates_render_args_and_config_files_per_node() {
    let text = format!(
        r#"
[clusters.fx]
nodes = 2
binary = "{bin}"
ports = ["main"]
args = ["--say", "{{{{ node.name }}}} of {{{{ cluster.size }}}}: {{{{ cluster.nodes | each('{{{{ name }}}}') | join(',') }}}}", "--listen", "{{{{ node.addrs.main }}}}"]
[clusters.fx.files."node.conf"]
template = '''
name = "{{{{ node.name }}}}"
port = {{{{ node.ports.main }}}}
'''
[[clusters.fx.ready]]
tcp = "main"
timeout = "10s"
"#,
        bin = common::fixture_bin().display()
    );
    let cluster = Cluster::from_toml("fixture.toml", text).start().unwrap();
    for (i, node) in cluster.nodes().iter().enumerate() {
        let log = std::fs::read_to_string(node.log()).unwrap();
        assert!(
            log.contains(&format!("fx-{} of 2: fx-1,fx-2", i + 1)),
            "{log}"
        );
        let conf =
            std::fs::read_to_string(node.data_dir().parent().unwrap().join("node.conf")).unwrap();
        assert_eq!(
            conf,
            format!("name = \"fx-{}\"\nport = {}\n", i + 1, node.port("main"))
        );
    }
}

/// Start time of a process in clock ticks since boot (`/proc/<pid>/stat` field 22).
fn start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Clusters that do not depend on each other start together: here each is ready only once
/// the other has printed its first line, which a one-after-the-other start never sees.
#[test]
fn independent_clusters_start_together() {
    let fixture = common::fixture_bin().display().to_string();
    let cluster = |name: &str, other: &str| {
        format!(
            r#"
[clusters.{name}]
nodes = 1
binary = "{fixture}"
[[clusters.{name}.ready]]
command = ["grep", "-q", "fixture started", "{{{{ clusters.{other}.nodes[0].log }}}}"]
timeout = "10s"
"#
        )
    };
    let text = format!("{}{}", cluster("left", "right"), cluster("right", "left"));
    let c = Cluster::from_toml("together.toml", text).start().unwrap();
    assert_eq!(c.nodes().len(), 2);
}

#[test]
fn a_cluster_starts_after_the_clusters_it_depends_on_and_sees_their_endpoints() {
    let fixture = common::fixture_bin().display().to_string();
    let spec = troupe::SpecBuilder::new("deps")
        // Declared first, but waits for `db`.
        .cluster("app", |c| {
            c.nodes(1)
                .binary(&fixture)
                .after("db")
                .args(["--say", "db at {{ clusters.db.nodes[0].addrs.main }}"])
                .ports(["main"])
                .ready_log("fixture started", "10s")
        })
        .cluster("db", |c| {
            c.nodes(2)
                .binary(&fixture)
                .args(["--ready-after", "300", "--listen", "{{ node.addrs.main }}"])
                .ports(["main"])
                .ready_tcp("main", "10s")
        })
        .build()
        .unwrap();
    let cluster = troupe::Cluster::from_spec(spec).start().unwrap();
    let names: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| n.name().to_string())
        .collect();
    assert_eq!(names, ["db-1", "db-2", "app-1"], "start order");
    let db = cluster.node("db-1").unwrap();
    let app = cluster.node("app-1").unwrap();
    let log = std::fs::read_to_string(app.log()).unwrap();
    assert!(log.contains(&format!("db at {}", db.addr("main"))), "{log}");
    // `db` needs 300 ms to become ready, and `app` may only start after that.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    let gap = start_ticks(app.pid().unwrap()).saturating_sub(start_ticks(db.pid().unwrap()));
    assert!(
        gap * 1000 / hz >= 250,
        "app started {}ms after db",
        gap * 1000 / hz
    );
}

#[test]
fn a_cluster_can_run_its_nodes_as_another_user_who_owns_their_directory() {
    use std::os::unix::fs::MetadataExt;
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts nodes as `nobody`, which needs root (CI runs as root)"
    );
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let cluster = Cluster::from_toml(
        "fixture.toml",
        spec(
            r#""--listen", "{{ node.addrs.main }}""#,
            "user = \"nobody\"\n[[clusters.fx.ready]]\ntcp = \"main\"\ntimeout = \"10s\"",
        ),
    )
    .start()
    .unwrap();
    let node = cluster.node("fx-1").unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", node.pid().unwrap())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == nobody.uid.to_string()),
        "{uid_line}"
    );
    assert_eq!(
        std::fs::metadata(node.data_dir()).unwrap().uid(),
        nobody.uid.as_raw()
    );
    assert_eq!(
        std::fs::metadata(node.log()).unwrap().uid(),
        nobody.uid.as_raw()
    );
}

/// The regression: dropping a cluster stopped every node gracefully (SIGTERM, hand-overs,
/// about 2 s for etcd) in every test. Now it kills at once; `stop()` is the graceful way.
#[test]
fn dropping_a_cluster_kills_at_once_and_stop_is_graceful() {
    let text = r#"
[clusters.sh]
nodes = 2
binary = "sh"
args = ["-c", "trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 0.05; done"]

[[clusters.sh.ready]]
log = "^up$"
timeout = "10s"

[clusters.sh.stop]
grace = "30s"
"#;
    let cluster = Cluster::from_toml("drop.toml", text)
        .keep_state_dir(true)
        .start()
        .unwrap();
    let nodes = cluster.nodes();
    let pids: Vec<u32> = nodes.iter().filter_map(|n| n.pid()).collect();
    let logs: Vec<std::path::PathBuf> = nodes.iter().map(|n| n.log().to_path_buf()).collect();
    let dir = cluster.state_dir().to_path_buf();
    drop(cluster);
    for (pid, log) in pids.iter().zip(&logs) {
        assert!(!common::alive(*pid), "node {pid} is gone when drop returns");
        let text = std::fs::read_to_string(log).unwrap();
        assert!(
            !text.contains("got TERM"),
            "killed, not asked to stop: {text}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);

    let cluster = Cluster::from_toml("stop.toml", text)
        .keep_state_dir(true)
        .start()
        .unwrap();
    let logs: Vec<std::path::PathBuf> = cluster
        .nodes()
        .iter()
        .map(|n| n.log().to_path_buf())
        .collect();
    let dir = cluster.state_dir().to_path_buf();
    cluster.stop();
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("got TERM"), "stop() is graceful: {text}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_async_cluster_is_driven_from_a_tokio_test() {
    let text = r#"
[clusters.sh]
nodes = 2
binary = "sleep"
args = ["1000"]
"#;
    let cluster = Cluster::from_toml("async.toml", text)
        .start_async()
        .await
        .unwrap();
    let killed = cluster.kill("sh-1").await.unwrap();
    assert_eq!(killed, ["sh-1"]);
    assert_eq!(cluster.node("sh-1").unwrap().state(), NodeState::Killed);
    cluster.start_node("sh-1").await.unwrap();
    cluster
        .wait_ready(None, Duration::from_secs(10))
        .await
        .unwrap();
    let pid = cluster.node("sh-1").unwrap().pid().unwrap();
    drop(cluster);
    assert!(!common::alive(pid));
}
