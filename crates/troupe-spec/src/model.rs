//! The validated spec: plain types that name what the user wrote. Strings that are templates
//! keep their span so that rendering errors in the engine can point back into the file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use indexmap::IndexMap;

use crate::diag::SpecSource;

pub use toml::Spanned;

/// A whole spec file: one or more clusters of nodes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Spec {
    /// `name = ...`, or the file name without `.toml`.
    pub name: String,
    pub source: SpecSource,
    /// Present when the spec has a `[tls]` table: a fresh CA per run and certificates per node.
    pub tls: Option<TlsSpec>,
    /// Where ports are allocated from, inclusive. Defaults to 20000 up to the kernel's
    /// ephemeral range.
    pub port_range: Option<(u16, u16)>,
    /// In file order.
    pub clusters: IndexMap<String, ClusterSpec>,
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TlsSpec {
    pub key: KeyType,
    /// Named CAs besides `default` (`cas = ["other"]`), in spec order: each a fresh CA per run
    /// that clusters or single nodes can have their certificates issued by (`ca = "other"`).
    pub cas: Vec<String>,
    /// `bad = true`: per node, deliberately bad certificates for negative tests as well.
    pub bad: bool,
}

impl TlsSpec {
    /// The name of the CA that is always there; its files keep the names `ca.pem`/`ca.key`.
    pub const DEFAULT_CA: &'static str = "default";

    /// Every CA of the run, `default` first.
    pub fn ca_names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(Self::DEFAULT_CA).chain(self.cas.iter().map(String::as_str))
    }

    /// For a CA name the run does not have: the message and a hint (with a did-you-mean).
    pub fn unknown_ca(&self, name: &str) -> Option<(String, String)> {
        if self.ca_names().any(|n| n == name) {
            return None;
        }
        let known = self.ca_names().collect::<Vec<_>>().join(", ");
        let help = match crate::diag::suggest(name, self.ca_names()) {
            Some(s) => format!("did you mean `{s}`? the CAs of this run are {known}"),
            None => format!(
                "the CAs of this run are {known}; name more in `[tls]`, e.g. `cas = [\"{name}\"]`"
            ),
        };
        Some((format!("unknown CA `{name}`"), help))
    }
}

/// Private key algorithm for the CA and every node certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyType {
    #[default]
    P256,
    P384,
    Ed25519,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyType {
    pub const NAMES: [&'static str; 6] =
        ["p256", "p384", "ed25519", "rsa2048", "rsa3072", "rsa4096"];

    /// The spec's name for this key type (`p256`, `rsa2048`, ...).
    pub fn name(self) -> &'static str {
        match self {
            KeyType::P256 => "p256",
            KeyType::P384 => "p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa3072 => "rsa3072",
            KeyType::Rsa4096 => "rsa4096",
        }
    }

    pub fn from_name(name: &str) -> Option<KeyType> {
        Some(match name {
            "p256" => KeyType::P256,
            "p384" => KeyType::P384,
            "ed25519" => KeyType::Ed25519,
            "rsa2048" => KeyType::Rsa2048,
            "rsa3072" => KeyType::Rsa3072,
            "rsa4096" => KeyType::Rsa4096,
            _ => return None,
        })
    }
}

