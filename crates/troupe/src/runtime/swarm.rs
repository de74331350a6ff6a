//! The swarm runtime: each node is a service of a Docker Swarm (one replica, never restarted
//! by the swarm), driven through the Engine API of a manager (bollard), never by running
//! `docker`.
//!
//! Why it is shaped this way:
//! - **Addresses.** Nodes reach each other by name (`nats-2`) on an attachable overlay network
//!   troupe creates per run; every port is published with the same number inside and out
//!   (on the task's host on a one-host swarm, through the routing mesh on several hosts or a
//!   remote Engine), so troupe and the host reach a node at `<Engine's host>:<port>` and its
//!   peers at `<name>:<port>`. Templates render the peers' view into what the node reads and
//!   the host's view into probes, the descriptor and `troupe env` (`plan`); a node listens on
//!   `node.listen.<port>` (`0.0.0.0:<port>` here), because the published ports arrive on
//!   another interface than the overlay's.
//! - **Files.** A task may run on any host, so nothing of the host is mounted: rendered files
//!   and certificates become configs, private keys secrets, each mounted at the path it has
//!   on the host, so templates that name `node.files.*` or `node.tls.*` work unchanged. The
//!   data directory is a named volume; once a node's first task is placed, its service is
//!   pinned to that host (`node.id == ...`), so `stop`/`start`/`restart` keep its data.
//! - **Stopping.** The restart policy is `none`: a killed node stays dead. `start` replaces
//!   the dead task by a forced update. Signals, `kill` and `pause` go to the task's container
//!   when it runs on the Engine troupe talks to; on another host `stop` scales the service to
//!   0 (the service's stop signal and grace are the spec's), and `kill`/`pause` are refused
//!   ([`NodeRuntime::refuse`]).
//! - **Nothing left behind.** Services, the network, configs, secrets, volumes and the tasks'
//!   containers carry `troupe.run=<run id>` and `troupe.node`; [`remove_run`] removes them by
//!   label, never by name pattern, and [`delete_paths`] names the API paths a keeper deletes
//!   if troupe dies. Until a keeper does, it kills each local task's first process (as for
//!   containers), and the next `up` or `down --force` removes the rest ([`RUN_RECORD`]).

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bollard::Docker;
use bollard::models::{
    ConfigSpec, EndpointPortConfig, EndpointPortConfigProtocolEnum,
    EndpointPortConfigPublishModeEnum, EndpointSpec, LocalNodeState, Mount, MountType,
    MountVolumeOptions, NetworkAttachmentConfig, NetworkCreateRequest, SecretSpec, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, Task, TaskSpec, TaskSpecContainerSpec,
    TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile, TaskSpecContainerSpecFile1,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    ListConfigsOptions, ListContainersOptions, ListNetworksOptions, ListSecretsOptions,
    ListServicesOptions, ListTasksOptions, ListVolumesOptions, LogsOptions, RemoveVolumeOptions,
    UpdateServiceOptions, WaitContainerOptions,
};
use futures_util::{Stream, StreamExt};
use nix::sys::signal::Signal;
use tokio::sync::{OnceCell, mpsc, watch};
use troupe_spec::NodeState;

use super::docker::{NODE_LABEL, RUN_LABEL, describe_exit, report_exit, signal_container};
use super::{Ctl, NodeHandle, NodeRuntime, Status};
use crate::keeper::Keeper;
use crate::net::docker::DockerNet;
use crate::plan::NodePlan;

/// How long a node's task may take to be placed and run before `start` gives up.
const TASK_START: Duration = Duration::from_secs(60);
/// How often a task's state is read while waiting for it (the Engine has no task events).
const TASK_POLL: Duration = Duration::from_millis(50);
/// How long `remove_run` waits for a run's tasks to go before removing what they used.
const TASKS_GONE: Duration = Duration::from_secs(30);

/// What one run shares between its swarm clusters: the Engine, the overlay network, where
/// each node's task runs.
pub struct SwarmRun {
    run_id: String,
    client: OnceCell<Docker>,
    /// The swarm node id of the Engine troupe talks to, and whether troupe reaches nodes
    /// through the routing mesh (a remote Engine, or a swarm of several hosts).
    local: OnceCell<(String, bool)>,
    network: OnceCell<String>,
    /// The swarm node each node's first task ran on: later tasks are pinned there.
    pinned: Mutex<HashMap<String, String>>,
    /// Nodes whose current task runs on another host than the Engine's, with that host.
    remote: Mutex<HashMap<String, String>>,
    /// Files every node gets besides its own: the run's CA certificates and their bundle.
    shared: Vec<PathBuf>,
    /// Kills the first process of each task on this host if troupe dies.
    keeper: Option<Arc<Keeper>>,
}

impl SwarmRun {
    /// `shared`: files every node gets (the run's CAs); with a keeper, the first process of
    /// each task on this host dies with troupe.
    pub fn new(run_id: &str, shared: Vec<PathBuf>, keeper: Option<Arc<Keeper>>) -> Arc<SwarmRun> {
        Arc::new(SwarmRun {
            shared,
            keeper,
            run_id: run_id.to_string(),
            client: OnceCell::new(),
            local: OnceCell::new(),
            network: OnceCell::new(),
            pinned: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
        })
    }

    async fn client(&self) -> Result<&Docker, String> {
        self.client.get_or_try_init(super::docker::connect).await
    }

    /// The Engine's own swarm node id; an error saying what to do when it is in no swarm or
    /// cannot manage it.
    async fn local_node(&self, docker: &Docker) -> Result<&(String, bool), String> {
        self.local
            .get_or_try_init(|| async {
                let info = docker
                    .info()
                    .await
                    .map_err(|e| format!("cannot read the Docker Engine's info: {e}"))?;
                let swarm = info.swarm.unwrap_or_default();
                if swarm.local_node_state != Some(LocalNodeState::ACTIVE) {
                    return Err("the Docker Engine is not part of a swarm\n(hint: `docker swarm init --advertise-addr 127.0.0.1` makes a one-host swarm; or point DOCKER_HOST at a manager of yours)".to_string());
                }
                if swarm.control_available != Some(true) {
                    return Err("the Docker Engine is a swarm worker, not a manager: services can only be created on a manager\n(hint: point DOCKER_HOST at a manager, e.g. DOCKER_HOST=ssh://user@manager)".to_string());
                }
                let mesh = remote_engine_host().is_some() || swarm.nodes.unwrap_or(1) > 1;
                let id = swarm
                    .node_id
                    .ok_or_else(|| "the Docker Engine reports no swarm node id".to_string())?;
                Ok((id, mesh))
            })
            .await
    }

