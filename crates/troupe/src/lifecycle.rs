//! A run's lifecycle: start the clusters in waves by `after`, stop them in reverse (a cluster
//! with a role probe leader first), and `down`.
//!
//! The run is *running* until a stop of everything begins, then *closing* for good: a node
//! start that arrives while closing is refused, and one already under way is stopped (see
//! [`crate::node`]), so nothing can outlive a `down` that reported success.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use troupe_spec::StartMode;

use crate::engine::{Engine, Interrupt};
use crate::error::Error;
use crate::node::Node;
use crate::plan::ClusterPlan;
use crate::runtime::Ctl;

/// How long a graceful stop of a cluster waits to learn which node leads.
const LEADER_WAIT: Duration = Duration::from_millis(300);

/// Running, then closing for good; `stopped` once every node is gone (role watchers keep
/// watching until then: a graceful stop goes leader first and needs to see the next leader).
pub(crate) struct RunState {
    closing: watch::Sender<bool>,
    stopped: watch::Sender<bool>,
}

impl RunState {
    pub fn new() -> RunState {
        RunState {
            closing: watch::channel(false).0,
            stopped: watch::channel(false).0,
        }
    }

    pub fn closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// From now on no node starts.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Every node is gone.
    pub fn stopped(&self) {
        self.close();
        self.stopped.send_replace(true);
    }

    /// Turns `true` when the run starts closing.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Turns `true` once every node is gone.
    pub fn subscribe_stopped(&self) -> watch::Receiver<bool> {
        self.stopped.subscribe()
    }
}

/// Resolves once the run is closing (at once if it already is).
pub(crate) async fn closed(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|c| *c).await;
}

impl Engine {
    /// Starts every cluster in order and waits until every node is ready. On failure or
    /// interruption, stops everything it started before returning the error.
    pub async fn start_all(&self, interrupt: &Interrupt) -> Result<(), Error> {
        let result = tokio::select! {
            r = self.start_clusters() => r,
            _ = interrupt.reached(1) => Err(Error::Interrupted),
        };
        match result {
            Ok(()) => {
                self.persist().await?;
                Ok(())
            }
            Err(e) => {
                self.stop_all(interrupt).await;
                Err(e)
            }
        }
    }