/// One cluster: `nodes` copies of one binary.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClusterSpec {
    pub name: String,
    pub nodes: u32,
    /// A name looked up on `PATH`, or a path (relative to the spec's directory).
    pub binary: Spanned<String>,
    /// Templates, rendered per node.
    pub args: Vec<Spanned<String>>,
    /// Templates, rendered per node.
    pub env: IndexMap<String, Spanned<String>>,
    /// Config files rendered per node into the node's directory, by file name.
    pub files: IndexMap<String, FileSpec>,
    /// Port names each node gets a number for.
    pub ports: Vec<String>,
    /// URL scheme of a port's `node.urls.<port>`, by port name; ports not named here get
    /// `https` when TLS is on, else `http`.
    pub schemes: BTreeMap<String, String>,
    /// Ports whose number the system fixes or derives itself (`admin = "{{ 10000 + node.index }}"`),
    /// by port name: a number or a template of `node.index`, `node.name` and `cluster.name`.
    /// troupe checks each is free and locks it for the run like the ports it allocates.
    pub fixed_ports: BTreeMap<String, Spanned<String>>,
    pub host: String,
    /// Which CA issues the nodes' certificates: a name from `[tls] cas` (or `default`), or a
    /// template of `node.index`, `node.name` and `cluster.name` rendered per node. `None`: `default`.
    pub ca: Option<Spanned<String>>,
    /// Run the nodes as this user (e.g. `postgres`, which refuses to run as root); the node's
    /// directory is given to it. Needs troupe to run as root.
    pub user: Option<Spanned<String>>,
    /// Where the nodes' network lives.
    pub network: Network,
    /// What runs each node's program: a local process group (default) or a container.
    pub runtime: Runtime,
    /// With `runtime = "docker"`: the (locally built) image to run; `binary` is then the
    /// program's path inside it. `None`: the host's `binary` in a container of host files.
    /// Required with `runtime = "swarm"`.
    pub image: Option<Spanned<String>>,
    /// With `runtime = "swarm"`: placement constraints of each node's service
    /// (`"node.labels.zone == a"`), templates rendered per node; empty: anywhere.
    pub placement: Vec<Spanned<String>>,
    pub start: StartMode,
    /// Clusters that must be ready before this one starts.
    pub after: Vec<Spanned<String>>,
    /// Gate for starting the next node when `start = "sequential"`; defaults to `ready`.
    pub started: Vec<ProbeSpec>,
    /// All must pass before the node counts as ready.
    pub ready: Vec<ProbeSpec>,
    /// Run in order once every node is ready, each retried until it passes or its `timeout`,
    /// before the cluster counts as formed (`POST /init`, a membership change, ...).
    pub bootstrap: Vec<BootstrapStep>,
    /// How to tell which node leads, if the system has a leader.
    pub role: Option<RoleSpec>,
    pub stop: StopSpec,
    /// Span of the cluster's table in the spec.
    pub span: Range<usize>,
}

/// Where a cluster's nodes live on the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// On the host's loopback, each node on its own allocated ports.
    #[default]
    Host,
    /// Each node in its own network namespace with its own address on a bridge troupe makes,
    /// so all nodes use the same ports, as on separate hosts, and links can be cut (Linux, root).
    Namespaces,
    /// On the host, with a TCP proxy for every directed link between the cluster's nodes
    /// (`node.links.<peer>` in templates), so each link can be cut, delayed or throttled on
    /// its own. Portable, no privileges; the system must reach its peers by configured address.
    Proxies,
}

/// What runs a cluster's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Runtime {
    /// Each node a local process group.
    #[default]
    Process,
    /// Each node a container of the local Docker Engine, on the host's network.
    Docker,
    /// Each node a service (one replica) of a Docker Swarm, on an overlay network of the run.
    Swarm,
}

impl ClusterSpec {
    /// Whether each node has an address of its own that troupe chooses (namespaces of
    /// processes, or the run's Docker network): its ports are the same numbers on every node
    /// and need no lease on the host. On a swarm, `network = "namespaces"` means faults inside
    /// each task's namespace; the task's address is the overlay network's, and its ports are
    /// published on the host as without it.
    pub fn own_addresses(&self) -> bool {
        self.network == Network::Namespaces && self.runtime != Runtime::Swarm
    }
}

impl Runtime {
    /// The spec's name for this runtime.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Process => "process",
            Runtime::Docker => "docker",
            Runtime::Swarm => "swarm",
        }
    }
}

/// How the nodes of a cluster are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartMode {
    /// Every node at once.
    #[default]
    Parallel,
    /// One by one, each once the previous passes its `started` probes.
    Sequential,
    /// Not started by `up`: prepared (ports, certificates, files) and started on request,
    /// e.g. `troupe start CLUSTER` or a scenario's `start` step.
    Manual,
}

