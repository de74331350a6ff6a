//! The docker runtime against the real Docker Engine: nodes run as labelled containers on the
//! host's network, node operations change the container's state, a restart keeps the data, and
//! nothing with the run's label is left once the cluster is gone. These tests need a reachable
//! Engine and fail loudly without one: they never skip.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::ListContainersOptions;
use troupe::{Cluster, Error, NodeState};

/// Runs `f` against the local Docker Engine, which must be reachable: these tests fail, never
/// skip, without it.
fn with_docker<T>(f: impl AsyncFnOnce(Docker) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let docker = Docker::connect_with_local_defaults()
            .expect("a Docker Engine client")
            .negotiate_version()
            .await
            .expect("the Docker Engine is reachable (these tests need it: start dockerd)");
        f(docker).await
    })
}

/// Containers carrying `label` (`key=value`), running or not.
fn containers(label: &str) -> Vec<ContainerSummary> {
    with_docker(async |docker| {
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![label.to_string()],
            )])),
            ..Default::default()
        };
        docker.list_containers(Some(options)).await.unwrap()
    })
}

/// The Engine's state of one node's container of a run: `running`, `paused`, `exited`.
fn state_of(run: &str, node: &str) -> String {
    let found: Vec<_> = containers(&format!("troupe.run={run}"))
        .into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("troupe.node"))
                .is_some_and(|n| n == node)
        })
        .collect();
    assert_eq!(found.len(), 1, "one container for {node}: {found:?}");
    found[0]
        .state
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn wait_state(run: &str, node: &str, want: &str) {
    common::wait_until(
        Duration::from_secs(20),
        &format!("container of {node} to be {want}"),
        || state_of(run, node) == want,
    );
}

fn spec() -> String {
    format!(
        r#"
[clusters.fx]
nodes = 3
binary = "{bin}"
runtime = "docker"
ports = ["main"]
args = ["--listen", "{{{{ node.addrs.main }}}}"]
[[clusters.fx.ready]]
tcp = "main"
timeout = "30s"

[clusters.sh]
nodes = 1
binary = "sh"
runtime = "docker"
args = ["-c", "trap 'echo got TERM; exit 0' TERM; echo boot >> data/boots; echo up; while :; do sleep 0.05; done"]
[[clusters.sh.ready]]
log = "^up$"
timeout = "30s"
[clusters.sh.stop]
grace = "30s"
"#,
        bin = common::fixture_bin().display()
    )
}

/// The fixture answers on `addr` (a host port: containers share the host's network).
fn answers(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).ends_with("ok")
}