    /// Starts the clusters in waves: each wave is every cluster whose `after` clusters are all
    /// ready, started together. The first failure ends the start (the caller stops the rest).
    async fn start_clusters(&self) -> Result<(), Error> {
        if let Some(links) = &self.links {
            links
                .start(|node, port| {
                    let n = self.node(node).ok()?;
                    Some((n.plan.host.clone(), *n.plan.ports.get(port)?))
                })
                .await?;
        }
        let mut done: Vec<&str> = Vec::new();
        let mut left: Vec<&ClusterPlan> = self.plan.clusters.iter().collect();
        while !left.is_empty() {
            let (wave, rest): (Vec<_>, Vec<_>) = left
                .into_iter()
                .partition(|c| c.after.iter().all(|a| done.contains(&a.as_str())));
            if wave.is_empty() {
                // Validation refuses cycles; this is a bug, said plainly rather than a hang.
                return Err(Error::Refused {
                    message: format!(
                        "clusters {} wait for each other",
                        rest.iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    help: None,
                });
            }
            try_join_all(wave.iter().map(|c| self.start_cluster(c)).collect()).await?;
            done.extend(wave.iter().map(|c| c.name.as_str()));
            left = rest;
        }
        Ok(())
    }

    async fn start_cluster(&self, cluster: &ClusterPlan) -> Result<(), Error> {
        let began = Instant::now();
        let nodes = self.cluster_nodes(&cluster.name);
        let runtime = self.runtime_of(&cluster.name);
        match cluster.start {
            StartMode::Manual => return Ok(()),
            StartMode::Parallel => {
                for n in &nodes {
                    n.spawn(runtime, &self.run).await?;
                }
            }
            StartMode::Sequential => {
                for n in &nodes {
                    n.spawn(runtime, &self.run).await?;
                    let gate = if n.plan.started.is_empty() {
                        &n.plan.ready
                    } else {
                        &n.plan.started
                    };
                    n.wait_probes(gate, &self.run).await?;
                }
            }
        }
        let ready: Vec<_> = nodes
            .iter()
            .map(|n| async move {
                n.wait_probes(&n.plan.ready, &self.run).await?;
                if let Some(h) = n.current() {
                    h.mark_ready();
                }
                Ok(())
            })
            .collect();
        try_join_all(ready).await?;
        // Formed means formed: `POST /init`, membership changes and the like, in order, each
        // retried on its node until it passes or its deadline.
        for (name, step) in &cluster.bootstrap {
            let node = self.node(name)?;
            node.wait_probes(std::slice::from_ref(step), &self.run)
                .await
                .map_err(|e| match e {
                    Error::Start(mut failure) => {
                        failure.bootstrap = true;
                        Error::Start(failure)
                    }
                    other => other,
                })?;
        }
        self.live[&cluster.name].set_formation(began.elapsed());
        Ok(())
    }

    /// Closes the run and stops every running node gracefully, dependents first (reverse start
    /// order), nodes of one cluster together. A second interrupt turns the grace period into
    /// SIGKILL now.
    pub async fn stop_all(&self, interrupt: &Interrupt) {
        self.run.close();
        for cluster in self.plan.clusters.iter().rev() {
            let nodes = self.cluster_nodes(&cluster.name);
            // Wait for operations under way (a start sees the run closing and gives up).
            let mut guards = Vec::new();
            for n in &nodes {
                guards.push(n.op.lock().await);
            }
            let refs: Vec<&Node> = nodes.iter().map(Arc::as_ref).collect();
            self.stop_set(&cluster.name, &refs, interrupt).await;
        }
        self.run.stopped();
    }

    /// Closes the run and SIGKILLs every node at once, without waiting for operations under
    /// way; returns once every node is gone.
    pub async fn kill_all(&self) {
        self.run.close();
        let handles: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| n.send(Ctl::Kill))
            .collect();
        for h in handles {
            h.exited().await;
        }
        // A spawn that was under way sees the run closing and kills its node itself; wait for
        // those too.
        for n in &self.nodes {
            let _guard = n.op.lock().await;
            n.gone().await;
        }
        self.run.stopped();
    }

    /// Stops several nodes gracefully: per cluster, leader first when it has a role probe.
    pub async fn stop_nodes(&self, names: &[String], interrupt: &Interrupt) -> Result<(), Error> {
        for n in names {
            self.node(n)?;
        }
        for cluster in &self.plan.clusters {
            let nodes: Vec<&Arc<Node>> = self
                .nodes
                .iter()
                .filter(|n| n.plan.cluster == cluster.name && names.contains(&n.plan.name))
                .collect();
            if nodes.is_empty() {
                continue;
            }
            let mut guards = Vec::new();
            for n in &nodes {
                guards.push(n.op.lock().await);
            }
            let refs: Vec<&Node> = nodes.iter().map(|n| n.as_ref()).collect();
            self.stop_set(&cluster.name, &refs, interrupt).await;
        }
        self.persist_quietly().await;
        Ok(())
    }