/// A config file rendered per node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FileSpec {
    pub name: String,
    /// Template text (inline, or read from `source`). Its span is the inline string or the
    /// `source` key.
    pub template: Spanned<String>,
    /// Unix permission bits, default 0o600.
    pub mode: u32,
}

/// A check that passes, fails or says "not yet", polled until its deadline.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProbeSpec {
    pub kind: ProbeKind,
    pub timeout: Duration,
    pub interval: Duration,
    pub span: Range<usize>,
}

/// One step that forms a cluster: a probe run on one node (or each in turn) until it passes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BootstrapStep {
    pub on: BootstrapOn,
    pub probe: ProbeSpec,
}

/// Where a bootstrap step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapOn {
    /// The node with this index (1-based).
    Node(u32),
    /// Every node, one after another.
    Each,
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ProbeKind {
    /// A TCP connect to the node's named port.
    Tcp { port: Spanned<String> },
    /// An HTTP(S) GET; with TLS on, presents the node's client certificate and trusts the run's CA.
    Http {
        url: Spanned<String>,
        status: u16,
        /// Regex the body must match.
        body: Option<String>,
        /// POST this body (a template) instead of a GET.
        post: Option<Spanned<String>>,
    },
    /// A regex over the node's log (stdout and stderr).
    Log { pattern: String },
    /// A command (templates, rendered per node) that exits 0 when the node is ready.
    Command { argv: Vec<Spanned<String>> },
}

impl ProbeKind {
    /// A short description for messages: `http GET https://...`, `tcp port client`.
    pub fn describe(&self) -> String {
        match self {
            ProbeKind::Tcp { port } => format!("tcp connect to port `{}`", port.get_ref()),
            ProbeKind::Http { url, post, .. } => format!(
                "http {} {}",
                if post.is_some() { "POST" } else { "GET" },
                url.get_ref()
            ),
            ProbeKind::Log { pattern } => format!("log line matching /{pattern}/"),
            ProbeKind::Command { argv } => format!(
                "command `{}`",
                argv.iter()
                    .map(|a| a.get_ref().as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }
    }
}

/// Who a role probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RoleScope {
    /// Every running node, about itself, every interval: nodes × 1/interval questions a second.
    #[default]
    Node,
    /// One question per interval (asked through the first running node's rendering, the next
    /// one if that fails) whose answer names the leader; each node's `leader` pattern is matched
    /// against it. For systems where a separate group (watchers, a coordinator) decides.
    Cluster,
}

/// How to ask a node whether it leads its cluster.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RoleSpec {
    pub source: RoleSourceSpec,
    /// Who is asked: each node about itself, or the cluster once per interval.
    pub scope: RoleScope,
    /// JSON pointer into the answer (`/leader`); without it the whole answer is matched.
    pub pointer: Option<String>,
    pub rule: RoleRuleSpec,
    /// How often every node is asked (default 20 ms).
    pub interval: Duration,
    /// Deadline of one attempt (default 1 s).
    pub timeout: Duration,
    pub span: Range<usize>,
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RoleSourceSpec {
    /// GET (or POST `post`) a URL template.
    Http {
        url: Spanned<String>,
        post: Option<String>,
    },
    /// Run a command (templates) and read its stdout.
    Command { argv: Vec<Spanned<String>> },
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum RoleRuleSpec {
    /// The node leads when the (pointed) answer matches this regex (a template).
    Matches(Spanned<String>),
    /// The node leads when the value at `pointer` equals the value at this pointer.
    Equals(String),
}

/// How a node is stopped gracefully.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StopSpec {
    /// Signal number sent to the node's process group first (default SIGTERM).
    pub signal: i32,
    pub signal_name: String,
    /// Time between that signal and SIGKILL.
    pub grace: Duration,
}

impl Default for StopSpec {
    fn default() -> Self {
        StopSpec {
            signal: 15,
            signal_name: "SIGTERM".into(),
            grace: Duration::from_secs(10),
        }
    }
}
