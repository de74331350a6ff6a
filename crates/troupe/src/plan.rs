//! Stage two: a validated [`Spec`] plus ports and paths → a [`Plan`] where every template is
//! rendered, every binary resolved and every probe concrete.
//!
//! [`check`] runs the same resolution with placeholder ports and paths before anything is
//! touched, so that an unknown template variable or a missing binary is reported with its
//! place in the spec and nothing is started.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};
use troupe_spec::{
    InvalidSpec, NodeTls, ProbeKind, Spanned, Spec, SpecError, StartMode, StopSpec, TlsSpec,
};

use crate::http::Url;
use crate::resolved::{Probe, ProbeCheck, RoleProbe, RoleRule, RoleSource};
use crate::template::{TemplateError, Templates};

/// Everything needed to run one spec.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub run_id: String,
    pub state_dir: PathBuf,
    /// The CA certificate, when TLS is on.
    pub ca: Option<PathBuf>,
    /// Every CA certificate by name, `default` (= `ca`) first; empty when TLS is off.
    pub cas: Vec<(String, PathBuf)>,
    /// All CA certificates in one file, when TLS is on.
    pub ca_bundle: Option<PathBuf>,
    /// In start order.
    pub clusters: Vec<ClusterPlan>,
}

impl Plan {
    pub fn nodes(&self) -> impl Iterator<Item = &NodePlan> {
        self.clusters.iter().flat_map(|c| c.nodes.iter())
    }
}

#[derive(Debug, Clone)]
pub struct ClusterPlan {
    pub name: String,
    pub start: StartMode,
    /// Clusters that must be ready before this one starts.
    pub after: Vec<String>,
    pub nodes: Vec<NodePlan>,
    /// Run in this order once every node is ready: (node, step), each until it passes.
    pub bootstrap: Vec<(String, Probe)>,
}

/// One node, fully resolved.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub name: String,
    pub cluster: String,
    pub index: u32,
    /// Where troupe, probes and the host reach the node (`node.host` in probes, the
    /// descriptor and `troupe env`).
    pub host: String,
    /// Where the node's peers reach it, when that is not `host`: its name on the run's overlay
    /// network (swarm). `node.host` in what the node itself reads (args, env, files).
    pub peer_host: Option<String>,
    /// Swarm placement constraints of the node's service, rendered.
    pub placement: Vec<String>,
    pub ports: BTreeMap<String, u16>,
    pub urls: BTreeMap<String, String>,
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub tls: Option<NodeTls>,
    /// The certificate of the CA that issued the node's (what its probes trust).
    pub ca: Option<PathBuf>,
    pub program: PathBuf,
    /// The network namespace the node runs in (`/run/netns/...`), if any.
    pub netns: Option<PathBuf>,
    /// Run as this user: name, uid, gid, home.
    pub user: Option<(String, u32, u32, PathBuf)>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Path, contents, mode.
    pub files: Vec<(PathBuf, String, u32)>,
    /// Gate for the next node of a sequential start.
    pub started: Vec<Probe>,
    pub ready: Vec<Probe>,
    /// Tells whether this node leads its cluster.
    pub role: Option<RoleProbe>,
    pub stop: StopSpec,
}

/// Where a node's ports come from while planning.
pub type PortMap = BTreeMap<String, BTreeMap<String, u16>>;

pub use crate::net::links::LinkMap;

/// Placeholder link ports for every directed pair of a proxies cluster (for `check`).
pub fn placeholder_links(spec: &Spec) -> LinkMap {
    let mut links = LinkMap::new();
    let mut next = 40000u16;
    for c in spec
        .clusters
        .values()
        .filter(|c| c.network == troupe_spec::Network::Proxies)
    {
        for a in 1..=c.nodes {
            for b in (1..=c.nodes).filter(|b| *b != a) {
                let m = c.ports.iter().map(|p| {
                    next = next.wrapping_add(1);
                    (p.clone(), next)
                });
                links
                    .entry(node_name(&c.name, a))
                    .or_default()
                    .insert(node_name(&c.name, b), m.collect());
            }
        }
    }
    links
}

/// Checks a spec end to end without touching the system: renders every template with
/// placeholder ports and paths, and resolves every binary.
pub fn check(spec: &Spec) -> Result<(), InvalidSpec> {
    let mut errors = Vec::new();
    check_ports_and_hosts(spec, &mut errors);
    if !errors.is_empty() {
        return Err(InvalidSpec {
            file: spec.source.path.clone(),
            errors,
        });
    }
    let fixed = fixed_ports(spec)?;
    let mut ports = PortMap::new();
    let mut hosts = BTreeMap::new();
    let mut next = 10000u16;
    for c in spec.clusters.values() {
        for i in 1..=c.nodes {
            let name = node_name(&c.name, i);
            if c.own_addresses() {
                hosts.insert(name.clone(), format!("10.213.0.{}", 10 + i));
            }
            let m = c
                .ports
                .iter()
                .map(|p| match fixed.get(&name).and_then(|f| f.get(p)) {
                    Some(n) => (p.clone(), *n),
                    None => {
                        next = next.wrapping_add(1);
                        (p.clone(), next)
                    }
                })
                .collect();
            ports.insert(node_name(&c.name, i), m);
        }
    }
    let links = placeholder_links(spec);
    resolve(
        spec,
        Path::new("/nonexistent/troupe-state"),
        &ports,
        &hosts,
        &links,
        "0000",
    )
    .map(|_| ())
}