    /// The run's overlay network (created on first use), by id.
    async fn network(&self, docker: &Docker) -> Result<&String, String> {
        self.network
            .get_or_try_init(|| async {
                let name = network_name(&self.run_id);
                let request = NetworkCreateRequest {
                    name: name.clone(),
                    driver: Some("overlay".to_string()),
                    attachable: Some(true),
                    labels: Some(labels(&self.run_id, None)),
                    ..Default::default()
                };
                match docker.create_network(request).await {
                    Ok(r) => Ok(r.id),
                    Err(e) if conflict(&e) => docker
                        .inspect_network(&name, None)
                        .await
                        .map_err(|e| format!("cannot inspect network {name}: {e}"))
                        .and_then(|n| n.id.ok_or_else(|| format!("network {name} has no id"))),
                    Err(e) => Err(format!("cannot create the overlay network {name}: {e}")),
                }
            })
            .await
    }
}

/// Runs one cluster's nodes as services of the swarm the Engine belongs to.
pub struct SwarmRuntime {
    run: Arc<SwarmRun>,
    image: String,
    /// Faults inside the tasks' namespaces, with `network = "namespaces"`.
    net: Option<Arc<DockerNet>>,
}

impl SwarmRuntime {
    pub fn new(run: Arc<SwarmRun>, image: String, net: Option<Arc<DockerNet>>) -> SwarmRuntime {
        SwarmRuntime { run, image, net }
    }
}

/// The host of the Engine troupe talks to, when `DOCKER_HOST` names another machine
/// (`tcp://manager:2376`, `ssh://user@manager`): troupe reaches swarm nodes there, through the
/// routing mesh. `None` for the local socket.
pub fn remote_engine_host() -> Option<String> {
    engine_host_of(&std::env::var("DOCKER_HOST").ok()?)
}

fn engine_host_of(docker_host: &str) -> Option<String> {
    let (scheme, rest) = docker_host.split_once("://")?;
    if !matches!(scheme, "tcp" | "http" | "https" | "ssh") {
        return None;
    }
    let rest = rest.split('/').next()?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = match rest.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => rest.split(':').next()?,
    };
    let local = matches!(host, "" | "localhost" | "127.0.0.1" | "::1");
    (!local).then(|| host.to_string())
}

/// The run's overlay network.
pub fn network_name(run_id: &str) -> String {
    format!("troupe-{run_id}")
}

/// A node's service.
pub fn service_name(run_id: &str, node: &str) -> String {
    format!("troupe-{run_id}-{node}")
}

/// A node's data volume.
pub fn volume_name(run_id: &str, node: &str) -> String {
    format!("troupe-{run_id}-{node}-data")
}

/// The labels of every object of a run (and of a node's).
fn labels(run_id: &str, node: Option<&NodePlan>) -> HashMap<String, String> {
    let mut l = HashMap::from([(RUN_LABEL.to_string(), run_id.to_string())]);
    if let Some(n) = node {
        l.insert(NODE_LABEL.to_string(), n.name.clone());
        l.insert("troupe.cluster".to_string(), n.cluster.clone());
    }
    l
}

/// One file a node's task gets from the swarm: a config, or a secret for private keys.
#[derive(Debug, Clone, PartialEq)]
struct Shipped {
    /// The config's or secret's name: unique per run.
    name: String,
    /// Where the task sees it: the path it has on troupe's host.
    path: PathBuf,
    mode: u32,
    secret: bool,
}

/// Every file a node's task needs, in a stable order (their names are derived from it):
/// rendered files, its certificates and keys (the bad ones too), then the run's `shared`
/// files (every CA certificate and their bundle), each once.
fn shipped(run_id: &str, plan: &NodePlan, shared: &[PathBuf]) -> Vec<Shipped> {
    let mut files: Vec<(PathBuf, u32, bool)> = plan
        .files
        .iter()
        .map(|(p, _, mode)| (p.clone(), *mode, false))
        .collect();
    if let Some(t) = &plan.tls {
        files.push((t.cert.clone(), 0o444, false));
        files.push((t.client_cert.clone(), 0o444, false));
        files.extend(t.ca.iter().map(|c| (c.clone(), 0o444, false)));
        files.push((t.key.clone(), 0o400, true));
        files.push((t.client_key.clone(), 0o400, true));
        for pair in t.bad.values() {
            files.push((pair.cert.clone(), 0o444, false));
            files.push((pair.key.clone(), 0o400, true));
        }
    }
    for f in shared.iter().chain(plan.ca.as_ref()) {
        if !files.iter().any(|(p, _, _)| p == f) {
            files.push((f.clone(), 0o444, false));
        }
    }
    files
        .into_iter()
        .enumerate()
        .map(|(i, (path, mode, secret))| Shipped {
            name: format!(
                "troupe-{run_id}-{}-{}{i}",
                plan.name,
                if secret { "s" } else { "c" }
            ),
            path,
            mode,
            secret,
        })
        .collect()
}

/// The Engine API paths that delete every object a node list of one run creates, in an
/// order that works: services first (their tasks' containers go with them), then configs and
/// secrets, the data volumes and the network. Names are derived from the run id and the
/// nodes, so a keeper can be given them before anything exists; a volume or the network can
/// only go once the tasks that use them are gone (the keeper retries those on 409).
pub fn delete_paths(run_id: &str, nodes: &[&NodePlan], shared: &[PathBuf]) -> Vec<String> {
    let mut paths: Vec<String> = nodes
        .iter()
        .map(|n| format!("/services/{}", service_name(run_id, &n.name)))
        .collect();
    for n in nodes {
        for s in shipped(run_id, n, shared) {
            let kind = if s.secret { "secrets" } else { "configs" };
            paths.push(format!("/{kind}/{}", s.name));
        }
    }
    paths.extend(
        nodes
            .iter()
            .map(|n| format!("/volumes/{}", volume_name(run_id, &n.name))),
    );
    if !nodes.is_empty() {
        paths.push(format!("/networks/{}", network_name(run_id)));
    }
    paths
}

