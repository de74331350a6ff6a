//! What real systems needed that troupe lacked, each against the fixture: files anywhere inside
//! the node's directory, peers by name (`nodes["fx-2"]`), bootstrap lists (`cluster.addrs.PORT`,
//! `TROUPE_<CLUSTER>_<PORT>_ADDRS`), bare `host:port` URLs for ports with no URL scheme, fixed
//! ports, bootstrap steps, cluster-scope role probes and their cost, split brains, and
//! selectors over the nodes that are up. The examples use the same on real servers.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use troupe::Cluster;

fn spec() -> String {
    format!(
        r#"
[clusters.fx]
nodes = 3
binary = "{bin}"
ports = ["api", "quorum"]
schemes = {{ quorum = "none" }}
args = ["--listen", "{{{{ node.addrs.api }}}}"]

[clusters.fx.files."data/myid"]
template = "{{{{ node.index }}}}"

[clusters.fx.files."conf/deep/peers.conf"]
template = '''
second={{{{ nodes["fx-2"].addrs.quorum }}}}
second_by_var={{{{ nodes[cluster.nodes[1].name].ports.api }}}}
bootstrap={{{{ cluster.addrs.api }}}}
quorum_url={{{{ node.urls.quorum }}}}
'''
mode = "0640"

[[clusters.fx.ready]]
tcp = "api"
timeout = "20s"
"#,
        bin = common::fixture_bin().display()
    )
}