/// Knowable start failures, refused as spec errors: more ports than the range holds, and a
/// `host` that is not an address of this machine (nothing could listen there).
fn check_ports_and_hosts(spec: &Spec, errors: &mut Vec<troupe_spec::SpecError>) {
    let text = &spec.source.text;
    // The span of `key = ...` in the table whose header span starts at `from`.
    let key_at = |from: usize, key: &str| -> std::ops::Range<usize> {
        let mut offset = from;
        for (i, line) in text
            .get(from..)
            .unwrap_or("")
            .split_inclusive('\n')
            .enumerate()
        {
            let t = line.trim_start();
            if i > 0 && t.starts_with('[') {
                break;
            }
            if let Some(rest) = t.strip_prefix(key)
                && rest.trim_start().starts_with('=')
            {
                let start = offset + line.len() - t.len();
                return start..start + t.trim_end().len();
            }
            offset += line.len();
        }
        from..from
    };
    let needed: usize = spec
        .clusters
        .values()
        .filter(|c| !c.own_addresses())
        .map(|c| c.nodes as usize * (c.ports.len() - c.fixed_ports.len()))
        .sum();
    let alloc = crate::ports::PortAllocator::new(spec.port_range);
    let size = usize::from(alloc.high.saturating_sub(alloc.low)) + 1;
    if needed > size {
        let at = text.find("[ports]").map_or(0..0, |i| key_at(i, "range"));
        errors.push(
            spec.source
                .error(at, format!(
                    "the nodes need {needed} ports, but the range {}-{} holds {size}",
                    alloc.low, alloc.high
                ))
                .with_help("widen [ports] range, e.g. range = \"20000-20999\", or remove it to use the default"),
        );
    }
    // `TROUPE_<NAME>_...` must name one cluster or node: `a-b` and `a_b` would share them.
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for c in spec.clusters.values() {
        let names =
            std::iter::once(c.name.clone()).chain((1..=c.nodes).map(|i| node_name(&c.name, i)));
        for name in names {
            let var = crate::envvars::var(&name);
            match seen.get(&var) {
                Some(other) if *other != name => errors.push(
                    spec.source
                        .error(c.span.clone(), format!(
                            "`{name}` and `{other}` share the environment name TROUPE_{var}_*"
                        ))
                        .with_help("rename one cluster: names differing only in `-` and `_` (or case) collide in `troupe env`"),
                ),
                _ => {
                    seen.insert(var, name);
                }
            }
        }
    }
    for c in spec.clusters.values() {
        if c.own_addresses() || c.host.contains("{{") {
            continue;
        }
        let Ok(ip) = c.host.parse::<std::net::IpAddr>() else {
            continue;
        };
        if !ip.is_loopback()
            && matches!(
                std::net::TcpListener::bind((ip, 0)),
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable
            )
        {
            errors.push(
                spec.source
                    .error(key_at(c.span.start, "host"), format!(
                        "`{}` is not an address of this machine: no node could listen on it",
                        c.host
                    ))
                    .with_help("use 127.0.0.1 (the default), ::1, or an address `ip addr` lists; for nodes on addresses of their own, use network = \"namespaces\""),
            );
        }
    }
}

