//! The docker runtime: each node is a container of the local Docker Engine, driven through
//! its API (bollard), never by running `docker`.
//!
//! Containers run on the host's network, so ports, probes, `troupe env`, the descriptor and
//! templates work as with processes. With `network = "namespaces"` each container is instead
//! on a bridge network troupe creates per run ([`DockerNet`]), with the node's name as
//! hostname and a pinned address of its own, reached from the host directly (no port is
//! published); faults are applied inside its namespace. The node's directory is bind-mounted read-write at the
//! same path (data, rendered files, the log), its certificates read-only, and the program runs
//! as the user troupe runs as (or the spec's `user`), so files stay the node's.
//!
//! Without `image`, the container is built from the host's files: an empty image (imported
//! once from an empty tar, labelled `troupe.base`) with the host's `/usr`, `/lib*`, `/bin`,
//! `/sbin` and `/etc` mounted read-only, the program itself if it lives elsewhere, and a
//! private `/tmp`. With `image`, that image runs and `binary` is the program inside it.
//!
//! Every container and network carries the label `troupe.run=<run id>` (containers also
//! `troupe.node=<name>`); [`remove_run`] removes a run's containers, then its networks, by
//! label, never by name pattern. A node's
//! container is created once and started again by `start`/`restart`: same data, same ports.
//!
//! A container's first process is a child of the Engine, not of troupe, so no parent-death
//! signal reaches it. Each container and network is registered with the [`Keeper`] before it
//! is created (its `DELETE` API path): when troupe dies, even by SIGKILL, the keeper kills each
//! container's first process (which leads its own process group) and asks the Engine to
//! remove the containers, then the network. The next `up` or `down --force` on the state
//! directory ([`RUN_RECORD`]) removes, by label, whatever even that left (a keeper that could
//! not reach the Engine).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, CreateImageOptions, KillContainerOptions,
    ListContainersOptions, ListNetworksOptions, RemoveContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;
use nix::sys::signal::Signal;
use tokio::sync::{OnceCell, mpsc, watch};
use troupe_spec::NodeState;

use super::{Ctl, NodeHandle, NodeRuntime, Status};
use crate::keeper::Keeper;
use crate::net::docker::DockerNet;
use crate::plan::NodePlan;

/// Label naming the run a container belongs to.
pub const RUN_LABEL: &str = "troupe.run";
/// Label naming the node a container runs.
pub const NODE_LABEL: &str = "troupe.node";
/// The empty image that image-less containers start from.
const BASE_IMAGE: &str = "troupe-host-files:1";
/// Host directories an image-less container sees, read-only, when they exist.
const HOST_DIRS: [&str; 9] = [
    "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt",
];

/// Runs one cluster's nodes as containers of the local Docker Engine.
pub struct DockerRuntime {
    run_id: String,
    image: Option<String>,
    /// The spec's directory, mounted read-only into image-less containers (scripts and files
    /// next to the spec), if it is not a host directory already mounted.
    spec_dir: Option<PathBuf>,
    client: OnceCell<Docker>,
    keeper: Option<Arc<Keeper>>,
    /// The run's own network, with `network = "namespaces"`; `None`: the host's network.
    net: Option<Arc<DockerNet>>,
}

impl DockerRuntime {
    /// `image`: the image to run; `None` runs the host's binary on the host's files (and the
    /// spec's directory). With a keeper, containers and networks are removed when troupe dies.
    /// `net`: the run's network, or `None` for the host's.
    pub fn new(
        run_id: &str,
        image: Option<String>,
        spec_dir: &Path,
        keeper: Option<Arc<Keeper>>,
        net: Option<Arc<DockerNet>>,
    ) -> DockerRuntime {
        let spec_dir = std::fs::canonicalize(spec_dir)
            .ok()
            .filter(|d| d.parent().is_some());
        DockerRuntime {
            run_id: run_id.to_string(),
            image,
            spec_dir,
            client: OnceCell::new(),
            keeper,
            net,
        }
    }