/// What a node's service is made of (`force_update` and the pinned host are filled in later).
fn service_spec(
    plan: &NodePlan,
    shared: &[PathBuf],
    run_id: &str,
    image: &str,
    network: &str,
    ids: &HashMap<String, String>,
    publish: EndpointPortConfigPublishModeEnum,
) -> ServiceSpec {
    let labels = labels(run_id, Some(plan));
    let files = shipped(run_id, plan, shared);
    let configs = files
        .iter()
        .filter(|s| !s.secret)
        .map(|s| TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(s.path.display().to_string()),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(s.mode),
            }),
            config_name: Some(s.name.clone()),
            config_id: ids.get(&s.name).cloned(),
            ..Default::default()
        })
        .collect();
    let secrets = files
        .iter()
        .filter(|s| s.secret)
        .map(|s| TaskSpecContainerSpecSecrets {
            file: Some(TaskSpecContainerSpecFile {
                name: Some(s.path.display().to_string()),
                uid: Some("0".into()),
                gid: Some("0".into()),
                mode: Some(s.mode),
            }),
            secret_name: Some(s.name.clone()),
            secret_id: ids.get(&s.name).cloned(),
        })
        .collect();
    let data = Mount {
        target: Some(plan.data_dir.display().to_string()),
        source: Some(volume_name(run_id, &plan.name)),
        typ: Some(MountType::VOLUME),
        volume_options: Some(MountVolumeOptions {
            labels: Some(labels.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ports = plan
        .ports
        .values()
        .map(|p| EndpointPortConfig {
            protocol: Some(EndpointPortConfigProtocolEnum::TCP),
            target_port: Some(i64::from(*p)),
            published_port: Some(i64::from(*p)),
            publish_mode: Some(publish),
            ..Default::default()
        })
        .collect();
    ServiceSpec {
        name: Some(service_name(run_id, &plan.name)),
        labels: Some(labels.clone()),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_string()),
                labels: Some(labels),
                command: Some(vec![plan.program.display().to_string()]),
                args: Some(plan.args.clone()),
                hostname: Some(plan.name.clone()),
                env: Some(plan.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                dir: Some(plan.dir.display().to_string()),
                mounts: Some(vec![data]),
                stop_signal: Some(plan.stop.signal_name.clone()),
                stop_grace_period: Some(plan.stop.grace.as_nanos() as i64),
                configs: Some(configs),
                secrets: Some(secrets),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            placement: Some(TaskSpecPlacement {
                constraints: Some(plan.placement.clone()),
                ..Default::default()
            }),
            networks: Some(vec![NetworkAttachmentConfig {
                target: Some(network.to_string()),
                aliases: Some(vec![plan.name.clone()]),
                ..Default::default()
            }]),
            force_update: Some(0),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
            ..Default::default()
        }),
        // A node killed right after a start must not pause the next start's update.
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::CONTINUE),
            monitor: Some(0),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Whether the Engine answered "not found".
fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Whether the Engine answered "already exists" (or "in use").
fn conflict(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            ..
        }
    )
}

fn label_filter(run_id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={run_id}")])])
}

/// The tasks of a service, newest first.
async fn tasks(docker: &Docker, service: &str) -> Result<Vec<Task>, String> {
    let options = ListTasksOptions {
        filters: Some(HashMap::from([(
            "service".to_string(),
            vec![service.to_string()],
        )])),
    };
    let mut tasks = docker
        .list_tasks(Some(options))
        .await
        .map_err(|e| format!("cannot list the tasks of service {service}: {e}"))?;
    tasks.sort_by_key(|t| std::cmp::Reverse(t.version.as_ref().and_then(|v| v.index)));
    Ok(tasks)
}

fn state(t: &Task) -> Option<TaskState> {
    t.status.as_ref().and_then(|s| s.state)
}

/// Whether a task has ended (or will never run).
fn ended(s: Option<TaskState>) -> bool {
    matches!(
        s,
        Some(
            TaskState::COMPLETE
                | TaskState::SHUTDOWN
                | TaskState::FAILED
                | TaskState::REJECTED
                | TaskState::REMOVE
                | TaskState::ORPHANED
        )
    )
}

/// What a task's status says went wrong, for messages.
fn task_error(t: &Task) -> String {
    let s = t.status.clone().unwrap_or_default();
    let state = s.state.map(|s| s.to_string()).unwrap_or_default();
    match (s.err, s.message) {
        (Some(e), _) => format!("{state}: {e}"),
        (None, Some(m)) => format!("{state}: {m}"),
        (None, None) => state,
    }
}

/// Creates the node's configs and secrets from the files troupe wrote (already there: fine).
/// Returns their ids by name: a service refers to them by both.
async fn ship_files(
    docker: &Docker,
    run_id: &str,
    plan: &NodePlan,
    shared: &[PathBuf],
) -> Result<HashMap<String, String>, String> {
    let labels = labels(run_id, Some(plan));
    let mut ids = HashMap::new();
    for s in shipped(run_id, plan, shared) {
        let kind = if s.secret { "secret" } else { "config" };
        let failed = |e: bollard::errors::Error| {
            format!(
                "cannot create {kind} {} for {}: {e}",
                s.name,
                s.path.display()
            )
        };
        let data = std::fs::read(&s.path)
            .map_err(|e| format!("cannot read {} for the swarm: {e}", s.path.display()))?;
        let data = Some(base64::engine::general_purpose::STANDARD.encode(data));
        let id = if s.secret {
            let spec = SecretSpec {
                name: Some(s.name.clone()),
                labels: Some(labels.clone()),
                data,
                ..Default::default()
            };
            match docker.create_secret(spec).await {
                Ok(r) => r.id,
                Err(e) if conflict(&e) => docker
                    .inspect_secret(&s.name)
                    .await
                    .map_err(failed)?
                    .id
                    .unwrap_or_default(),
                Err(e) => return Err(failed(e)),
            }
        } else {
            let spec = ConfigSpec {
                name: Some(s.name.clone()),
                labels: Some(labels.clone()),
                data,
                ..Default::default()
            };
            match docker.create_config(spec).await {
                Ok(r) => r.id,
                Err(e) if conflict(&e) => docker
                    .inspect_config(&s.name)
                    .await
                    .map_err(failed)?
                    .id
                    .unwrap_or_default(),
                Err(e) => return Err(failed(e)),
            }
        };
        ids.insert(s.name, id);
    }
    Ok(ids)
}