/// Every node's fixed ports (`fixed_ports`), rendered: node → port name → number. Refuses a
/// template that does not render a port number, and two nodes on one address given one port.
pub fn fixed_ports(spec: &Spec) -> Result<PortMap, InvalidSpec> {
    let templates = Templates::new();
    let mut errors = Vec::new();
    let mut out = PortMap::new();
    // (host, port) → (node, port name), to find two nodes on one address and port.
    let mut taken: BTreeMap<(String, u16), (String, String)> = BTreeMap::new();
    let mut reported = std::collections::BTreeSet::new();
    for c in spec.clusters.values() {
        for i in 1..=c.nodes {
            let name = node_name(&c.name, i);
            let ctx = json!({
                "node": {"name": name, "index": i, "cluster": c.name},
                "cluster": {"name": c.name, "size": c.nodes},
            });
            for (port, t) in &c.fixed_ports {
                let text = match templates.render(t.get_ref(), &ctx) {
                    Ok(text) => text,
                    Err(e) => {
                        let mut err = spec
                            .source
                            .error(narrow(&spec.source.text, t, &e), e.message)
                            .with_label("in this fixed port");
                        err = err.with_help(e.help.unwrap_or_else(|| {
                            "a fixed port sees `node.index`, `node.name`, `cluster.name` and `cluster.size`".into()
                        }));
                        errors.push(err);
                        continue;
                    }
                };
                let Some(number) = text.trim().parse::<u16>().ok().filter(|n| *n > 0) else {
                    errors.push(
                        spec.source
                            .error(t.span(), format!(
                                "fixed port `{port}` of `{name}` renders as `{text}`, not a port number"
                            ))
                            .with_help("the template must give a number from 1 to 65535, e.g. \"{{ 10000 + node.index }}\""),
                    );
                    continue;
                };
                let host = if c.own_addresses() {
                    // Each node has an address of its own.
                    name.clone()
                } else {
                    c.host.clone()
                };
                if let Some((other, other_port)) = taken.get(&(host.clone(), number)) {
                    // Once per template: every further node would say the same.
                    if !reported.insert(t.span().start) {
                        continue;
                    }
                    let ports = if other_port == port {
                        format!("`{port}`")
                    } else {
                        format!("`{other_port}` and `{port}`")
                    };
                    errors.push(
                        spec.source
                            .error(t.span(), format!(
                                "`{other}` and `{name}` would both listen on {} port {number} ({ports})",
                                c.host
                            ))
                            .with_help("derive the number per node, e.g. \"{{ 10000 + node.index }}\", or give the nodes addresses of their own with network = \"namespaces\""),
                    );
                    continue;
                }
                taken.insert((host, number), (name.clone(), port.clone()));
                out.entry(name.clone())
                    .or_default()
                    .insert(port.clone(), number);
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(InvalidSpec {
            file: spec.source.path.clone(),
            errors,
        })
    }
}

/// Processes a second above which a role probe set is warned about: on a 2-core machine, 9
/// TLS client processes every 50 ms (180/s) were load enough to cause a spurious failover.
pub const PROBE_PROCESS_BUDGET: f64 = 150.0;

/// Warnings about what the spec's role probes cost: a `command` role probe spawns one process
/// per node per interval (one per interval with `scope = "cluster"`).
pub fn probe_cost_warnings(spec: &Spec) -> Vec<String> {
    let mut total = 0.0;
    let mut parts = Vec::new();
    for c in spec.clusters.values() {
        let Some(role) = &c.role else { continue };
        if !matches!(role.source, troupe_spec::RoleSourceSpec::Command { .. }) {
            continue;
        }
        let asked = match role.scope {
            troupe_spec::RoleScope::Node => c.nodes,
            troupe_spec::RoleScope::Cluster => 1,
        };
        let per_second = f64::from(asked) / role.interval.as_secs_f64().max(0.001);
        total += per_second;
        parts.push(format!(
            "cluster `{}` {}every {} ({per_second:.0}/s)",
            c.name,
            if asked == 1 {
                "runs its role command once ".to_string()
            } else {
                format!("runs its role command on each of {asked} nodes ")
            },
            troupe_spec::format_duration(role.interval)
        ));
    }
    if total > PROBE_PROCESS_BUDGET {
        vec![format!(
            "role probes will start about {total:.0} processes a second: {}. That load can slow the system under test enough to change its behaviour (a spurious failover); use scope = \"cluster\" when one answer names the leader, an `http` role probe, or a longer `interval`",
            parts.join("; ")
        )]
    } else {
        Vec::new()
    }
}

pub fn node_name(cluster: &str, index: u32) -> String {
    format!("{cluster}-{index}")
}

/// Resolves a spec into a plan, given the state directory (absolute), every node's ports and
/// the addresses of nodes that do not live on the cluster's `host` (network namespaces).
pub fn resolve(
    spec: &Spec,
    state_dir: &Path,
    ports: &PortMap,
    hosts: &BTreeMap<String, String>,
    links: &LinkMap,
    run_id: &str,
) -> Result<Plan, InvalidSpec> {
    let mut r = Resolver {
        spec,
        templates: Templates::new(),
        errors: Vec::new(),
    };
    let plan = r.plan(state_dir, ports, hosts, links, run_id);
    if r.errors.is_empty() {
        Ok(plan)
    } else {
        Err(InvalidSpec {
            file: spec.source.path.clone(),
            errors: r.errors,
        })
    }
}

struct Resolver<'a> {
    spec: &'a Spec,
    templates: Templates,
    errors: Vec<SpecError>,
}

impl Resolver<'_> {
    fn plan(
        &mut self,
        state_dir: &Path,
        ports: &PortMap,
        hosts: &BTreeMap<String, String>,
        links: &LinkMap,
        run_id: &str,
    ) -> Plan {
        let spec = self.spec;
        let tls_on = spec.tls.is_some();
        let ca = tls_on.then(|| ca_path(state_dir, TlsSpec::DEFAULT_CA));
        let cas: Vec<(String, PathBuf)> = spec
            .tls
            .iter()
            .flat_map(|t| t.ca_names())
            .map(|n| (n.to_string(), ca_path(state_dir, n)))
            .collect();
        let ca_bundle = tls_on.then(|| state_dir.join("tls").join("cas.pem"));
        // Each node's certificates, by node name.
        let mut node_certs: BTreeMap<String, NodeTls> = BTreeMap::new();

        // Everything templates can see about every node, built first so that each node can
        // refer to its peers.
        // Two views of every node: as the nodes see each other (what they read: args, env,
        // files) and as troupe and the host see them (probes, role, bootstrap, descriptor).
        // They differ on a swarm only.
        let mut node_ctx: BTreeMap<String, Json> = BTreeMap::new();
        let mut cluster_ctx = serde_json::Map::new();
        let mut host_ctx: BTreeMap<String, Json> = BTreeMap::new();
        let mut host_cluster_ctx = serde_json::Map::new();
        for c in spec.clusters.values() {
            let mut list = Vec::new();
            let mut host_list = Vec::new();
            for i in 1..=c.nodes {
                let name = node_name(&c.name, i);
                let p = ports.get(&name).cloned().unwrap_or_default();
                let dir = state_dir.join("nodes").join(&name);
                let default_scheme = if tls_on { "https" } else { "http" };
                let scheme =
                    |port: &str| c.schemes.get(port).map_or(default_scheme, String::as_str);
                let host = hosts.get(&name).unwrap_or(&c.host);
                // On a swarm, what the node reads names its peers (and itself) as they reach
                // each other, by name on the overlay network, and listens on every address
                // (the published ports arrive on another interface than the overlay's).
                let swarm = c.runtime == troupe_spec::Runtime::Swarm;
                let peer_host = if swarm { &name } else { host };
                let bind = if swarm { "0.0.0.0" } else { host.as_str() };
                let view = |host: &str| {
                    let host_in_url = url_host(host);
                    let urls: BTreeMap<String, String> = p
                        .iter()
                        .map(|(k, v)| (k.clone(), port_url(scheme(k), &host_in_url, *v)))
                        .collect();
                    let addrs: BTreeMap<String, String> = p
                        .iter()
                        .map(|(k, v)| (k.clone(), format!("{host_in_url}:{v}")))
                        .collect();
                    (urls, addrs)
                };
                let (urls, addrs) = view(peer_host);
                let bind_in_url = url_host(bind);
                let listen: BTreeMap<String, String> = p
                    .iter()
                    .map(|(k, v)| (k.clone(), format!("{bind_in_url}:{v}")))
                    .collect();
                let files: BTreeMap<String, String> = c
                    .files
                    .keys()
                    .map(|f| (f.clone(), dir.join(f).display().to_string()))
                    .collect();
                let mut n = json!({
                    "name": name,
                    "index": i,
                    "cluster": c.name,
                    "host": peer_host,
                    "bind": bind,
                    "ports": p,
                    "urls": urls,
                    "addrs": addrs,
                    "listen": listen,
                    "dir": dir,
                    "data_dir": dir.join("data"),
                    "log": dir.join("node.log"),
                    "files": files,
                });
                if let Some(tls) = &spec.tls {
                    let ca_name = self.node_ca(tls, c, i, &name);
                    let t = node_tls(&dir, &ca_path(state_dir, &ca_name), &ca_name, tls.bad);
                    n["tls"] = json!({
                        "cert": t.cert, "key": t.key,
                        "client_cert": t.client_cert, "client_key": t.client_key,
                        "ca": t.ca, "ca_name": t.ca_name, "bundle": ca_bundle,
                        "bad": t.bad,
                    });
                    node_certs.insert(name.clone(), t);
                }
                if let Some(peers) = links.get(&name) {
                    let mut l = serde_json::Map::new();
                    for (peer, ports) in peers {
                        l.insert(
                            peer.clone(),
                            json!({
                                "ports": ports,
                                "addrs": ports.iter().map(|(k, v)| (k.clone(), format!("127.0.0.1:{v}"))).collect::<BTreeMap<_, _>>(),
                                "urls": ports.iter().map(|(k, v)| (k.clone(), port_url(scheme(k), "127.0.0.1", *v))).collect::<BTreeMap<_, _>>(),
                            }),
                        );
                    }
                    n["links"] = Json::Object(l);
                }
                // What troupe and the host see: the same node, reached where troupe reaches it.
                let mut h = n.clone();
                let (urls, addrs) = view(host);
                h["host"] = json!(host);
                h["urls"] = json!(urls);
                h["addrs"] = json!(addrs);
                host_ctx.insert(name.clone(), h.clone());
                host_list.push(h);
                node_ctx.insert(name, n.clone());
                list.push(n);
            }
            // Bootstrap lists per port: `host:port,host:port,...`.
            let addrs = |list: &[Json]| -> BTreeMap<String, String> {
                c.ports
                    .iter()
                    .map(|port| {
                        let all: Vec<&str> = list
                            .iter()
                            .filter_map(|n| n["addrs"][port].as_str())
                            .collect();
                        (port.clone(), all.join(","))
                    })
                    .collect()
            };
            let (peer_addrs, host_addrs) = (addrs(&list), addrs(&host_list));
            cluster_ctx.insert(
                c.name.clone(),
                json!({"name": c.name, "size": c.nodes, "nodes": list, "addrs": peer_addrs}),
            );
            host_cluster_ctx.insert(
                c.name.clone(),
                json!({"name": c.name, "size": c.nodes, "nodes": host_list, "addrs": host_addrs}),
            );
        }
        let tls_ctx = match &ca {
            Some(ca) => json!({
                "enabled": true,
                "ca": ca,
                "cas": cas.iter().cloned().collect::<BTreeMap<_, _>>(),
                "bundle": ca_bundle,
            }),
            None => json!({"enabled": false}),
        };
        let run_ctx = json!({
            "name": spec.name,
            "id": run_id,
            "state_dir": state_dir,
            "spec_dir": spec.source.dir(),
        });

        let mut clusters = Vec::new();
        for c in spec.start_order() {
            let mut nodes = Vec::new();
            // (step, node index, node, probe), sorted into run order below.
            let mut bootstrap = Vec::new();
            for i in 1..=c.nodes {
                let name = node_name(&c.name, i);
                let node = &node_ctx[&name];
                let ctx = json!({
                    "node": node,
                    "cluster": cluster_ctx[&c.name],
                    "clusters": cluster_ctx,
                    "nodes": node_ctx,
                    "tls": tls_ctx,
                    "run": run_ctx,
                });
                let host_view = &host_ctx[&name];
                let probe_ctx = json!({
                    "node": host_view,
                    "cluster": host_cluster_ctx[&c.name],
                    "clusters": host_cluster_ctx,
                    "nodes": host_ctx,
                    "tls": tls_ctx,
                    "run": run_ctx,
                });
                let dir = state_dir.join("nodes").join(&name);
                // In an image, `binary` names the program inside it: nothing to find here.
                let program = match &c.image {
                    Some(_) => Some(PathBuf::from(self.render(&c.binary, &ctx))),
                    None => self.binary(&c.binary, &ctx),
                };
                let args = c.args.iter().map(|a| self.render(a, &ctx)).collect();
                let mut env: Vec<(String, String)> = vec![
                    ("TROUPE_NODE".into(), name.clone()),
                    ("TROUPE_CLUSTER".into(), c.name.clone()),
                    ("TROUPE_NODE_DIR".into(), dir.display().to_string()),
                ];
                env.extend(c.env.iter().map(|(k, v)| (k.clone(), self.render(v, &ctx))));
                let files = c
                    .files
                    .values()
                    .map(|f| (dir.join(&f.name), self.render(&f.template, &ctx), f.mode))
                    .collect();
                let p = ports.get(&name).cloned().unwrap_or_default();
                let host = hosts.get(&name).unwrap_or(&c.host).clone();
                let started = c
                    .started
                    .iter()
                    .filter_map(|pr| self.probe(pr, &host, &p, &probe_ctx))
                    .collect();
                let ready = c
                    .ready
                    .iter()
                    .filter_map(|pr| self.probe(pr, &host, &p, &probe_ctx))
                    .collect();
                for (k, step) in c.bootstrap.iter().enumerate() {
                    if matches!(step.on, troupe_spec::BootstrapOn::Node(n) if n != i) {
                        continue;
                    }
                    if let Some(pr) = self.probe(&step.probe, &host, &p, &probe_ctx) {
                        bootstrap.push((k, i, name.clone(), pr));
                    }
                }
                let user = c.user.as_ref().and_then(|u| self.user(u));
                let role = c.role.as_ref().and_then(|r| self.role(r, &probe_ctx));
                let placement = c.placement.iter().map(|t| self.render(t, &ctx)).collect();
                let peer_host = (c.runtime == troupe_spec::Runtime::Swarm).then(|| name.clone());
                nodes.push(NodePlan {
                    name: name.clone(),
                    cluster: c.name.clone(),
                    index: i,
                    host,
                    peer_host,
                    placement,
                    netns: None,
                    urls: serde_json::from_value(host_view["urls"].clone()).unwrap_or_default(),
                    ports: p,
                    data_dir: dir.join("data"),
                    log: dir.join("node.log"),
                    ca: node_certs.get(&name).and_then(|t| t.ca.clone()),
                    tls: node_certs.get(&name).cloned(),
                    dir,
                    program: program.unwrap_or_default(),
                    user,
                    args,
                    env,
                    files,
                    started,
                    ready,
                    role,
                    stop: c.stop.clone(),
                });
            }
            clusters.push(ClusterPlan {
                name: c.name.clone(),
                start: c.start,
                after: c.after.iter().map(|a| a.get_ref().clone()).collect(),
                nodes,
                bootstrap: {
                    bootstrap.sort_by_key(|(k, i, _, _)| (*k, *i));
                    bootstrap.into_iter().map(|(_, _, n, p)| (n, p)).collect()
                },
            });
        }
        Plan {
            name: spec.name.clone(),
            run_id: run_id.to_string(),
            state_dir: state_dir.to_path_buf(),
            ca,
            cas,
            ca_bundle,
            clusters,
        }
    }

    /// The name of the CA that issues node `index`'s certificates: the cluster's `ca`, rendered
    /// with `node.index`, `node.name` and `cluster.name`, or `default`.
    fn node_ca(
        &mut self,
        tls: &TlsSpec,
        c: &troupe_spec::ClusterSpec,
        index: u32,
        name: &str,
    ) -> String {
        let Some(t) = &c.ca else {
            return TlsSpec::DEFAULT_CA.to_string();
        };
        let ctx = json!({
            "node": {"index": index, "name": name},
            "cluster": {"name": c.name},
        });
        let rendered = match self.templates.render(t.get_ref(), &ctx) {
            Ok(r) => r,
            Err(e) => {
                self.template_error(t, e);
                return TlsSpec::DEFAULT_CA.to_string();
            }
        };
        let rendered = rendered.trim();
        if rendered.is_empty() {
            let err = self
                .spec
                .source
                .error(
                    t.span(),
                    format!("`ca` renders no CA name for node `{name}`"),
                )
                .with_help(format!(
                    "render one of {} for every node, e.g. with an `else`: \
                     \"{{{{ 'other' if node.index == 3 else 'default' }}}}\"",
                    tls.ca_names().collect::<Vec<_>>().join(", ")
                ));
            self.push(err);
            return TlsSpec::DEFAULT_CA.to_string();
        }
        if let Some((msg, help)) = tls.unknown_ca(rendered) {
            let err = self
                .spec
                .source
                .error(t.span(), format!("{msg} (for node `{name}`)"))
                .with_help(help);
            self.push(err);
            return TlsSpec::DEFAULT_CA.to_string();
        }
        rendered.to_string()
    }

    /// Renders one template string; on error, records it (once) at the template's place.
    fn render(&mut self, t: &Spanned<String>, ctx: &Json) -> String {
        match self.templates.render(t.get_ref(), ctx) {
            Ok(s) => s,
            Err(e) => {
                self.template_error(t, e);
                String::new()
            }
        }
    }

    fn template_error(&mut self, t: &Spanned<String>, e: TemplateError) {
        let span = narrow(&self.spec.source.text, t, &e);
        let mut err = self
            .spec
            .source
            .error(span, e.message)
            .with_label("in this template");
        if let Some(h) = e.help {
            err = err.with_help(h);
        }
        self.push(err);
    }

    fn push(&mut self, err: SpecError) {
        // Every node renders the same templates: report each problem once.
        if !self
            .errors
            .iter()
            .any(|e| e.message == err.message && e.line == err.line && e.column == err.column)
        {
            self.errors.push(err);
        }
    }

    fn binary(&mut self, b: &Spanned<String>, ctx: &Json) -> Option<PathBuf> {
        let name = self.render(b, ctx);
        if name.is_empty() {
            return None;
        }
        self.program(&name, b.span())
    }

    /// Finds a program, or records an error at `span` that names it and says how to get it.
    fn program(&mut self, name: &str, span: Range<usize>) -> Option<PathBuf> {
        let found = find_program(name, self.spec.source.dir());
        if found.is_none() {
            if let Some((path, why)) = not_executable(name, self.spec.source.dir()) {
                let err = self
                    .spec
                    .source
                    .error(span, format!("program `{name}` ({}) {why}", path.display()))
                    .with_label(why.clone())
                    .with_help(format!("make it executable (chmod +x {}), or name the program that runs it, e.g. binary = \"sh\" with args = [\"{name}\"]", path.display()));
                self.push(err);
                return None;
            }
            let err = self
                .spec
                .source
                .error(
                    span,
                    format!("program `{name}` is not installed or not executable"),
                )
                .with_label("not found")
                .with_help(install_hint(name));
            self.push(err);
        }
        found
    }

    fn user(&mut self, u: &Spanned<String>) -> Option<(String, u32, u32, PathBuf)> {
        match nix::unistd::User::from_name(u.get_ref()) {
            Ok(Some(user)) => {
                if !nix::unistd::geteuid().is_root() && user.uid != nix::unistd::geteuid() {
                    let err = self
                        .spec
                        .source
                        .error(
                            u.span(),
                            format!(
                                "troupe must run as root to start nodes as `{}`",
                                u.get_ref()
                            ),
                        )
                        .with_help(
                            "run troupe as root, or remove `user` to run the nodes as yourself",
                        );
                    self.push(err);
                    return None;
                }
                Some((user.name, user.uid.as_raw(), user.gid.as_raw(), user.dir))
            }
            _ => {
                let err = self
                    .spec
                    .source
                    .error(
                        u.span(),
                        format!("there is no user `{}` on this machine", u.get_ref()),
                    )
                    .with_label("unknown user")
                    .with_help(if u.get_ref() == "postgres" {
                        "the postgresql package creates it: apt-get install postgresql".to_string()
                    } else {
                        "create it (useradd), or remove `user` to run the nodes as yourself"
                            .to_string()
                    });
                self.push(err);
                None
            }
        }
    }

    fn role(&mut self, r: &troupe_spec::RoleSpec, ctx: &Json) -> Option<RoleProbe> {
        use troupe_spec::{RoleRuleSpec, RoleSourceSpec};
        let source = match &r.source {
            RoleSourceSpec::Http { url, post } => {
                let text = self.render(url, ctx);
                if text.is_empty() {
                    return None;
                }
                match Url::parse(&text) {
                    Ok(u) => RoleSource::Http {
                        url: u,
                        post: post.clone(),
                    },
                    Err(e) => {
                        let err = self
                            .spec
                            .source
                            .error(url.span(), format!("invalid URL for the role probe: {e}"))
                            .with_label("in this template")
                            .with_help(
                                "write a full URL such as \"{{ node.urls.client }}/status\"",
                            );
                        self.push(err);
                        return None;
                    }
                }
            }
            RoleSourceSpec::Command { argv } => {
                let mut args: Vec<String> = argv.iter().map(|a| self.render(a, ctx)).collect();
                if args.is_empty() || args[0].is_empty() {
                    return None;
                }
                let first = args.remove(0);
                let program = self.program(&first, argv[0].span())?;
                RoleSource::Command { program, args }
            }
            _ => return None,
        };
        let rule = match &r.rule {
            RoleRuleSpec::Matches(t) => {
                let text = self.render(t, ctx);
                match regex::Regex::new(&text) {
                    Ok(re) => RoleRule::Matches(re),
                    Err(e) => {
                        let err = self
                            .spec
                            .source
                            .error(t.span(), format!("`leader` renders as `{text}`, which is not a regular expression"))
                            .with_help(e.to_string().lines().last().unwrap_or("").trim().to_string());
                        self.push(err);
                        return None;
                    }
                }
            }
            RoleRuleSpec::Equals(p) => RoleRule::Equals(p.clone()),
            _ => return None,
        };
        Some(RoleProbe {
            source,
            cluster_scope: r.scope == troupe_spec::RoleScope::Cluster,
            pointer: r.pointer.clone(),
            rule,
            interval: r.interval,
            timeout: r.timeout,
        })
    }

    fn probe(
        &mut self,
        p: &troupe_spec::ProbeSpec,
        host: &str,
        ports: &BTreeMap<String, u16>,
        ctx: &Json,
    ) -> Option<Probe> {
        let check = match &p.kind {
            ProbeKind::Tcp { port } => ProbeCheck::Tcp {
                host: host.to_string(),
                port: *ports.get(port.get_ref())?,
            },
            ProbeKind::Http {
                url,
                status,
                body,
                post,
            } => {
                let text = self.render(url, ctx);
                if text.is_empty() {
                    return None;
                }
                let post = post.as_ref().map(|b| self.render(b, ctx));
                match Url::parse(&text) {
                    Ok(u) => ProbeCheck::Http {
                        url: u,
                        status: *status,
                        body: body.as_ref().and_then(|b| regex::Regex::new(b).ok()),
                        post,
                    },
                    Err(e) => {
                        let err = self
                            .spec
                            .source
                            .error(url.span(), format!("invalid URL for this probe: {e}"))
                            .with_label("in this template")
                            .with_help(
                                "write a full URL such as \"{{ node.urls.client }}/health\", which \
                                 has the scheme, host and port",
                            );
                        self.push(err);
                        return None;
                    }
                }
            }
            ProbeKind::Log { pattern } => ProbeCheck::Log {
                regex: regex::Regex::new(pattern).ok()?,
            },
            ProbeKind::Command { argv } => {
                let mut args: Vec<String> = argv.iter().map(|a| self.render(a, ctx)).collect();
                if args.is_empty() || args[0].is_empty() {
                    return None;
                }
                let first = args.remove(0);
                let program = self.program(&first, argv[0].span())?;
                ProbeCheck::Command { program, args }
            }
            _ => return None,
        };
        let description = match &check {
            ProbeCheck::Tcp { host, port } => format!("tcp connect to {}:{port}", url_host(host)),
            ProbeCheck::Http {
                url, status, post, ..
            } => format!(
                "{} {}://{}:{}{} (expecting {status})",
                if post.is_some() { "POST" } else { "GET" },
                if url.https { "https" } else { "http" },
                url_host(&url.host),
                url.port,
                url.path
            ),
            _ => p.kind.describe(),
        };
        Some(Probe {
            check,
            timeout: p.timeout,
            interval: p.interval,
            description,
        })
    }
}