    /// Asks the keeper to remove `api_path` if troupe dies; a warning if it cannot.
    fn delete_on_exit(&self, api_path: &str) {
        if let Some(k) = &self.keeper
            && let Err(e) = k.docker_delete_on_exit(api_path)
        {
            tracing::warn!("{e}");
        }
    }

    /// Creates the run's network on first use (shared by every cluster of the run on it).
    async fn network(&self, docker: &Docker, net: &DockerNet) -> Result<(), String> {
        net.created
            .get_or_try_init(|| async {
                self.delete_on_exit(&network_delete_path(&net.network));
                let request = NetworkCreateRequest {
                    name: net.network.clone(),
                    driver: Some("bridge".to_string()),
                    ipam: Some(Ipam {
                        config: Some(vec![IpamConfig {
                            subnet: Some(net.cidr()),
                            gateway: Some(net.gateway().to_string()),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    labels: Some(HashMap::from([(
                        RUN_LABEL.to_string(),
                        self.run_id.clone(),
                    )])),
                    ..Default::default()
                };
                docker.create_network(request).await.map(|_| ()).map_err(|e| {
                    format!(
                        "cannot create the run's Docker network {} ({}): {e}\n(hint: another Docker network may use that subnet; `docker network ls` and `docker network inspect` tell)",
                        net.network,
                        net.cidr()
                    )
                })
            })
            .await
            .map(|_| ())
    }

    /// The Engine's client, connected (and its API version agreed) on first use.
    async fn client(&self) -> Result<&Docker, String> {
        self.client.get_or_try_init(connect).await
    }
}

/// The Engine API path that removes a container, its anonymous volumes with it.
pub fn container_delete_path(name: &str) -> String {
    format!("/containers/{name}?force=true&v=true")
}

/// The Engine API path that removes a network.
pub fn network_delete_path(name: &str) -> String {
    format!("/networks/{name}")
}

/// Connects to the local Docker Engine (`DOCKER_HOST` or `/var/run/docker.sock`).
pub async fn connect() -> Result<Docker, String> {
    let unreachable = |e: bollard::errors::Error| {
        format!(
            "cannot reach the Docker Engine: {e}\n(hint: is dockerd running and its socket readable? `docker info` tells)"
        )
    };
    let docker = Docker::connect_with_local_defaults().map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

/// The name of a node's container: unique per run, readable in `docker ps`.
pub fn container_name(run_id: &str, node: &str) -> String {
    format!("troupe-{run_id}-{node}")
}

impl NodeRuntime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn spawn<'a>(
        &'a self,
        plan: &'a NodePlan,
    ) -> Pin<Box<dyn Future<Output = Result<NodeHandle, String>> + Send + 'a>> {
        Box::pin(async move {
            let docker = self.client().await?.clone();
            let name = container_name(&self.run_id, &plan.name);
            let exists = match docker.inspect_container(&name, None).await {
                Ok(_) => true,
                Err(e) if not_found(&e) => false,
                Err(e) => return Err(format!("cannot inspect container {name}: {e}")),
            };
            if let Some(net) = &self.net {
                self.network(&docker, net).await?;
            }
            if !exists {
                self.delete_on_exit(&container_delete_path(&name));
                let image = match &self.image {
                    Some(i) => i.clone(),
                    None => {
                        base_image(&docker).await?;
                        BASE_IMAGE.to_string()
                    }
                };
                let files = match self.image {
                    Some(_) => Files::Image,
                    None => Files::Host {
                        spec_dir: self.spec_dir.as_deref(),
                    },
                };
                let on = self.net.as_ref().map(|n| OnNetwork {
                    network: &n.network,
                    ip: n.nodes.get(&plan.name).copied(),
                });
                let body = container_body(plan, &self.run_id, image, files, on);
                let options = CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                };
                docker
                    .create_container(Some(options), body)
                    .await
                    .map_err(|e| {
                        let hint = match &self.image {
                            Some(i) if not_found(&e) => format!(
                                "\n(hint: troupe never pulls: build or load {i} into the local Engine first)"
                            ),
                            _ => String::new(),
                        };
                        format!("cannot create container {name}: {e}{hint}")
                    })?;
            }
            start(docker, name, plan, self.keeper.clone(), self.net.clone()).await
        })
    }
}

/// Whether the Engine answered "no such container" (or image).
fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Attaches the log, starts the (created) container and hands it to its supervising task.
async fn start(
    docker: Docker,
    name: String,
    plan: &NodePlan,
    keeper: Option<Arc<Keeper>>,
    net: Option<Arc<DockerNet>>,
) -> Result<NodeHandle, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plan.log)
        .map_err(|e| format!("cannot open log {}: {e}", plan.log.display()))?;
    let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    // Attached before the start, so nothing the program prints is missed.
    let attach = AttachContainerOptions {
        stream: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut output = docker
        .attach_container(&name, Some(attach))
        .await
        .map_err(|e| format!("cannot attach to container {name}: {e}"))?
        .output;
    let mut log = tokio::fs::File::from_std(log);
    let copier = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(Ok(chunk)) = output.next().await {
            let _ = log.write_all(&chunk.into_bytes()).await;
        }
        let _ = log.flush().await;
    });
    if let Err(e) = docker.start_container(&name, None).await {
        copier.abort();
        return Err(format!("cannot start container {name}: {e}"));
    }
    let pid = docker
        .inspect_container(&name, None)
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.pid)
        .unwrap_or(0);
    let pid = pid.max(0) as u32;
    // The first process leads its own group (the container runtime makes it a session leader).
    let watched = keeper.filter(|_| pid > 0).map(|k| (k, pid));
    if let Some((k, pid)) = &watched {
        k.watch(*pid);
    }
    // A (re)started container has a fresh namespace: the active faults go in before the node
    // counts as started, or the start fails (a fault is never silently dropped).
    if let Some(net) = &net {
        let (net, node) = (net.clone(), plan.name.clone());
        let applied = tokio::task::spawn_blocking(move || net.node_started(&node, pid))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = applied {
            let options = KillContainerOptions {
                signal: "SIGKILL".to_string(),
            };
            let _ = docker.kill_container(&name, Some(options)).await;
            if let Some((k, pid)) = &watched {
                k.forget(*pid);
            }
            return Err(format!(
                "cannot apply the active faults in container {name}: {e}"
            ));
        }
    }
    let (handle, ctl_rx, status) = NodeHandle::new(pid, log_offset);
    tokio::spawn(supervise(
        docker,
        name,
        plan.name.clone(),
        copier,
        Exited { watched, net },
        ctl_rx,
        status,
    ));
    Ok(handle)
}

