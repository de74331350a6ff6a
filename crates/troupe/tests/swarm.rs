//! The swarm runtime against a real (one-host) Docker Swarm: nodes run as labelled services of
//! a locally built nats-server image on the run's overlay network, find each other by name,
//! answer on their published ports, node operations drive their tasks, and nothing labelled
//! with the run is left once the cluster is gone, nor after a failed start. The tests join
//! the swarm (initialising it if the Engine is in none) and fail loudly without Docker.

mod common;
#[path = "common/swarm.rs"]
mod swarm;

use std::time::Duration;

use troupe::{Cluster, Error, NodeState};

/// Three nats-server nodes with JetStream, forming one cluster over the overlay network.
fn spec(cluster: &str, image: &str) -> String {
    format!(
        r#"
[tls]

[clusters.{cluster}]
nodes = 3
binary = "nats-server"
runtime = "swarm"
image = "{image}"
ports = ["client", "cluster", "http"]
schemes = {{ client = "nats", cluster = "nats-route", http = "http" }}
args = ["--config", "{{{{ node.files['conf/nats.conf'] }}}}"]

[clusters.{cluster}.files."conf/nats.conf"]
template = '''
server_name: "{{{{ node.name }}}}"
listen: "{{{{ node.listen.client }}}}"
http: "{{{{ node.listen.http }}}}"
jetstream {{ store_dir: "{{{{ node.data_dir }}}}" }}
cluster {{
  name: "{{{{ cluster.name }}}}"
  listen: "{{{{ node.listen.cluster }}}}"
  routes: [
{{%- for peer in cluster.nodes if peer.name != node.name %}}
    "{{{{ peer.urls.cluster }}}}"
{{%- endfor %}}
  ]
}}
'''

[[clusters.{cluster}.ready]]
http = "{{{{ node.urls.http }}}}/healthz"
timeout = "60s"
"#
    )
}