#[test]
fn docker_nodes_are_labelled_containers_that_node_operations_drive_and_drop_removes() {
    let cluster = Cluster::from_toml("docker.toml", spec())
        .keep_state_dir(true)
        .start()
        .unwrap();
    let dir = cluster.state_dir().to_path_buf();
    let run = std::fs::read_to_string(dir.join("docker.run")).expect("the run is recorded");
    let run = run.trim().to_string();
    assert_eq!(containers(&format!("troupe.run={run}")).len(), 4);
    for n in cluster.cluster_nodes("fx") {
        assert_eq!(state_of(&run, n.name()), "running");
        assert!(answers(&n.addr("main")), "{} answers on the host", n.name());
        // The pid is the container's first process, on this host.
        let pid = n.pid().expect("a pid");
        assert!(common::alive(pid), "pid {pid} of {} is alive", n.name());
    }

    cluster.pause("fx-1").unwrap();
    wait_state(&run, "fx-1", "paused");
    cluster.resume("fx-1").unwrap();
    wait_state(&run, "fx-1", "running");

    let port = cluster.node("fx-2").unwrap().addr("main");
    cluster.kill("fx-2").unwrap();
    wait_state(&run, "fx-2", "exited");
    assert_eq!(cluster.node("fx-2").unwrap().state(), NodeState::Killed);
    cluster.start_node("fx-2").unwrap();
    wait_state(&run, "fx-2", "running");
    cluster
        .wait_ready(Some("fx"), Duration::from_secs(30))
        .unwrap();
    assert_eq!(cluster.node("fx-2").unwrap().addr("main"), port);
    assert!(answers(&port), "fx-2 answers again on the same port");

    // Stop is graceful, even of a paused node: the signal reaches the program, whose output is
    // in node.log.
    let sh = cluster.node("sh-1").unwrap();
    cluster.pause("sh-1").unwrap();
    wait_state(&run, "sh-1", "paused");
    cluster.stop_node("sh-1").unwrap();
    wait_state(&run, "sh-1", "exited");
    let log = std::fs::read_to_string(sh.log()).unwrap();
    assert!(log.contains("got TERM"), "stopped with SIGTERM: {log}");
    assert_eq!(cluster.node("sh-1").unwrap().state(), NodeState::Stopped);

    // A restart runs the same container again on the same data.
    cluster.restart_node("sh-1").unwrap();
    cluster
        .wait_ready(Some("sh"), Duration::from_secs(30))
        .unwrap();
    let boots = std::fs::read_to_string(sh.data_dir().join("boots")).unwrap();
    assert_eq!(boots.lines().count(), 2, "data kept across the restart");
    cluster.stop_node("sh-1").unwrap();
    cluster.start_node("sh-1").unwrap();
    cluster
        .wait_ready(Some("sh"), Duration::from_secs(30))
        .unwrap();
    let boots = std::fs::read_to_string(sh.data_dir().join("boots")).unwrap();
    assert_eq!(boots.lines().count(), 3, "data kept across stop and start");

    // Dropping kills even a paused node's container, and removes them all.
    cluster.pause("fx-3").unwrap();
    wait_state(&run, "fx-3", "paused");
    drop(cluster);
    assert!(
        containers(&format!("troupe.run={run}")).is_empty(),
        "no container of run {run} is left after drop"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_failed_docker_start_leaves_no_container() {
    let text = format!(
        r#"
[clusters.dockerfails]
nodes = 2
binary = "{bin}"
runtime = "docker"
ports = ["main"]
args = ["--exit-after", "0", "--exit-code", "3"]
[[clusters.dockerfails.ready]]
tcp = "main"
timeout = "30s"
"#,
        bin = common::fixture_bin().display()
    );
    match Cluster::from_toml("fails.toml", text).start() {
        Err(Error::Start(f)) => assert!(f.to_string().contains("exit code 3"), "{f}"),
        Err(other) => panic!("expected a start failure, got {other:?}"),
        Ok(_) => panic!("the cluster started"),
    }
    assert!(
        containers("troupe.cluster=dockerfails").is_empty(),
        "a failed start removes its containers"
    );
}

/// An image holding only the fixture and the libraries it links, imported from a tar (no
/// registry, no base image); removed when dropped.
struct FixtureImage(String);

impl FixtureImage {
    fn build() -> FixtureImage {
        let bin = common::fixture_bin();
        let ldd = std::process::Command::new("ldd")
            .arg(&bin)
            .output()
            .unwrap();
        let mut files: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(str::to_string)
            .collect();
        files.push(bin.display().to_string());
        // `h`: the libraries' links are followed, so the image holds the files themselves.
        let tar = std::process::Command::new("tar")
            .args(["-c", "-h", "-f", "-"])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            tar.status.success(),
            "tar: {}",
            String::from_utf8_lossy(&tar.stderr)
        );
        let name = format!("troupe-fixture-test:{}", std::process::id());
        let (repo, tag) = name.split_once(':').unwrap();
        with_docker(async |docker| {
            use futures_util::StreamExt;
            let options = bollard::query_parameters::CreateImageOptions {
                from_src: Some("-".into()),
                repo: Some(repo.into()),
                tag: Some(tag.into()),
                changes: vec!["LABEL troupe.test=fixture-image".into()],
                ..Default::default()
            };
            let body = bollard::body_full(tar.stdout.into());
            let mut steps = docker.create_image(Some(options), Some(body), None);
            while let Some(step) = steps.next().await {
                step.expect("the image imports");
            }
        });
        FixtureImage(name)
    }
}

impl Drop for FixtureImage {
    fn drop(&mut self) {
        let name = self.0.clone();
        with_docker(async |docker| {
            let _ = docker
                .remove_image(
                    &name,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        });
    }
}

#[test]
fn an_image_runs_with_binary_as_the_program_inside_it() {
    let image = FixtureImage::build();
    let text = format!(
        r#"
[clusters.img]
nodes = 2
binary = "{bin}"
runtime = "docker"
image = "{image}"
ports = ["main"]
args = ["--listen", "{{{{ node.addrs.main }}}}", "--say", "in an image"]
[[clusters.img.ready]]
tcp = "main"
timeout = "30s"
"#,
        bin = common::fixture_bin().display(),
        image = image.0,
    );
    let cluster = Cluster::from_toml("image.toml", text).start().unwrap();
    for n in cluster.nodes() {
        assert!(answers(&n.addr("main")), "{} answers on the host", n.name());
        let log = std::fs::read_to_string(n.log()).unwrap();
        assert!(log.contains("in an image"), "{log}");
    }
    let label = "troupe.cluster=img";
    let images: Vec<_> = containers(label)
        .into_iter()
        .filter_map(|c| c.image)
        .collect();
    assert_eq!(images, [image.0.clone(), image.0.clone()]);
    drop(cluster);
    assert!(containers(label).is_empty(), "drop removes the containers");
}

#[test]
fn a_missing_image_fails_the_start_and_says_troupe_never_pulls() {
    let text = r#"
[clusters.noimage]
nodes = 1
binary = "/server"
runtime = "docker"
image = "troupe-no-such-image:1"
"#;
    match Cluster::from_toml("noimage.toml", text).start() {
        Err(Error::Start(f)) => {
            let msg = f.to_string();
            assert!(msg.contains("No such image"), "{msg}");
            assert!(msg.contains("troupe never pulls"), "{msg}");
        }
        Err(other) => panic!("expected a start failure, got {other:?}"),
        Ok(_) => panic!("the cluster started"),
    }
    assert!(containers("troupe.cluster=noimage").is_empty());
}

/// Whether a TCP connection from inside `pid`'s network namespace to `addr` succeeds within
/// a second (the host's `nsenter` and bash: nothing runs inside the container's image).
fn connects_from(pid: u32, addr: &str) -> bool {
    let (host, port) = addr.rsplit_once(':').unwrap();
    std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "timeout", "1", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{host}/{port}"))
        .status()
        .expect("nsenter runs")
        .success()
}

/// `network = "namespaces"` on docker: each container has its own pinned address on the run's
/// network and the node's name as hostname; all listen on the same port; the host reaches each;
/// a one-way cut is applied inside the sender's namespace, survives the restart of a container
/// (new namespace, same address) and heals; drop removes the containers and the network.
#[test]
fn docker_namespaces_give_each_node_its_address_and_faults_apply_inside_containers() {
    let text = format!(
        r#"
[clusters.ns]
nodes = 3
binary = "{bin}"
runtime = "docker"
network = "namespaces"
ports = ["main"]
args = ["--listen", "{{{{ node.addrs.main }}}}"]
[[clusters.ns.ready]]
tcp = "main"
timeout = "30s"
"#,
        bin = common::fixture_bin().display()
    );
    let cluster = Cluster::from_toml("ns.toml", text).start().unwrap();
    let dir = cluster.state_dir().to_path_buf();
    let run = std::fs::read_to_string(dir.join("docker.run")).unwrap();
    let run = run.trim().to_string();
    let nodes = cluster.cluster_nodes("ns");
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr("main")).collect();
    let ports: Vec<&str> = addrs
        .iter()
        .map(|a| a.rsplit_once(':').unwrap().1)
        .collect();
    assert!(ports.iter().all(|p| *p == ports[0]), "same port: {addrs:?}");
    for (n, a) in nodes.iter().zip(&addrs) {
        assert!(a.starts_with("10.213."), "{a}");
        assert!(answers(a), "the host reaches {} at {a}", n.name());
    }
    let hostname = with_docker(async |docker| {
        let name = format!("troupe-{run}-ns-1");
        docker.inspect_container(&name, None).await.unwrap()
    })
    .config
    .and_then(|c| c.hostname);
    assert_eq!(hostname.as_deref(), Some("ns-1"));

    let pid1 = nodes[0].pid().unwrap();
    assert!(connects_from(pid1, &addrs[1]), "ns-1 reaches ns-2");
    let cut = cluster
        .fault(troupe_spec::control::Fault::Cut {
            from: vec!["ns-1".into()],
            to: vec!["ns-2".into()],
            one_way: true,
        })
        .unwrap();
    assert!(!connects_from(pid1, &addrs[1]), "the cut holds");
    assert!(connects_from(pid1, &addrs[2]), "ns-1 still reaches ns-3");
    assert!(answers(&addrs[0]), "the host still reaches ns-1");

    // A restarted container has a new namespace: the cut is applied there before it is started.
    cluster.restart_node("ns-1").unwrap();
    cluster
        .wait_ready(Some("ns"), Duration::from_secs(30))
        .unwrap();
    let node1 = cluster.node("ns-1").unwrap();
    assert_eq!(node1.addr("main"), addrs[0], "same address after restart");
    let pid1 = node1.pid().unwrap();
    assert!(
        !connects_from(pid1, &addrs[1]),
        "the cut holds after restart"
    );

    cluster.heal_fault(cut.id).unwrap();
    assert!(connects_from(pid1, &addrs[1]), "healed");

    // A stopped node's address refuses at once, as a stopped server on a live host would (not
    // seconds of ARP for an address no container holds).
    cluster.stop_node("ns-3").unwrap();
    let (host, port) = addrs[2].rsplit_once(':').unwrap();
    let out = std::process::Command::new("nsenter")
        .args(["-t", &pid1.to_string(), "-n", "timeout", "2", "bash", "-c"])
        .arg(format!("exec 3<>/dev/tcp/{host}/{port}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "{err}");

    drop(cluster);
    assert!(containers(&format!("troupe.run={run}")).is_empty());
    let networks = with_docker(async |docker| {
        let options = bollard::query_parameters::ListNetworksOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("troupe.run={run}")],
            )])),
        };
        docker.list_networks(Some(options)).await.unwrap()
    });
    assert!(
        networks.is_empty(),
        "the run's network is removed: {networks:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn docker_namespaces_refuse_a_reset_apply_loss_anywhere_and_delay_where_netem_is() {
    let text = format!(
        r#"
[clusters.nr]
nodes = 2
binary = "{bin}"
runtime = "docker"
network = "namespaces"
ports = ["main"]
args = ["--listen", "{{{{ node.addrs.main }}}}"]
[[clusters.nr.ready]]
tcp = "main"
timeout = "30s"
"#,
        bin = common::fixture_bin().display()
    );
    let cluster = Cluster::from_toml("nr.toml", text).start().unwrap();
    let err = cluster
        .fault(troupe_spec::control::Fault::Reset {
            from: vec!["nr-1".into()],
            to: vec!["nr-2".into()],
        })
        .unwrap_err();
    assert!(err.to_string().contains("does not reset"), "{err}");

    // A delay needs netem: applied inside the container where the kernel has it, refused
    // with the reason where it has not (this machine's kernel has none), never skipped.
    let degrade = cluster.fault(troupe_spec::control::Fault::Degrade {
        targets: vec!["nr-1".into()],
        delay_ms: 20.0,
        jitter_ms: 0.0,
        loss_pct: 0.0,
        rate: None,
    });
    match degrade {
        Ok(_) => {
            let pid = cluster.node("nr-1").unwrap().pid().unwrap();
            let out = std::process::Command::new("nsenter")
                .args([
                    "-t",
                    &pid.to_string(),
                    "-n",
                    "tc",
                    "qdisc",
                    "show",
                    "dev",
                    "eth0",
                ])
                .output()
                .unwrap();
            let qdisc = String::from_utf8_lossy(&out.stdout);
            assert!(qdisc.contains("netem"), "{qdisc}");
        }
        Err(e) => assert!(e.to_string().contains("no netem"), "{e}"),
    }
    cluster.heal().unwrap();

    // Loss alone works on any kernel: with 100 % of nr-1's packets lost, it reaches no one.
    let pid = cluster.node("nr-1").unwrap().pid().unwrap();
    let nr2 = cluster.node("nr-2").unwrap().addr("main");
    assert!(connects_from(pid, &nr2), "nr-1 reaches nr-2");
    cluster
        .fault(troupe_spec::control::Fault::Degrade {
            targets: vec!["nr-1".into()],
            delay_ms: 0.0,
            jitter_ms: 0.0,
            loss_pct: 100.0,
            rate: None,
        })
        .unwrap();
    assert!(!connects_from(pid, &nr2), "every packet of nr-1 is lost");
    cluster.heal().unwrap();
    assert!(connects_from(pid, &nr2), "healed");
}
