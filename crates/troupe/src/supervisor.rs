//! One task per node process. It owns the `Child`, takes requests over a channel (stop, kill,
//! signal) and publishes the node's status on a watch channel, so that probes notice a crash in
//! milliseconds and callers can wait for a state without polling.
//!
//! The node runs in its own process group with stdin closed and stdout and stderr appended to
//! its log. Every signal goes to the whole group; after the leader exits, what is left of the
//! group is killed and reaped, so a node that forked helpers leaves nothing behind.

use std::fs::OpenOptions;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};
use troupe_spec::NodeState;

use crate::keeper::Keeper;
use crate::plan::NodePlan;
use crate::sys;

/// What the owner of a node may ask of it.
#[derive(Debug)]
pub enum Ctl {
    /// Send `signal` to the group, then SIGKILL after `grace` if it is still running.
    Stop { signal: Signal, grace: Duration },
    /// SIGKILL the group now.
    Kill,
    /// SIGSTOP the group.
    Pause,
    /// SIGCONT the group.
    Resume,
}

/// A node's live status.
#[derive(Debug, Clone)]
pub struct Status {
    pub pid: u32,
    pub state: NodeState,
    /// Set once the process has exited: `exit code 1`, `killed by SIGKILL`.
    pub exit: Option<String>,
    pub spawned_at: Instant,
    pub ready_at: Option<Instant>,
}

impl Status {
    pub fn running(&self) -> bool {
        self.exit.is_none()
    }
}

/// Handle to a running node process.
#[derive(Clone)]
pub struct NodeProc {
    ctl: mpsc::UnboundedSender<Ctl>,
    status: Arc<watch::Sender<Status>>,
    /// Log size when this process was spawned; log probes look only at what follows.
    pub log_offset: u64,
}

impl NodeProc {
    /// Spawns the node. Must run on a long-lived thread (a runtime worker): the parent-death
    /// signal fires when the spawning *thread* exits.
    pub fn spawn(plan: &NodePlan, keeper: Option<Arc<Keeper>>) -> Result<NodeProc, String> {
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
        let mut cmd = tokio::process::Command::new(&plan.program);
        cmd.args(&plan.args)
            .envs(plan.env.iter().map(|(k, v)| (k, v)));
        if let Some((name, _, _, home)) = &plan.user {
            cmd.env("USER", name).env("LOGNAME", name).env("HOME", home);
        }
        cmd.current_dir(&plan.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: child_setup only calls async-signal-safe functions (prctl, getppid, sigprocmask).
        unsafe {
            cmd.pre_exec(move || sys::child_setup(parent, user, netns_fd));
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", plan.program.display()))?;
        let pid = child.id().ok_or("the process exited at once")?;
        if let Some(k) = &keeper {
            k.watch(pid);
        }
        let name = plan.name.clone();
        let (status_tx, _) = watch::channel(Status {
            pid,
            state: NodeState::Starting,
            exit: None,
            spawned_at: Instant::now(),
            ready_at: None,
        });
        let status = Arc::new(status_tx);
        let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
        let task_status = status.clone();
        tokio::spawn(async move {
            let mut requested: Option<NodeState> = None;
            let mut kill_at: Option<tokio::time::Instant> = None;
            loop {
                let kill_timer = async {
                    match kill_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    res = child.wait() => {
                        let exit = match res {
                            Ok(s) => sys::describe_exit(&s),
                            Err(e) => format!("lost track of the process: {e}"),
                        };
                        // The leader is reaped; now the rest of its group.
                        let gone = tokio::task::spawn_blocking(move || {
                            sys::kill_and_reap_group(pid, Duration::from_secs(5))
                        })
                        .await
                        .unwrap_or(false);
                        if gone && let Some(k) = &keeper {
                            k.forget(pid);
                        }
                        if requested.is_none() {
                            tracing::warn!(node = %name, "node exited unexpectedly: {exit}");
                        }
                        task_status.send_modify(|s| {
                            s.state = requested.unwrap_or(NodeState::Exited);
                            s.exit = Some(exit);
                        });
                        break;
                    }
                    Some(ctl) = ctl_rx.recv() => match ctl {
                        Ctl::Stop { signal, grace } => {
                            if requested.is_none() {
                                requested = Some(NodeState::Stopped);
                            }
                            sys::signal_group(pid, signal);
                            // A paused node must run to act on the signal.
                            sys::signal_group(pid, Signal::SIGCONT);
                            let at = tokio::time::Instant::now() + grace;
                            kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                        }
                        Ctl::Kill => {
                            requested = Some(NodeState::Killed);
                            sys::signal_group(pid, Signal::SIGKILL);
                        }
                        Ctl::Pause => {
                            sys::signal_group(pid, Signal::SIGSTOP);
                            task_status.send_modify(|s| s.state = NodeState::Paused);
                        }
                        Ctl::Resume => {
                            sys::signal_group(pid, Signal::SIGCONT);
                            task_status.send_modify(|s| {
                                s.state = if s.ready_at.is_some() { NodeState::Ready } else { NodeState::Starting };
                            });
                        }
                    },
                    _ = kill_timer => {
                        tracing::info!(pid, "grace period over; killing the process group");
                        sys::signal_group(pid, Signal::SIGKILL);
                        kill_at = None;
                    }
                }
            }
        });
        Ok(NodeProc {
            ctl: ctl_tx,
            status,
            log_offset,
        })
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

    /// Waits until the process has exited and its group is gone.
    pub async fn exited(&self) -> Status {
        let mut rx = self.subscribe();
        match rx.wait_for(|s| !s.running()).await {
            Ok(s) => s.clone(),
            Err(_) => self.status(),
        }
    }
}
