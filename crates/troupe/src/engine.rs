//! The engine: one run of one spec. It prepares the run (state directory, ports, network,
//! certificates, rendered files), then coordinates the parts that do the work:
//! [`crate::lifecycle`] starts and stops, [`crate::node`] acts on one node through the run's
//! [`NodeRuntime`], [`crate::select`] resolves targets, [`crate::net`] plans and applies faults,
//! [`crate::roles`] keeps leaders current, [`crate::descriptor`] writes `cluster.json`.
//!
//! Everything here is async and never blocks a runtime thread: system calls run on blocking
//! threads, and locks held across an await are async.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use troupe_spec::{NodeState, Spec, TlsSpec};

use crate::error::{Error, io_err};
use crate::keeper::Keeper;
use crate::lifecycle::RunState;
use crate::net::NetworkBackend;
use crate::net::docker::DockerNet;
use crate::net::faults::Faults;
use crate::net::links::{LinkMap, Links};
use crate::net::netns::NetNs;
use crate::net::plan::Resolved;
use crate::node::Node;
use crate::pki::{BadCert, Ca, write_private};
use crate::plan::{self, Plan, PortMap};
use crate::ports::{PortAllocator, PortLease};
use crate::roles::ClusterLive;
use crate::runtime::NodeRuntime;
use crate::runtime::docker::DockerRuntime;
use crate::runtime::process::ProcessRuntime;
use crate::select::{ClusterView, Liveness, Selector, Target, Topology};
use crate::state::{StateDir, private_dir};

/// Lets another thread interrupt a start or hurry a stop: the first call asks for a graceful
/// stop, the second for SIGKILL now (like pressing Ctrl-C twice).
#[derive(Clone)]
pub struct Interrupt(Arc<watch::Sender<u8>>);

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt(Arc::new(watch::channel(0).0))
    }
}

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// Stop gracefully; a second call escalates to [`Interrupt::immediate`].
    pub fn trigger(&self) {
        self.0.send_modify(|l| *l = (*l + 1).min(2));
    }

    /// Kill now.
    pub fn immediate(&self) {
        self.0.send_replace(2);
    }

    pub fn level(&self) -> u8 {
        *self.0.borrow()
    }

    pub(crate) async fn reached(&self, level: u8) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|l| *l >= level).await;
    }
}

/// How long a selector waits for a leader before it gives up.
pub(crate) const LEADER_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct Engine {
    pub plan: Plan,
    pub nodes: Vec<Arc<Node>>,
    pub state: StateDir,
    /// Per cluster: leader, timings.
    pub live: BTreeMap<String, Arc<ClusterLive>>,
    pub run: RunState,
    pub runtime: Arc<dyn NodeRuntime>,
    /// The runtimes of clusters that do not run as processes, by cluster name.
    pub runtimes: BTreeMap<String, Arc<dyn NodeRuntime>>,
    /// The run id that labels this run's containers, if any cluster runs in containers.
    pub containers: Option<String>,
    /// The run id that labels this run's swarm objects, if any cluster runs on a swarm.
    pub services: Option<String>,
    /// Removes what troupe started if troupe dies; told when troupe removed it itself.
    keeper: Option<Arc<Keeper>>,
    pub faults: Faults,
    pub links: Option<Arc<Links>>,
    views: Vec<ClusterView>,
    /// Serialises descriptor writes, so the file never goes back in time.
    pub(crate) persisting: tokio::sync::Mutex<()>,
    /// Held until the run ends; released by [`Engine::release_ports`] once every node is gone,
    /// so that the next run can take them at once.
    ports: std::sync::Mutex<Vec<PortLease>>,
}

