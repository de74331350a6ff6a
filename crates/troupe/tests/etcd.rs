//! Real etcd, through the library: the 3-member mTLS example comes up, serves clients that
//! hold a certificate from its CA, refuses the others, and keeps data across a restart.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use troupe::{Cluster, Node};
use troupe_spec::KeyType;

fn etcdctl(node: &Node, ca: &Path, cert: Option<(&Path, &Path)>, args: &[&str]) -> Output {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", node.url("client")))
        .arg(format!("--cacert={}", ca.display()))
        .args(["--dial-timeout=2s", "--command-timeout=3s"]);
    if let Some((c, k)) = cert {
        cmd.arg(format!("--cert={}", c.display()))
            .arg(format!("--key={}", k.display()));
    }
    cmd.args(args)
        .output()
        .expect("etcdctl is installed (apt-get install etcd-client)")
}

fn own_cert(n: &Node) -> Option<(&Path, &Path)> {
    Some((n.tls().client_cert.as_path(), n.tls().client_key.as_path()))
}

#[test]
fn mtls_etcd_serves_its_own_clients_refuses_others_and_keeps_data_across_restart() {
    let cluster =
        Cluster::start(common::example("etcd/cluster.toml")).expect("etcd cluster starts");
    let ca = cluster.ca().expect("tls is on").to_path_buf();
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 3);

    let put = etcdctl(
        &nodes[0],
        &ca,
        own_cert(&nodes[0]),
        &["put", "greeting", "hello"],
    );
    assert!(
        put.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    for n in &nodes[1..] {
        let get = etcdctl(
            n,
            &ca,
            own_cert(n),
            &["get", "greeting", "--print-value-only"],
        );
        assert!(
            get.status.success(),
            "get via {} failed: {}",
            n.name(),
            String::from_utf8_lossy(&get.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&get.stdout).trim(),
            "hello",
            "read via {}",
            n.name()
        );
    }

    // No client certificate: refused.
    let anon = etcdctl(&nodes[1], &ca, None, &["get", "greeting"]);
    assert!(
        !anon.status.success(),
        "a client without a certificate was served"
    );

    // A certificate from another CA: refused.
    let foreign = tempfile::tempdir().unwrap();
    troupe::pki::write_cluster_certs(foreign.path(), &["foreign".into()], KeyType::P256).unwrap();
    let (fc, fk) = (
        foreign.path().join("foreign-client.pem"),
        foreign.path().join("foreign-client.key"),
    );
    let stranger = etcdctl(&nodes[2], &ca, Some((&fc, &fk)), &["get", "greeting"]);
    assert!(
        !stranger.status.success(),
        "a client with a foreign CA's certificate was served"
    );

    // Kill a member, start it again: same ports, same data.
    let before = cluster.node("main-2").unwrap();
    cluster.kill("main-2").unwrap();
    assert_eq!(
        cluster.node("main-2").unwrap().state(),
        troupe::NodeState::Killed
    );
    assert!(!common::alive(before.pid().unwrap()));
    cluster.start_node("main-2").unwrap();
    let after = cluster.node("main-2").unwrap();
    assert_eq!(after.port("client"), before.port("client"));
    assert_ne!(after.pid(), before.pid());
    let get = etcdctl(
        &after,
        &ca,
        own_cert(&after),
        &["get", "greeting", "--print-value-only"],
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");

    let pids: Vec<u32> = cluster.nodes().iter().filter_map(Node::pid).collect();
    let state_dir = cluster.state_dir().to_path_buf();
    cluster.stop();
    for pid in pids {
        assert!(!common::alive(pid), "etcd pid {pid} survived stop");
    }
    assert!(
        !state_dir.exists(),
        "a passing test's temporary state dir is removed"
    );
}

#[test]
fn pausing_the_leader_elects_another_and_selectors_follow_the_roles() {
    let cluster =
        Cluster::start(common::example("etcd/cluster.toml")).expect("etcd cluster starts");
    let old = cluster
        .wait_leader("main", Duration::from_secs(10))
        .unwrap();
    assert_eq!(cluster.select("main:leader").unwrap(), vec![old.clone()]);
    let followers = cluster.select("main:followers").unwrap();
    assert_eq!(followers.len(), 2);
    assert!(!followers.contains(&old));
    assert_eq!(cluster.select("main:majority").unwrap().len(), 2);
    assert_eq!(
        cluster.select("main:minority").unwrap(),
        vec!["main-3".to_string()]
    );
    assert_eq!(cluster.select("main").unwrap().len(), 3);
    let err = cluster.select("main:leeder").unwrap_err();
    assert!(matches!(err, troupe::Error::Target { .. }), "{err:?}");
    assert!(
        err.to_string().contains("unknown selector `leeder`"),
        "{err}"
    );

    assert_eq!(cluster.pause("main:leader").unwrap(), vec![old.clone()]);
    assert_eq!(
        cluster.node(&old).unwrap().state(),
        troupe::NodeState::Paused
    );
    let new = cluster
        .wait_new_leader("main", &old, Duration::from_secs(10))
        .unwrap();
    assert_ne!(new, old);
    let status = cluster.cluster_status("main").unwrap();
    let failover = status.failovers.last().expect("a failover is recorded");
    assert_eq!(
        (failover.from.as_str(), failover.cause.as_str()),
        (old.as_str(), "pause")
    );
    assert_eq!(failover.to.as_deref(), Some(new.as_str()));
    assert!(failover.ms.is_some_and(|ms| ms > 0.0));
    assert!(status.formation_ms.is_some());

    cluster.resume(&old).unwrap();
    let back = cluster.node(&old).unwrap();
    assert_eq!(back.state(), troupe::NodeState::Ready);
    // The resumed member rejoins as a follower and serves reads again.
    let ca = cluster.ca().unwrap().to_path_buf();
    let put = etcdctl(
        &cluster.node(&new).unwrap(),
        &ca,
        own_cert(&back),
        &["put", "after-pause", "1"],
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let get = etcdctl(
        &back,
        &ca,
        own_cert(&back),
        &["get", "after-pause", "--print-value-only"],
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "1");
}

/// The etcd client of workloads, over mTLS, through a leader kill and restart: every call is
/// recorded, the history is linearizable, and calls during the election fail or are unknown
/// instead of hanging.
#[test]
fn an_etcd_register_workload_through_a_leader_kill_is_linearizable() {
    use troupe::workload::{ClientSpec, Model, WorkloadSpec};
    let cluster =
        Cluster::start(common::example("etcd/cluster.toml")).expect("etcd cluster starts");
    for model in [Model::Register, Model::Kv] {
        let spec = WorkloadSpec::new(model, ClientSpec::etcd())
            .processes(6)
            .keys(3)
            .timeout(Duration::from_secs(1))
            .duration(Duration::from_secs(4))
            .seed(1);
        let w = cluster.workload(spec).unwrap();
        let old = cluster.kill("main:leader").unwrap();
        cluster.start_node(&old[0]).unwrap();
        cluster
            .wait_ready(None, Duration::from_secs(30))
            .expect("the old leader rejoins");
        let history = w.wait().unwrap();
        let ok = history
            .ops
            .iter()
            .filter(|o| o.kind == troupe::history::OpType::Ok)
            .count();
        let errors: Vec<_> = history
            .ops
            .iter()
            .filter_map(|o| o.error.clone())
            .take(5)
            .collect();
        assert!(
            ok > 50,
            "{model}: only {ok} of {} calls succeeded in {:?}; errors: {errors:?}",
            history.calls(),
            history.elapsed
        );
        let budget = troupe::verify::Budget::new(Duration::from_secs(60), 50_000_000);
        let verdict = history.check(budget).unwrap();
        assert_eq!(verdict.valid(), Some(true), "{model}: {verdict}");
    }
}