#[test]
fn files_in_subdirectories_peers_by_name_and_bootstrap_lists_reach_the_nodes() {
    let cluster = Cluster::from_toml("templates.toml", spec())
        .start()
        .unwrap();
    cluster
        .wait_ready(None, Duration::from_secs(20))
        .expect("ready");
    let d = cluster.descriptor();
    let node = |name: &str| d.nodes.iter().find(|n| n.name == name).unwrap();
    let dir = |name: &str| node(name).data_dir.parent().unwrap().to_path_buf();

    for (i, name) in ["fx-1", "fx-2", "fx-3"].iter().enumerate() {
        let myid = dir(name).join("data/myid");
        assert_eq!(std::fs::read_to_string(&myid).unwrap(), (i + 1).to_string());
    }
    let conf = dir("fx-3").join("conf/deep/peers.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let fx2 = node("fx-2");
    let api: Vec<String> = ["fx-1", "fx-2", "fx-3"]
        .iter()
        .map(|n| format!("127.0.0.1:{}", node(n).ports["api"]))
        .collect();
    let want = format!(
        "second=127.0.0.1:{}\nsecond_by_var={}\nbootstrap={}\nquorum_url=127.0.0.1:{}\n",
        fx2.ports["quorum"],
        fx2.ports["api"],
        api.join(","),
        node("fx-3").ports["quorum"],
    );
    assert_eq!(text.trim_start(), want);
    // The file keeps its mode; the directories troupe made for it are private.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&conf), 0o640);
    assert_eq!(mode(&dir("fx-3").join("conf")), 0o700);
    assert_eq!(mode(&dir("fx-3").join("conf/deep")), 0o700);

    // A port with no URL scheme has a bare host:port URL everywhere; addrs are in the descriptor.
    assert_eq!(
        fx2.urls["quorum"],
        format!("127.0.0.1:{}", fx2.ports["quorum"])
    );
    assert_eq!(
        fx2.urls["api"],
        format!("http://127.0.0.1:{}", fx2.ports["api"])
    );
    assert_eq!(fx2.addrs["api"], format!("127.0.0.1:{}", fx2.ports["api"]));
    let env: std::collections::BTreeMap<String, String> =
        troupe::envvars::vars(&d).into_iter().collect();
    assert_eq!(env["TROUPE_FX_API_ADDRS"], api.join(","));
    assert_eq!(
        env["TROUPE_FX_2_QUORUM_URL"],
        format!("127.0.0.1:{}", fx2.ports["quorum"])
    );
}

#[test]
fn a_peer_that_does_not_exist_is_named_with_the_nodes_that_do() {
    let text = spec().replace(r#"nodes["fx-2"]"#, r#"nodes["fx-9"]"#);
    let err = match Cluster::from_toml("templates.toml", text).start() {
        Err(e) => e,
        Ok(_) => panic!("a template naming fx-9 was accepted"),
    };
    let shown = format!("{:?}", miette::Report::new(err));
    assert!(shown.contains("fx-9"), "{shown}");
    assert!(shown.contains("fx-1, fx-2, fx-3"), "{shown}");
}

/// Three fixture nodes listening on `api`, ready when it accepts, and `extra` TOML after.
fn fx_spec(extra: &str) -> String {
    format!(
        r#"
[clusters.fx]
nodes = 3
binary = "{bin}"
ports = ["api"]
args = ["--listen", "{{{{ node.addrs.api }}}}"]

[[clusters.fx.ready]]
tcp = "api"
timeout = "20s"
{extra}
"#,
        bin = common::fixture_bin().display()
    )
}

/// Every node's role probe answers "leader": a split brain, which `wait_leader` must report as
/// one, never pass. With one claimant it passes and names it.
#[test]
fn two_nodes_that_claim_to_lead_are_a_split_brain_not_a_leader() {
    let spec = |leaders: &str| {
        fx_spec(&format!(
            r#"
[clusters.fx.role]
command = ["echo", "{{{{ node.name }}}}"]
leader = "{leaders}"
interval = "10ms"
"#
        ))
    };
    let one = Cluster::from_toml("one.toml", spec("^fx-2$"))
        .start()
        .unwrap();
    assert_eq!(
        one.wait_leader("fx", Duration::from_secs(10)).unwrap(),
        "fx-2"
    );
    drop(one);

    let split = Cluster::from_toml("split.toml", spec("^fx-[13]$"))
        .start()
        .unwrap();
    let err = split
        .wait_leader("fx", Duration::from_millis(500))
        .unwrap_err()
        .to_string();
    assert!(err.contains("split brain"), "{err}");
    assert!(err.contains("fx-1, fx-3"), "{err}");
    let status = split.descriptor();
    let c = status.clusters.iter().find(|c| c.name == "fx").unwrap();
    assert_eq!(c.leaders, ["fx-1", "fx-3"]);
    // Recorded as a window that is still open.
    assert_eq!(c.split_brains.len(), 1, "{:?}", c.split_brains);
    assert_eq!(c.split_brains[0].nodes, ["fx-1", "fx-3"]);
    assert_eq!(c.split_brains[0].to_ms, None);
}

/// A port the system derives itself (`10000 + node id`) is checked free and locked like the
/// ports troupe allocates: a second run, or another program on it, is refused before anything
/// starts, and says who holds it.
#[test]
fn fixed_ports_are_locked_for_the_run_and_a_collision_is_refused_before_starting() {
    // Below troupe's own range (20000 up to the kernel's ephemeral range, where any outgoing
    // connection may take a port), as the broker's 10000 + id is: a base chosen per test run
    // so that parallel runs of this test do not meet.
    let base = 10000 + (std::process::id() % 3000) * 3;
    let spec = format!(
        r#"
[clusters.fx]
nodes = 2
binary = "{bin}"
ports = ["api", "admin"]
fixed_ports = {{ admin = "{{{{ {base} + node.index }}}}" }}
args = ["--listen", "{{{{ node.addrs.admin }}}}"]

[[clusters.fx.ready]]
tcp = "admin"
timeout = "20s"
"#,
        bin = common::fixture_bin().display()
    );
    let first = Cluster::from_toml("fixed.toml", spec.clone())
        .start()
        .unwrap();
    first.wait_ready(None, Duration::from_secs(20)).unwrap();
    let d = first.descriptor();
    for (i, n) in d.nodes.iter().enumerate() {
        assert_eq!(
            u32::from(n.ports["admin"]),
            base + 1 + i as u32,
            "{}",
            n.name
        );
        assert_ne!(n.ports["api"], n.ports["admin"]);
    }
    let err = match Cluster::from_toml("fixed.toml", spec.clone()).start() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a second run took the first run's fixed ports"),
    };
    assert!(err.contains(&format!("port {}", base + 1)), "{err}");
    assert!(err.contains("another troupe run holds it"), "{err}");
    drop(first);

    // Someone else listens on fx-2's admin port.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", (base + 2) as u16)).unwrap();
    let err = match Cluster::from_toml("fixed.toml", spec.clone()).start() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started on a port another program listens on"),
    };
    assert!(err.contains("`admin` of `fx-2`"), "{err}");
    assert!(err.contains("another program listens on it"), "{err}");
    drop(squatter);
    // The same spec as a variant: `set` moves the derived ports elsewhere.
    let again = Cluster::from_toml("fixed.toml", spec)
        .set(format!(
            "clusters.fx.fixed_ports.admin={{{{ {} + node.index }}}}",
            base + 10
        ))
        .start()
        .unwrap();
    again.wait_ready(None, Duration::from_secs(20)).unwrap();
    assert_eq!(
        u32::from(again.descriptor().nodes[1].ports["admin"]),
        base + 12
    );
}

