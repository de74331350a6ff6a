//! The async core: prepares a run (state dir, ports, certificates, rendered files), starts the
//! nodes in the order the spec asks, waits on their probes, and stops them again. The public,
//! blocking [`crate::Cluster`] drives it from its own runtime.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rustls::ClientConfig;
use tokio::sync::watch;
use tokio::task::JoinSet;
use troupe_spec::{Descriptor, NodeDescriptor, NodeState, Spec, StartMode};

use crate::error::{Error, StartFailure, StartReason, io_err};
use crate::keeper::Keeper;
use crate::pki::{Ca, write_private};
use crate::plan::{self, NodePlan, Plan, PortMap, Probe};
use crate::ports::{PortAllocator, PortLease};
use crate::probe::{self, Check, Prober};
use crate::roles::{self, ClusterLive};
use crate::state::{StateDir, private_dir};
use crate::supervisor::{Ctl, NodeProc, Status};

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

    async fn reached(&self, level: u8) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|l| *l >= level).await;
    }
}

/// Network faults of a run: the active ones (with their packet rules) and every record.
#[derive(Default)]
pub(crate) struct Faults {
    next: u32,
    active: Vec<(u32, Vec<crate::net::netns::Rule>)>,
    records: Vec<troupe_spec::FaultRecord>,
}

pub(crate) struct Slot {
    pub plan: NodePlan,
    pub keeper: Option<Arc<Keeper>>,
    pub tls: Option<Arc<ClientConfig>>,
    pub proc: Mutex<Option<NodeProc>>,
    /// Held for the whole of a stop, kill or start, so that two commands on one node from two
    /// shells run one after the other instead of spawning it twice.
    pub op: tokio::sync::Mutex<()>,
}

impl Slot {
    fn current(&self) -> Option<NodeProc> {
        self.proc.lock().expect("slot lock").clone()
    }
}

pub(crate) struct Engine {
    pub plan: Plan,
    pub slots: Vec<Arc<Slot>>,
    pub state: StateDir,
    /// Per cluster: leader, timings.
    pub live: BTreeMap<String, Arc<ClusterLive>>,
    /// Set once everything is being stopped; background watchers end.
    stopping: watch::Sender<bool>,
    /// The namespaces backend, when a cluster lives in network namespaces.
    net: Option<crate::net::netns::NetNs>,
    /// The link-proxy backend: from → to → port → proxy port, and the running proxies.
    links: plan::LinkMap,
    proxies: Mutex<BTreeMap<(String, String), Vec<crate::net::proxy::LinkProxy>>>,
    faults: Mutex<Faults>,
    _ports: Vec<PortLease>,
}

