//! The run descriptor, `<state-dir>/cluster.json`: what other tools read to find a running
//! cluster's nodes, endpoints and certificates. Written atomically once every node is ready.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The whole run, as written to `cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct Descriptor {
    /// The spec's name.
    pub name: String,
    /// The CA certificate every node certificate chains to; absent when TLS is off.
    pub ca: Option<PathBuf>,
    /// Every CA of the run by name (`default` is `ca`, then those of `[tls] cas`); empty when
    /// TLS is off.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cas: BTreeMap<String, PathBuf>,
    /// All the CA certificates in one file, for a node or client that trusts every CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<PathBuf>,
    /// The state directory of the run.
    pub state_dir: PathBuf,
    /// Process id of the troupe process that supervises the nodes.
    pub supervisor_pid: u32,
    /// The supervisor's start time (clock ticks after boot, `/proc/<pid>/stat` field 22), so a
    /// later troupe can prove a pid is still that process before it signals it.
    #[serde(default)]
    pub supervisor_start_time: Option<u64>,
    /// The supervisor runs in a user namespace of its own (a run without root): its nodes are
    /// reachable only from inside, through `troupe exec -- CMD`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rootless: bool,
    /// Per cluster: leader, formation time, leader changes and failovers.
    #[serde(default)]
    pub clusters: Vec<ClusterStatus>,
    /// Network faults injected in this run, active and healed.
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    /// Every node of every cluster, in start order.
    pub nodes: Vec<NodeDescriptor>,
}

/// One node of the descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct NodeDescriptor {
    /// `<cluster>-<index>`, e.g. `main-1`.
    pub name: String,
    pub cluster: String,
    /// 1-based position within its cluster.
    pub index: u32,
    /// Process id of the node's main process; it leads its own process group.
    pub pid: Option<u32>,
    pub state: NodeState,
    pub host: String,
    /// Port name → number, as declared by the spec.
    pub ports: BTreeMap<String, u16>,
    /// Port name → URL (`https://` when TLS is on).
    pub urls: BTreeMap<String, String>,
    /// Port name → `host:port` (an IPv6 host in brackets), for clients that take no URL.
    #[serde(default)]
    pub addrs: BTreeMap<String, String>,
    pub data_dir: PathBuf,
    /// The node's stdout and stderr.
    pub log: PathBuf,
    pub tls: Option<NodeTls>,
    /// From spawn to all readiness probes passing.
    pub time_to_ready_ms: Option<f64>,
    /// How the last process exited (`exit code 1`, `killed by SIGKILL`); absent while running.
    #[serde(default)]
    pub exit: Option<String>,
    /// `leader` or `follower` when the cluster has a role probe and the node answered it.
    #[serde(default)]
    pub role: Option<String>,
    /// Start time of `pid` (clock ticks after boot), to prove the pid is still this node's.
    #[serde(default)]
    pub start_time: Option<u64>,
    /// With `network = "proxies"`: peer → port name → the address of this node's link proxy
    /// to that peer's port.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub links: BTreeMap<String, BTreeMap<String, String>>,
    /// Every state the node went through in this run, oldest first: spawned (`starting`),
    /// `ready`, `paused`, back to `ready`, and how it ended (`stopped`, `killed`, `exited`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<NodeEvent>,
}

/// A node entering a state.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct NodeEvent {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub state: NodeState,
}

impl NodeEvent {
    pub fn new(at_ms: u64, state: NodeState) -> NodeEvent {
        NodeEvent { at_ms, state }
    }
}

/// A network fault and when it was in force.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct FaultRecord {
    pub id: u32,
    /// E.g. `partition main-1 | main-2 main-3`.
    pub description: String,
    pub started_at_ms: u64,
    pub healed_at_ms: Option<u64>,
    /// The seed of the link proxies' random jitter and loss for this fault, so a run can be
    /// replayed; absent for faults that draw no random numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl FaultRecord {
    pub fn new(id: u32, description: String, started_at_ms: u64) -> FaultRecord {
        FaultRecord {
            id,
            description,
            started_at_ms,
            healed_at_ms: None,
            seed: None,
        }
    }

    /// The record with the seed its jitter and loss were drawn from.
    pub fn with_seed(mut self, seed: u64) -> FaultRecord {
        self.seed = Some(seed);
        self
    }
}

/// A cluster's life as troupe saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[non_exhaustive]
pub struct ClusterStatus {
    pub name: String,
    /// Whether the cluster has a role probe (without one, `leader` is always absent).
    #[serde(default)]
    pub has_role_probe: bool,
    /// The node the role probe says leads, if any.
    pub leader: Option<String>,
    /// Every node whose latest role answer says it leads. More than one is a split brain (or,
    /// for a moment, an old leader that has not heard of the new one yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leaders: Vec<String>,
    /// Every window in which more than one node claimed to lead, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split_brains: Vec<SplitBrain>,
    /// From the first node's spawn to the last node's readiness.
    pub formation_ms: Option<f64>,
    /// Every change of leader seen, oldest first.
    pub leader_changes: Vec<LeaderChange>,
    /// Leader stopped, killed or paused → a different leader seen.
    pub failovers: Vec<Failover>,
}