    /// Stops `nodes` of one cluster. With a role probe: leader first, one at a time, since a
    /// leader that is asked to stop hands over to a follower (etcd waits up to 5 s for one that
    /// is itself stopping), so each hand-over must find a live follower; the last member leads
    /// nobody and stops at once. Without one: all together.
    pub(crate) async fn stop_set(&self, cluster: &str, nodes: &[&Node], interrupt: &Interrupt) {
        let live = &self.live[cluster];
        if !live.has_role_probe {
            stop_marked(
                live,
                nodes.iter().copied().filter(|n| n.running()).collect(),
                interrupt,
            )
            .await;
            return;
        }
        loop {
            let running: Vec<&Node> = nodes.iter().copied().filter(|n| n.running()).collect();
            if running.len() <= 1 || interrupt.level() >= 2 {
                stop_marked(live, running, interrupt).await;
                return;
            }
            let names: Vec<&str> = running.iter().map(|n| n.name()).collect();
            let mut rx = live.subscribe();
            let leader = tokio::time::timeout(
                LEADER_WAIT,
                rx.wait_for(|l| l.as_deref().is_some_and(|l| names.contains(&l))),
            )
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|l| l.clone()));
            match leader.and_then(|l| running.iter().copied().find(|n| n.name() == l)) {
                Some(node) => stop_marked(live, vec![node], interrupt).await,
                None => {
                    stop_marked(live, running, interrupt).await;
                    return;
                }
            }
        }
    }
}

/// Marks the nodes as no longer leading (a failover starts if one led), then stops them.
async fn stop_marked(live: &crate::roles::ClusterLive, nodes: Vec<&Node>, interrupt: &Interrupt) {
    for n in &nodes {
        live.acting_on(n.name(), "stop");
    }
    stop_together(nodes, interrupt).await;
}

/// Sends each node its stop request and waits until all are gone; a second interrupt turns
/// the grace period into SIGKILL now.
async fn stop_together(nodes: Vec<&Node>, interrupt: &Interrupt) {
    let handles: Vec<_> = nodes
        .iter()
        .filter_map(|n| n.send(n.stop_request()))
        .collect();
    let all_exited = async {
        for h in &handles {
            h.exited().await;
        }
    };
    tokio::select! {
        _ = all_exited => {}
        _ = interrupt.reached(2) => {
            for h in &handles {
                h.send(Ctl::Kill);
            }
            for h in &handles {
                h.exited().await;
            }
        }
    }
}

/// Runs `futures` together until all succeed or one fails; a failure drops (cancels) the rest.
pub(crate) async fn try_join_all<F>(futures: Vec<F>) -> Result<(), Error>
where
    F: std::future::Future<Output = Result<(), Error>>,
{
    let mut futures: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in &mut futures {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(())) => *slot = None,
                    std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(dir: &std::path::Path) -> Arc<Engine> {
        let spec = troupe_spec::Spec::from_str(
            "race.toml",
            "[clusters.main]\nnodes = 2\nbinary = \"sleep\"\nargs = [\"1000\"]\n",
        )
        .unwrap();
        Arc::new(Engine::prepare(&spec, dir).unwrap())
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    /// The regression: `start` never checked that the run was closing, so a start that came
    /// with (or after) `down` respawned a node after `down` had reported success.
    #[test]
    fn a_start_after_down_is_refused_and_spawns_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(&dir.path().join("s"));
        rt().block_on(async {
            e.start_all(&Interrupt::new()).await.unwrap();
            e.kill_node("main-1").await.unwrap();
            e.stop_all(&Interrupt::new()).await;
            let err = e.start_node("main-1").await.unwrap_err().to_string();
            assert!(err.contains("shutting down"), "{err}");
            assert!(
                e.nodes.iter().all(|n| !n.running()),
                "nothing runs after down"
            );
        });
    }

    #[test]
    fn starts_racing_down_never_outlive_it() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let e = engine(&dir.path().join("s"));
            rt().block_on(async {
                e.start_all(&Interrupt::new()).await.unwrap();
                e.kill_node("main-1").await.unwrap();
                let starter = {
                    let e = e.clone();
                    tokio::spawn(async move { e.start_node("main-1").await })
                };
                e.stop_all(&Interrupt::new()).await;
                let _ = starter.await.unwrap();
                let pids: Vec<u32> = e
                    .nodes
                    .iter()
                    .filter_map(|n| n.status())
                    .filter(|s| s.running())
                    .map(|s| s.pid)
                    .collect();
                assert!(pids.is_empty(), "still running after down: {pids:?}");
            });
        }
    }
}