/// Shrinks a template string's span to the failing expression when it can be found in it.
fn narrow(text: &str, t: &Spanned<String>, e: &TemplateError) -> Range<usize> {
    let span = t.span();
    let Some(slice) = text.get(span.clone()) else {
        return span;
    };
    // Where the template is written verbatim (no escapes), its offsets map onto the file.
    let template = t.get_ref();
    if let Some(r) = &e.range
        && !template.is_empty()
        && r.end <= template.len()
        && let Some(pos) = slice.find(template.as_str())
    {
        let start = span.start + pos;
        return start + r.start..start + r.end;
    }
    if let Some(snippet) = e.snippet.as_deref().filter(|s| !s.is_empty())
        && let Some(pos) = slice.find(snippet)
    {
        let start = span.start + pos;
        return start..start + snippet.len();
    }
    span
}

/// A CA's certificate: `tls/ca.pem` for `default` (as before there were several), else
/// `tls/ca-<name>.pem`; the key beside it as `.key`.
pub fn ca_path(state_dir: &Path, name: &str) -> PathBuf {
    let stem = if name == TlsSpec::DEFAULT_CA {
        "ca".to_string()
    } else {
        format!("ca-{name}")
    };
    state_dir.join("tls").join(format!("{stem}.pem"))
}

/// A node's certificate paths; bad ones under `tls/bad/` when asked for.
fn node_tls(dir: &Path, ca: &Path, ca_name: &str, bad: bool) -> NodeTls {
    let bad: BTreeMap<&str, Json> = crate::pki::BadCert::ALL
        .into_iter()
        .filter(|_| bad)
        .map(|b| {
            let stem = dir.join("tls/bad").join(b.name());
            let pair =
                json!({"cert": stem.with_extension("pem"), "key": stem.with_extension("key")});
            (b.name(), pair)
        })
        .collect();
    serde_json::from_value(json!({
        "cert": dir.join("tls/server.pem"),
        "key": dir.join("tls/server.key"),
        "client_cert": dir.join("tls/client.pem"),
        "client_key": dir.join("tls/client.key"),
        "ca": ca,
        "ca_name": ca_name,
        "bad": bad,
    }))
    .expect("NodeTls from paths")
}