/// Who is told when a node's container has exited.
struct Exited {
    /// The keeper and the pid it would kill: forgotten.
    watched: Option<(Arc<Keeper>, u32)>,
    /// The run's network: the node's namespace is gone.
    net: Option<Arc<DockerNet>>,
}

/// Where a container's files come from, besides the node's own directory.
#[derive(Clone, Copy)]
enum Files<'a> {
    /// The host's system directories, the program and the spec's directory, read-only.
    Host { spec_dir: Option<&'a Path> },
    /// The image's.
    Image,
}

/// The run's network a container joins, and its pinned address there.
#[derive(Clone, Copy)]
struct OnNetwork<'a> {
    network: &'a str,
    ip: Option<std::net::Ipv4Addr>,
}

/// What a node's container is made of.
fn container_body(
    plan: &NodePlan,
    run_id: &str,
    image: String,
    files: Files,
    on: Option<OnNetwork>,
) -> ContainerCreateBody {
    let mut binds = Vec::new();
    let mut env: Vec<String> = Vec::new();
    let under = |p: &Path, dirs: &[PathBuf]| dirs.iter().any(|d| p.starts_with(d));
    let mut mounted: Vec<PathBuf> = vec![plan.dir.clone()];
    binds.push(format!("{0}:{0}", plan.dir.display()));
    if !plan.data_dir.starts_with(&plan.dir) {
        binds.push(format!("{0}:{0}", plan.data_dir.display()));
        mounted.push(plan.data_dir.clone());
    }
    if let Files::Host { spec_dir } = files {
        for dir in HOST_DIRS {
            // `/bin` is often a link to `usr/bin`: mount what it points at.
            if let Ok(real) = std::fs::canonicalize(dir) {
                binds.push(format!("{}:{dir}:ro", real.display()));
                mounted.push(PathBuf::from(dir));
            }
        }
        if let Some(d) = spec_dir.filter(|d| !under(d, &mounted)) {
            binds.push(format!("{0}:{0}:ro", d.display()));
            mounted.push(d.to_path_buf());
        }
        if !under(&plan.program, &mounted) {
            binds.push(format!("{0}:{0}:ro", plan.program.display()));
        }
        // The process runtime passes troupe's environment on; so does this.
        env.extend(std::env::vars().map(|(k, v)| format!("{k}={v}")));
    }
    // Certificates and keys, read-only, wherever they live outside the node's directory.
    let tls = plan.tls.iter().flat_map(|t| {
        [&t.cert, &t.key, &t.client_cert, &t.client_key]
            .into_iter()
            .chain(t.ca.as_ref())
    });
    for file in tls.chain(plan.ca.as_ref()) {
        if let Some(dir) = file.parent()
            && !under(file, &mounted)
        {
            binds.push(format!("{0}:{0}:ro", dir.display()));
            mounted.push(dir.to_path_buf());
        }
    }
    env.extend(plan.env.iter().map(|(k, v)| format!("{k}={v}")));
    let user = match &plan.user {
        Some((name, uid, gid, home)) => {
            env.push(format!("USER={name}"));
            env.push(format!("LOGNAME={name}"));
            env.push(format!("HOME={}", home.display()));
            format!("{uid}:{gid}")
        }
        None => format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid()),
    };
    let labels = HashMap::from([
        (RUN_LABEL.to_string(), run_id.to_string()),
        (NODE_LABEL.to_string(), plan.name.clone()),
        ("troupe.cluster".to_string(), plan.cluster.clone()),
    ]);
    let tmpfs = matches!(files, Files::Host { .. })
        .then(|| HashMap::from([("/tmp".to_string(), "mode=1777".to_string())]));
    let (network_mode, hostname, networking_config) = match on {
        None => ("host".to_string(), None, None),
        Some(on) => {
            let endpoint = EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: on.ip.map(|ip| ip.to_string()),
                    ..Default::default()
                }),
                aliases: Some(vec![plan.name.clone()]),
                ..Default::default()
            };
            (
                on.network.to_string(),
                Some(plan.name.clone()),
                Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(on.network.to_string(), endpoint)])),
                }),
            )
        }
    };
    ContainerCreateBody {
        hostname,
        networking_config,
        image: Some(image),
        entrypoint: Some(vec![plan.program.display().to_string()]),
        cmd: Some(plan.args.clone()),
        env: Some(env),
        working_dir: Some(plan.dir.display().to_string()),
        user: Some(user),
        labels: Some(labels),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(HostConfig {
            network_mode: Some(network_mode),
            binds: Some(binds),
            tmpfs,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Makes the empty image image-less containers start from, once per Engine: an import of an
/// empty tar, so no registry is needed.
pub(crate) async fn base_image(docker: &Docker) -> Result<(), String> {
    // Clusters start together: one import at a time, or the losers leave untagged copies.
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one = ONE_AT_A_TIME.lock().await;
    if docker.inspect_image(BASE_IMAGE).await.is_ok() {
        return Ok(());
    }
    let (repo, tag) = BASE_IMAGE.split_once(':').expect("a tagged name");
    let options = CreateImageOptions {
        from_src: Some("-".to_string()),
        repo: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        changes: vec!["LABEL troupe.base=host-files".to_string()],
        ..Default::default()
    };
    // An empty tar is two zeroed 512-byte blocks.
    let empty = bytes::Bytes::from(vec![0u8; 1024]);
    let mut progress = docker.create_image(Some(options), Some(bollard::body_full(empty)), None);
    while let Some(step) = progress.next().await {
        step.map_err(|e| format!("cannot create the base image {BASE_IMAGE}: {e}"))?;
    }
    Ok(())
}

/// The one task that owns a node's container while it runs.
async fn supervise(
    docker: Docker,
    container: String,
    node: String,
    copier: tokio::task::JoinHandle<()>,
    tell: Exited,
    mut ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    status: Arc<watch::Sender<Status>>,
) {
    let wait = WaitContainerOptions {
        condition: "not-running".to_string(),
    };
    let mut exited = docker.wait_container(&container, Some(wait));
    let signal = |sig: Signal| signal_container(&docker, &container, sig);
    let mut requested: Option<NodeState> = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    loop {
        let kill_timer = async {
            match kill_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The stream yields once, when the container stops (an error for a non-zero exit).
            _ = exited.next() => break,
            Some(ctl) = ctl_rx.recv() => match ctl {
                Ctl::Stop { signal: sig, grace } => {
                    if requested.is_none() {
                        requested = Some(NodeState::Stopped);
                    }
                    // A paused container must run to act on the signal (and some Engines
                    // refuse to signal one).
                    let _ = docker.unpause_container(&container).await;
                    signal(sig).await;
                    let at = crate::deadline::after(grace);
                    kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                }
                Ctl::Kill => {
                    requested = Some(NodeState::Killed);
                    signal(Signal::SIGKILL).await;
                    let _ = docker.unpause_container(&container).await;
                }
                Ctl::Pause => {
                    match docker.pause_container(&container).await {
                        Ok(()) => status.send_modify(|s| s.state = NodeState::Paused),
                        Err(e) => tracing::warn!(%node, "cannot pause container {container}: {e}"),
                    }
                }
                Ctl::Resume => {
                    if let Err(e) = docker.unpause_container(&container).await {
                        tracing::warn!(%node, "cannot resume container {container}: {e}");
                    }
                    status.send_modify(|s| {
                        s.state = if s.ready_at.is_some() { NodeState::Ready } else { NodeState::Starting };
                    });
                }
            },
            _ = kill_timer => {
                tracing::info!(%node, "grace period over; killing the container");
                signal(Signal::SIGKILL).await;
                kill_at = None;
            }
        }
    }
    // Forgotten as soon as the Engine reports the exit. Unlike a process group, whose unreaped
    // leader keeps its id ours, this leaves a short window in which the id could be reused, and
    // killed if troupe died in that very moment.
    if let Some((k, pid)) = &tell.watched {
        k.forget(*pid);
    }
    if let Some(net) = tell.net {
        let node = node.clone();
        let _ = tokio::task::spawn_blocking(move || net.node_exited(&node)).await;
    }
    // The output ends with the container; wait for its last lines to be in the log.
    let _ = tokio::time::timeout(Duration::from_secs(5), copier).await;
    let code = docker
        .inspect_container(&container, None)
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.exit_code);
    report_exit(
        &status,
        &node,
        requested,
        describe_exit(code, "container gone"),
    );
}

/// Sends `sig` to a container through the Engine (a container that is gone is no error).
pub(super) async fn signal_container(docker: &Docker, container: &str, sig: Signal) {
    let options = KillContainerOptions {
        signal: sig.as_str().to_string(),
    };
    if let Err(e) = docker.kill_container(container, Some(options)).await {
        tracing::debug!(%container, "signal {sig}: {e}");
    }
}

/// A container's exit code as the node's exit: the Engine reports a death by signal as 128 +
/// its number. `None`: `gone` (the Engine no longer knows it).
pub(super) fn describe_exit(code: Option<i64>, gone: &str) -> String {
    match code {
        Some(c @ 129..=192) => match Signal::try_from((c - 128) as i32) {
            Ok(sig) => format!("killed by {sig}"),
            Err(_) => format!("exit code {c}"),
        },
        Some(c) => format!("exit code {c}"),
        None => gone.to_string(),
    }
}

/// The node's last status: the state troupe asked for (stopped, killed), else exited, which
/// is worth a warning.
pub(super) fn report_exit(
    status: &watch::Sender<Status>,
    node: &str,
    requested: Option<NodeState>,
    exit: String,
) {
    if requested.is_none() {
        tracing::warn!(%node, "node exited unexpectedly: {exit}");
    }
    status.send_modify(|s| {
        s.state = requested.unwrap_or(NodeState::Exited);
        s.exit = Some(exit);
    });
}

/// Removes every container of a run (found by its `troupe.run` label), running or not, then
/// its networks. Returns the API paths of what was removed (as registered with the keeper).
pub async fn remove_run_async(docker: &Docker, run_id: &str) -> Result<Vec<String>, String> {
    let label = HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={run_id}")])]);
    let options = ListContainersOptions {
        all: true,
        filters: Some(label.clone()),
        ..Default::default()
    };
    let found = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| format!("cannot list the containers of run {run_id}: {e}"))?;
    let mut removed = Vec::new();
    for c in found {
        let Some(id) = c.id else { continue };
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        match docker.remove_container(&id, Some(options)).await {
            Ok(()) => {
                for name in c.names.iter().flatten() {
                    removed.push(container_delete_path(name.trim_start_matches('/')));
                }
            }
            Err(e) if not_found(&e) => {}
            Err(e) => tracing::warn!("cannot remove container {id} of run {run_id}: {e}"),
        }
    }
    let options = ListNetworksOptions {
        filters: Some(label),
    };
    let networks = docker
        .list_networks(Some(options))
        .await
        .map_err(|e| format!("cannot list the networks of run {run_id}: {e}"))?;
    for n in networks {
        let Some(name) = n.name else { continue };
        match docker.remove_network(&name).await {
            Ok(()) => removed.push(network_delete_path(&name)),
            Err(e) if not_found(&e) => {}
            Err(e) => tracing::warn!("cannot remove network {name} of run {run_id}: {e}"),
        }
    }
    Ok(removed)
}

/// [`remove_run_async`] from blocking code: on a thread and runtime of its own, so it works
/// whatever runtime (if any) the caller is in.
pub fn remove_run(run_id: &str) -> Result<Vec<String>, String> {
    let run_id = run_id.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        rt.block_on(async {
            let docker = connect().await?;
            remove_run_async(&docker, &run_id).await
        })
    })
    .join()
    .unwrap_or_else(|_| Err("container cleanup panicked".to_string()))
}