impl NodeRuntime for SwarmRuntime {
    fn name(&self) -> &'static str {
        "swarm"
    }

    fn refuse(&self, node: &str, op: &str) -> Option<String> {
        let remote = self.run.remote.lock().expect("remote").get(node).cloned()?;
        Some(format!(
            "cannot {op} {node}: its task runs on swarm host {remote}, not on the Docker Engine troupe talks to; only `stop`, `start` and `restart` reach tasks on other hosts (they scale the service)"
        ))
    }

    fn spawn<'a>(
        &'a self,
        plan: &'a NodePlan,
    ) -> Pin<Box<dyn Future<Output = Result<NodeHandle, String>> + Send + 'a>> {
        Box::pin(async move {
            let run = &self.run;
            let docker = run.client().await?.clone();
            let (local, mesh) = run.local_node(&docker).await?.clone();
            // On a swarm of several hosts (or a remote Engine) troupe reaches every node at
            // one address whichever host runs it: that takes the routing mesh. On one host
            // a port published on the task's host is enough, and works where the mesh does
            // not (an ingress port never answered on the machines troupe is tested on).
            let publish = if mesh {
                EndpointPortConfigPublishModeEnum::INGRESS
            } else {
                EndpointPortConfigPublishModeEnum::HOST
            };
            let network = run.network(&docker).await?.clone();
            let service = service_name(&run.run_id, &plan.name);
            let current = match docker.inspect_service(&service, None).await {
                Ok(s) => Some(s),
                Err(e) if not_found(&e) => None,
                Err(e) => return Err(format!("cannot inspect service {service}: {e}")),
            };
            let old: HashSet<String> = match &current {
                Some(_) => tasks(&docker, &service)
                    .await?
                    .into_iter()
                    .filter_map(|t| t.id)
                    .collect(),
                None => HashSet::new(),
            };
            let pinned = run.pinned.lock().expect("pinned").get(&plan.name).cloned();
            let ids = ship_files(&docker, &run.run_id, plan, &run.shared).await?;
            let mut spec = service_spec(
                plan,
                &run.shared,
                &run.run_id,
                &self.image,
                &network,
                &ids,
                publish,
            );
            match current {
                None => {
                    docker
                        .create_service(spec, None)
                        .await
                        .map_err(|e| format!("cannot create service {service}: {e}"))?;
                }
                Some(_) => {
                    // A new task replaces the ended one: same spec, pinned to the host that
                    // holds the node's data.
                    if let Some(id) = &pinned {
                        let template = spec.task_template.as_mut().expect("a task template");
                        let p = template.placement.get_or_insert_with(Default::default);
                        p.constraints
                            .get_or_insert_with(Vec::new)
                            .push(format!("node.id=={id}"));
                    }
                    update(&docker, &service, |current| {
                        let mut spec = spec.clone();
                        let before = current
                            .task_template
                            .as_ref()
                            .and_then(|t| t.force_update)
                            .unwrap_or(0);
                        let template = spec.task_template.as_mut().expect("a task template");
                        template.force_update = Some(before + 1);
                        spec
                    })
                    .await?;
                }
            }
            let task = running_task(&docker, &service, &old, &self.image).await?;
            let node_id = task.node_id.clone().unwrap_or_default();
            run.pinned
                .lock()
                .expect("pinned")
                .entry(plan.name.clone())
                .or_insert(node_id.clone());
            let container = task
                .status
                .as_ref()
                .and_then(|s| s.container_status.as_ref())
                .and_then(|c| c.container_id.clone())
                .unwrap_or_default();
            let task_id = task.id.clone().unwrap_or_default();
            let on_engine = node_id == local;
            let remote_host = if on_engine {
                None
            } else {
                Some(match docker.inspect_node(&node_id).await {
                    Ok(n) => n
                        .status
                        .and_then(|s| s.addr)
                        .unwrap_or_else(|| node_id.clone()),
                    Err(_) => node_id.clone(),
                })
            };
            // troupe enters namespaces on its own host: with a remote Engine, none is its.
            if let Some(net) = &self.net {
                net.task_host(&plan.name, remote_host.clone().or_else(remote_engine_host));
            }
            {
                let mut remote = run.remote.lock().expect("remote");
                match remote_host {
                    None => remote.remove(&plan.name),
                    Some(host) => remote.insert(plan.name.clone(), host),
                };
            }
            let owned = Owned {
                service,
                task: task_id,
                container,
                on_engine,
            };
            let net = self.net.clone().map(|n| (n, network_name(&run.run_id)));
            start(docker, plan, owned, run.keeper.clone(), net).await
        })
    }
}

/// Waits for the service's new task (one not in `old`) to run; fails with the task's own
/// error when it ends or is rejected first (a missing image, an impossible constraint...).
async fn running_task(
    docker: &Docker,
    service: &str,
    old: &HashSet<String>,
    image: &str,
) -> Result<Task, String> {
    let deadline = crate::deadline::after(TASK_START);
    let mut last = "no task yet".to_string();
    loop {
        let new = tasks(docker, service)
            .await?
            .into_iter()
            .find(|t| t.id.as_ref().is_some_and(|id| !old.contains(id)));
        if let Some(t) = new {
            match state(&t) {
                Some(TaskState::RUNNING) => return Ok(t),
                s if ended(s) => {
                    let err = task_error(&t);
                    let hint = if err.contains("No such image") {
                        format!(
                            "\n(hint: troupe never pulls: build or load {image} on every swarm host that may run the node)"
                        )
                    } else {
                        String::new()
                    };
                    return Err(format!(
                        "the task of service {service} did not start: {err}{hint}"
                    ));
                }
                // No host meets the placement: the swarm would keep it pending forever.
                Some(TaskState::PENDING)
                    if t.status
                        .as_ref()
                        .and_then(|s| s.err.as_deref())
                        .is_some_and(|e| e.contains("no suitable node")) =>
                {
                    let constraints = t
                        .spec
                        .as_ref()
                        .and_then(|s| s.placement.as_ref())
                        .and_then(|p| p.constraints.clone())
                        .unwrap_or_default();
                    return Err(format!(
                        "the task of service {service} cannot be placed: {}\n(hint: no host of the swarm meets the placement {constraints:?}; `docker node ls` and `docker node inspect` show the hosts and their labels)",
                        task_error(&t)
                    ));
                }
                _ => last = task_error(&t),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the task of service {service} is not running after {}s (last seen: {last})\n(hint: `docker service ps {service} --no-trunc` says why; a placement constraint no host meets keeps it pending)",
                TASK_START.as_secs()
            ));
        }
        tokio::time::sleep(TASK_POLL).await;
    }
}

