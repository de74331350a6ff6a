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
    /// From the first node's spawn to the last node's readiness.
    pub formation_ms: Option<f64>,
    /// Every change of leader seen, oldest first.
    pub leader_changes: Vec<LeaderChange>,
    /// Leader stopped, killed or paused → a different leader seen.
    pub failovers: Vec<Failover>,
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