/// Where a run that uses containers records its id, so that the next `up` or `down --force`
/// on the state directory removes what a crashed troupe left.
pub const RUN_RECORD: &str = "docker.run";

/// Removes the containers and networks of the run recorded in `state_dir`, if any. Returns
/// how many.
pub fn remove_recorded(state_dir: &Path) -> usize {
    let Ok(id) = std::fs::read_to_string(state_dir.join(RUN_RECORD)) else {
        return 0;
    };
    match remove_run(id.trim()) {
        Ok(removed) => {
            let _ = std::fs::remove_file(state_dir.join(RUN_RECORD));
            removed.len()
        }
        Err(e) => {
            eprintln!(
                "troupe: could not remove the containers of run {}: {e}",
                id.trim()
            );
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn node(extra: &str) -> NodePlan {
        let text = format!(
            "[clusters.db]\nnodes = 1\nbinary = \"/opt/db/bin/db\"\nruntime = \"docker\"\nargs = [\"--data={{{{ node.data_dir }}}}\"]\nenv = {{ MODE = \"test\" }}\n{extra}"
        );
        let spec = troupe_spec::Spec::from_str("db.toml", &text).unwrap();
        let plan = crate::plan::resolve(
            &spec,
            Path::new("/state"),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            "abc123",
        );
        let mut plan = plan.unwrap_or_else(|e| panic!("{e:?}"));
        plan.clusters.remove(0).nodes.remove(0)
    }

    fn binds(body: &ContainerCreateBody) -> Vec<String> {
        body.host_config.as_ref().unwrap().binds.clone().unwrap()
    }

    #[test]
    fn an_image_less_container_sees_host_files_read_only_and_its_directory_read_write() {
        let n = node("image = \"db:local\"");
        let body = container_body(
            &n,
            "abc123",
            BASE_IMAGE.into(),
            Files::Host {
                spec_dir: Some(Path::new("/specs")),
            },
            None,
        );
        let binds = binds(&body);
        assert!(
            binds.contains(&"/state/nodes/db-1:/state/nodes/db-1".to_string()),
            "{binds:?}"
        );
        assert!(binds.iter().any(|b| b.ends_with(":/usr:ro")), "{binds:?}");
        assert!(binds.iter().any(|b| b.ends_with(":/etc:ro")), "{binds:?}");
        assert!(binds.contains(&"/specs:/specs:ro".to_string()), "{binds:?}");
        // Every host mount is read-only; only the node's directory is writable.
        let writable: Vec<_> = binds.iter().filter(|b| !b.ends_with(":ro")).collect();
        assert_eq!(writable, ["/state/nodes/db-1:/state/nodes/db-1"]);
        let host = body.host_config.as_ref().unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(body.entrypoint, Some(vec!["/opt/db/bin/db".to_string()]));
        assert_eq!(
            body.cmd,
            Some(vec!["--data=/state/nodes/db-1/data".to_string()])
        );
        assert_eq!(body.working_dir.as_deref(), Some("/state/nodes/db-1"));
        let env = body.env.clone().unwrap();
        assert!(env.contains(&"MODE=test".to_string()), "{env:?}");
        assert!(
            env.iter().any(|e| e.starts_with("PATH=")),
            "troupe's environment: {env:?}"
        );
        let labels = body.labels.clone().unwrap();
        assert_eq!(labels[RUN_LABEL], "abc123");
        assert_eq!(labels[NODE_LABEL], "db-1");
        let me = format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid());
        assert_eq!(body.user.as_deref(), Some(me.as_str()));
    }

    #[test]
    fn an_image_gets_only_the_nodes_files_and_the_specs_environment() {
        let n = node("image = \"db:local\"");
        let body = container_body(&n, "abc123", "db:local".into(), Files::Image, None);
        assert_eq!(
            binds(&body),
            ["/state/nodes/db-1:/state/nodes/db-1".to_string()]
        );
        assert_eq!(body.image.as_deref(), Some("db:local"));
        let env = body.env.clone().unwrap();
        assert!(!env.iter().any(|e| e.starts_with("PATH=")), "{env:?}");
        assert!(env.contains(&"MODE=test".to_string()), "{env:?}");
    }

    #[test]
    fn certificates_outside_the_nodes_directory_are_mounted_read_only() {
        let n = node("image = \"db:local\"\n[tls]\n");
        let body = container_body(&n, "abc123", "db:local".into(), Files::Image, None);
        let binds = binds(&body);
        let tls = n.tls.as_ref().expect("certificates planned");
        // The node's own certificates are in its (mounted) directory; the CA's is not.
        assert!(tls.cert.starts_with(&n.dir), "{tls:?}");
        let ca = tls.ca.as_ref().or(n.ca.as_ref()).expect("a CA certificate");
        let dir = ca.parent().unwrap().display().to_string();
        assert!(binds.contains(&format!("{dir}:{dir}:ro")), "{binds:?}");
    }
}