/// Copies the task's output to the node's log and hands the task to its supervising task.
async fn start(
    docker: Docker,
    plan: &NodePlan,
    t: Owned,
    keeper: Option<Arc<Keeper>>,
    net: Option<(Arc<DockerNet>, String)>,
) -> Result<NodeHandle, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plan.log)
        .map_err(|e| format!("cannot open log {}: {e}", plan.log.display()))?;
    let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    let options = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    // On the Engine's host the container's log ends when the container does; a task's log
    // (another host) is followed until the task has ended.
    let mut output: Pin<Box<dyn Stream<Item = _> + Send>> = if t.on_engine {
        Box::pin(docker.logs(&t.container, Some(options)))
    } else {
        Box::pin(docker.task_logs(&t.task, Some(options)))
    };
    let mut log = tokio::fs::File::from_std(log);
    let copier = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(Ok(chunk)) = output.next().await {
            let _ = log.write_all(&chunk.into_bytes()).await;
            let _ = log.flush().await;
        }
        let _ = log.flush().await;
    });
    let inspected = if t.on_engine {
        docker.inspect_container(&t.container, None).await.ok()
    } else {
        None
    };
    let pid = inspected
        .as_ref()
        .and_then(|i| i.state.as_ref())
        .and_then(|s| s.pid)
        .unwrap_or(0)
        .max(0) as u32;
    // The task's address on the run's overlay network, which its peers' tables name.
    let addr = |network: &str| -> Option<std::net::Ipv4Addr> {
        inspected
            .as_ref()?
            .network_settings
            .as_ref()?
            .networks
            .as_ref()?
            .get(network)?
            .ip_address
            .as_ref()?
            .parse()
            .ok()
    };
    // As with the docker runtime: the first process leads its own group, so the keeper kills
    // it (and the task with it) if troupe dies; the service stays until the next `up` or
    // `down --force` removes it.
    let watched = keeper.filter(|_| pid > 0).map(|k| (k, pid));
    if let Some((k, pid)) = &watched {
        k.watch(*pid);
    }
    // As on the docker runtime: a (new) task's fresh namespace gets the active faults before
    // the node counts as started, or the start fails. A task on another host has none troupe
    // can enter; faults on it are refused (see DockerNet::check).
    let net = net.filter(|_| t.on_engine && remote_engine_host().is_none());
    if let Some((n, network)) = &net {
        let applied = match addr(network) {
            Some(ip) if pid > 0 => {
                let (n, node) = (n.clone(), plan.name.clone());
                tokio::task::spawn_blocking(move || n.task_started(&node, pid, ip))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
            }
            _ => Err(format!(
                "the Engine gave no pid or no address on {network} for container {}",
                t.container
            )),
        };
        if let Err(e) = applied {
            copier.abort();
            if let Some((k, pid)) = &watched {
                k.forget(*pid);
            }
            if let Err(e) = scale_to_zero(&docker, &t.service).await {
                tracing::warn!(node = %plan.name, "{e}");
            }
            return Err(format!(
                "cannot apply the active faults in the task of service {}: {e}",
                t.service
            ));
        }
    }
    let net = net.map(|(n, _)| n);
    let (handle, ctl_rx, status) = NodeHandle::new(pid, log_offset);
    tokio::spawn(supervise(
        docker,
        t,
        plan.name.clone(),
        copier,
        Exited { watched, net },
        ctl_rx,
        status,
    ));
    Ok(handle)
}

/// Who is told when a node's task has exited.
struct Exited {
    /// The keeper and the pid it would kill: forgotten.
    watched: Option<(Arc<Keeper>, u32)>,
    /// Faults inside the tasks: the node's namespace is gone.
    net: Option<Arc<DockerNet>>,
}

/// The task a node's supervisor owns.
struct Owned {
    service: String,
    task: String,
    container: String,
    on_engine: bool,
}