impl Engine {
    /// Everything before the first process: validate, lock the state dir, allocate ports,
    /// create the network, issue certificates, render files. Nothing is started when this
    /// fails. Blocking: call it from a blocking context.
    pub fn prepare(spec: &Spec, state_dir: &std::path::Path) -> Result<Engine, Error> {
        plan::check(spec)?;
        let state = StateDir::acquire(state_dir)?;
        let allocator = PortAllocator::new(spec.port_range);
        let mut leases = Vec::new();
        let mut ports = PortMap::new();
        let run_id = run_id();
        // Nodes in namespaces get addresses of their own and the same port numbers, as on
        // separate hosts; the others get ports allocated on the host. Processes get namespaces
        // troupe makes; containers a Docker network troupe makes.
        let in_namespaces = |docker: bool| -> Vec<String> {
            spec.clusters
                .values()
                .filter(|c| c.own_addresses())
                .filter(|c| (c.runtime == troupe_spec::Runtime::Docker) == docker)
                .flat_map(|c| (1..=c.nodes).map(|i| plan::node_name(&c.name, i)))
                .collect()
        };
        let (ns_nodes, docker_ns_nodes) = (in_namespaces(false), in_namespaces(true));
        let net = if ns_nodes.is_empty() {
            None
        } else {
            Some(NetNs::allocate(&state.path, &run_id, &ns_nodes)?)
        };
        let docker_net = if docker_ns_nodes.is_empty() {
            None
        } else {
            Some(Arc::new(DockerNet::allocate(&run_id, &docker_ns_nodes)?))
        };
        // Swarm clusters with `network = "namespaces"`: faults inside their tasks.
        let swarm_ns_nodes: Vec<String> = spec
            .clusters
            .values()
            .filter(|c| c.runtime == troupe_spec::Runtime::Swarm)
            .filter(|c| c.network == troupe_spec::Network::Namespaces)
            .flat_map(|c| (1..=c.nodes).map(|i| plan::node_name(&c.name, i)))
            .collect();
        let swarm_net = if swarm_ns_nodes.is_empty() {
            None
        } else {
            Some(Arc::new(DockerNet::swarm(
                &crate::runtime::swarm::network_name(&run_id),
                &swarm_ns_nodes,
            )?))
        };
        let fixed = plan::fixed_ports(spec)?;
        let mut hosts = BTreeMap::new();
        for c in spec.clusters.values() {
            if c.own_addresses() {
                for i in 1..=c.nodes {
                    let name = plan::node_name(&c.name, i);
                    let ns_ip = net.as_ref().and_then(|n| n.nodes.get(&name)).map(|n| n.ip);
                    let docker_ip = docker_net.as_ref().and_then(|n| n.nodes.get(&name));
                    if let Some(ip) = ns_ip.or(docker_ip.copied()) {
                        hosts.insert(name.clone(), ip.to_string());
                    }
                    // A namespace is a host of its own: its ports need no lock.
                    let own = fixed.get(&name).cloned().unwrap_or_default();
                    let mut free = (20000u16..).filter(|n| !own.values().any(|f| f == n));
                    let map = c
                        .ports
                        .iter()
                        .map(|p| match own.get(p) {
                            Some(n) => (p.clone(), *n),
                            None => (p.clone(), free.next().unwrap_or(0)),
                        })
                        .collect();
                    ports.insert(name, map);
                }
                continue;
            }
            let host: IpAddr = if c.host == "localhost" {
                IpAddr::from([127, 0, 0, 1])
            } else {
                c.host.parse().map_err(|_| Error::Refused {
                    message: format!(
                        "cluster `{}` has host `{}`, which is not an IP address",
                        c.name, c.host
                    ),
                    help: Some("use a loopback address such as 127.0.0.1 or ::1".into()),
                })?
            };
            for i in 1..=c.nodes {
                let node = plan::node_name(&c.name, i);
                let own = fixed.get(&node).cloned().unwrap_or_default();
                let mut map: BTreeMap<String, u16> = BTreeMap::new();
                for (port, number) in &own {
                    let lease = allocator.claim(host, *number, &format!("`{port}` of `{node}`"))?;
                    map.insert(port.clone(), lease.port);
                    leases.push(lease);
                }
                let got = allocator.allocate(host, c.ports.len() - own.len())?;
                let mut got_ports = got.iter().map(|l| l.port);
                for port in c.ports.iter().filter(|p| !own.contains_key(*p)) {
                    map.insert(port.clone(), got_ports.next().unwrap_or(0));
                }
                ports.insert(node, map);
                leases.extend(got);
            }
        }
        // Swarm nodes of a remote Engine (DOCKER_HOST of a manager) are reached on that host,
        // through the swarm's routing mesh.
        if let Some(remote) = crate::runtime::swarm::remote_engine_host() {
            for c in spec
                .clusters
                .values()
                .filter(|c| c.runtime == troupe_spec::Runtime::Swarm)
            {
                for i in 1..=c.nodes {
                    hosts.insert(plan::node_name(&c.name, i), remote.clone());
                }
            }
        }
        // A port on 127.0.0.1 for every directed link (and port) of a proxies cluster.
        let mut links = LinkMap::new();
        let loopback = IpAddr::from([127, 0, 0, 1]);
        for c in spec
            .clusters
            .values()
            .filter(|c| c.network == troupe_spec::Network::Proxies)
        {
            for a in 1..=c.nodes {
                for b in (1..=c.nodes).filter(|b| *b != a) {
                    let got = allocator.allocate(loopback, c.ports.len())?;
                    let map = c
                        .ports
                        .iter()
                        .zip(&got)
                        .map(|(p, l)| (p.clone(), l.port))
                        .collect();
                    links
                        .entry(plan::node_name(&c.name, a))
                        .or_default()
                        .insert(plan::node_name(&c.name, b), map);
                    leases.extend(got);
                }
            }
        }
        let mut plan = plan::resolve(spec, &state.path, &ports, &hosts, &links, &run_id)?;
        if let Some(net) = &net {
            for n in plan.clusters.iter_mut().flat_map(|c| c.nodes.iter_mut()) {
                n.netns = net.netns_path(&n.name);
            }
            net.create()?;
        }
        // Every CA of the run by name; `default` keeps `tls/ca.pem`, the others `tls/ca-NAME.pem`.
        let mut cas = BTreeMap::new();
        if let Some(tls) = &spec.tls {
            private_dir(&state.path.join("tls"))?;
            let mut bundle = String::new();
            for (name, path) in &plan.cas {
                let cn = if name == TlsSpec::DEFAULT_CA {
                    format!("troupe {} CA {run_id}", plan.name)
                } else {
                    format!("troupe {} CA {name} {run_id}", plan.name)
                };
                let ca = Ca::new(&cn, tls.key)?;
                write_private(path, &ca.cert().cert_pem, 0o644)?;
                write_private(&path.with_extension("key"), &ca.cert().key_pem, 0o600)?;
                bundle.push_str(&ca.cert().cert_pem);
                cas.insert(name.clone(), ca);
            }
            if let Some(path) = &plan.ca_bundle {
                write_private(path, &bundle, 0o644)?;
            }
        }
        let mut nodes = Vec::new();
        for node in plan.nodes() {
            private_dir(&node.data_dir)?;
            let mut tls = None;
            if let (Some(paths), Some(ca_path)) = (&node.tls, &node.ca) {
                let ca_name = paths.ca_name.as_deref().unwrap_or(TlsSpec::DEFAULT_CA);
                let ca = cas.get(ca_name).ok_or_else(|| {
                    Error::Pki(format!(
                        "`{}` names CA `{ca_name}`, which is not a CA of this run",
                        node.name
                    ))
                })?;
                private_dir(&node.dir.join("tls"))?;
                // Peers on a swarm reach the node by its name: that is a SAN too.
                let host: &[String] = &std::iter::once(node.host.clone())
                    .chain(node.peer_host.clone())
                    .collect::<Vec<_>>();
                let server = ca.issue_server(&node.name, host)?;
                write_private(&paths.cert, &server.cert_pem, 0o644)?;
                write_private(&paths.key, &server.key_pem, 0o600)?;
                let client = ca.issue_client(&node.name)?;
                write_private(&paths.client_cert, &client.cert_pem, 0o644)?;
                write_private(&paths.client_key, &client.key_pem, 0o600)?;
                if !paths.bad.is_empty() {
                    private_dir(&node.dir.join("tls/bad"))?;
                }
                for variant in BadCert::ALL {
                    if let Some(pair) = paths.bad.get(variant.name()) {
                        let bad = ca.issue_bad(variant, &node.name, host)?;
                        write_private(&pair.cert, &bad.cert_pem, 0o644)?;
                        write_private(&pair.key, &bad.key_pem, 0o600)?;
                    }
                }
                tls = Some(
                    crate::probe::client_config(
                        ca_path,
                        Some((&paths.client_cert, &paths.client_key)),
                    )
                    .map_err(Error::Pki)?,
                );
            }
            for (path, contents, mode) in &node.files {
                // `data/myid`, `conf/a/b.conf`: parents inside the node's directory, private.
                if let Some(parent) = path.parent()
                    && parent != node.dir
                {
                    private_dir(parent)?;
                }
                write_private(path, contents, *mode)?;
            }
            std::fs::File::create(&node.log).map_err(|e| io_err("create", &node.log, e))?;
            if let Some((name, uid, gid, _)) = &node.user {
                crate::state::give_to_user(&node.dir, name, *uid, *gid)?;
            }
            nodes.push(Arc::new(Node::new(node.clone(), tls)));
        }
        let live = plan
            .clusters
            .iter()
            .map(|c| {
                let has_role = c.nodes.iter().any(|n| n.role.is_some());
                (
                    c.name.clone(),
                    Arc::new(ClusterLive::new(&c.name, has_role)),
                )
            })
            .collect();
        let views = plan
            .clusters
            .iter()
            .map(|c| ClusterView {
                name: c.name.clone(),
                nodes: c.nodes.iter().map(|n| n.name.clone()).collect(),
                has_role_probe: c.nodes.iter().any(|n| n.role.is_some()),
            })
            .collect();
        let links = (!links.is_empty()).then(|| Arc::new(Links::new(links)));
        let mut backends: Vec<Arc<dyn NetworkBackend>> = Vec::new();
        if let Some(n) = net {
            backends.push(Arc::new(n));
        }
        if let Some(n) = &docker_net {
            backends.push(n.clone());
        }
        if let Some(n) = &swarm_net {
            backends.push(n.clone());
        }
        if let Some(l) = &links {
            backends.push(l.clone());
        }
        let keeper = Keeper::start().map(Arc::new);
        let mut runtimes = docker_runtimes(spec, &run_id, &keeper, &docker_net);
        let containers = (!runtimes.is_empty()).then(|| run_id.clone());
        if containers.is_some() {
            state.write_atomic(crate::runtime::docker::RUN_RECORD, run_id.as_bytes())?;
        }
        // Every swarm node gets every CA certificate of the run and their bundle, as
        // templates may name any (`tls.cas.NAME`, `tls.bundle`).
        let shared: Vec<std::path::PathBuf> = plan
            .cas
            .iter()
            .map(|(_, p)| p.clone())
            .chain(plan.ca_bundle.clone())
            .collect();
        let swarm_runtimes = swarm_runtimes(spec, &run_id, shared.clone(), &keeper, &swarm_net);
        let services = (!swarm_runtimes.is_empty()).then(|| run_id.clone());
        if services.is_some() {
            state.write_atomic(crate::runtime::swarm::RUN_RECORD, run_id.as_bytes())?;
            // If troupe dies, the keeper removes them; it deletes newest first, so the paths go
            // in backwards: services are deleted first and the network last.
            let on_swarm: Vec<&plan::NodePlan> = plan
                .clusters
                .iter()
                .flat_map(|c| &c.nodes)
                .filter(|n| swarm_runtimes.contains_key(&n.cluster))
                .collect();
            if let Some(k) = &keeper {
                for path in crate::runtime::swarm::delete_paths(&run_id, &on_swarm, &shared)
                    .iter()
                    .rev()
                {
                    if let Err(e) = k.docker_delete_on_exit(path) {
                        tracing::warn!("{e}");
                        break;
                    }
                }
            }
        }
        runtimes.extend(swarm_runtimes);
        let seed = u64::from_str_radix(&run_id, 16).unwrap_or(0);
        let faults = Faults::new(backends, state.path.join("network.journal"), seed);
        Ok(Engine {
            plan,
            nodes,
            state,
            live,
            run: RunState::new(),
            runtime: Arc::new(ProcessRuntime::new(keeper.clone())),
            keeper,
            runtimes,
            containers,
            services,
            faults,
            links,
            views,
            persisting: tokio::sync::Mutex::new(()),
            ports: std::sync::Mutex::new(leases),
        })
    }