/// A port's URL: `scheme://host:port`, or a bare `host:port` for the scheme `none` (ports that
/// speak no URL protocol, such as a consensus port).
pub(crate) fn port_url(scheme: &str, host_in_url: &str, port: u16) -> String {
    if scheme == NO_SCHEME {
        format!("{host_in_url}:{port}")
    } else {
        format!("{scheme}://{host_in_url}:{port}")
    }
}

/// `schemes = { quorum = "none" }`: the port's URL is a bare `host:port`.
pub(crate) const NO_SCHEME: &str = "none";

/// `::1` → `[::1]`, for URLs and `host:port`.
pub fn url_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{host}]"),
        _ => host.to_string(),
    }
}

/// Resolves a program like a shell does: a name with a `/` is a path (relative to `base`),
/// anything else is looked up on `PATH` (and in the sbin directories, where Debian puts some
/// servers).
/// A program that exists but cannot be run: its path and why.
fn not_executable(name: &str, base: &Path) -> Option<(PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![base.join(name)]
    } else {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path).map(|d| d.join(name)).collect()
    };
    candidates.into_iter().find_map(|p| {
        let m = p.metadata().ok()?;
        let why = if m.is_dir() {
            "is a directory".to_string()
        } else {
            format!(
                "is not executable (mode {:o})",
                m.permissions().mode() & 0o777
            )
        };
        Some((p, why))
    })
}

