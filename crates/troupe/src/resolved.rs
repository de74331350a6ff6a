//! What a spec's probes and role probes become once every template is rendered: plain data,
//! shared by the planner that makes it and the probers that use it. A leaf module, so that
//! `plan`, `probe` and `roles` depend on it and not on each other.

use std::path::PathBuf;
use std::time::Duration;

use regex::Regex;

use crate::http::Url;

/// A concrete probe for one node.
#[derive(Debug, Clone)]
pub struct Probe {
    pub check: ProbeCheck,
    pub timeout: Duration,
    pub interval: Duration,
    pub description: String,
}

#[derive(Debug, Clone)]
pub enum ProbeCheck {
    Tcp {
        host: String,
        port: u16,
    },
    Http {
        url: Url,
        status: u16,
        body: Option<regex::Regex>,
        /// POST this body instead of a GET.
        post: Option<String>,
    },
    Log {
        regex: regex::Regex,
    },
    Command {
        program: PathBuf,
        args: Vec<String>,
    },
}

/// A node's resolved role probe.
#[derive(Debug, Clone)]
pub struct RoleProbe {
    pub source: RoleSource,
    /// Asked once per cluster per interval; the answer is matched with every node's `rule`.
    pub cluster_scope: bool,
    /// JSON pointer into the answer; without it the whole answer is matched.
    pub pointer: Option<String>,
    pub rule: RoleRule,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum RoleSource {
    /// GET, or POST with this body.
    Http {
        url: Url,
        post: Option<String>,
    },
    Command {
        program: PathBuf,
        args: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub enum RoleRule {
    /// The node leads when the (pointed) answer matches.
    Matches(Regex),
    /// The node leads when the value at `pointer` equals the value at this pointer.
    Equals(String),
}