    pub fn node(&self, name: &str) -> Result<&Arc<Node>, Error> {
        self.nodes
            .iter()
            .find(|n| n.plan.name == name)
            .ok_or_else(|| Error::UnknownNode {
                name: name.to_string(),
                known: self
                    .nodes
                    .iter()
                    .map(|n| n.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn cluster_nodes(&self, cluster: &str) -> Vec<Arc<Node>> {
        self.nodes
            .iter()
            .filter(|n| n.plan.cluster == cluster)
            .cloned()
            .collect()
    }

    pub fn topology(&self) -> Topology<'_> {
        Topology {
            clusters: &self.views,
        }
    }

    /// Resolves targets (see [`crate::select`]), waiting up to `leader_wait` for a leader when
    /// a selector needs one. Names are checked before any wait.
    pub async fn select(
        &self,
        targets: &[String],
        leader_wait: Duration,
    ) -> Result<Vec<String>, Error> {
        let topo = self.topology();
        let parsed: Vec<Target> = targets
            .iter()
            .map(|t| topo.parse(t))
            .collect::<Result<_, _>>()?;
        let mut out: Vec<String> = Vec::new();
        for t in &parsed {
            let leader = match t.needs_leader() {
                Some(c) => Some(self.wait_leader(c, leader_wait).await?),
                None => None,
            };
            let pick = {
                use std::hash::BuildHasher;
                std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now())
            };
            let state = |name: &str| self.liveness(name);
            let nodes = topo.resolve(t, leader.as_deref(), &state, pick);
            if nodes.is_empty()
                && let Target::Select { cluster, selector } = t
                && *selector != Selector::Followers
                && *selector != Selector::Minority
            {
                let states: Vec<String> = self
                    .cluster_nodes(cluster)
                    .iter()
                    .map(|n| {
                        let s = n.status().map_or(NodeState::Stopped, |s| s.state);
                        format!("{} {s}", n.name())
                    })
                    .collect();
                return Err(Error::Refused {
                    message: format!(
                        "`{cluster}:{}` names no node: {}",
                        selector.name(),
                        states.join(", ")
                    ),
                    help: Some(format!(
                        "`random`, `one`, `followers` and `up` choose among nodes that are running and ready, `down` among nodes that are not running; start one first (e.g. `troupe start {cluster}:down`) or name a node"
                    )),
                });
            }
            for n in nodes {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// Gives the run's ports back: call once every node is stopped.
    pub(crate) fn release_ports(&self) {
        if let Ok(mut ports) = self.ports.lock() {
            ports.clear();
        }
    }

    /// Whether a node is up (running and ready), down (not running) or neither.
    fn liveness(&self, name: &str) -> Liveness {
        let Some(node) = self.nodes.iter().find(|n| n.name() == name) else {
            return Liveness::Neither;
        };
        match node.status().map(|s| s.state) {
            Some(NodeState::Ready) => Liveness::Up,
            None | Some(NodeState::Stopped | NodeState::Killed | NodeState::Exited) => {
                Liveness::Down
            }
            Some(_) => Liveness::Neither,
        }
    }

    /// The one cluster with a role probe, if exactly one has.
    pub fn only_cluster_with_roles(&self) -> Option<String> {
        let mut with = self.live.values().filter(|l| l.has_role_probe);
        match (with.next(), with.next()) {
            (Some(l), None) => Some(l.name.clone()),
            _ => None,
        }
    }

    fn live_of(&self, cluster: &str) -> Result<&Arc<ClusterLive>, Error> {
        self.live.get(cluster).ok_or_else(|| Error::Target {
            message: format!("no cluster named `{cluster}`"),
            help: Some(format!(
                "clusters: {}",
                self.live.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
        })
    }

    /// Waits until `cluster` has a leader (other than `not`, if given), up to `limit`.
    pub async fn wait_new_leader(
        &self,
        cluster: &str,
        not: Option<&str>,
        limit: Duration,
    ) -> Result<String, Error> {
        let live = self.live_of(cluster)?;
        if !live.has_role_probe {
            return Err(Error::Target {
                message: format!(
                    "cluster `{cluster}` has no role probe, so troupe cannot tell who leads"
                ),
                help: Some(format!("add a [clusters.{cluster}.role] table to the spec")),
            });
        }
        // One leader means one node claims to lead: two claimants are a split brain (or an old
        // leader that has not heard yet), which a consensus test must not mistake for a leader.
        let mut rx = live.subscribe_claims();
        let wanted = |c: &Vec<String>| matches!(c.as_slice(), [l] if Some(l.as_str()) != not);
        match tokio::time::timeout_at(crate::deadline::after(limit), rx.wait_for(wanted)).await {
            Ok(Ok(c)) => Ok(c[0].clone()),
            _ if live.claims().len() > 1 => Err(Error::Timeout {
                message: format!(
                    "split brain in cluster `{cluster}`: {} all claim to lead, still after {}",
                    live.claims().join(", "),
                    troupe_spec::format_duration(limit)
                ),
                help: Some(
                    "the role probe asks each node; `troupe status` shows every claimant, and the node logs say why each believes it leads"
                        .into(),
                ),
            }),
            _ => Err(Error::Timeout {
                message: format!(
                    "no {}leader in cluster `{cluster}` after {}",
                    if not.is_some() { "new " } else { "" },
                    troupe_spec::format_duration(limit)
                ),
                help: Some(
                    "`troupe status` shows each node's state and role; the node logs say why"
                        .into(),
                ),
            }),
        }
    }

    /// Waits until at least one node of `cluster` claims to lead, split brain or not, up to
    /// `limit`; returns every claimant.
    pub async fn wait_claimants(
        &self,
        cluster: &str,
        limit: Duration,
    ) -> Result<Vec<String>, Error> {
        let live = self.live_of(cluster)?;
        if !live.has_role_probe {
            return Err(Error::Target {
                message: format!(
                    "cluster `{cluster}` has no role probe, so troupe cannot tell who leads"
                ),
                help: Some(format!("add a [clusters.{cluster}.role] table to the spec")),
            });
        }
        let mut rx = live.subscribe_claims();
        match tokio::time::timeout_at(
            crate::deadline::after(limit),
            rx.wait_for(|c| !c.is_empty()),
        )
        .await
        {
            Ok(Ok(c)) => Ok(c.clone()),
            _ => Err(Error::Timeout {
                message: format!(
                    "no node of cluster `{cluster}` claims to lead after {}",
                    troupe_spec::format_duration(limit)
                ),
                help: Some(
                    "`troupe status` shows each node's state and role; the node logs say why"
                        .into(),
                ),
            }),
        }
    }

    /// Waits until `cluster` has a leader, up to `limit`.
    pub async fn wait_leader(&self, cluster: &str, limit: Duration) -> Result<String, Error> {
        self.wait_new_leader(cluster, None, limit).await
    }

    /// Waits until every node (of `cluster`, or of all clusters) is ready, up to `limit`.
    pub async fn wait_ready(&self, cluster: Option<&str>, limit: Duration) -> Result<(), Error> {
        if let Some(c) = cluster {
            self.live_of(c)?;
        }
        let deadline = crate::deadline::after(limit);
        for n in self
            .nodes
            .iter()
            .filter(|n| cluster.is_none_or(|c| n.plan.cluster == c))
        {
            // A manual cluster nobody started yet is not waited for, unless named.
            let Some(h) = n.current() else {
                if cluster.is_none() {
                    continue;
                }
                return Err(Error::Refused {
                    message: format!("node `{}` is not running", n.name()),
                    help: Some(format!("`troupe start {}` starts it", n.name())),
                });
            };
            let mut rx = h.subscribe();
            let ok = tokio::time::timeout_at(
                deadline,
                rx.wait_for(|st| st.state == NodeState::Ready || !st.running()),
            )
            .await;
            match ok {
                Ok(Ok(st)) if st.state == NodeState::Ready => {}
                Ok(_) => {
                    return Err(Error::Refused {
                        message: format!("node `{}` is {}", n.name(), h.status().state),
                        help: Some(format!("`troupe start {}` brings it back", n.name())),
                    });
                }
                Err(_) => {
                    return Err(Error::Timeout {
                        message: format!(
                            "node `{}` not ready after {}",
                            n.name(),
                            troupe_spec::format_duration(limit)
                        ),
                        help: None,
                    });
                }
            }
        }
        Ok(())
    }

    /// Stops one node gracefully and waits until it is gone.
    pub async fn stop_node(&self, name: &str) -> Result<(), Error> {
        self.stop_node_as(name, "stop").await
    }

    async fn stop_node_as(&self, name: &str, cause: &str) -> Result<(), Error> {
        self.end_node(name, false, cause).await
    }

    /// SIGKILLs one node and waits until it is gone.
    pub async fn kill_node(&self, name: &str) -> Result<(), Error> {
        self.end_node(name, true, "kill").await
    }

    /// Stops (or kills) a running node and waits until it is gone; `cause` names what ended
    /// its leadership, if it led.
    async fn end_node(&self, name: &str, kill: bool, cause: &str) -> Result<(), Error> {
        let n = self.node(name)?;
        let _op = n.op.lock().await;
        if kill {
            self.refused(n, "kill")?;
        }
        if n.running() {
            self.live[&n.plan.cluster].acting_on(name, cause);
            let ctl = if kill {
                crate::runtime::Ctl::Kill
            } else {
                n.stop_request()
            };
            if let Some(h) = n.send(ctl) {
                h.exited().await;
            }
        }
        self.persist_quietly().await;
        Ok(())
    }

    /// Pauses (`true`) or resumes one node.
    pub async fn pause_node(&self, name: &str, pause: bool) -> Result<(), Error> {
        let n = self.node(name)?;
        let _op = n.op.lock().await;
        self.refused(n, if pause { "pause" } else { "resume" })?;
        if n.running() {
            let live = &self.live[&n.plan.cluster];
            if pause {
                live.acting_on(name, "pause");
            } else {
                live.back(name);
            }
            n.pause(pause).await;
        }
        self.persist_quietly().await;
        Ok(())
    }

    /// Starts a node that is not running (again), with the same ports, data and certificates,
    /// and waits until it is ready. Refused once the run is closing.
    pub async fn start_node(&self, name: &str) -> Result<(), Error> {
        let n = self.node(name)?;
        let _op = n.op.lock().await;
        if n.running() {
            return Ok(());
        }
        self.live[&n.plan.cluster].back(name);
        let result = n.start(self.runtime_of(&n.plan.cluster), &self.run).await;
        self.persist_quietly().await;
        result
    }

    /// Stop, then start.
    pub async fn restart_node(&self, name: &str) -> Result<(), Error> {
        self.stop_node_as(name, "restart").await?;
        self.start_node(name).await
    }

    /// Injects a network fault (journaled before it is applied) and returns its record.
    pub async fn fault(
        &self,
        f: &troupe_spec::control::Fault,
    ) -> Result<troupe_spec::FaultRecord, Error> {
        use troupe_spec::control::Fault;
        if !self.faults.available() {
            return Err(Error::Refused {
                message: "network faults need nodes in network namespaces or behind link proxies, and no cluster of this run has them".into(),
                help: Some("add `network = \"namespaces\"` (needs root) or `network = \"proxies\"` to the clusters to fault; faults are never skipped silently".into()),
            });
        }
        f.validate().map_err(|e| Error::Target {
            message: e,
            help: None,
        })?;
        let wait = LEADER_WAIT;
        let resolved = match f {
            Fault::Partition { groups, bridge } => {
                let bridge = match bridge {
                    Some(b) => self.select(std::slice::from_ref(b), wait).await?,
                    None => vec![],
                };
                let mut resolved = Vec::new();
                for g in groups {
                    resolved.push(self.select(g, wait).await?);
                }
                Resolved::Partition {
                    groups: resolved,
                    bridge,
                }
            }
            Fault::Isolate { targets, host } => Resolved::Isolate {
                nodes: self.select(targets, wait).await?,
                host: *host,
            },
            Fault::Cut { from, to, one_way } => Resolved::Cut {
                from: self.select(from, wait).await?,
                to: self.select(to, wait).await?,
                one_way: *one_way,
            },
            Fault::Reset { from, to } => Resolved::Reset {
                from: self.select(from, wait).await?,
                to: self.select(to, wait).await?,
            },
            Fault::Degrade { targets, .. } => {
                let d = f
                    .degrade_params()
                    .and_then(Result::ok)
                    .ok_or_else(|| Error::Target {
                        message: "invalid degrade parameters".into(),
                        help: None,
                    })?;
                Resolved::Degrade {
                    nodes: self.select(targets, wait).await?,
                    params: crate::net::Degrade {
                        delay: d.delay(),
                        jitter: d.jitter(),
                        loss: d.loss().fraction(),
                        rate: d.rate().map(|r| r.bytes_per_second()),
                        seed: None,
                    },
                }
            }
            _ => {
                return Err(Error::Refused {
                    message: "this troupe does not know that fault".into(),
                    help: None,
                });
            }
        };
        let faultable: Vec<String> = self
            .nodes
            .iter()
            .map(|n| n.plan.name.clone())
            .filter(|n| self.faults.can_fault(n))
            .collect();
        let plan = crate::net::plan::plan(&resolved, &faultable)?;
        let sidelined = plan.sidelined.clone();
        let record = self.faults.inject(plan).await?;
        for (n, cause) in sidelined {
            if let Ok(node) = self.node(&n) {
                self.live[&node.plan.cluster].acting_on(&n, cause);
            }
        }
        self.persist_quietly().await;
        Ok(record)
    }

    /// Undoes one fault by id, or every active fault. Returns how many were undone.
    pub async fn heal(&self, id: Option<u32>) -> Result<usize, Error> {
        let n = self.faults.heal(id).await?;
        // Nodes no active fault touches count again as leaders.
        let names: Vec<String> = self.nodes.iter().map(|n| n.plan.name.clone()).collect();
        for name in self.faults.untouched(&names).await {
            let Ok(node) = self.node(name) else { continue };
            if node
                .status()
                .is_some_and(|st| st.running() && st.state != NodeState::Paused)
            {
                self.live[&node.plan.cluster].back(name);
            }
        }
        self.persist_quietly().await;
        Ok(n)
    }

    /// Removes the run's network (namespaces, bridge, rules, proxies). Blocking: call once
    /// every node is gone.
    pub fn destroy_network(&self) {
        self.faults.destroy();
        if let Some(run) = &self.containers {
            match crate::runtime::docker::remove_run(run) {
                Ok(removed) => {
                    if let Some(k) = &self.keeper {
                        for path in &removed {
                            k.docker_forget(path);
                        }
                    }
                    let _ = std::fs::remove_file(
                        self.state.path.join(crate::runtime::docker::RUN_RECORD),
                    );
                }
                Err(e) => eprintln!("troupe: could not remove the containers of run {run}: {e}"),
            }
        }
        if let Some(run) = &self.services {
            match crate::runtime::swarm::remove_run(run) {
                Ok(_) => {
                    let _ = std::fs::remove_file(
                        self.state.path.join(crate::runtime::swarm::RUN_RECORD),
                    );
                }
                Err(e) => {
                    eprintln!("troupe: could not remove the swarm services of run {run}: {e}")
                }
            }
        }
    }

    /// Refuses `op` on a node whose runtime cannot do it where the node runs now.
    fn refused(&self, n: &Node, op: &str) -> Result<(), Error> {
        match self.runtime_of(&n.plan.cluster).refuse(&n.plan.name, op) {
            Some(message) => Err(Error::Refused {
                message,
                help: Some("pin the node to the Engine's host with `placement` (e.g. \"node.role == manager\"), or stop, start and restart it instead; see \"On Docker Swarm\" in the README".into()),
            }),
            None => Ok(()),
        }
    }

    /// What runs the nodes of `cluster`.
    pub fn runtime_of(&self, cluster: &str) -> &dyn NodeRuntime {
        self.runtimes.get(cluster).unwrap_or(&self.runtime).as_ref()
    }

    /// Keeps every cluster's leader current until every node is gone.
    pub fn spawn_role_watchers(self: &Arc<Self>) {
        for (cluster, live) in &self.live {
            if !live.has_role_probe {
                continue;
            }
            let nodes = self.cluster_nodes(cluster);
            tokio::spawn(crate::roles::watch(
                nodes,
                live.clone(),
                self.run.subscribe_stopped(),
            ));
        }
    }
}

/// A docker runtime for each cluster that asks for one.
fn docker_runtimes(
    spec: &Spec,
    run_id: &str,
    keeper: &Option<Arc<Keeper>>,
    net: &Option<Arc<DockerNet>>,
) -> BTreeMap<String, Arc<dyn NodeRuntime>> {
    spec.clusters
        .values()
        .filter(|c| c.runtime == troupe_spec::Runtime::Docker)
        .map(|c| {
            let image = c.image.as_ref().map(|i| i.get_ref().clone());
            let rt: Arc<dyn NodeRuntime> = Arc::new(DockerRuntime::new(
                run_id,
                image,
                spec.source.dir(),
                keeper.clone(),
                net.clone()
                    .filter(|_| c.network == troupe_spec::Network::Namespaces),
            ));
            (c.name.clone(), rt)
        })
        .collect()
}

/// A swarm runtime for each cluster that asks for one, all sharing the run's overlay network.
fn swarm_runtimes(
    spec: &Spec,
    run_id: &str,
    shared: Vec<std::path::PathBuf>,
    keeper: &Option<Arc<Keeper>>,
    net: &Option<Arc<DockerNet>>,
) -> BTreeMap<String, Arc<dyn NodeRuntime>> {
    let run = crate::runtime::swarm::SwarmRun::new(run_id, shared, keeper.clone());
    spec.clusters
        .values()
        .filter(|c| c.runtime == troupe_spec::Runtime::Swarm)
        .map(|c| {
            let image = c
                .image
                .as_ref()
                .map(|i| i.get_ref().clone())
                .unwrap_or_default();
            let rt: Arc<dyn NodeRuntime> = Arc::new(crate::runtime::swarm::SwarmRuntime::new(
                run.clone(),
                image,
                net.clone()
                    .filter(|_| c.network == troupe_spec::Network::Namespaces),
            ));
            (c.name.clone(), rt)
        })
        .collect()
}

fn run_id() -> String {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new()
        .hash_one((std::process::id(), std::time::Instant::now()));
    format!("{:012x}", h & 0xffff_ffff_ffff)
}