/// A Raft store whose nodes start uninitialised: `POST /init` on one node, then a step on each
/// node in turn that keeps failing until it has been tried a few times. `start` returns only
/// once all have passed, in order, so the cluster is formed and not merely running.
#[test]
fn bootstrap_steps_run_in_order_and_are_retried_before_the_cluster_counts_as_formed() {
    let spec = fx_spec(
        r#"
[[clusters.fx.bootstrap]]
http = "{{ node.urls.api }}/init"
post = '{"members": "{{ cluster.addrs.api }}"}'
timeout = "10s"

[[clusters.fx.bootstrap]]
on = "each"
command = ["sh", "-c", "n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) > tries; echo {{ node.name }} >> ../order; [ $n -ge 2 ]"]
interval = "1ms"
timeout = "10s"
"#,
    );
    let cluster = Cluster::from_toml("boot.toml", spec).start().unwrap();
    let d = cluster.descriptor();
    let dir = |n: &str| {
        d.nodes
            .iter()
            .find(|x| x.name == n)
            .unwrap()
            .data_dir
            .parent()
            .unwrap()
            .to_path_buf()
    };
    let log = std::fs::read_to_string(dir("fx-1").join("node.log")).unwrap();
    let addrs: Vec<String> = d.nodes.iter().map(|n| n.addrs["api"].clone()).collect();
    assert!(
        log.contains(&format!(
            "fixture got POST /init HTTP/1.1 body={{\"members\": \"{}\"}}",
            addrs.join(",")
        )),
        "{log}"
    );
    for n in ["fx-2", "fx-3"] {
        let other = std::fs::read_to_string(dir(n).join("node.log")).unwrap();
        assert!(!other.contains("POST /init"), "the init step ran on {n}");
    }
    // Each node's step ran until its third try passed, fx-1's before fx-2's before fx-3's.
    let order = std::fs::read_to_string(dir("fx-1").parent().unwrap().join("order")).unwrap();
    let runs: Vec<&str> = order.lines().collect();
    assert_eq!(
        runs,
        [
            "fx-1", "fx-1", "fx-1", "fx-2", "fx-2", "fx-2", "fx-3", "fx-3", "fx-3"
        ]
    );
    let formed = d.clusters[0].formation_ms.expect("formation time");
    assert!(formed > 0.0);
}

/// A bootstrap step that never passes fails the start, saying it was the bootstrap, where, and
/// what the node said.
#[test]
fn a_bootstrap_step_that_never_passes_fails_the_start_saying_which_step_and_where() {
    let spec = fx_spec(
        r#"
[[clusters.fx.bootstrap]]
on = "fx-2"
command = ["sh", "-c", "echo not initialised yet >&2; exit 1"]
timeout = "300ms"
"#,
    );
    let err = match Cluster::from_toml("boot.toml", spec).start() {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a cluster whose bootstrap fails was started"),
    };
    assert!(err.contains("did not form"), "{err}");
    assert!(err.contains("bootstrap step"), "{err}");
    assert!(err.contains("on `fx-2`"), "{err}");
    assert!(err.contains("not initialised yet"), "{err}");
}

