//! One node's lifecycle: spawn it through the run's [`NodeRuntime`], wait on its probes, and
//! act on it (stop, kill, pause, resume). What runs the node is behind the runtime; what is
//! done to it, and when, is here.
//!
//! Two locks, with different jobs. `op` (async) is held for a whole operation, so that two
//! commands on one node from two shells run one after the other instead of spawning it twice.
//! `handle` (a plain mutex, held for microseconds) guards the current process and is where a
//! spawn checks that the run is not closing: a start that races `down` either lands before
//! `down` looks at the node (and is stopped by it) or sees the run closing and spawns nothing.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::ClientConfig;
use troupe_spec::{NodeEvent, NodeState};

use crate::error::{Error, StartFailure, StartReason};
use crate::lifecycle::RunState;
use crate::plan::NodePlan;
use crate::probe::{self, Check, Prober};
use crate::resolved::Probe;
use crate::runtime::{Ctl, NodeHandle, NodeRuntime, Status};

pub(crate) struct Node {
    pub plan: NodePlan,
    pub tls: Option<Arc<ClientConfig>>,
    handle: Mutex<Option<NodeHandle>>,
    pub op: tokio::sync::Mutex<()>,
    /// Every state it entered, for reports' timelines.
    events: Arc<Mutex<Vec<NodeEvent>>>,
}