/// `GET url` on the host: the status code, or 0 when nothing answers.
fn status(url: &str) -> u16 {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (addr, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The Engine's state of the container of a node's newest task: `running`, `paused`, `exited`.
fn container_state(run: &str, node: &str) -> String {
    let ids = swarm::docker(&[
        "ps",
        "--all",
        "--quiet",
        "--latest",
        "--filter",
        &format!("label=troupe.run={run}"),
        "--filter",
        &format!("label=troupe.node={node}"),
    ]);
    let id = ids
        .lines()
        .next()
        .unwrap_or_else(|| panic!("no container for {node}"));
    swarm::docker(&["inspect", "--format", "{{.State.Status}}", id])
}

#[test]
fn swarm_nodes_are_labelled_services_that_node_operations_drive_and_drop_removes_everything() {
    let _swarm = swarm::Swarm::join();
    let image = swarm::nats_image();
    let text = spec("sw", &image).replace(
        "runtime = \"swarm\"",
        "runtime = \"swarm\"\nplacement = [\"node.role == manager\"]",
    );
    let cluster = Cluster::from_toml("swarm.toml", text)
        .keep_state_dir(true)
        .start()
        .unwrap();
    let dir = cluster.state_dir().to_path_buf();
    let run = std::fs::read_to_string(dir.join("swarm.run")).expect("the run is recorded");
    let run = run.trim().to_string();
    let label = format!("troupe.run={run}");
    let services = swarm::docker(&[
        "service",
        "ls",
        "--quiet",
        "--filter",
        &format!("label={label}"),
    ]);
    assert_eq!(services.lines().count(), 3, "one service per node");
    let network = swarm::docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label={label}"),
        "--format",
        "{{.Driver}} {{.Name}}",
    ]);
    assert_eq!(
        network,
        format!("overlay troupe-{run}"),
        "one overlay network per run"
    );
    let secrets = swarm::docker(&[
        "secret",
        "ls",
        "--quiet",
        "--filter",
        &format!("label={label}"),
    ]);
    assert_eq!(
        secrets.lines().count(),
        6,
        "each node's server and client keys are secrets"
    );

    // Peers found each other by name: each node routes to the other two.
    for n in cluster.cluster_nodes("sw") {
        assert_eq!(
            status(&format!("{}/healthz", n.url("http"))),
            200,
            "{}",
            n.name()
        );
        assert!(
            n.addr("client").starts_with("127.0.0.1:"),
            "{}",
            n.addr("client")
        );
        let conf = std::fs::read_to_string(dir.join("nodes").join(n.name()).join("conf/nats.conf"))
            .unwrap();
        assert!(
            conf.contains(&format!(
                "listen: \"0.0.0.0:{}\"",
                n.addr("client").rsplit(':').next().unwrap()
            )),
            "{conf}"
        );
        for peer in cluster
            .cluster_nodes("sw")
            .iter()
            .filter(|p| p.name() != n.name())
        {
            let route = format!(
                "nats-route://{}:{}",
                peer.name(),
                peer.addr("cluster").rsplit(':').next().unwrap()
            );
            assert!(conf.contains(&route), "{route} in {conf}");
        }
        let log = std::fs::read_to_string(n.log()).unwrap();
        assert!(
            log.contains("Server is ready"),
            "{}'s output is in node.log: {log}",
            n.name()
        );
        // The task runs on this Engine's host: its pid is the container's first process here.
        let pid = n.pid().expect("a pid");
        assert!(common::alive(pid), "pid {pid} of {} is alive", n.name());
    }

    cluster.pause("sw-1").unwrap();
    assert_eq!(container_state(&run, "sw-1"), "paused");
    cluster.resume("sw-1").unwrap();
    assert_eq!(container_state(&run, "sw-1"), "running");

    // A killed node stays dead (restart policy none) until started, on the same port.
    let url = cluster.node("sw-2").unwrap().url("http");
    cluster.kill("sw-2").unwrap();
    assert_eq!(cluster.node("sw-2").unwrap().state(), NodeState::Killed);
    assert_eq!(container_state(&run, "sw-2"), "exited");
    assert_eq!(
        status(&format!("{url}/healthz")),
        0,
        "a killed node does not answer"
    );
    cluster.start_node("sw-2").unwrap();
    cluster
        .wait_ready(Some("sw"), Duration::from_secs(60))
        .unwrap();
    // Ready once /healthz said 200; nats-server may say 503 for a moment after that, while
    // JetStream catches up with the restarted node: wait for 200 again, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = status(&format!("{url}/healthz"));
    while last != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100)); // a poll interval under a deadline
        last = status(&format!("{url}/healthz"));
    }
    assert_eq!(last, 200, "sw-2 answers again on {url}");

    // Stop is graceful: nats-server's own shutdown is in node.log.
    let sw3 = cluster.node("sw-3").unwrap();
    cluster.stop_node("sw-3").unwrap();
    assert_eq!(cluster.node("sw-3").unwrap().state(), NodeState::Stopped);
    let log = std::fs::read_to_string(sw3.log()).unwrap();
    assert!(
        log.contains("Server Exiting"),
        "stopped with SIGTERM: {log}"
    );
    cluster.restart_node("sw-3").unwrap();
    cluster
        .wait_ready(Some("sw"), Duration::from_secs(60))
        .unwrap();
    // The spec's placement, and since its restart, the host that holds its data.
    let constraints = swarm::docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.Placement.Constraints}}",
        &format!("troupe-{run}-sw-3"),
    ]);
    assert!(
        constraints.contains("node.role == manager"),
        "{constraints}"
    );
    assert!(constraints.contains("node.id=="), "pinned: {constraints}");

    // The restarted node's new task mounts the same data volume, on the same host.
    let ids = swarm::docker(&[
        "ps",
        "--quiet",
        "--latest",
        "--filter",
        &format!("label=troupe.run={run}"),
        "--filter",
        "label=troupe.node=sw-3",
    ]);
    let mounts = swarm::docker(&[
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Name}} {{.Destination}}{{end}}",
        &ids,
    ]);
    assert_eq!(
        mounts,
        format!("troupe-{run}-sw-3-data {}", sw3.data_dir().display())
    );
    // The data volume is the same across tasks: one volume per node, however many starts.
    let volumes = swarm::docker(&[
        "volume",
        "ls",
        "--quiet",
        "--filter",
        &format!("label={label}"),
    ]);
    assert_eq!(volumes.lines().count(), 3, "{volumes}");

    // Dropping the cluster (even with a paused node) removes everything labelled with the run.
    cluster.pause("sw-1").unwrap();
    drop(cluster);
    let left = swarm::labelled(&label);
    assert!(left.is_empty(), "left after drop: {left:?}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The run id in a start failure, which names the service `troupe-<run id>-<node>`.
fn run_in(message: &str) -> String {
    let run = message
        .split("service troupe-")
        .nth(1)
        .and_then(|rest| rest.split('-').next())
        .unwrap_or_else(|| panic!("no service named in {message}"));
    assert_eq!(run.len(), 12, "a run id in {message}");
    run.to_string()
}

#[test]
fn a_placement_no_host_meets_fails_the_start_at_once_and_leaves_nothing() {
    let _swarm = swarm::Swarm::join();
    let image = swarm::nats_image();
    let text = spec("swnowhere", &image).replace(
        "runtime = \"swarm\"",
        "runtime = \"swarm\"\nplacement = [\"node.labels.troupe-test == rack{{ node.index }}\"]",
    );
    let started = std::time::Instant::now();
    let message = match Cluster::from_toml("nowhere.toml", text).start() {
        Err(Error::Start(f)) => f.to_string(),
        Err(other) => panic!("expected a start failure, got {other:?}"),
        Ok(_) => panic!("the cluster started"),
    };
    assert!(message.contains("cannot be placed"), "{message}");
    assert!(
        message.contains("node.labels.troupe-test == rack"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed within seconds, not at the start deadline: {:?}",
        started.elapsed()
    );
    let left = swarm::labelled(&format!("troupe.run={}", run_in(&message)));
    assert!(left.is_empty(), "left after a failed start: {left:?}");
}

#[test]
fn a_failed_swarm_start_leaves_nothing_labelled_with_its_run() {
    let _swarm = swarm::Swarm::join();
    let text = spec("swfails", "troupe-no-such-image:1");
    let message = match Cluster::from_toml("fails.toml", text).start() {
        Err(Error::Start(f)) => f.to_string(),
        Err(other) => panic!("expected a start failure, got {other:?}"),
        Ok(_) => panic!("the cluster started"),
    };
    assert!(message.contains("No such image"), "{message}");
    assert!(message.contains("troupe never pulls"), "{message}");
    let run = run_in(&message);
    let left = swarm::labelled(&format!("troupe.run={run}"));
    assert!(left.is_empty(), "left after a failed start: {left:?}");
    assert!(swarm::labelled("troupe.cluster=swfails").is_empty());
}

/// `GET url` on the host: the body, or "" when nothing answers.
fn body(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (addr, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// How many servers a nats-server has routes to, by its own /routez (distinct remote server
/// ids: a route may be briefly doubled); `None` when it does not answer.
fn routes(cluster: &Cluster, node: &str) -> Option<usize> {
    let url = cluster.node(node).unwrap().url("http");
    let text = body(&format!("{url}/routez"));
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ids: std::collections::BTreeSet<&str> = v["routes"]
        .as_array()?
        .iter()
        .filter_map(|r| r["remote_id"].as_str())
        .collect();
    Some(ids.len())
}

/// Waits until every node's own count of the servers it routes to is as given.
fn wait_routes(cluster: &Cluster, want: &[(&str, usize)], what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let seen: Vec<_> = want.iter().map(|(n, _)| routes(cluster, n)).collect();
        if want.iter().zip(&seen).all(|((_, c), s)| *s == Some(*c)) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 60s waiting for {what}: routes {seen:?}, want {want:?}; {}",
            want.iter()
                .map(|(n, _)| body(&format!("{}/routez", cluster.node(n).unwrap().url("http"))))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `network = "namespaces"` on a swarm: a partition of a 3-node nats cluster is applied inside
/// each task's namespace on this host, by the tasks' overlay addresses. The servers' own views
/// (/routez) show the cut, the host still reaches every node on its published ports, and after
/// heal the routes come back; a cut from the host is refused, as is nothing silently.
#[test]
fn a_partition_of_swarm_tasks_on_this_host_cuts_their_routes_until_healed() {
    let _swarm = swarm::Swarm::join();
    let image = swarm::nats_image();
    let text = spec("pt", &image)
        .replace(
            "runtime = \"swarm\"",
            "runtime = \"swarm\"\nnetwork = \"namespaces\"\nplacement = [\"node.role == manager\"]",
        )
        // Routes notice a silent cut within seconds (default: minutes). Without JetStream: a
        // meta leader's steady heartbeats over a dead route would hold off its pings (a server
        // pings only an idle route), so its own view would lag the cut by TCP's timeout.
        .replace(
            "server_name:",
            "ping_interval: \"1s\"\nping_max: 2\nserver_name:",
        )
        .replace("jetstream { store_dir: \"{{ node.data_dir }}\" }\n", "");
    assert!(!text.contains("jetstream"), "{text}");
    let cluster = Cluster::from_toml("swarm-net.toml", text)
        .keep_state_dir(true)
        .start()
        .unwrap();
    let dir = cluster.state_dir().to_path_buf();
    let run = std::fs::read_to_string(dir.join("swarm.run")).unwrap();
    let label = format!("troupe.run={}", run.trim());

    wait_routes(
        &cluster,
        &[("pt-1", 2), ("pt-2", 2), ("pt-3", 2)],
        "a full mesh of routes",
    );

    let fault = cluster
        .fault(troupe_spec::control::Fault::Partition {
            groups: vec![vec!["pt-1".into()], vec!["pt-2".into(), "pt-3".into()]],
            bridge: None,
        })
        .unwrap();
    wait_routes(
        &cluster,
        &[("pt-1", 0), ("pt-2", 1), ("pt-3", 1)],
        "pt-1 cut off from pt-2 and pt-3",
    );
    // The host's traffic to the published ports is not the nodes' traffic between them
    // (/varz).
    for n in ["pt-1", "pt-2", "pt-3"] {
        let url = cluster.node(n).unwrap().url("http");
        assert_eq!(status(&format!("{url}/varz")), 200, "the host reaches {n}");
    }
    // The host reaches a task through its published ports: no cut from the host.
    let err = cluster
        .fault(troupe_spec::control::Fault::Isolate {
            targets: vec!["pt-2".into()],
            host: true,
        })
        .unwrap_err();
    assert!(err.to_string().contains("published ports"), "{err}");

    cluster.heal_fault(fault.id).unwrap();
    wait_routes(
        &cluster,
        &[("pt-1", 2), ("pt-2", 2), ("pt-3", 2)],
        "the routes back after heal",
    );

    // A cut survives a restart: the new task (a new namespace, maybe a new address) gets the
    // rules before it counts as started, and the others' tables follow its address. pt-3
    // still reaches pt-2, so it finds its JetStream leader and gets ready.
    cluster
        .fault(troupe_spec::control::Fault::Cut {
            from: vec!["pt-3".into()],
            to: vec!["pt-1".into()],
            one_way: false,
        })
        .unwrap();
    wait_routes(
        &cluster,
        &[("pt-3", 1), ("pt-1", 1), ("pt-2", 2)],
        "pt-3 cut from pt-1",
    );
    cluster.restart_node("pt-3").unwrap();
    cluster
        .wait_ready(Some("pt"), Duration::from_secs(60))
        .unwrap();
    wait_routes(
        &cluster,
        &[("pt-3", 1), ("pt-1", 1), ("pt-2", 2)],
        "pt-3 still cut from pt-1 after its restart",
    );
    cluster.heal().unwrap();
    wait_routes(
        &cluster,
        &[("pt-1", 2), ("pt-2", 2), ("pt-3", 2)],
        "the routes back after heal",
    );

    // A degrade goes on the task's eth0, its overlay interface: losing every packet pt-1 sends
    // there ends its routes, while the host still reaches it on its published port. (Only
    // pt-1's own view: with a one-way loss a peer may count a route that is still connecting.)
    cluster
        .fault(troupe_spec::control::Fault::Degrade {
            targets: vec!["pt-1".into()],
            delay_ms: 0.0,
            jitter_ms: 0.0,
            loss_pct: 100.0,
            rate: None,
        })
        .unwrap();
    wait_routes(
        &cluster,
        &[("pt-1", 0)],
        "pt-1 losing every packet to its peers",
    );
    let url = cluster.node("pt-1").unwrap().url("http");
    assert_eq!(status(&format!("{url}/varz")), 200, "the host reaches pt-1");
    cluster.heal().unwrap();
    wait_routes(
        &cluster,
        &[("pt-1", 2), ("pt-2", 2), ("pt-3", 2)],
        "the routes back after the last heal",
    );

    drop(cluster);
    let left = swarm::labelled(&label);
    assert!(left.is_empty(), "left after drop: {left:?}");
    let _ = std::fs::remove_dir_all(dir);
}
