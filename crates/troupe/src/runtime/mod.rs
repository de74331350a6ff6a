//! Node runtimes: what runs one node's program: a local process group ([`process`], the
//! default), a container of the local Docker Engine ([`docker`]) or a service of a Docker
//! Swarm ([`swarm`]), chosen per cluster.
//!
//! A runtime only spawns. The node it returns is driven through a [`NodeHandle`], the same for
//! every runtime: requests go in on a channel ([`Ctl`]), the node's [`Status`] comes out on a
//! watch channel, so probes notice a crash in milliseconds and callers wait for a state
//! without polling. One task per node (owned by the runtime) owns the program and serves
//! both channels.

pub mod docker;
pub mod process;
pub mod swarm;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use troupe_spec::NodeState;

use crate::plan::NodePlan;

/// What the owner of a node may ask of it.
#[derive(Debug)]
pub enum Ctl {
    /// Send `signal`, then SIGKILL after `grace` if it is still running.
    Stop { signal: Signal, grace: Duration },
    /// SIGKILL now.
    Kill,
    /// Freeze it (SIGSTOP, or a cgroup freezer).
    Pause,
    /// Thaw it.
    Resume,
}

/// A node's live status.
#[derive(Debug, Clone)]
pub struct Status {
    /// The process id on this host (for containers: of the container's first process).
    pub pid: u32,
    pub state: NodeState,
    /// Set once the program has exited and everything it left is gone: `exit code 1`,
    /// `killed by SIGKILL`.
    pub exit: Option<String>,
    pub spawned_at: Instant,
    pub ready_at: Option<Instant>,
}

impl Status {
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }
}

/// Starts nodes. Implementations must be cheap to share between tasks.
pub trait NodeRuntime: Send + Sync + 'static {
    /// What this runtime is called in messages: `process`, `docker`.
    fn name(&self) -> &'static str;

    /// Why this runtime cannot `op` (`kill`, `pause`, `resume`) node `node` as it runs now
    /// (a swarm task on another host), if it cannot: the engine refuses the operation with
    /// this message instead of sending it.
    fn refuse(&self, _node: &str, _op: &str) -> Option<String> {
        None
    }

    /// Starts the node's program and returns its handle once it runs. Must be called from a
    /// thread that outlives the node (a runtime worker): a process runtime's parent-death
    /// signal fires when the spawning thread exits.
    fn spawn<'a>(
        &'a self,
        plan: &'a NodePlan,
    ) -> Pin<Box<dyn Future<Output = Result<NodeHandle, String>> + Send + 'a>>;
}

/// Handle to a running node, whatever runs it.
#[derive(Clone)]
pub struct NodeHandle {
    ctl: mpsc::UnboundedSender<Ctl>,
    status: Arc<watch::Sender<Status>>,
    /// Log size when this node was spawned; log probes look only at what follows.
    pub log_offset: u64,
}

impl NodeHandle {
    /// A handle and the two ends a runtime's task serves.
    pub fn new(
        pid: u32,
        log_offset: u64,
    ) -> (
        NodeHandle,
        mpsc::UnboundedReceiver<Ctl>,
        Arc<watch::Sender<Status>>,
    ) {
        let (status, _) = watch::channel(Status {
            pid,
            state: NodeState::Starting,
            exit: None,
            spawned_at: Instant::now(),
            ready_at: None,
        });
        let status = Arc::new(status);
        let (ctl, rx) = mpsc::unbounded_channel();
        (
            NodeHandle {
                ctl,
                status: status.clone(),
                log_offset,
            },
            rx,
            status,
        )
    }

    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    pub fn mark_ready(&self) {
        self.status.send_modify(|s| {
            if s.running() {
                s.state = NodeState::Ready;
                s.ready_at = Some(Instant::now());
            }
        });
    }

    pub fn send(&self, ctl: Ctl) {
        let _ = self.ctl.send(ctl);
    }

    /// Waits until the program has exited and everything it left is gone.
    pub async fn exited(&self) -> Status {
        let mut rx = self.subscribe();
        match rx.wait_for(|s| !s.running()).await {
            Ok(s) => s.clone(),
            Err(_) => self.status(),
        }
    }
}
