//! The process runtime: each node is a local process leading its own process group, with
//! stdin closed and stdout and stderr appended to its log.
//!
//! Every signal goes to the whole group. The group leader's exit is observed without reaping
//! it ([`crate::group`]), what is left of the group is killed and reaped, and only then is the
//! leader reaped: a node that forked helpers leaves nothing behind, and troupe never signals
//! a group id that could already belong to someone else.

use std::fs::OpenOptions;
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use troupe_spec::NodeState;

use super::{Ctl, NodeHandle, NodeRuntime};
use crate::group::GroupLeader;
use crate::keeper::Keeper;
use crate::plan::NodePlan;
use crate::sys;

/// Runs nodes as local process groups. With a keeper, a node's whole group dies with troupe
/// even when troupe is SIGKILLed.
pub struct ProcessRuntime {
    keeper: Option<Arc<Keeper>>,
}

impl ProcessRuntime {
    pub fn new(keeper: Option<Arc<Keeper>>) -> ProcessRuntime {
        ProcessRuntime { keeper }
    }
}

impl NodeRuntime for ProcessRuntime {
    fn name(&self) -> &'static str {
        "process"
    }

    fn spawn<'a>(
        &'a self,
        plan: &'a NodePlan,
    ) -> Pin<Box<dyn Future<Output = Result<NodeHandle, String>> + Send + 'a>> {
        // Spawning is a fork and an exec: done here, on the calling (worker) thread, before
        // the future is first polled elsewhere.
        let result = spawn(plan, self.keeper.clone());
        Box::pin(async move { result })
    }
}

fn spawn(plan: &NodePlan, keeper: Option<Arc<Keeper>>) -> Result<NodeHandle, String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&plan.log)
        .map_err(|e| format!("cannot open log {}: {e}", plan.log.display()))?;
    let log_offset = log.metadata().map(|m| m.len()).unwrap_or(0);
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let parent = std::process::id();
    let user = plan.user.as_ref().map(|(_, uid, gid, _)| (*uid, *gid));
    // Opened here, kept open until the spawn returned, entered in the child.
    let netns = match &plan.netns {
        Some(p) => Some(
            std::fs::File::open(p)
                .map_err(|e| format!("cannot open network namespace {}: {e}", p.display()))?,
        ),
        None => None,
    };
    let netns_fd = netns.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
    let mut cmd = std::process::Command::new(&plan.program);
    cmd.args(&plan.args)
        .envs(plan.env.iter().map(|(k, v)| (k, v)));
    if let Some((name, _, _, home)) = &plan.user {
        cmd.env("USER", name).env("LOGNAME", name).env("HOME", home);
    }
    cmd.current_dir(&plan.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0);
    // SAFETY: child_setup only makes async-signal-safe calls and does not allocate.
    unsafe {
        cmd.pre_exec(move || sys::child_setup(parent, user, netns_fd));
    }
    let (leader, child) = GroupLeader::spawn(&mut cmd)
        .map_err(|e| format!("cannot run {}: {e}", plan.program.display()))?;
    drop(child);
    drop(netns);
    let pid = leader.pid();
    if let Some(k) = &keeper {
        k.watch(pid);
    }
    let (handle, ctl_rx, status) = NodeHandle::new(pid, log_offset);
    tokio::spawn(supervise(plan.name.clone(), leader, keeper, ctl_rx, status));
    Ok(handle)
}

/// The one task that owns a node's process group.
async fn supervise(
    name: String,
    mut leader: GroupLeader,
    keeper: Option<Arc<Keeper>>,
    mut ctl_rx: tokio::sync::mpsc::UnboundedReceiver<Ctl>,
    status: Arc<tokio::sync::watch::Sender<super::Status>>,
) {
    // Signals go by group id: safe until `finish`, since the unreaped leader keeps it ours.
    let pid = leader.pid();
    let to_group = |sig| sys::signal_group(pid, sig);
    let mut requested: Option<NodeState> = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let exit = loop {
        let kill_timer = async {
            match kill_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            exit = leader.exited() => break exit,
            Some(ctl) = ctl_rx.recv() => match ctl {
                Ctl::Stop { signal, grace } => {
                    if requested.is_none() {
                        requested = Some(NodeState::Stopped);
                    }
                    to_group(signal);
                    // A paused node must run to act on the signal.
                    to_group(Signal::SIGCONT);
                    let at = crate::deadline::after(grace);
                    kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                }
                Ctl::Kill => {
                    requested = Some(NodeState::Killed);
                    to_group(Signal::SIGKILL);
                }
                Ctl::Pause => {
                    to_group(Signal::SIGSTOP);
                    status.send_modify(|s| s.state = NodeState::Paused);
                }
                Ctl::Resume => {
                    to_group(Signal::SIGCONT);
                    status.send_modify(|s| {
                        s.state = if s.ready_at.is_some() { NodeState::Ready } else { NodeState::Starting };
                    });
                }
            },
            _ = kill_timer => {
                tracing::info!(node = %name, "grace period over; killing the process group");
                to_group(Signal::SIGKILL);
                kill_at = None;
            }
        }
    };
    // The leader is a zombie: kill and reap the rest of its group, then the leader.
    let forget = keeper.clone();
    let _ = tokio::task::spawn_blocking(move || {
        leader.finish(Duration::from_secs(5), || {
            if let Some(k) = &forget {
                k.forget(pid);
            }
        })
    })
    .await;
    if requested.is_none() {
        tracing::warn!(node = %name, "node exited unexpectedly: {exit}");
    }
    status.send_modify(|s| {
        s.state = requested.unwrap_or(NodeState::Exited);
        s.exit = Some(exit.to_string());
    });
}