impl Engine {
    /// Everything before the first process: validate, lock the state dir, allocate ports,
    /// issue certificates, render files. Nothing is started when this fails.
    pub fn prepare(spec: &Spec, state_dir: &std::path::Path) -> Result<Engine, Error> {
        plan::check(spec)?;
        let state = StateDir::acquire(state_dir)?;
        let allocator = PortAllocator::new(spec.port_range);
        let mut leases = Vec::new();
        let mut ports = PortMap::new();
        let run_id = run_id();
        // Nodes in namespaces get addresses of their own and the same port numbers, as on
        // separate hosts; the others get ports allocated on the host.
        let ns_nodes: Vec<String> = spec
            .clusters
            .values()
            .filter(|c| c.network == troupe_spec::Network::Namespaces)
            .flat_map(|c| (1..=c.nodes).map(|i| plan::node_name(&c.name, i)))
            .collect();
        let net = if ns_nodes.is_empty() {
            None
        } else {
            Some(crate::net::netns::NetNs::allocate(
                &state.path,
                &run_id,
                &ns_nodes,
            )?)
        };
        let mut hosts = BTreeMap::new();
        for c in spec.clusters.values() {
            if c.network == troupe_spec::Network::Namespaces {
                let net = net.as_ref().expect("allocated above");
                for i in 1..=c.nodes {
                    let name = plan::node_name(&c.name, i);
                    hosts.insert(name.clone(), net.nodes[&name].ip.to_string());
                    let fixed = c
                        .ports
                        .iter()
                        .enumerate()
                        .map(|(k, p)| (p.clone(), 20000 + k as u16))
                        .collect();
                    ports.insert(name, fixed);
                }
                continue;
            }
            let host: IpAddr = if c.host == "localhost" {
                IpAddr::from([127, 0, 0, 1])
            } else {
                c.host.parse().expect("validated host")
            };
            for i in 1..=c.nodes {
                let got = allocator.allocate(host, c.ports.len())?;
                let map: BTreeMap<String, u16> = c
                    .ports
                    .iter()
                    .zip(&got)
                    .map(|(name, l)| (name.clone(), l.port))
                    .collect();
                ports.insert(plan::node_name(&c.name, i), map);
                leases.extend(got);
            }
        }
        // A port on 127.0.0.1 for every directed link (and port) of a proxies cluster.
        let mut links = plan::LinkMap::new();
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
            for c in &mut plan.clusters {
                for n in &mut c.nodes {
                    n.netns = net.netns_path(&n.name);
                }
            }
            net.create()?;
        }
        let ca = match &spec.tls {
            Some(tls) => {
                let dir = state.path.join("tls");
                private_dir(&dir)?;
                let ca = Ca::new(&format!("troupe {} CA {run_id}", plan.name), tls.key)?;
                crate::pki::write_pair(&dir, "ca", ca.cert())?;
                Some(ca)
            }
            None => None,
        };
        let keeper = Keeper::start().map(Arc::new);
        let mut slots = Vec::new();
        for node in plan.nodes() {
            private_dir(&node.data_dir)?;
            let mut tls = None;
            if let (Some(ca), Some(paths)) = (&ca, &node.tls) {
                private_dir(&node.dir.join("tls"))?;
                let server = ca.issue_server(&node.name, std::slice::from_ref(&node.host))?;
                write_private(&paths.cert, &server.cert_pem, 0o644)?;
                write_private(&paths.key, &server.key_pem, 0o600)?;
                let client = ca.issue_client(&node.name)?;
                write_private(&paths.client_cert, &client.cert_pem, 0o644)?;
                write_private(&paths.client_key, &client.key_pem, 0o600)?;
                let ca_path = plan.ca.as_ref().expect("ca path with tls");
                tls = Some(
                    probe::client_config(ca_path, Some((&paths.client_cert, &paths.client_key)))
                        .map_err(Error::Pki)?,
                );
            }
            for (path, contents, mode) in &node.files {
                write_private(path, contents, *mode)?;
            }
            std::fs::File::create(&node.log).map_err(|e| io_err("create", &node.log, e))?;
            if let Some((name, uid, gid, _)) = &node.user {
                give_to_user(&node.dir, name, *uid, *gid)?;
            }
            slots.push(Arc::new(Slot {
                plan: node.clone(),
                keeper: keeper.clone(),
                tls,
                proc: Mutex::new(None),
                op: tokio::sync::Mutex::new(()),
            }));
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
        Ok(Engine {
            plan,
            slots,
            state,
            net,
            links,
            proxies: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Faults::default()),
            live,
            stopping: watch::channel(false).0,
            _ports: leases,
        })
    }

    pub fn slot(&self, name: &str) -> Result<&Arc<Slot>, Error> {
        self.slots
            .iter()
            .find(|s| s.plan.name == name)
            .ok_or_else(|| Error::UnknownNode {
                name: name.to_string(),
                known: self
                    .slots
                    .iter()
                    .map(|s| s.plan.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Starts every cluster in order and waits until every node is ready. On failure or
    /// interruption, stops everything it started before returning the error.
    pub async fn start_all(&self, interrupt: &Interrupt) -> Result<(), Error> {
        let result = tokio::select! {
            r = self.start_clusters() => r,
            _ = interrupt.reached(1) => Err(Error::Interrupted),
        };
        match result {
            Ok(()) => {
                self.write_descriptor()?;
                Ok(())
            }
            Err(e) => {
                self.stop_all(interrupt).await;
                Err(e)
            }
        }
    }

    /// Starts every link proxy (before any node, so peers find them).
    async fn start_proxies(&self) -> Result<(), Error> {
        let mut started = BTreeMap::new();
        for (from, peers) in &self.links {
            for (to, ports) in peers {
                let target = self.slot(to)?;
                let mut list = Vec::new();
                for (port, listen) in ports {
                    let host: IpAddr = target
                        .plan
                        .host
                        .parse()
                        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
                    let to_addr = std::net::SocketAddr::new(host, target.plan.ports[port]);
                    let listen_addr = std::net::SocketAddr::from(([127, 0, 0, 1], *listen));
                    let l = tokio::net::TcpListener::bind(listen_addr)
                        .await
                        .map_err(|e| {
                            io_err(
                                "listen for the link proxy on",
                                std::path::Path::new(&listen_addr.to_string()),
                                e,
                            )
                        })?;
                    let p =
                        crate::net::proxy::LinkProxy::from_listener(l, to_addr).map_err(|e| {
                            io_err(
                                "start the link proxy",
                                std::path::Path::new(&listen_addr.to_string()),
                                e,
                            )
                        })?;
                    list.push(p);
                }
                started.insert((from.clone(), to.clone()), list);
            }
        }
        *self.proxies.lock().expect("proxies") = started;
        Ok(())
    }

    /// Starts the clusters in waves: each wave is every cluster whose `after` clusters are all
    /// ready, started together. The first failure ends the start (the caller stops the rest).
    async fn start_clusters(&self) -> Result<(), Error> {
        self.start_proxies().await?;
        let mut done: Vec<&str> = Vec::new();
        let mut left: Vec<&plan::ClusterPlan> = self.plan.clusters.iter().collect();
        while !left.is_empty() {
            let (wave, rest): (Vec<_>, Vec<_>) = left
                .into_iter()
                .partition(|c| c.after.iter().all(|a| done.contains(&a.as_str())));
            // The spec was checked for cycles, so some cluster is always free to start.
            assert!(!wave.is_empty(), "a cycle among {rest:?} passed validation");
            try_join_all(wave.iter().map(|c| self.start_cluster(c)).collect()).await?;
            done.extend(wave.iter().map(|c| c.name.as_str()));
            left = rest;
        }
        Ok(())
    }

    async fn start_cluster(&self, cluster: &plan::ClusterPlan) -> Result<(), Error> {
        let began = Instant::now();
        let slots: Vec<Arc<Slot>> = self
            .slots
            .iter()
            .filter(|s| s.plan.cluster == cluster.name)
            .cloned()
            .collect();
        match cluster.start {
            StartMode::Manual => return Ok(()),
            StartMode::Parallel => {
                for s in &slots {
                    spawn_slot(s)?;
                }
            }
            StartMode::Sequential => {
                for s in &slots {
                    spawn_slot(s)?;
                    let gate = if s.plan.started.is_empty() {
                        &s.plan.ready
                    } else {
                        &s.plan.started
                    };
                    wait_probes(s, gate.clone()).await?;
                }
            }
        }
        let mut set = JoinSet::new();
        for s in slots {
            set.spawn(async move {
                let probes = s.plan.ready.clone();
                wait_probes(&s, probes).await?;
                if let Some(p) = s.current() {
                    p.mark_ready();
                }
                Ok::<(), Error>(())
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("probe task panicked")?;
        }
        self.live[&cluster.name].set_formation(began.elapsed());
        Ok(())
    }

    /// Stops every running node gracefully, dependents first (reverse start order), nodes of
    /// one cluster together. A second interrupt turns the grace period into SIGKILL now.
    pub async fn stop_all(&self, interrupt: &Interrupt) {
        for cluster in self.plan.clusters.iter().rev() {
            let slots: Vec<&Arc<Slot>> = self
                .slots
                .iter()
                .filter(|s| s.plan.cluster == cluster.name)
                .collect();
            self.stop_set(&cluster.name, &slots, interrupt).await;
        }
        self.stopping.send_replace(true);
    }

    /// Stops several nodes gracefully: per cluster, leader first when it has a role probe.
    pub async fn stop_nodes(&self, names: &[String], interrupt: &Interrupt) -> Result<(), Error> {
        for n in names {
            self.slot(n)?;
        }
        if let [one] = names {
            return self.stop_node(one).await;
        }
        for cluster in &self.plan.clusters {
            let slots: Vec<&Arc<Slot>> = self
                .slots
                .iter()
                .filter(|s| s.plan.cluster == cluster.name && names.contains(&s.plan.name))
                .collect();
            if slots.is_empty() {
                continue;
            }
            let mut guards = Vec::new();
            for s in &slots {
                guards.push(s.op.lock().await);
            }
            self.stop_set(&cluster.name, &slots, interrupt).await;
        }
        let _ = self.write_descriptor();
        Ok(())
    }

    /// Stops `slots` of one cluster. With a role probe: leader first, one at a time, since a
    /// leader that is asked to stop hands over to a follower (etcd waits up to 5 s for one that
    /// is itself stopping), so each hand-over must find a live follower; the last member leads
    /// nobody and stops at once. Without one: all together.
    async fn stop_set(&self, cluster: &str, slots: &[&Arc<Slot>], interrupt: &Interrupt) {
        let live = &self.live[cluster];
        if !live.has_role_probe {
            stop_together(slots, interrupt).await;
            return;
        }
        loop {
            let running: Vec<&Arc<Slot>> = slots
                .iter()
                .copied()
                .filter(|s| s.current().is_some_and(|p| p.status().running()))
                .collect();
            if running.len() <= 1 || interrupt.level() >= 2 {
                stop_together(&running, interrupt).await;
                return;
            }
            let names: Vec<&str> = running.iter().map(|s| s.plan.name.as_str()).collect();
            let mut rx = live.subscribe();
            let leader = tokio::time::timeout(
                Duration::from_millis(300),
                rx.wait_for(|l| l.as_deref().is_some_and(|l| names.contains(&l))),
            )
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|l| l.clone()));
            match leader.and_then(|l| running.iter().copied().find(|s| s.plan.name == l)) {
                Some(slot) => stop_together(&[slot], interrupt).await,
                None => {
                    stop_together(&running, interrupt).await;
                    return;
                }
            }
        }
    }

    /// SIGKILLs every node at once and waits for them to be gone.
    pub async fn kill_all(&self) {
        self.stopping.send_replace(true);
        let procs: Vec<NodeProc> = self.slots.iter().filter_map(|s| s.current()).collect();
        for p in &procs {
            p.send(Ctl::Kill);
        }
        for p in &procs {
            p.exited().await;
        }
    }

    /// Stops one node gracefully and waits until it is gone.
    pub async fn stop_node(&self, name: &str) -> Result<(), Error> {
        self.stop_node_as(name, "stop").await
    }

    async fn stop_node_as(&self, name: &str, cause: &str) -> Result<(), Error> {
        let s = self.slot(name)?;
        let _op = s.op.lock().await;
        if let Some(p) = s.current().filter(|p| p.status().running()) {
            self.live[&s.plan.cluster].acting_on(name, cause);
            p.send(Ctl::Stop {
                signal: Signal::try_from(s.plan.stop.signal).unwrap_or(Signal::SIGTERM),
                grace: s.plan.stop.grace,
            });
            p.exited().await;
        }
        let _ = self.write_descriptor();
        Ok(())
    }

    /// SIGKILLs one node and waits until it is gone.
    pub async fn kill_node(&self, name: &str) -> Result<(), Error> {
        let s = self.slot(name)?;
        let _op = s.op.lock().await;
        if let Some(p) = s.current().filter(|p| p.status().running()) {
            self.live[&s.plan.cluster].acting_on(name, "kill");
            p.send(Ctl::Kill);
            p.exited().await;
        }
        let _ = self.write_descriptor();
        Ok(())
    }

    /// SIGSTOP (`pause`) or SIGCONT (`resume`) one node's process group.
    pub async fn pause_node(&self, name: &str, pause: bool) -> Result<(), Error> {
        let s = self.slot(name)?;
        let _op = s.op.lock().await;
        if let Some(p) = s.current().filter(|p| p.status().running()) {
            if pause {
                self.live[&s.plan.cluster].acting_on(name, "pause");
                p.send(Ctl::Pause);
                let mut rx = p.subscribe();
                let _ = rx
                    .wait_for(|st| st.state == NodeState::Paused || !st.running())
                    .await;
            } else {
                self.live[&s.plan.cluster].back(name);
                p.send(Ctl::Resume);
                let mut rx = p.subscribe();
                let _ = rx
                    .wait_for(|st| st.state != NodeState::Paused || !st.running())
                    .await;
            }
        }
        let _ = self.write_descriptor();
        Ok(())
    }

    /// Starts a node that is not running (again), with the same ports, data and certificates,
    /// and waits until it is ready.
    pub async fn start_node(&self, name: &str) -> Result<(), Error> {
        let s = self.slot(name)?;
        let _op = s.op.lock().await;
        if s.current().is_some_and(|p| p.status().running()) {
            return Ok(());
        }
        spawn_slot(s)?;
        self.live[&s.plan.cluster].back(name);
        wait_probes(s, s.plan.ready.clone()).await?;
        if let Some(p) = s.current() {
            p.mark_ready();
        }
        self.write_descriptor()?;
        Ok(())
    }

    /// Stop, then start.
    pub async fn restart_node(&self, name: &str) -> Result<(), Error> {
        self.stop_node_as(name, "restart").await?;
        self.start_node(name).await
    }

    /// Resolves targets: a node name, a cluster name (all its nodes), or `CLUSTER:SELECTOR`
    /// with SELECTOR one of leader, followers, random, one, minority, majority, all. Waits up
    /// to `leader_wait` for a leader when a selector needs one.
    pub async fn select(
        &self,
        targets: &[String],
        leader_wait: Duration,
    ) -> Result<Vec<String>, Error> {
        let mut out: Vec<String> = Vec::new();
        for t in targets {
            for n in self.select_one(t, leader_wait).await? {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    fn cluster_nodes(&self, cluster: &str) -> Vec<String> {
        self.slots
            .iter()
            .filter(|s| s.plan.cluster == cluster)
            .map(|s| s.plan.name.clone())
            .collect()
    }

    async fn select_one(&self, target: &str, leader_wait: Duration) -> Result<Vec<String>, Error> {
        if self.slots.iter().any(|s| s.plan.name == target) {
            return Ok(vec![target.to_string()]);
        }
        if self.live.contains_key(target) {
            return Ok(self.cluster_nodes(target));
        }
        let Some((cluster, selector)) = target.split_once(':') else {
            return Err(self.unknown_target(target));
        };
        let Some(live) = self.live.get(cluster) else {
            return Err(self.unknown_target(target));
        };
        let nodes = self.cluster_nodes(cluster);
        let n = nodes.len();
        let needs_leader = matches!(selector, "leader" | "followers");
        let leader = if needs_leader {
            if !live.has_role_probe {
                return Err(Error::Target {
                    message: format!(
                        "`{target}` needs to know who leads, but cluster `{cluster}` has no role probe"
                    ),
                    help: Some(format!(
                        "add a [clusters.{cluster}.role] table to the spec, or name nodes instead (e.g. {})",
                        nodes.first().cloned().unwrap_or_default()
                    )),
                });
            }
            Some(self.wait_leader(cluster, leader_wait).await?)
        } else {
            None
        };
        Ok(match selector {
            "leader" => vec![leader.expect("leader")],
            "followers" => nodes
                .into_iter()
                .filter(|x| Some(x) != leader.as_ref())
                .collect(),
            "all" => nodes,
            "one" => nodes.into_iter().take(1).collect(),
            "random" => {
                use std::hash::BuildHasher;
                let i = std::collections::hash_map::RandomState::new().hash_one(Instant::now())
                    as usize
                    % n.max(1);
                nodes.into_iter().skip(i).take(1).collect()
            }
            "majority" => nodes.into_iter().take(n / 2 + 1).collect(),
            "minority" => {
                let k = (n.saturating_sub(1)) / 2;
                nodes.into_iter().skip(n - k).collect()
            }
            other => {
                let sel = [
                    "leader",
                    "followers",
                    "random",
                    "one",
                    "minority",
                    "majority",
                    "all",
                ];
                let hint = match troupe_spec::suggest(other, sel) {
                    Some(s) => format!("did you mean `{cluster}:{s}`? "),
                    None => String::new(),
                };
                return Err(Error::Target {
                    message: format!("unknown selector `{other}` in `{target}`"),
                    help: Some(format!("{hint}selectors: {}", sel.join(", "))),
                });
            }
        })
    }

    fn unknown_target(&self, target: &str) -> Error {
        let names: Vec<&str> = self
            .slots
            .iter()
            .map(|s| s.plan.name.as_str())
            .chain(self.live.keys().map(String::as_str))
            .collect();
        let hint = match troupe_spec::suggest(target, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? "),
            None => String::new(),
        };
        Error::Target {
            message: format!("no node or cluster named `{target}`"),
            help: Some(format!(
                "{hint}targets are a node ({}), a cluster ({}), or CLUSTER:SELECTOR with leader, followers, random, one, minority, majority or all",
                self.slots
                    .iter()
                    .map(|s| s.plan.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.live.keys().cloned().collect::<Vec<_>>().join(", ")
            )),
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

    /// Waits until `cluster` has a leader, up to `limit`.
    pub async fn wait_leader(&self, cluster: &str, limit: Duration) -> Result<String, Error> {
        let live = self
            .live
            .get(cluster)
            .ok_or_else(|| self.unknown_target(cluster))?;
        if !live.has_role_probe {
            return Err(Error::Target {
                message: format!(
                    "cluster `{cluster}` has no role probe, so troupe cannot tell who leads"
                ),
                help: Some(format!("add a [clusters.{cluster}.role] table to the spec")),
            });
        }
        let mut rx = live.subscribe();
        match tokio::time::timeout(limit, rx.wait_for(|l| l.is_some())).await {
            Ok(Ok(l)) => Ok(l.clone().expect("some")),
            _ => Err(Error::Timeout {
                message: format!(
                    "no leader in cluster `{cluster}` after {}",
                    troupe_spec::format_duration(limit)
                ),
                help: Some(
                    "`troupe status` shows each node's state and role; the node logs say why"
                        .into(),
                ),
            }),
        }
    }

    /// Waits until every node (of `cluster`, or of all clusters) is ready, up to `limit`.
    pub async fn wait_ready(&self, cluster: Option<&str>, limit: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + limit;
        for s in self
            .slots
            .iter()
            .filter(|s| cluster.is_none_or(|c| s.plan.cluster == c))
        {
            // A manual cluster nobody started yet is not waited for, unless named.
            if cluster.is_none() && s.current().is_none() {
                continue;
            }
            let Some(p) = s.current() else {
                return Err(Error::Refused {
                    message: format!("node `{}` is not running", s.plan.name),
                    help: None,
                });
            };
            let mut rx = p.subscribe();
            let ok = tokio::time::timeout_at(
                deadline,
                rx.wait_for(|st| st.state == NodeState::Ready || !st.running()),
            )
            .await;
            match ok {
                Ok(Ok(st)) if st.state == NodeState::Ready => {}
                Ok(_) => {
                    return Err(Error::Refused {
                        message: format!("node `{}` is {}", s.plan.name, p.status().state),
                        help: Some(format!("`troupe start {}` brings it back", s.plan.name)),
                    });
                }
                Err(_) => {
                    return Err(Error::Timeout {
                        message: format!(
                            "node `{}` not ready after {}",
                            s.plan.name,
                            troupe_spec::format_duration(limit)
                        ),
                        help: None,
                    });
                }
            }
        }
        Ok(())
    }

    /// Injects a network fault (journaled before it is applied) and returns its record.
    pub async fn fault(
        &self,
        f: &troupe_spec::control::Fault,
    ) -> Result<troupe_spec::FaultRecord, Error> {
        use crate::net::netns::Rule;
        use troupe_spec::control::Fault;
        if self.net.is_none() && self.links.is_empty() {
            return Err(Error::Refused {
                message: "network faults need nodes in network namespaces or behind link proxies, and no cluster of this run has them".into(),
                help: Some("add `network = \"namespaces\"` (needs root) or `network = \"proxies\"` to the clusters to fault; faults are never skipped silently".into()),
            });
        }
        let wait = Duration::from_secs(10);
        let in_ns = |n: &str| {
            self.net
                .as_ref()
                .is_some_and(|net| net.nodes.contains_key(n))
        };
        let behind_proxies = |n: &str| self.links.contains_key(n);
        let all: Vec<String> = self
            .slots
            .iter()
            .map(|s| s.plan.name.clone())
            .filter(|n| in_ns(n) || behind_proxies(n))
            .collect();
        // Nodes cut off from their cluster's majority: their claims to lead stop counting.
        let mut sidelined: Vec<(String, &'static str)> = Vec::new();
        let (rules, description) = match f {
            Fault::Partition { groups, bridge } => {
                let bridge_nodes = match bridge {
                    Some(b) => self.select(std::slice::from_ref(b), wait).await?,
                    None => vec![],
                };
                let mut resolved = Vec::new();
                for g in groups {
                    let nodes: Vec<String> = self
                        .select(g, wait)
                        .await?
                        .into_iter()
                        .filter(|n| !bridge_nodes.contains(n))
                        .collect();
                    resolved.push(nodes);
                }
                if resolved.len() < 2 {
                    return Err(Error::Target {
                        message: "a partition needs at least two groups".into(),
                        help: Some(
                            "separate groups with `|`, e.g. \"main-1 | main-2 main-3\"".into(),
                        ),
                    });
                }
                let mut rules = Vec::new();
                for (i, a) in resolved.iter().enumerate() {
                    for (j, b) in resolved.iter().enumerate() {
                        if i != j {
                            rules.push(Rule::Drop {
                                from: a.clone(),
                                to: b.clone(),
                            });
                        }
                    }
                }
                let largest = resolved.iter().map(Vec::len).max().unwrap_or(0);
                let mut kept_largest = false;
                for g in &resolved {
                    if g.len() == largest && !kept_largest {
                        kept_largest = true;
                        continue;
                    }
                    sidelined.extend(g.iter().map(|n| (n.clone(), "partition")));
                }
                let text: Vec<String> = resolved.iter().map(|g| g.join(" ")).collect();
                let mut d = format!("partition {}", text.join(" | "));
                if !bridge_nodes.is_empty() {
                    d.push_str(&format!(" (bridged by {})", bridge_nodes.join(" ")));
                }
                (rules, d)
            }
            Fault::Isolate { targets, host } => {
                let nodes = self.select(targets, wait).await?;
                sidelined.extend(nodes.iter().map(|n| (n.clone(), "isolate")));
                let mut rules = Vec::new();
                for n in &nodes {
                    let others: Vec<String> = all.iter().filter(|o| *o != n).cloned().collect();
                    rules.push(Rule::Drop {
                        from: vec![n.clone()],
                        to: others.clone(),
                    });
                    rules.push(Rule::Drop {
                        from: others,
                        to: vec![n.clone()],
                    });
                }
                if *host {
                    rules.push(Rule::HostDrop {
                        nodes: nodes.clone(),
                    });
                }
                (
                    rules,
                    format!(
                        "isolate {}{}",
                        nodes.join(" "),
                        if *host { " (and from the host)" } else { "" }
                    ),
                )
            }
            Fault::Cut { from, to, one_way } => {
                let a = self.select(from, wait).await?;
                let b = self.select(to, wait).await?;
                let mut rules = vec![Rule::Drop {
                    from: a.clone(),
                    to: b.clone(),
                }];
                if !one_way {
                    rules.push(Rule::Drop {
                        from: b.clone(),
                        to: a.clone(),
                    });
                }
                let arrow = if *one_way { "->" } else { "<->" };
                (
                    rules,
                    format!("cut {} {arrow} {}", a.join(" "), b.join(" ")),
                )
            }
            Fault::Reset { from, to } => {
                let a = self.select(from, wait).await?;
                let b = self.select(to, wait).await?;
                if let Some(n) = a.iter().chain(&b).find(|n| in_ns(n)) {
                    return Err(Error::Refused {
                        message: format!(
                            "node `{n}` is in a network namespace, where troupe does not reset connections"
                        ),
                        help: Some(
                            "use `network = \"proxies\"` to reset links, or cut/isolate here"
                                .into(),
                        ),
                    });
                }
                (
                    vec![Rule::Reset {
                        from: a.clone(),
                        to: b.clone(),
                    }],
                    format!("reset {} -> {}", a.join(" "), b.join(" ")),
                )
            }
            Fault::Degrade {
                targets,
                delay_ms,
                jitter_ms,
                loss_pct,
                rate,
            } => {
                let nodes = self.select(targets, wait).await?;
                let mut d = format!("degrade {}: delay {delay_ms}ms", nodes.join(" "));
                if *jitter_ms > 0.0 {
                    d.push_str(&format!(" ±{jitter_ms}ms"));
                }
                if *loss_pct > 0.0 {
                    d.push_str(&format!(", loss {loss_pct}%"));
                }
                if let Some(r) = rate {
                    d.push_str(&format!(", rate {r}"));
                }
                let rule = Rule::Degrade {
                    nodes,
                    delay: Duration::from_secs_f64(delay_ms / 1000.0),
                    jitter: Duration::from_secs_f64(jitter_ms / 1000.0),
                    loss_pct: *loss_pct,
                    rate: rate.clone(),
                };
                (vec![rule], d)
            }
            _ => {
                return Err(Error::Refused {
                    message: "this troupe does not know that fault".into(),
                    help: None,
                });
            }
        };
        let involved: Vec<&String> = rules
            .iter()
            .flat_map(|r| match r {
                Rule::Drop { from, to } | Rule::Reset { from, to } => {
                    from.iter().chain(to.iter()).collect::<Vec<_>>()
                }
                Rule::HostDrop { nodes } | Rule::Degrade { nodes, .. } => nodes.iter().collect(),
            })
            .collect();
        if let Some(n) = involved.iter().find(|n| !in_ns(n) && !behind_proxies(n)) {
            return Err(Error::Refused {
                message: format!("node `{n}` runs on the host network, where links cannot be cut"),
                help: Some("put its cluster in `network = \"namespaces\"` or `network = \"proxies\"`; faults are never skipped silently".into()),
            });
        }
        if let Some(Rule::HostDrop { nodes }) = rules.iter().find(
            |r| matches!(r, Rule::HostDrop { nodes } if nodes.iter().any(|n| behind_proxies(n))),
        ) {
            return Err(Error::Refused {
                message: format!(
                    "the link-proxy backend cannot cut {} off from the host's clients: they reach it directly",
                    nodes.join(" ")
                ),
                help: Some(
                    "use `network = \"namespaces\"` for faults between a node and the host".into(),
                ),
            });
        }
        if let Some(net) = &self.net
            && rules
                .iter()
                .any(|r| matches!(r, Rule::Degrade { nodes, .. } if nodes.iter().any(|n| in_ns(n))))
        {
            net.check_degrade()?;
        }
        let mut faults = self.faults.lock().expect("faults");
        faults.next += 1;
        let id = faults.next;
        let record = troupe_spec::FaultRecord::new(id, description, roles::unix_ms());
        crate::net::netns::journal_append(
            &self.state.path.join("network.journal"),
            serde_json::json!({"op": "fault", "id": id, "description": record.description, "at_ms": record.started_at_ms}),
        )?;
        faults.active.push((id, rules));
        if let Err(e) = self.apply_faults(&faults.active) {
            faults.active.pop();
            return Err(e);
        }
        faults.records.push(record.clone());
        drop(faults);
        for (n, cause) in sidelined {
            if let Ok(s) = self.slot(&n) {
                self.live[&s.plan.cluster].acting_on(&n, cause);
            }
        }
        let _ = self.write_descriptor();
        Ok(record)
    }

    /// Makes the network exactly what the active faults say: nftables and netem for nodes in
    /// namespaces, per-direction link states for nodes behind proxies.
    fn apply_faults(&self, active: &[(u32, Vec<crate::net::netns::Rule>)]) -> Result<(), Error> {
        use crate::net::netns::Rule;
        use crate::net::proxy::{Degrade, LinkFault};
        if let Some(net) = &self.net {
            let keep = |ns: &[String]| {
                ns.iter()
                    .filter(|n| net.nodes.contains_key(n.as_str()))
                    .cloned()
                    .collect::<Vec<_>>()
            };
            let mut flat = Vec::new();
            for (id, rules) in active {
                for r in rules {
                    let r = match r {
                        Rule::Drop { from, to } => Rule::Drop {
                            from: keep(from),
                            to: keep(to),
                        },
                        Rule::HostDrop { nodes } => Rule::HostDrop { nodes: keep(nodes) },
                        // Refused for namespace nodes when injected; nothing to do there.
                        Rule::Reset { .. } => continue,
                        Rule::Degrade {
                            nodes,
                            delay,
                            jitter,
                            loss_pct,
                            rate,
                        } => Rule::Degrade {
                            nodes: keep(nodes),
                            delay: *delay,
                            jitter: *jitter,
                            loss_pct: *loss_pct,
                            rate: rate.clone(),
                        },
                    };
                    flat.push((*id, r));
                }
            }
            net.apply(&flat)?;
        }
        let proxies = self.proxies.lock().expect("proxies");
        let mut state: BTreeMap<(String, String), (LinkFault, LinkFault)> = proxies
            .keys()
            .map(|k| (k.clone(), (LinkFault::Pass, LinkFault::Pass)))
            .collect();
        let degrade = |delay: &Duration, jitter: &Duration, loss: f64, rate: &Option<String>| {
            LinkFault::Degrade(Degrade {
                delay: *delay,
                jitter: *jitter,
                loss: loss / 100.0,
                rate: rate.as_deref().and_then(bytes_per_second),
            })
        };
        for (_, rules) in active {
            for r in rules {
                match r {
                    Rule::Drop { from, to } => {
                        for a in from {
                            for b in to {
                                // Bytes from a to b: forward on a's link to b, backward on b's to a.
                                if let Some(s) = state.get_mut(&(a.clone(), b.clone())) {
                                    s.0 = LinkFault::Cut;
                                }
                                if let Some(s) = state.get_mut(&(b.clone(), a.clone())) {
                                    s.1 = LinkFault::Cut;
                                }
                            }
                        }
                    }
                    Rule::Degrade {
                        nodes,
                        delay,
                        jitter,
                        loss_pct,
                        rate,
                    } => {
                        for ((a, b), s) in state.iter_mut() {
                            if nodes.contains(a) && s.0 != LinkFault::Cut {
                                s.0 = degrade(delay, jitter, *loss_pct, rate);
                            }
                            if nodes.contains(b) && s.1 != LinkFault::Cut {
                                s.1 = degrade(delay, jitter, *loss_pct, rate);
                            }
                        }
                    }
                    Rule::HostDrop { .. } => {}
                    Rule::Reset { from, to } => {
                        for a in from {
                            for b in to {
                                if let Some(s) = state.get_mut(&(a.clone(), b.clone())) {
                                    *s = (LinkFault::Reset, LinkFault::Reset);
                                }
                            }
                        }
                    }
                }
            }
        }
        for (k, (fwd, back)) in state {
            for p in &proxies[&k] {
                p.set_directions(fwd.clone(), back.clone());
            }
        }
        Ok(())
    }

    /// Undoes every active fault. Returns how many there were.
    pub async fn heal(&self) -> Result<usize, Error> {
        let mut faults = self.faults.lock().expect("faults");
        let n = faults.active.len();
        if self.net.is_some() || !self.links.is_empty() {
            crate::net::netns::journal_append(
                &self.state.path.join("network.journal"),
                serde_json::json!({"op": "heal", "at_ms": roles::unix_ms()}),
            )?;
        }
        self.apply_faults(&[])?;
        faults.active.clear();
        let now = roles::unix_ms();
        for r in faults
            .records
            .iter_mut()
            .filter(|r| r.healed_at_ms.is_none())
        {
            r.healed_at_ms = Some(now);
        }
        drop(faults);
        for s in &self.slots {
            let st = s.current().map(|p| p.status());
            if st.is_some_and(|st| st.running() && st.state != NodeState::Paused) {
                self.live[&s.plan.cluster].back(&s.plan.name);
            }
        }
        let _ = self.write_descriptor();
        Ok(n)
    }

    /// Removes the run's network (namespaces, bridge, rules). Call after every node stopped.
    pub fn destroy_network(&self) {
        if let Some(net) = &self.net {
            net.destroy();
        }
    }

    /// Keeps every cluster's leader current until the engine stops.
    pub fn spawn_role_watchers(self: &Arc<Self>) {
        for (cluster, live) in &self.live {
            if !live.has_role_probe {
                continue;
            }
            let slots: Vec<Arc<Slot>> = self
                .slots
                .iter()
                .filter(|s| &s.plan.cluster == cluster)
                .cloned()
                .collect();
            let live = live.clone();
            let mut stopping = self.stopping.subscribe();
            let interval = slots
                .iter()
                .find_map(|s| s.plan.role.as_ref().map(|r| r.interval))
                .unwrap_or(Duration::from_millis(20));
            tokio::spawn(async move {
                loop {
                    let mut set = JoinSet::new();
                    for s in &slots {
                        let (Some(p), Some(role)) = (s.current(), s.plan.role.clone()) else {
                            continue;
                        };
                        let st = p.status();
                        if !st.running() || st.state == NodeState::Paused {
                            continue;
                        }
                        let s = s.clone();
                        set.spawn(async move {
                            let answer = tokio::time::timeout(
                                role.timeout,
                                roles::ask(&role, s.tls.as_ref(), &s.plan.env, &s.plan.dir),
                            )
                            .await;
                            (s.plan.name.clone(), answer.ok().and_then(Result::ok))
                        });
                    }
                    let mut answers = BTreeMap::new();
                    while let Some(Ok((name, answer))) = set.join_next().await {
                        if let Some(leads) = answer {
                            answers.insert(name, leads);
                        }
                    }
                    live.observe(answers);
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = stopping.wait_for(|s| *s) => break,
                    }
                }
            });
        }
    }

    pub fn descriptor(&self) -> Descriptor {
        let nodes: Vec<NodeDescriptor> = self
            .slots
            .iter()
            .map(|s| {
                let status = s.current().map(|p| p.status());
                let mut d = node_descriptor(&s.plan, status.as_ref());
                if let Some(peers) = self.links.get(&s.plan.name) {
                    d.links = peers
                        .iter()
                        .map(|(peer, ports)| {
                            let addrs = ports
                                .iter()
                                .map(|(p, v)| (p.clone(), format!("127.0.0.1:{v}")))
                                .collect();
                            (peer.clone(), addrs)
                        })
                        .collect();
                }
                let live = &self.live[&s.plan.cluster];
                if d.pid.is_some() && d.state != NodeState::Paused {
                    d.role = live
                        .role_of(&s.plan.name)
                        .map(|l| if l { "leader" } else { "follower" }.to_string());
                }
                d
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": self.plan.name,
            "ca": self.plan.ca,
            "state_dir": self.state.path,
            "supervisor_pid": std::process::id(),
            "supervisor_start_time": crate::sys::start_time(std::process::id()),
            "clusters": self.plan.clusters.iter().map(|c| self.live[&c.name].status()).collect::<Vec<_>>(),
            "faults": self.faults.lock().expect("faults").records.clone(),
            "nodes": nodes,
        }))
        .expect("descriptor")
    }

    pub fn write_descriptor(&self) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(&self.descriptor()).expect("descriptor serialises");
        self.state.write_atomic("cluster.json", &json)?;
        Ok(())
    }
}

/// Sends each node its stop signal and waits until all are gone; a second interrupt turns the
/// grace period into SIGKILL now.
async fn stop_together(slots: &[&Arc<Slot>], interrupt: &Interrupt) {
    let procs: Vec<NodeProc> = slots
        .iter()
        .filter_map(|s| {
            let p = s.current()?;
            p.status().running().then(|| {
                p.send(Ctl::Stop {
                    signal: Signal::try_from(s.plan.stop.signal).unwrap_or(Signal::SIGTERM),
                    grace: s.plan.stop.grace,
                });
                p
            })
        })
        .collect();
    let all_exited = async {
        for p in &procs {
            p.exited().await;
        }
    };
    tokio::select! {
        _ = all_exited => {}
        _ = interrupt.reached(2) => {
            for p in &procs {
                p.send(Ctl::Kill);
            }
            for p in &procs {
                p.exited().await;
            }
        }
    }
}

/// A netem-style rate (`1mbit`, `500kbit`, `10mbps`, `2000bps`) in bytes per second.
fn bytes_per_second(rate: &str) -> Option<u64> {
    let rate = rate.trim().to_ascii_lowercase();
    let split = rate.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (n, unit) = rate.split_at(split);
    let n: f64 = n.parse().ok()?;
    let bits = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return None,
    };
    Some((n * bits / 8.0).max(1.0) as u64)
}

fn node_descriptor(plan: &NodePlan, status: Option<&Status>) -> NodeDescriptor {
    let ready_ms = status.and_then(|s| {
        s.ready_at
            .map(|r| (r - s.spawned_at).as_secs_f64() * 1000.0)
    });
    serde_json::from_value(serde_json::json!({
        "name": plan.name,
        "cluster": plan.cluster,
        "index": plan.index,
        "pid": status.filter(|s| s.running()).map(|s| s.pid),
        "state": status.map_or(NodeState::Stopped, |s| s.state),
        "host": plan.host,
        "ports": plan.ports,
        "urls": plan.urls,
        "data_dir": plan.data_dir,
        "log": plan.log,
        "tls": plan.tls,
        "time_to_ready_ms": ready_ms,
        "exit": status.and_then(|s| s.exit.clone()),
        "start_time": status.filter(|s| s.running()).and_then(|s| crate::sys::start_time(s.pid)),
    }))
    .expect("node descriptor")
}

/// Hands a node's directory to the user it runs as, and checks that the user can reach it:
/// every directory above must let others through (x), or the node fails with EACCES.
fn give_to_user(dir: &std::path::Path, name: &str, uid: u32, gid: u32) -> Result<(), Error> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fn chown_all(p: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if p.is_dir() {
            for e in std::fs::read_dir(p)? {
                chown_all(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    chown_all(dir, uid, gid).map_err(|e| io_err("give to its user", dir, e))?;
    for up in dir.ancestors().skip(1) {
        let Ok(m) = up.metadata() else { continue };
        if m.uid() == uid {
            continue;
        }
        let mode = m.permissions().mode();
        let others_x = mode & 0o001 != 0 || (m.gid() == gid && mode & 0o010 != 0);
        if !others_x {
            // The state dir itself may open up to traversal; anything above it is the user's choice.
            let is_state_dir = up.join(".troupe-state").exists();
            if is_state_dir || up.ends_with("nodes") {
                std::fs::set_permissions(up, std::fs::Permissions::from_mode(mode | 0o711))
                    .map_err(|e| io_err("open for traversal", up, e))?;
                continue;
            }
            return Err(Error::Environment {
                message: format!(
                    "nodes run as `{name}`, but `{name}` cannot reach {}: {} is mode {:o}",
                    dir.display(),
                    up.display(),
                    mode & 0o777
                ),
                help: Some("put the state directory somewhere every user can traverse, e.g. --state-dir /tmp/NAME".into()),
            });
        }
    }
    Ok(())
}

fn spawn_slot(s: &Arc<Slot>) -> Result<(), Error> {
    let proc = NodeProc::spawn(&s.plan, s.keeper.clone())
        .map_err(|e| failure(&s.plan, StartReason::Spawn(e)))?;
    tracing::debug!(node = %s.plan.name, pid = proc.status().pid, "spawned");
    *s.proc.lock().expect("slot lock") = Some(proc);
    Ok(())
}

fn failure(plan: &NodePlan, reason: StartReason) -> Error {
    Error::Start(Box::new(StartFailure {
        node: plan.name.clone(),
        reason,
        log: plan.log.clone(),
        log_tail: probe::log_tail(&plan.log, 15),
    }))
}

/// Polls each probe in turn until it passes, the node exits, or the probe's deadline passes.
async fn wait_probes(s: &Arc<Slot>, probes: Vec<Probe>) -> Result<(), Error> {
    let Some(proc) = s.current() else {
        return Err(failure(&s.plan, StartReason::Spawn("not started".into())));
    };
    let mut prober = Prober::new(
        s.tls.clone(),
        s.plan.log.clone(),
        proc.log_offset,
        s.plan.env.clone(),
        s.plan.dir.clone(),
    );
    let mut status = proc.subscribe();
    let exited = |st: &Status| {
        failure(
            &s.plan,
            StartReason::Exited {
                status: st.exit.clone().unwrap_or_default(),
            },
        )
    };
    for probe in probes {
        let started = Instant::now();
        let deadline = started + probe.timeout;
        let mut last;
        loop {
            if !status.borrow().running() {
                return Err(exited(&status.borrow()));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt =
                tokio::time::timeout(probe::attempt_timeout(remaining), prober.check(&probe));
            let outcome = tokio::select! {
                r = attempt => Some(r),
                _ = status.wait_for(|st| !st.running()) => None,
            };
            match outcome {
                None => return Err(exited(&status.borrow())),
                Some(Ok(Check::Ready)) => break,
                Some(Ok(Check::NotYet(seen))) => last = seen,
                Some(Ok(Check::Failed(error))) => {
                    return Err(failure(
                        &s.plan,
                        StartReason::Probe {
                            probe: probe.description.clone(),
                            error,
                        },
                    ));
                }
                Some(Err(_)) => last = "the attempt timed out".into(),
            }
            if Instant::now() >= deadline {
                return Err(failure(
                    &s.plan,
                    StartReason::Timeout {
                        probe: probe.description.clone(),
                        after: troupe_spec::format_duration(started.elapsed()),
                        last,
                    },
                ));
            }
            tokio::select! {
                _ = tokio::time::sleep(probe.interval) => {}
                _ = status.wait_for(|st| !st.running()) => {}
            }
        }
    }
    Ok(())
}

fn run_id() -> String {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new()
        .hash_one((std::process::id(), Instant::now()));
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

/// Runs `futures` together until all succeed or one fails; a failure drops (cancels) the rest.
async fn try_join_all<F>(futures: Vec<F>) -> Result<(), Error>
where
    F: std::future::Future<Output = Result<(), Error>>,
{
    let mut futures: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut futures {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(())) => *slot = None,
                    std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    })
    .await
}
