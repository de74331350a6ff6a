//! The control protocol: how `troupe` commands (and any other program) talk to a detached
//! supervisor over `<state-dir>/control.sock`, a Unix socket only its owner can open.
//!
//! One JSON object per line in each direction: a request, then its response. A connection may
//! carry several requests in turn. From Python:
//!
//! ```text
//! s = socket.socket(socket.AF_UNIX); s.connect(".troupe/etcd/control.sock")
//! s.sendall(b'{"op":"kill","targets":["main:leader"]}\n'); print(s.makefile().readline())
//! ```

use serde::{Deserialize, Serialize};

use crate::Descriptor;

/// The socket's file name inside the state directory.
pub const SOCKET: &str = "control.sock";

/// A request to the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// The live descriptor.
    Status,
    /// SIGKILL the targets' process groups.
    Kill { targets: Vec<String> },
    /// Stop the targets gracefully (stop signal, grace, SIGKILL).
    Stop { targets: Vec<String> },
    /// Start stopped or killed targets again and wait until ready.
    Start { targets: Vec<String> },
    /// Stop, then start.
    Restart { targets: Vec<String> },
    /// SIGSTOP the targets' process groups.
    Pause { targets: Vec<String> },
    /// SIGCONT the targets' process groups.
    Resume { targets: Vec<String> },
    /// Wait until every node (of `cluster`, or all) is ready, or until `cluster` has a leader.
    Wait {
        until: WaitFor,
        cluster: Option<String>,
        timeout_ms: u64,
    },
    /// Inject a network fault.
    Fault { fault: Fault },
    /// Undo every network fault.
    Heal,
    /// Stop every node, then the supervisor.
    Down,
}

/// A network fault, in terms of targets (nodes, clusters, CLUSTER:SELECTOR).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// Nodes in different groups cannot reach each other; nodes in no group are unaffected.
    /// A `bridge` node reaches both sides.
    Partition {
        groups: Vec<Vec<String>>,
        #[serde(default)]
        bridge: Option<String>,
    },
    /// Each target is cut from every other node (and from the host's clients with `host`).
    Isolate {
        targets: Vec<String>,
        #[serde(default)]
        host: bool,
    },
    /// Packets from `from` to `to` are dropped (and back, unless `one_way`).
    Cut {
        from: Vec<String>,
        to: Vec<String>,
        #[serde(default)]
        one_way: bool,
    },
    /// Connections from `from` to `to` are reset (RST), and new ones too, until healed.
    /// Link proxies only.
    Reset { from: Vec<String>, to: Vec<String> },
    /// The targets' outgoing traffic is delayed, jittered, lost or rate-limited (netem).
    Degrade {
        targets: Vec<String>,
        delay_ms: f64,
        #[serde(default)]
        jitter_ms: f64,
        #[serde(default)]
        loss_pct: f64,
        /// A netem rate, e.g. `1mbit`.
        #[serde(default)]
        rate: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    Ready,
    Leader,
}

/// The supervisor's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[non_exhaustive]
pub struct Response {
    pub ok: bool,
    /// What went wrong, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The nodes an operation acted on, after resolving targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// What was done, for people (e.g. the fault's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The leader, for `wait leader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The live descriptor, for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Descriptor>,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            ..Response::default()
        }
    }
}