/// A cluster whose leader is decided by a separate group: one question per interval, asked
/// through the first running node, whose answer names the leader. Each node's `leader` pattern
/// is matched against that one answer.
#[test]
fn a_cluster_scope_role_probe_asks_once_per_interval_and_the_answer_names_the_leader() {
    let dir = tempfile::tempdir().unwrap();
    let leader_file = dir.path().join("leader");
    let asked = dir.path().join("asked");
    std::fs::write(&leader_file, "fx-2\n").unwrap();
    let spec = format!(
        r#"
[clusters.fx]
nodes = 3
binary = "{bin}"
ports = ["api"]
args = ["--listen", "{{{{ node.addrs.api }}}}"]

[clusters.fx.role]
scope = "cluster"
command = ["sh", "-c", "echo {{{{ node.name }}}} >> {asked}; cat {leader}"]
leader = '^{{{{ node.name }}}}$'
interval = "10ms"

[[clusters.fx.ready]]
tcp = "api"
timeout = "20s"
"#,
        bin = common::fixture_bin().display(),
        asked = asked.display(),
        leader = leader_file.display(),
    );
    let spec_parsed = troupe_spec::Spec::from_str("scope.toml", &spec).unwrap();
    assert!(troupe::plan::probe_cost_warnings(&spec_parsed).is_empty());
    let cluster = Cluster::from_toml("scope.toml", spec).start().unwrap();
    assert_eq!(
        cluster.wait_leader("fx", Duration::from_secs(10)).unwrap(),
        "fx-2"
    );
    // Asked through fx-1 only: once per interval, not once per node.
    let lines = std::fs::read_to_string(&asked).unwrap();
    assert!(lines.lines().all(|l| l == "fx-1"), "{lines}");

    std::fs::write(&leader_file, "fx-3\n").unwrap();
    assert_eq!(
        cluster
            .wait_new_leader("fx", "fx-2", Duration::from_secs(10))
            .unwrap(),
        "fx-3"
    );
    // With fx-1 gone, the question goes through the next running node.
    cluster.kill("fx-1").unwrap();
    std::fs::write(&asked, "").unwrap();
    common::wait_until(
        Duration::from_secs(10),
        "a question asked through fx-2",
        || std::fs::read_to_string(&asked).unwrap().contains("fx-2"),
    );
}

/// A command role probe on every node every 20 ms is load of its own: warned about, with the
/// way out.
#[test]
fn role_probes_that_would_spawn_hundreds_of_processes_a_second_are_warned_about() {
    let spec = |scope: &str| {
        format!(
            r#"
[clusters.db]
nodes = 9
binary = "sleep"
ports = ["api"]

[clusters.db.role]
{scope}
command = ["true"]
leader = "x"
interval = "20ms"
"#
        )
    };
    let per_node = troupe_spec::Spec::from_str("cost.toml", &spec("")).unwrap();
    let warnings = troupe::plan::probe_cost_warnings(&per_node);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("450 processes a second"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].contains("scope = \"cluster\""),
        "{}",
        warnings[0]
    );
    let once = troupe_spec::Spec::from_str("cost.toml", &spec("scope = \"cluster\"")).unwrap();
    assert!(troupe::plan::probe_cost_warnings(&once).is_empty());
}

/// After a kill, `random`, `one` and `up` choose among the survivors, `down` names the dead
/// node, and a selector that names nobody is refused saying each node's state.
#[test]
fn selectors_choose_among_the_nodes_that_are_up() {
    let cluster = Cluster::from_toml("sel.toml", fx_spec("")).start().unwrap();
    assert!(
        cluster
            .select("fx:down")
            .unwrap_err()
            .to_string()
            .contains("names no node")
    );
    cluster.kill("fx-1").unwrap();
    for _ in 0..30 {
        let picked = cluster.select("fx:random").unwrap();
        assert_eq!(picked.len(), 1);
        assert_ne!(picked[0], "fx-1", "random picked the dead node");
    }
    assert_eq!(cluster.select("fx:one").unwrap(), ["fx-2"]);
    assert_eq!(cluster.select("fx:up").unwrap(), ["fx-2", "fx-3"]);
    assert_eq!(cluster.select("fx:down").unwrap(), ["fx-1"]);
    assert_eq!(cluster.start_node("fx:down").unwrap(), ["fx-1"]);
    let err = cluster.select("fx:down").unwrap_err().to_string();
    assert!(err.contains("fx-1 ready, fx-2 ready, fx-3 ready"), "{err}");
}