/// A window in which more than one node claimed to lead: a split brain, or (for about an
/// election timeout) an old leader that had not heard of the new one.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct SplitBrain {
    /// Unix time in milliseconds when a second claimant was first seen.
    pub from_ms: u64,
    /// When one claimant or none was seen again; absent while it lasts.
    pub to_ms: Option<u64>,
    /// Every node that claimed to lead in the window.
    pub nodes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct LeaderChange {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    /// `None`: no node claimed leadership.
    pub leader: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct Failover {
    /// The leader that was stopped, killed or paused.
    pub from: String,
    /// `kill`, `stop`, `pause` or `restart`.
    pub cause: String,
    /// Unix time in milliseconds when troupe acted on the old leader.
    pub at_ms: u64,
    /// The next leader, once seen.
    pub to: Option<String>,
    /// From acting on the old leader to seeing the new one (role probe interval resolution).
    pub ms: Option<f64>,
}

/// A node's certificate paths. Keys are mode 0600.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct NodeTls {
    /// Server certificate (server and client auth), SANs localhost, 127.0.0.1 and the node's host.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificate (client auth only), CN = node name.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// The certificate of the CA that issued these (the cluster's or node's `ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// That CA's name: `default` or one of `[tls] cas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_name: Option<String>,
    /// With `[tls] bad = true`: deliberately bad certificates by variant (`expired`,
    /// `not_yet_valid`, `wrong_san`, `no_client_auth`, `no_server_auth`, `self_signed`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bad: BTreeMap<String, CertPair>,
}

/// A certificate and its private key (mode 0600).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[non_exhaustive]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Life-cycle state of a node.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NodeState {
    /// Spawned, readiness probes not yet passed.
    Starting,
    /// Every readiness probe passed.
    Ready,
    /// Stopped on request.
    Stopped,
    /// Killed on request.
    Killed,
    /// Stopped with SIGSTOP; resumes with SIGCONT.
    Paused,
    /// Exited without being asked to.
    Exited,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            NodeState::Starting => "starting",
            NodeState::Ready => "ready",
            NodeState::Stopped => "stopped",
            NodeState::Killed => "killed",
            NodeState::Paused => "paused",
            NodeState::Exited => "exited",
        };
        f.write_str(s)
    }
}

impl SplitBrain {
    pub fn new(from_ms: u64, nodes: Vec<String>) -> SplitBrain {
        SplitBrain {
            from_ms,
            to_ms: None,
            nodes,
        }
    }
}

impl LeaderChange {
    pub fn new(at_ms: u64, leader: Option<String>) -> LeaderChange {
        LeaderChange { at_ms, leader }
    }
}

impl Failover {
    /// A failover that has started and not yet ended.
    pub fn begin(from: &str, cause: &str, at_ms: u64) -> Failover {
        Failover {
            from: from.to_string(),
            cause: cause.to_string(),
            at_ms,
            to: None,
            ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster.json written before named CAs and bad certificates existed.
    const BEFORE_SEVERAL_CAS: &str = r#"{
        "name": "etcd", "ca": "/s/tls/ca.pem", "state_dir": "/s", "supervisor_pid": 7,
        "nodes": [{
            "name": "main-1", "cluster": "main", "index": 1, "pid": 8, "state": "ready",
            "host": "127.0.0.1", "ports": {"client": 20001}, "urls": {},
            "data_dir": "/s/nodes/main-1/data", "log": "/s/nodes/main-1/node.log",
            "tls": {"cert": "/c.pem", "key": "/c.key",
                    "client_cert": "/cc.pem", "client_key": "/cc.key"},
            "time_to_ready_ms": 1.0
        }]
    }"#;

    #[test]
    fn a_descriptor_from_before_several_cas_still_parses_and_writes_back_the_same() {
        let d: Descriptor = serde_json::from_str(BEFORE_SEVERAL_CAS).unwrap();
        assert!(d.cas.is_empty() && d.ca_bundle.is_none());
        let tls = d.nodes[0].tls.as_ref().unwrap();
        assert!(tls.ca.is_none() && tls.ca_name.is_none() && tls.bad.is_empty());
        // Nothing new appears when re-written: older readers see the fields they know.
        let again = serde_json::to_value(&d).unwrap();
        assert!(again.get("cas").is_none() && again.get("ca_bundle").is_none());
        let node_tls = &again["nodes"][0]["tls"];
        assert_eq!(node_tls.as_object().unwrap().len(), 4, "{node_tls}");
    }
}