impl Node {
    pub fn new(plan: NodePlan, tls: Option<Arc<ClientConfig>>) -> Node {
        Node {
            plan,
            tls,
            handle: Mutex::new(None),
            op: tokio::sync::Mutex::new(()),
            events: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.plan.name
    }

    pub fn current(&self) -> Option<NodeHandle> {
        self.handle.lock().expect("node handle").clone()
    }

    pub fn status(&self) -> Option<Status> {
        self.current().map(|h| h.status())
    }

    /// The states it went through, oldest first.
    pub fn events(&self) -> Vec<NodeEvent> {
        self.events.lock().expect("node events").clone()
    }

    /// Records each state of `handle`'s program until it ends, in the background.
    fn record_events(&self, handle: &NodeHandle) {
        let events = self.events.clone();
        let mut rx = handle.subscribe();
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let (state, running) = {
                    let st = rx.borrow_and_update();
                    (st.state, st.running())
                };
                if last != Some(state) {
                    last = Some(state);
                    events
                        .lock()
                        .expect("node events")
                        .push(NodeEvent::new(crate::unix_ms(), state));
                }
                if !running || rx.changed().await.is_err() {
                    // The sender is gone with the program: record how it ended.
                    let end = rx.borrow().state;
                    if last != Some(end) {
                        events
                            .lock()
                            .expect("node events")
                            .push(NodeEvent::new(crate::unix_ms(), end));
                    }
                    return;
                }
            }
        });
    }

    /// Whether its program runs (paused counts as running).
    pub fn running(&self) -> bool {
        self.status().is_some_and(|s| s.running())
    }

    /// Starts the node's program, unless the run is closing.
    pub async fn spawn(&self, runtime: &dyn NodeRuntime, run: &RunState) -> Result<(), Error> {
        if run.closing() {
            return Err(closing_error(self.name()));
        }
        let handle = runtime
            .spawn(&self.plan)
            .await
            .map_err(|e| self.failure(StartReason::Spawn(e)))?;
        tracing::debug!(node = %self.plan.name, pid = handle.status().pid, runtime = runtime.name(), "spawned");
        self.record_events(&handle);
        let closed = {
            let mut slot = self.handle.lock().expect("node handle");
            *slot = Some(handle.clone());
            run.closing()
        };
        // `down` began while the spawn ran, after it looked at this node: undo the spawn.
        if closed {
            handle.send(Ctl::Kill);
            handle.exited().await;
            return Err(closing_error(self.name()));
        }
        Ok(())
    }

    /// Sends `ctl` to the running program; returns its handle, or `None` if it is not running.
    pub fn send(&self, ctl: Ctl) -> Option<NodeHandle> {
        let h = self.current().filter(|h| h.status().running())?;
        h.send(ctl);
        Some(h)
    }

    /// Its stop request: the spec's signal and grace period.
    pub fn stop_request(&self) -> Ctl {
        Ctl::Stop {
            signal: nix::sys::signal::Signal::try_from(self.plan.stop.signal)
                .unwrap_or(nix::sys::signal::Signal::SIGTERM),
            grace: self.plan.stop.grace,
        }
    }

    /// Waits until its program is gone (at once if it is not running).
    pub async fn gone(&self) {
        if let Some(h) = self.current() {
            h.exited().await;
        }
    }

    /// Pauses (`true`) or resumes the running program and waits until it is so.
    pub async fn pause(&self, pause: bool) {
        let Some(h) = self.send(if pause { Ctl::Pause } else { Ctl::Resume }) else {
            return;
        };
        let mut rx = h.subscribe();
        let _ = rx
            .wait_for(|st| (st.state == NodeState::Paused) == pause || !st.running())
            .await;
    }

    pub fn failure(&self, reason: StartReason) -> Error {
        Error::Start(Box::new(StartFailure {
            node: self.plan.name.clone(),
            bootstrap: false,
            reason,
            log: self.plan.log.clone(),
            log_tail: probe::log_tail(&self.plan.log, 15),
        }))
    }

    /// Polls each probe in turn until it passes, the program exits, the run closes, or the
    /// probe's deadline passes.
    pub async fn wait_probes(&self, probes: &[Probe], run: &RunState) -> Result<(), Error> {
        let Some(handle) = self.current() else {
            return Err(self.failure(StartReason::Spawn("not started".into())));
        };
        let mut prober = Prober::new(
            self.tls.clone(),
            self.plan.log.clone(),
            handle.log_offset,
            self.plan.env.clone(),
            self.plan.dir.clone(),
        );
        let mut status = handle.subscribe();
        let mut closing = run.subscribe();
        let exited = |st: &Status| {
            self.failure(StartReason::Exited {
                status: st.exit.clone().unwrap_or_default(),
            })
        };
        for probe in probes {
            let started = Instant::now();
            let deadline = crate::deadline::std_from(started, probe.timeout);
            let mut last;
            loop {
                if !status.borrow().running() {
                    return Err(exited(&status.borrow()));
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                let attempt =
                    tokio::time::timeout(probe::attempt_timeout(remaining), prober.check(probe));
                let outcome = tokio::select! {
                    r = attempt => Some(r),
                    _ = status.wait_for(|st| !st.running()) => None,
                    _ = crate::lifecycle::closed(&mut closing) => return Err(closing_error(self.name())),
                };
                match outcome {
                    None => return Err(exited(&status.borrow())),
                    Some(Ok(Check::Ready)) => break,
                    Some(Ok(Check::NotYet(seen))) => last = seen,
                    Some(Ok(Check::Failed(error))) => {
                        return Err(self.failure(StartReason::Probe {
                            probe: probe.description.clone(),
                            error,
                        }));
                    }
                    Some(Err(_)) => last = "the attempt timed out".into(),
                }
                if Instant::now() >= deadline {
                    return Err(self.failure(StartReason::Timeout {
                        probe: probe.description.clone(),
                        after: troupe_spec::format_duration(started.elapsed()),
                        last,
                    }));
                }
                tokio::select! {
                    _ = tokio::time::sleep(probe.interval) => {}
                    _ = status.wait_for(|st| !st.running()) => {}
                    _ = crate::lifecycle::closed(&mut closing) => {}
                }
            }
        }
        Ok(())
    }

    /// Spawns the node and waits until its readiness probes pass.
    pub async fn start(&self, runtime: &dyn NodeRuntime, run: &RunState) -> Result<(), Error> {
        self.spawn(runtime, run).await?;
        self.wait_probes(&self.plan.ready, run).await?;
        if let Some(h) = self.current() {
            h.mark_ready();
        }
        Ok(())
    }
}

fn closing_error(node: &str) -> Error {
    Error::Refused {
        message: format!("cannot start `{node}`: the run is shutting down"),
        help: Some("`down` was requested; start a new run with `troupe up`".into()),
    }
}