/// The one task that owns a node's swarm task while it runs.
async fn supervise(
    docker: Docker,
    t: Owned,
    node: String,
    copier: tokio::task::JoinHandle<()>,
    Exited { watched, net }: Exited,
    mut ctl_rx: mpsc::UnboundedReceiver<Ctl>,
    status: Arc<watch::Sender<Status>>,
) {
    let exited = {
        let docker = docker.clone();
        let (task, container, on_engine) = (t.task.clone(), t.container.clone(), t.on_engine);
        async move {
            if on_engine {
                let wait = WaitContainerOptions {
                    condition: "not-running".to_string(),
                };
                let _ = docker.wait_container(&container, Some(wait)).next().await;
            } else {
                loop {
                    match docker.inspect_task(&task).await {
                        Ok(t) if !ended(state(&t)) => {}
                        _ => break,
                    }
                    tokio::time::sleep(TASK_POLL * 4).await;
                }
            }
        }
    };
    tokio::pin!(exited);
    let signal = |sig: Signal| signal_container(&docker, &t.container, sig);
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
            _ = &mut exited => break,
            Some(ctl) = ctl_rx.recv() => match ctl {
                Ctl::Stop { signal: sig, grace } => {
                    if requested.is_none() {
                        requested = Some(NodeState::Stopped);
                    }
                    if t.on_engine {
                        let _ = docker.unpause_container(&t.container).await;
                        signal(sig).await;
                        let at = crate::deadline::after(grace);
                        kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                    } else if let Err(e) = scale_to_zero(&docker, &t.service).await {
                        tracing::warn!(%node, "{e}");
                    }
                }
                Ctl::Kill => {
                    requested = Some(NodeState::Killed);
                    if t.on_engine {
                        signal(Signal::SIGKILL).await;
                        let _ = docker.unpause_container(&t.container).await;
                    } else if let Err(e) = scale_to_zero(&docker, &t.service).await {
                        tracing::warn!(%node, "{e}");
                    }
                }
                Ctl::Pause if t.on_engine => {
                    match docker.pause_container(&t.container).await {
                        Ok(()) => status.send_modify(|s| s.state = NodeState::Paused),
                        Err(e) => tracing::warn!(%node, "cannot pause container {}: {e}", t.container),
                    }
                }
                Ctl::Resume if t.on_engine => {
                    if let Err(e) = docker.unpause_container(&t.container).await {
                        tracing::warn!(%node, "cannot resume container {}: {e}", t.container);
                    }
                    status.send_modify(|s| {
                        s.state = if s.ready_at.is_some() { NodeState::Ready } else { NodeState::Starting };
                    });
                }
                Ctl::Pause | Ctl::Resume => {
                    tracing::warn!(%node, "pause and resume need the task on the Engine's host");
                }
            },
            _ = kill_timer => {
                tracing::info!(%node, "grace period over; killing the task's container");
                signal(Signal::SIGKILL).await;
                kill_at = None;
            }
        }
    }
    if let Some((k, pid)) = &watched {
        k.forget(*pid);
    }
    // Its namespace is gone: never entered again; the others refuse connections to it.
    if let Some(net) = net {
        let node = node.clone();
        let _ = tokio::task::spawn_blocking(move || net.node_exited(&node)).await;
    }
    // A container's log ends with it; a task's log is followed until now, plus a moment for
    // its last lines.
    let drain = if t.on_engine {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    };
    let abort = copier.abort_handle();
    if tokio::time::timeout(drain, copier).await.is_err() {
        abort.abort();
    }
    let code = if t.on_engine {
        docker
            .inspect_container(&t.container, None)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.exit_code)
    } else {
        docker
            .inspect_task(&t.task)
            .await
            .ok()
            .and_then(|t| t.status)
            .and_then(|s| s.container_status)
            .and_then(|c| c.exit_code)
    };
    report_exit(&status, &node, requested, describe_exit(code, "task gone"));
}

/// Scales a service to no task: the swarm stops its task with the service's stop signal and,
/// after its grace period, SIGKILL.
async fn scale_to_zero(docker: &Docker, service: &str) -> Result<(), String> {
    update(docker, service, |current| {
        let mut spec = current.clone();
        spec.mode = Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
            ..Default::default()
        });
        spec
    })
    .await
}

/// Replaces a service's spec by `change(current spec)`, at the version just read; again if
/// the swarm changed the service in between ("update out of sequence").
async fn update(
    docker: &Docker,
    service: &str,
    change: impl Fn(&ServiceSpec) -> ServiceSpec,
) -> Result<(), String> {
    let mut attempts = 0;
    loop {
        let current = docker
            .inspect_service(service, None)
            .await
            .map_err(|e| format!("cannot inspect service {service}: {e}"))?;
        let spec = change(&current.spec.unwrap_or_default());
        let options = UpdateServiceOptions {
            version: current.version.and_then(|v| v.index).unwrap_or(0) as i32,
            ..Default::default()
        };
        match docker.update_service(service, spec, options, None).await {
            Ok(_) => return Ok(()),
            Err(e) if attempts < 5 && e.to_string().contains("out of sequence") => attempts += 1,
            Err(e) => return Err(format!("cannot update service {service}: {e}")),
        }
    }
}

/// Removes every service, container, config, secret, volume and network of a run (found by
/// its `troupe.run` label). Returns how many objects were removed.
pub async fn remove_run_async(docker: &Docker, run_id: &str) -> Result<usize, String> {
    let filters = || Some(label_filter(run_id));
    let mut removed = 0;
    let services = docker
        .list_services(Some(ListServicesOptions {
            filters: filters(),
            ..Default::default()
        }))
        .await;
    let services = match services {
        Ok(s) => s,
        // Not a manager (or no swarm): nothing of a swarm run can exist here.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 503, ..
        }) => Vec::new(),
        Err(e) => return Err(format!("cannot list the services of run {run_id}: {e}")),
    };
    let mut names = Vec::new();
    for s in services {
        let Some(id) = s.id else { continue };
        names.extend(s.spec.and_then(|s| s.name));
        match docker.delete_service(&id).await {
            Ok(()) => removed += 1,
            Err(e) if not_found(&e) => {}
            Err(e) => tracing::warn!("cannot remove service {id} of run {run_id}: {e}"),
        }
    }
    // The tasks' containers go with their services; what they use can go once they have.
    let deadline = crate::deadline::after(TASKS_GONE);
    loop {
        let containers = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: filters(),
                ..Default::default()
            }))
            .await
            .map_err(|e| format!("cannot list the containers of run {run_id}: {e}"))?;
        let mut tasks_left = 0;
        for name in &names {
            tasks_left += match tasks(docker, name).await {
                Ok(t) => t.len(),
                Err(_) => 0,
            };
        }
        if (containers.is_empty() && tasks_left == 0) || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(TASK_POLL).await;
    }
    for s in docker
        .list_configs(Some(ListConfigsOptions { filters: filters() }))
        .await
        .unwrap_or_default()
    {
        let Some(id) = s.id else { continue };
        match docker.delete_config(&id).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!("cannot remove config {id} of run {run_id}: {e}"),
        }
    }
    for s in docker
        .list_secrets(Some(ListSecretsOptions { filters: filters() }))
        .await
        .unwrap_or_default()
    {
        let Some(id) = s.id else { continue };
        match docker.delete_secret(&id).await {
            Ok(()) => removed += 1,
            Err(e) => tracing::warn!("cannot remove secret {id} of run {run_id}: {e}"),
        }
    }
    // Volumes and the network may still be held for a moment after the containers are gone.
    loop {
        let volumes = docker
            .list_volumes(Some(ListVolumesOptions { filters: filters() }))
            .await
            .map_err(|e| format!("cannot list the volumes of run {run_id}: {e}"))?
            .volumes
            .unwrap_or_default();
        let networks = docker
            .list_networks(Some(ListNetworksOptions { filters: filters() }))
            .await
            .map_err(|e| format!("cannot list the networks of run {run_id}: {e}"))?;
        if volumes.is_empty() && networks.is_empty() {
            break;
        }
        let mut last = None;
        for v in volumes {
            match docker
                .remove_volume(&v.name, Some(RemoveVolumeOptions { force: true }))
                .await
            {
                Ok(()) => removed += 1,
                Err(e) => last = Some(format!("volume {}: {e}", v.name)),
            }
        }
        for n in networks {
            let Some(id) = n.id else { continue };
            match docker.remove_network(&id).await {
                Ok(()) => removed += 1,
                Err(e) => last = Some(format!("network {id}: {e}")),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            if let Some(e) = last {
                return Err(format!("cannot remove {e}"));
            }
            break;
        }
        if last.is_some() {
            tokio::time::sleep(TASK_POLL).await;
        }
    }
    Ok(removed)
}

