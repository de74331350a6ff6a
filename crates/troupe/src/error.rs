//! The engine's errors. Messages are lowercase and read after "failed to ..."; hints sit on a
//! line of their own. Start failures carry the tail of the node's log.

use std::fmt;
use std::path::{Path, PathBuf};

use troupe_spec::InvalidSpec;

/// Everything the engine can fail with.
#[derive(thiserror::Error, miette::Diagnostic)]
#[non_exhaustive]
pub enum Error {
    /// The spec is invalid; nothing was started.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(#[from] InvalidSpec),

    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("failed to issue certificates: {0}")]
    Pki(String),

    #[error(
        "failed to allocate {wanted} port(s) on {host}: every port in {lo}-{hi} is taken or locked"
    )]
    #[diagnostic(help(
        "set a wider or different range with [ports] range = \"LOW-HIGH\" in the spec, below the kernel's ephemeral range"
    ))]
    NoPorts {
        host: String,
        wanted: usize,
        lo: u16,
        hi: u16,
    },

    #[error("state directory {} is in use by a running troupe (pid {pid})", path.display())]
    #[diagnostic(help(
        "stop that run first (Ctrl-C in its terminal, or kill {pid}), or choose another directory with --state-dir"
    ))]
    StateDirBusy { path: PathBuf, pid: String },

    #[error("{} cannot be a state directory: it {why}", path.display())]
    #[diagnostic(help(
        "name a directory (it is created if missing) with --state-dir or TROUPE_STATE_DIR"
    ))]
    StateDirInvalid { path: PathBuf, why: &'static str },

    #[error("refusing to use {} as a state directory: it is not empty and was not made by troupe", path.display())]
    #[diagnostic(help("choose an empty or new directory with --state-dir"))]
    StateDirForeign { path: PathBuf },

    /// The cluster did not come up; everything started was stopped again.
    #[error("{0}")]
    Start(Box<StartFailure>),

    #[error("no node named `{name}`; nodes: {known}")]
    UnknownNode { name: String, known: String },

    /// A target or selector that names nothing, or needs what the cluster lacks.
    #[error("{message}")]
    Target {
        message: String,
        #[help]
        help: Option<String>,
    },

    /// An operation the nodes' state or their network backend does not allow, such as
    /// pausing a stopped node or cutting a link on the host network. Nothing was changed.
    #[error("{message}")]
    Refused {
        message: String,
        #[help]
        help: Option<String>,
    },

    /// A wait (for readiness, a leader, a new leader) missed its deadline.
    #[error("{message}")]
    Timeout {
        message: String,
        #[help]
        help: Option<String>,
    },

    /// The machine lacks what the run needs: root for namespaces, a tool, a directory the
    /// nodes' user can reach, a short enough socket path; or a system call failed.
    #[error("{message}")]
    Environment {
        message: String,
        #[help]
        help: Option<String>,
    },

    #[error("the cluster is shut down")]
    ShutDown,

    /// A workload could not start or run (see [`crate::workload`]).
    #[error("{0}")]
    Workload(String),

    #[error("interrupted before the cluster was ready")]
    Interrupted,
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Spec(e) => fmt::Debug::fmt(e, f),
            other => fmt::Display::fmt(other, f),
        }
    }
}

pub(crate) fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Why a node did not become ready, with what was last seen and the end of its log.
#[derive(Debug, Clone)]
pub struct StartFailure {
    pub node: String,
    /// The failing probe was a bootstrap step (run once every node was ready), not readiness.
    pub bootstrap: bool,
    pub reason: StartReason,
    pub log: PathBuf,
    pub log_tail: Vec<String>,
}

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StartReason {
    /// The program could not be started at all.
    Spawn(String),
    /// The node's process exited before every probe passed.
    Exited { status: String },
    /// A probe did not pass before its deadline.
    Timeout {
        probe: String,
        after: String,
        last: String,
    },
    /// A probe could not run at all (e.g. a template rendered into a bad URL).
    Probe { probe: String, error: String },
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reason {
            StartReason::Spawn(e) => write!(f, "failed to start node `{}`: {e}", self.node)?,
            StartReason::Exited { status } => write!(
                f,
                "node `{}` exited before it was ready ({status})",
                self.node
            )?,
            StartReason::Timeout { probe, after, last } if self.bootstrap => write!(
                f,
                "the cluster did not form: bootstrap step {probe} on `{}` never passed in {after}; last seen: {last}",
                self.node
            )?,
            StartReason::Timeout { probe, after, last } => write!(
                f,
                "node `{}` was not ready after {after}: {probe} never passed; last seen: {last}",
                self.node
            )?,
            StartReason::Probe { probe, error } => {
                write!(f, "node `{}`: cannot run probe {probe}: {error}", self.node)?
            }
        }
        if self.log_tail.is_empty() {
            write!(f, "\n  log {} is empty", self.log.display())?;
        } else {
            write!(f, "\n  last lines of {}:", self.log.display())?;
            for line in &self.log_tail {
                write!(f, "\n    | {line}")?;
            }
        }
        Ok(())
    }
}