pub fn find_program(name: &str, base: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let p = base.join(name);
        return executable(&p).then(|| std::path::absolute(&p).unwrap_or(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// Where to get a well-known server.
pub fn install_hint(name: &str) -> String {
    let pkg = match name {
        "etcd" => Some("etcd-server"),
        "etcdctl" | "etcdutl" => Some("etcd-client"),
        "nats-server" => Some("nats-server"),
        "redis-server" | "redis-cli" => Some("redis-server"),
        "redis-sentinel" => Some("redis-sentinel"),
        "postgres" | "initdb" | "pg_ctl" | "pg_basebackup" | "psql" | "pg_isready" => {
            return format!(
                "is PostgreSQL installed? apt-get install postgresql; its server programs are in /usr/lib/postgresql/<version>/bin, not on PATH: use the full path, e.g. \"/usr/lib/postgresql/15/bin/{name}\""
            );
        }
        "zkServer.sh" => Some("zookeeperd"),
        _ => None,
    };
    match pkg {
        Some(p) => format!("is {name} installed? apt-get install {p}"),
        None => "check the name or install it; a name without `/` is looked up on PATH, a path is relative to the spec's directory".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_hints_name_the_debian_package() {
        let etcd = install_hint("etcd");
        assert!(etcd.contains("apt-get install etcd-server"), "{etcd}");
        let etcdctl = install_hint("etcdctl");
        assert!(etcdctl.contains("etcd-client"), "{etcdctl}");
    }
}