/// [`remove_run_async`] from blocking code: on a thread and runtime of its own.
pub fn remove_run(run_id: &str) -> Result<usize, String> {
    let run_id = run_id.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        rt.block_on(async {
            let docker = super::docker::connect().await?;
            remove_run_async(&docker, &run_id).await
        })
    })
    .join()
    .unwrap_or_else(|_| Err("swarm cleanup panicked".to_string()))
}

/// Where a run with swarm clusters records its id, so that the next `up` or `down --force`
/// on the state directory removes what a crashed troupe left.
pub const RUN_RECORD: &str = "swarm.run";

/// Removes the swarm objects of the run recorded in `state_dir`, if any. Returns how many.
pub fn remove_recorded(state_dir: &Path) -> usize {
    let Ok(id) = std::fs::read_to_string(state_dir.join(RUN_RECORD)) else {
        return 0;
    };
    match remove_run(id.trim()) {
        Ok(n) => {
            let _ = std::fs::remove_file(state_dir.join(RUN_RECORD));
            n
        }
        Err(e) => {
            eprintln!(
                "troupe: could not remove the swarm services of run {}: {e}",
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

    /// The nodes of a 2-node swarm cluster `db`, planned with ports 100+ (client) and 200+.
    fn nodes(extra: &str) -> Vec<NodePlan> {
        let text = format!(
            r#"
[clusters.db]
nodes = 2
binary = "/usr/bin/db"
runtime = "swarm"
image = "db:local"
ports = ["client", "peer"]
args = ["--me={{{{ node.addrs.peer }}}}", "--listen={{{{ node.listen.peer }}}}", "--bind={{{{ node.bind }}}}",
        "--peers={{{{ cluster.nodes | each('{{{{ urls.peer }}}}') | join(',') }}}}"]
placement = ["node.labels.disk == ssd", "node.hostname == host{{{{ node.index }}}}"]
[clusters.db.files."conf/db.conf"]
template = "peers = {{{{ cluster.addrs.peer }}}}"
[[clusters.db.ready]]
http = "{{{{ node.urls.client }}}}/health"
timeout = "30s"
[clusters.db.stop]
signal = "SIGINT"
grace = "7s"
{extra}"#
        );
        let spec =
            troupe_spec::Spec::from_str("db.toml", &text).unwrap_or_else(|e| panic!("{e:?}"));
        let ports: crate::plan::PortMap = (1..=2)
            .map(|i| {
                let p = BTreeMap::from([
                    ("client".to_string(), 100 + i as u16),
                    ("peer".to_string(), 200 + i as u16),
                ]);
                (format!("db-{i}"), p)
            })
            .collect();
        let plan = crate::plan::resolve(
            &spec,
            Path::new("/state"),
            &ports,
            &BTreeMap::new(),
            &BTreeMap::new(),
            "abc123",
        );
        plan.unwrap_or_else(|e| panic!("{e:?}"))
            .clusters
            .remove(0)
            .nodes
    }

    #[test]
    fn a_node_reads_its_peers_by_name_and_troupe_reaches_it_on_the_host() {
        let n = &nodes("")[0];
        // What the node reads: names on the overlay network, listening on every address.
        assert_eq!(
            n.args,
            [
                "--me=db-1:201",
                "--listen=0.0.0.0:201",
                "--bind=0.0.0.0",
                "--peers=http://db-1:201,http://db-2:202",
            ]
        );
        assert_eq!(n.files[0].1, "peers = db-1:201,db-2:202");
        assert_eq!(
            n.placement,
            ["node.labels.disk == ssd", "node.hostname == host1"]
        );
        // What troupe and the host see: the published ports on the Engine's host.
        assert_eq!(n.host, "127.0.0.1");
        assert_eq!(n.peer_host.as_deref(), Some("db-1"));
        assert_eq!(n.urls["client"], "http://127.0.0.1:101");
        let probe = format!("{:?}", n.ready[0].check);
        assert!(
            probe.contains("127.0.0.1") && probe.contains("101"),
            "{probe}"
        );
        assert!(!probe.contains("db-1"), "{probe}");
    }

    #[test]
    fn a_nodes_service_is_one_replica_never_restarted_on_the_runs_network() {
        let n = &nodes("[tls]\n")[1];
        let ids = HashMap::from([("troupe-abc123-db-2-c0".to_string(), "id0".to_string())]);
        let host = EndpointPortConfigPublishModeEnum::HOST;
        let spec = service_spec(n, &[], "abc123", "db:local", "net-id", &ids, host);
        assert_eq!(spec.name.as_deref(), Some("troupe-abc123-db-2"));
        let labels = spec.labels.clone().unwrap();
        assert_eq!(labels[RUN_LABEL], "abc123");
        assert_eq!(labels[NODE_LABEL], "db-2");
        let mode = spec.mode.clone().unwrap().replicated.unwrap();
        assert_eq!(mode.replicas, Some(1));
        let task = spec.task_template.clone().unwrap();
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let net = &task.networks.unwrap()[0];
        assert_eq!(net.target.as_deref(), Some("net-id"));
        assert_eq!(net.aliases, Some(vec!["db-2".to_string()]));
        assert_eq!(
            task.placement.unwrap().constraints.unwrap(),
            ["node.labels.disk == ssd", "node.hostname == host2"]
        );
        let c = task.container_spec.unwrap();
        assert_eq!(c.image.as_deref(), Some("db:local"));
        assert_eq!(c.command, Some(vec!["/usr/bin/db".to_string()]));
        assert_eq!(c.hostname.as_deref(), Some("db-2"));
        assert_eq!(c.labels.unwrap()[RUN_LABEL], "abc123");
        assert_eq!(c.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(c.stop_grace_period, Some(7_000_000_000));
        let mount = &c.mounts.unwrap()[0];
        assert_eq!(mount.source.as_deref(), Some("troupe-abc123-db-2-data"));
        assert_eq!(mount.target.as_deref(), Some("/state/nodes/db-2/data"));
        assert_eq!(mount.typ, Some(MountType::VOLUME));
        // Files and certificates are configs, keys secrets, each where the host has it.
        let configs = c.configs.unwrap();
        let config = &configs[0];
        assert_eq!(
            config.file.as_ref().unwrap().name.as_deref(),
            Some("/state/nodes/db-2/conf/db.conf")
        );
        assert_eq!(config.config_id.as_deref(), Some("id0"));
        let secrets: Vec<String> = c
            .secrets
            .unwrap()
            .into_iter()
            .filter_map(|s| s.file.and_then(|f| f.name))
            .collect();
        let tls = n.tls.as_ref().unwrap();
        assert_eq!(
            secrets,
            [
                tls.key.display().to_string(),
                tls.client_key.display().to_string()
            ]
        );
        assert!(
            configs
                .iter()
                .any(|c| c.file.as_ref().and_then(|f| f.name.clone())
                    == Some(tls.cert.display().to_string())),
            "{configs:?}"
        );
        // Published on the task's host with the same numbers inside and out.
        let ports = spec.endpoint_spec.unwrap().ports.unwrap();
        let published: Vec<_> = ports
            .iter()
            .map(|p| (p.target_port, p.published_port, p.publish_mode))
            .collect();
        let host = Some(EndpointPortConfigPublishModeEnum::HOST);
        assert_eq!(
            published,
            [(Some(102), Some(102), host), (Some(202), Some(202), host)]
        );
    }

    #[test]
    fn a_remote_engine_is_reached_at_its_host() {
        let host = |h: &str| engine_host_of(h);
        assert_eq!(
            host("tcp://manager.lan:2376").as_deref(),
            Some("manager.lan")
        );
        assert_eq!(host("ssh://ops@10.1.2.3").as_deref(), Some("10.1.2.3"));
        assert_eq!(host("tcp://[fd00::1]:2375").as_deref(), Some("fd00::1"));
        assert_eq!(host("unix:///var/run/docker.sock"), None);
        assert_eq!(host("tcp://127.0.0.1:2375"), None);
    }

    #[test]
    fn kill_and_pause_of_a_task_on_another_host_are_refused_and_say_why() {
        let run = SwarmRun::new("abc123", Vec::new(), None);
        let rt = SwarmRuntime::new(run.clone(), "db:local".into(), None);
        assert_eq!(
            rt.refuse("db-1", "kill"),
            None,
            "a task on the Engine's host"
        );
        run.remote
            .lock()
            .unwrap()
            .insert("db-1".into(), "10.0.0.7".into());
        let msg = rt.refuse("db-1", "pause").expect("refused");
        assert!(msg.contains("cannot pause db-1"), "{msg}");
        assert!(msg.contains("10.0.0.7"), "{msg}");
        assert_eq!(rt.refuse("db-2", "kill"), None);
    }

    #[test]
    fn every_ca_of_the_run_and_the_bad_certificates_ship_too_each_once() {
        let n = &nodes("[tls]\nbad = true\ncas = [\"other\"]\n")[0];
        let shared = [
            PathBuf::from("/state/tls/ca.pem"),
            PathBuf::from("/state/tls/ca-other.pem"),
            PathBuf::from("/state/tls/cas.pem"),
        ];
        let files = shipped("abc123", n, &shared);
        let paths: Vec<&Path> = files.iter().map(|f| f.path.as_path()).collect();
        for f in &shared {
            let times = paths.iter().filter(|p| **p == f.as_path()).count();
            assert_eq!(times, 1, "{} in {paths:?}", f.display());
        }
        let tls = n.tls.as_ref().unwrap();
        assert!(!tls.bad.is_empty());
        for pair in tls.bad.values() {
            let key = files
                .iter()
                .find(|f| f.path == pair.key)
                .expect("a bad key");
            assert!(key.secret, "{key:?}");
            assert!(paths.contains(&pair.cert.as_path()), "{paths:?}");
        }
        let names: HashSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.len(), files.len(), "names are unique");
        assert!(names.iter().all(|n| n.len() <= 64), "{names:?}");
    }

    #[test]
    fn delete_paths_name_services_first_and_the_network_last() {
        let nodes = nodes("[tls]\n");
        let refs: Vec<&NodePlan> = nodes.iter().collect();
        let paths = delete_paths("abc123", &refs, &[]);
        assert_eq!(paths[0], "/services/troupe-abc123-db-1");
        assert_eq!(paths[1], "/services/troupe-abc123-db-2");
        assert_eq!(paths.last().unwrap(), "/networks/troupe-abc123");
        assert!(paths.contains(&"/volumes/troupe-abc123-db-2-data".to_string()));
        assert!(paths.contains(&"/configs/troupe-abc123-db-1-c0".to_string()));
        let secrets = paths.iter().filter(|p| p.starts_with("/secrets/")).count();
        assert_eq!(secrets, 4, "two keys per node: {paths:?}");
        let volume = paths
            .iter()
            .position(|p| p.starts_with("/volumes/"))
            .unwrap();
        let config = paths
            .iter()
            .rposition(|p| p.starts_with("/configs/"))
            .unwrap();
        assert!(config < volume, "{paths:?}");
    }
}
