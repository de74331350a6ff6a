//! The library API: [`AsyncCluster`] for async code and [`Cluster`], a thin blocking wrapper
//! for plain `#[test]`s (the pairing testcontainers-rs has in `ContainerAsync` and
//! `Container`). Both are `Send + Sync`.
//!
//! A cluster owns a small tokio runtime of its own and does all its work there, whatever
//! runtime (if any) calls it. This matters because the parent-death signal that kills nodes
//! when troupe dies fires when the *spawning thread* exits: nodes are always spawned from the
//! cluster's own long-lived worker threads. It also means the API works the same from a plain
//! `#[test]`, from inside `#[tokio::test]`, and from a `static` cluster shared by many tests.
//!
//! Dropping a cluster kills every node at once (SIGKILL, as testcontainers force-removes a
//! container): tests should not pay for graceful hand-overs. [`Cluster::stop`] and
//! [`AsyncCluster::stop`] stop gracefully, when that is what a test is about.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use troupe_spec::{Descriptor, NodeDescriptor, Spec};

use crate::engine::{Engine, Interrupt, LEADER_WAIT};
use crate::error::Error;

enum SpecInput {
    Path(PathBuf),
    Text { path: PathBuf, text: String },
    Spec(Box<Spec>),
}

/// Options for starting a cluster; see [`Cluster::builder`].
pub struct ClusterBuilder {
    spec: SpecInput,
    sets: Vec<String>,
    state_dir: Option<PathBuf>,
    keep: Option<bool>,
    interrupt: Interrupt,
    subreaper: bool,
}

impl ClusterBuilder {
    /// Where certificates, data, configs, logs and `cluster.json` go. Default: a fresh
    /// temporary directory, removed when the cluster is dropped after a passing test and kept
    /// (and printed) after a failing one. A directory given here is always kept.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Overrides one spec key, as `troupe up --set KEY=VALUE` does: e.g.
    /// `.set("clusters.main.network=namespaces")`. Applies to a spec read from a file or text;
    /// validated with the rest of the spec when the cluster starts.
    pub fn set(mut self, key_value: impl Into<String>) -> Self {
        self.sets.push(key_value.into());
        self
    }

    /// Keep (or remove) the state directory when the cluster is dropped, whatever happened.
    pub fn keep_state_dir(mut self, keep: bool) -> Self {
        self.keep = Some(keep);
        self
    }

    /// Lets another thread interrupt the start (and hurry the stop); see [`Interrupt`].
    pub fn interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// Make this whole process a child subreaper, so that grandchildren of killed nodes are
    /// reaped here instead of lingering as zombies where PID 1 does not reap (containers,
    /// sandboxes). Off by default in the library: it changes how every orphan of the process
    /// is handled. The `troupe` command turns it on.
    pub fn subreaper(mut self, on: bool) -> Self {
        self.subreaper = on;
        self
    }

    /// Validates the spec, prepares the run and starts every node, returning once all are ready.
    /// On failure nothing is left running and the state directory is kept for its logs.
    pub fn start(self) -> Result<Cluster, Error> {
        let rt = runtime()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let (keep, interrupt) = (self.keep, self.interrupt.clone());
        rt.spawn(async move {
            let _ = tx.send(self.start_on().await);
        });
        let started = rx.recv().unwrap_or(Err(Error::ShutDown));
        started.map(|(engine, temporary)| Cluster {
            inner: AsyncCluster::new(rt, engine, temporary, keep, interrupt),
        })
    }

    /// [`ClusterBuilder::start`] for async code.
    pub async fn start_async(self) -> Result<AsyncCluster, Error> {
        let rt = runtime()?;
        let (keep, interrupt) = (self.keep, self.interrupt.clone());
        let started = rt
            .spawn(self.start_on())
            .await
            .unwrap_or(Err(Error::ShutDown));
        match started {
            Ok((engine, temporary)) => {
                Ok(AsyncCluster::new(rt, engine, temporary, keep, interrupt))
            }
            Err(e) => {
                // Dropping a runtime blocks, which an async context must not.
                rt.shutdown_background();
                Err(e)
            }
        }
    }

    /// Runs on the cluster's own runtime; returns the started engine and whether its state
    /// directory is temporary.
    async fn start_on(self) -> Result<(Arc<Engine>, bool), Error> {
        let mut sets = Vec::new();
        for s in &self.sets {
            sets.push(
                troupe_spec::overrides::Override::parse(s).map_err(|e| Error::Refused {
                    message: format!("set({s:?}): {e}"),
                    help: None,
                })?,
            );
        }
        let spec = match self.spec {
            SpecInput::Path(p) => Spec::from_path_with(&p, &sets)?,
            SpecInput::Text { path, text } => {
                let text = troupe_spec::overrides::apply(&path, &text, &sets)?;
                Spec::from_str(&path, &text)?
            }
            SpecInput::Spec(_) if !sets.is_empty() => {
                return Err(Error::Refused {
                    message: "`set` overrides a spec read from a file or text, not a built one"
                        .into(),
                    help: Some("change the built spec itself".into()),
                });
            }
            SpecInput::Spec(s) => *s,
        };
        if self.subreaper {
            crate::sys::become_subreaper();
        }
        let (state_dir, temporary) = match self.state_dir {
            Some(d) => (d, false),
            None => {
                let d = tempfile::Builder::new()
                    .prefix(&format!("troupe-{}-", spec.name))
                    .tempdir()
                    .map_err(|e| crate::error::io_err("create", &std::env::temp_dir(), e))?;
                (d.keep(), true)
            }
        };
        // Preparing writes files and runs `ip`: a blocking thread. Spawning happens later,
        // on the runtime's workers.
        let prepared = {
            let (spec, dir) = (spec.clone(), state_dir.clone());
            tokio::task::spawn_blocking(move || Engine::prepare(&spec, &dir)).await
        };
        let engine = match prepared {
            Ok(Ok(e)) => Arc::new(e),
            Ok(Err(e)) => {
                if temporary {
                    let _ = std::fs::remove_dir_all(&state_dir);
                }
                return Err(e);
            }
            Err(_) => return Err(Error::ShutDown),
        };
        match engine.start_all(&self.interrupt).await {
            Ok(()) => {
                engine.spawn_role_watchers();
                Ok((engine, temporary))
            }
            Err(e) => {
                // Everything started is stopped; remove the network, keep the logs.
                let network = engine.clone();
                let _ = tokio::task::spawn_blocking(move || network.destroy_network()).await;
                eprintln!(
                    "troupe: state directory kept: {}",
                    engine.state.path.display()
                );
                Err(e)
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("troupe")
        .enable_all()
        .build()
        .map_err(|e| Error::Environment {
            message: format!("failed to start troupe's runtime: {e}"),
            help: None,
        })
}

/// What an [`AsyncCluster`] and its [`Cluster`] wrapper share; the last one dropped kills the
/// nodes and shuts the runtime down.
struct Shared {
    rt: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
    engine: Arc<Engine>,
    /// `None`: remove a temporary state dir unless the thread is panicking.
    remove_on_drop: std::sync::Mutex<Option<bool>>,
    temporary: bool,
    interrupt: Interrupt,
    stopped: AtomicBool,
}

impl Shared {
    fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.rt
            .lock()
            .expect("runtime")
            .as_ref()
            .map(|r| r.handle().clone())
    }

    /// Runs `fut` on the cluster's runtime and waits for it from any thread, even one that is
    /// itself inside an async runtime.
    fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        let Some(h) = self.handle() else {
            return Err(Error::ShutDown);
        };
        let (tx, rx) = std::sync::mpsc::channel();
        h.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or(Err(Error::ShutDown))
    }

    /// Runs `fut` on the cluster's runtime and awaits it from any runtime.
    async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        let Some(h) = self.handle() else {
            return Err(Error::ShutDown);
        };
        h.spawn(fut).await.unwrap_or(Err(Error::ShutDown))
    }

    /// Closes the run: every node stopped (gracefully) or killed, the network removed. A kill
    /// (what dropping does) skips the descriptor's synced write: the nodes are gone, and a
    /// stale descriptor names only processes that `down --force` proves dead.
    async fn shut(engine: Arc<Engine>, interrupt: Interrupt, kill: bool) {
        if kill {
            engine.kill_all().await;
        } else {
            engine.stop_all(&interrupt).await;
            engine.persist_quietly().await;
        }
        let e = engine.clone();
        let _ = tokio::task::spawn_blocking(move || e.destroy_network()).await;
    }

    fn first_stop(&self) -> bool {
        !self.stopped.swap(true, Ordering::SeqCst)
    }

    /// The shutdown to run, the first time only.
    fn shut_once(
        &self,
        kill: bool,
    ) -> Option<impl Future<Output = Result<(), Error>> + Send + 'static> {
        self.first_stop().then(|| {
            let (e, i) = (self.engine.clone(), self.interrupt.clone());
            async move {
                Shared::shut(e, i, kill).await;
                Ok(())
            }
        })
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let rt = self.rt.lock().expect("runtime").take();
        if let Some(rt) = rt {
            if let Some(f) = self.shut_once(true) {
                let (tx, rx) = std::sync::mpsc::channel();
                rt.spawn(async move {
                    let _ = tx.send(f.await);
                });
                let _ = rx.recv();
            }
            rt.shutdown_background();
        }
        // Tasks still holding the engine die in the background; its ports are free now.
        self.engine.release_ports();
        let path = self.engine.state.path.clone();
        let remove = self
            .remove_on_drop
            .lock()
            .expect("keep flag")
            .unwrap_or(self.temporary && !std::thread::panicking());
        if remove {
            let _ = std::fs::remove_dir_all(&path);
        } else if std::thread::panicking() || self.temporary {
            eprintln!(
                "troupe: state directory of `{}` kept: {}",
                self.engine.plan.name,
                path.display()
            );
        }
    }
}

/// A running cluster, for async code. Cheap to clone; the last clone dropped kills every node.
#[derive(Clone)]
pub struct AsyncCluster {
    shared: Arc<Shared>,
}

/// A running cluster. Dropping it kills every node at once; [`Cluster::stop`] stops them
/// gracefully.
pub struct Cluster {
    inner: AsyncCluster,
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<AsyncCluster>();
    send_sync::<Cluster>();
};

impl Cluster {
    /// Starts the cluster described by a spec file, with default options.
    pub fn start(spec: impl AsRef<Path>) -> Result<Cluster, Error> {
        Cluster::builder(spec).start()
    }

    /// Options for a cluster described by a spec file.
    pub fn builder(spec: impl AsRef<Path>) -> ClusterBuilder {
        Self::with_input(SpecInput::Path(spec.as_ref().to_path_buf()))
    }

    /// Options for a cluster described by spec text; `path` names it in error messages and
    /// anchors relative paths (its directory need not contain anything).
    pub fn from_toml(path: impl AsRef<Path>, text: impl Into<String>) -> ClusterBuilder {
        Self::with_input(SpecInput::Text {
            path: path.as_ref().to_path_buf(),
            text: text.into(),
        })
    }

    /// Options for a cluster from an already parsed spec (e.g. from [`crate::SpecBuilder`]).
    pub fn from_spec(spec: Spec) -> ClusterBuilder {
        Self::with_input(SpecInput::Spec(Box::new(spec)))
    }

    fn with_input(spec: SpecInput) -> ClusterBuilder {
        ClusterBuilder {
            spec,
            sets: Vec::new(),
            state_dir: None,
            keep: None,
            interrupt: Interrupt::new(),
            subreaper: false,
        }
    }

    /// The async cluster under this one.
    pub fn as_async(&self) -> &AsyncCluster {
        &self.inner
    }

    /// Starts a workload on this cluster's nodes: concurrent clients recording a history
    /// while you inject faults; see [`crate::workload`]. End it with
    /// [`Workload::finish`](crate::workload::Workload::finish) and check the history:
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use troupe::workload::{ClientSpec, Model, WorkloadSpec};
    ///
    /// let cluster = troupe::Cluster::start("examples/etcd/cluster.toml")?;
    /// let w = cluster.workload(
    ///     WorkloadSpec::new(Model::Register, ClientSpec::etcd()).processes(10),
    /// )?;
    /// cluster.kill("main:leader")?;
    /// cluster.start_node("main")?;
    /// let history = w.finish()?;
    /// let budget = troupe::verify::Budget::new(Duration::from_secs(30), 10_000_000);
    /// assert_eq!(history.check(budget).unwrap().valid(), Some(true));
    /// # Ok::<(), troupe::Error>(())
    /// ```
    ///
    /// A workload runs on threads of its own and blocks in `finish`: from async code, call it
    /// inside `spawn_blocking`.
    pub fn workload(
        &self,
        spec: crate::workload::WorkloadSpec,
    ) -> Result<crate::workload::Workload, Error> {
        self.workload_with(spec, crate::workload::WorkloadOptions::default())
    }

    /// [`Cluster::workload`] with options: a time origin, where the history is written.
    pub fn workload_with(
        &self,
        spec: crate::workload::WorkloadSpec,
        opts: crate::workload::WorkloadOptions,
    ) -> Result<crate::workload::Workload, Error> {
        crate::workload::Workload::start(
            spec,
            crate::workload::resolver(vec![self.inner.engine()]),
            opts,
        )
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    pub(crate) fn engine(&self) -> Arc<Engine> {
        self.inner.shared.engine.clone()
    }

    pub fn name(&self) -> &str {
        self.inner.name()
    }

    pub fn state_dir(&self) -> &Path {
        self.inner.state_dir()
    }

    /// The run's CA certificate, when TLS is on.
    pub fn ca(&self) -> Option<&Path> {
        self.inner.ca()
    }

    /// The live descriptor (what `cluster.json` holds, with current pids and states).
    pub fn descriptor(&self) -> Descriptor {
        self.inner.descriptor()
    }

    /// Every node, in start order.
    pub fn nodes(&self) -> Vec<Node> {
        self.inner.nodes()
    }

    /// One node by name (`main-1`).
    pub fn node(&self, name: &str) -> Result<Node, Error> {
        self.inner.node(name)
    }

    /// The nodes of one cluster of the spec.
    pub fn cluster_nodes(&self, cluster: &str) -> Vec<Node> {
        self.inner.cluster_nodes(cluster)
    }

    /// The names of the clusters of the spec, in start order.
    pub fn cluster_names(&self) -> Vec<String> {
        self.inner.cluster_names()
    }

    /// Whether a cluster of this run has a role probe.
    pub fn has_role_probe(&self, cluster: &str) -> bool {
        self.inner.has_role_probe(cluster)
    }

    /// The node the cluster's role probe last saw leading.
    pub fn leader(&self, cluster: &str) -> Option<String> {
        self.inner.leader(cluster)
    }

    /// Leader, formation time, leader changes and failovers of one cluster of the spec.
    pub fn cluster_status(&self, cluster: &str) -> Option<troupe_spec::ClusterStatus> {
        self.inner.cluster_status(cluster)
    }

    /// The node names a target stands for: a node (`main-1`), a cluster (`main`: all its
    /// nodes), or `CLUSTER:SELECTOR` with SELECTOR one of `leader`, `followers`, `random`,
    /// `one`, `minority`, `majority`, `all`. `leader` and `followers` need a role probe and
    /// wait up to 10 s for a leader.
    pub fn select(&self, target: &str) -> Result<Vec<String>, Error> {
        let (e, t) = (self.engine(), vec![target.to_string()]);
        self.shared()
            .block(async move { e.select(&t, LEADER_WAIT).await })
    }

    /// SIGKILLs the target's nodes and waits until they are gone. Returns the nodes.
    pub fn kill(&self, target: &str) -> Result<Vec<String>, Error> {
        self.shared().block(self.inner.kill_fut(target))
    }

    /// Stops the target gracefully (its stop signal, grace, then SIGKILL) and waits until it is
    /// gone. Several nodes of a cluster with a role probe stop leader first, one at a time.
    pub fn stop_node(&self, target: &str) -> Result<Vec<String>, Error> {
        self.shared().block(self.inner.stop_node_fut(target))
    }

    /// Stops these nodes (names, not targets) gracefully; see [`Cluster::stop_node`].
    pub fn stop_nodes(&self, names: &[String]) -> Result<Vec<String>, Error> {
        let (e, list, i) = (
            self.engine(),
            names.to_vec(),
            self.shared().interrupt.clone(),
        );
        self.shared()
            .block(async move { e.stop_nodes(&list, &i).await.map(|()| list) })
    }

    /// Starts stopped or killed nodes again, with the same ports, data and certificates, and
    /// waits until their readiness probes pass.
    pub fn start_node(&self, target: &str) -> Result<Vec<String>, Error> {
        self.shared().block(
            self.inner
                .each_fut(target, |e, n| async move { e.start_node(&n).await }),
        )
    }

    /// Stop then start.
    pub fn restart_node(&self, target: &str) -> Result<Vec<String>, Error> {
        self.shared().block(
            self.inner
                .each_fut(target, |e, n| async move { e.restart_node(&n).await }),
        )
    }

    /// Freezes the target's nodes (SIGSTOP to their process groups).
    pub fn pause(&self, target: &str) -> Result<Vec<String>, Error> {
        self.shared().block(
            self.inner
                .each_fut(target, |e, n| async move { e.pause_node(&n, true).await }),
        )
    }

    /// Thaws the target's nodes (SIGCONT).
    pub fn resume(&self, target: &str) -> Result<Vec<String>, Error> {
        self.shared().block(
            self.inner
                .each_fut(target, |e, n| async move { e.pause_node(&n, false).await }),
        )
    }

    /// Waits until every node (of `cluster`, or of every started cluster) is ready.
    pub fn wait_ready(&self, cluster: Option<&str>, timeout: Duration) -> Result<(), Error> {
        let (e, c) = (self.engine(), cluster.map(str::to_string));
        self.shared()
            .block(async move { e.wait_ready(c.as_deref(), timeout).await })
    }

    /// Waits until `cluster` has a leader (its role probe says so), up to `timeout`.
    pub fn wait_leader(&self, cluster: &str, timeout: Duration) -> Result<String, Error> {
        let (e, c) = (self.engine(), cluster.to_string());
        self.shared()
            .block(async move { e.wait_leader(&c, timeout).await })
    }

    /// Waits until `cluster` has a leader other than `old`, up to `timeout`.
    pub fn wait_new_leader(
        &self,
        cluster: &str,
        old: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let (e, c, o) = (self.engine(), cluster.to_string(), old.to_string());
        self.shared()
            .block(async move { e.wait_new_leader(&c, Some(&o), timeout).await })
    }

    /// Injects a network fault (partition, isolate, cut, reset, degrade); returns its record.
    /// Refused, never skipped, when a node's traffic is not under troupe's control.
    pub fn fault(
        &self,
        fault: troupe_spec::control::Fault,
    ) -> Result<troupe_spec::FaultRecord, Error> {
        let e = self.engine();
        self.shared().block(async move { e.fault(&fault).await })
    }

    /// Undoes every network fault; returns how many were active.
    pub fn heal(&self) -> Result<usize, Error> {
        let e = self.engine();
        self.shared().block(async move { e.heal(None).await })
    }

    /// Undoes one network fault by its id (from its record).
    pub fn heal_fault(&self, id: u32) -> Result<(), Error> {
        let e = self.engine();
        self.shared()
            .block(async move { e.heal(Some(id)).await.map(|_| ()) })
    }

    /// Serves `<state-dir>/control.sock` so that `troupe status`, `troupe kill` and friends
    /// (or any program speaking the JSON-lines protocol) can drive this cluster. The returned
    /// receiver turns `true` when a client asked for `down` (every node is stopped by then).
    pub fn serve_control(&self) -> Result<tokio::sync::watch::Receiver<bool>, Error> {
        self.inner.serve_control()
    }

    /// Waits until `node` exits on its own (or is stopped), up to `timeout`; returns its exit
    /// description, or `None` on timeout.
    pub fn wait_exit(&self, node: &str, timeout: Duration) -> Result<Option<String>, Error> {
        let h = self.engine().node(node)?.current();
        let Some(h) = h else {
            return Ok(Some("not started".into()));
        };
        self.shared().block(async move {
            Ok(
                tokio::time::timeout_at(crate::deadline::after(timeout), h.exited())
                    .await
                    .ok()
                    .and_then(|s| s.exit),
            )
        })
    }

    /// Stops every node gracefully, dependents first, and waits until all are gone.
    pub fn stop(self) {
        if let Some(f) = self.shared().shut_once(false) {
            let _ = self.shared().block(f);
        }
    }

    /// SIGKILLs every node at once and waits until they are gone (what dropping does).
    pub fn kill_all(self) {
        if let Some(f) = self.shared().shut_once(true) {
            let _ = self.shared().block(f);
        }
    }

    /// Keep the state directory after this cluster is dropped.
    pub fn keep_state_dir(&mut self) {
        *self.shared().remove_on_drop.lock().expect("keep flag") = Some(false);
    }
}

impl AsyncCluster {
    fn new(
        rt: tokio::runtime::Runtime,
        engine: Arc<Engine>,
        temporary: bool,
        keep: Option<bool>,
        interrupt: Interrupt,
    ) -> AsyncCluster {
        AsyncCluster {
            shared: Arc::new(Shared {
                rt: std::sync::Mutex::new(Some(rt)),
                engine,
                remove_on_drop: std::sync::Mutex::new(keep.map(|k| !k)),
                temporary,
                interrupt,
                stopped: AtomicBool::new(false),
            }),
        }
    }

    fn engine(&self) -> Arc<Engine> {
        self.shared.engine.clone()
    }

    pub fn name(&self) -> &str {
        &self.shared.engine.plan.name
    }

    pub fn state_dir(&self) -> &Path {
        &self.shared.engine.state.path
    }

    pub fn ca(&self) -> Option<&Path> {
        self.shared.engine.plan.ca.as_deref()
    }

    pub fn descriptor(&self) -> Descriptor {
        self.shared.engine.descriptor()
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.descriptor().nodes.into_iter().map(Node).collect()
    }

    pub fn node(&self, name: &str) -> Result<Node, Error> {
        match self.nodes().into_iter().find(|n| n.0.name == name) {
            Some(n) => Ok(n),
            // Names what exists.
            None => Err(self
                .shared
                .engine
                .node(name)
                .err()
                .unwrap_or(Error::ShutDown)),
        }
    }

    pub fn cluster_nodes(&self, cluster: &str) -> Vec<Node> {
        self.nodes()
            .into_iter()
            .filter(|n| n.0.cluster == cluster)
            .collect()
    }

    pub fn cluster_names(&self) -> Vec<String> {
        self.shared
            .engine
            .plan
            .clusters
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    pub fn has_role_probe(&self, cluster: &str) -> bool {
        self.shared
            .engine
            .live
            .get(cluster)
            .is_some_and(|l| l.has_role_probe)
    }

    pub fn leader(&self, cluster: &str) -> Option<String> {
        self.shared
            .engine
            .live
            .get(cluster)
            .and_then(|l| l.leader())
    }

    pub fn cluster_status(&self, cluster: &str) -> Option<troupe_spec::ClusterStatus> {
        self.shared.engine.live.get(cluster).map(|l| l.status())
    }

    /// See [`Cluster::select`].
    pub async fn select(&self, target: &str) -> Result<Vec<String>, Error> {
        let (e, t) = (self.engine(), vec![target.to_string()]);
        self.shared
            .run(async move { e.select(&t, LEADER_WAIT).await })
            .await
    }

    fn each_fut<F, Fut>(
        &self,
        target: &str,
        op: F,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send + 'static
    where
        F: Fn(Arc<Engine>, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let (e, t) = (self.engine(), vec![target.to_string()]);
        async move {
            let nodes = e.select(&t, LEADER_WAIT).await?;
            let mut set = tokio::task::JoinSet::new();
            for n in nodes.clone() {
                set.spawn(op(e.clone(), n));
            }
            let mut first = None;
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Err(err)) => {
                        first.get_or_insert(err);
                    }
                    Err(_) => {
                        first.get_or_insert(Error::ShutDown);
                    }
                    Ok(Ok(())) => {}
                }
            }
            match first {
                Some(err) => Err(err),
                None => Ok(nodes),
            }
        }
    }

    fn kill_fut(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send + 'static {
        self.each_fut(target, |e, n| async move { e.kill_node(&n).await })
    }

    fn stop_node_fut(
        &self,
        target: &str,
    ) -> impl Future<Output = Result<Vec<String>, Error>> + Send + 'static {
        let (e, t, i) = (
            self.engine(),
            vec![target.to_string()],
            self.shared.interrupt.clone(),
        );
        async move {
            let nodes = e.select(&t, LEADER_WAIT).await?;
            e.stop_nodes(&nodes, &i).await?;
            Ok(nodes)
        }
    }

    /// See [`Cluster::kill`].
    pub async fn kill(&self, target: &str) -> Result<Vec<String>, Error> {
        self.shared.run(self.kill_fut(target)).await
    }

    /// See [`Cluster::stop_node`].
    pub async fn stop_node(&self, target: &str) -> Result<Vec<String>, Error> {
        self.shared.run(self.stop_node_fut(target)).await
    }

    /// See [`Cluster::start_node`].
    pub async fn start_node(&self, target: &str) -> Result<Vec<String>, Error> {
        let f = self.each_fut(target, |e, n| async move { e.start_node(&n).await });
        self.shared.run(f).await
    }

    /// See [`Cluster::restart_node`].
    pub async fn restart_node(&self, target: &str) -> Result<Vec<String>, Error> {
        let f = self.each_fut(target, |e, n| async move { e.restart_node(&n).await });
        self.shared.run(f).await
    }

    /// See [`Cluster::pause`].
    pub async fn pause(&self, target: &str) -> Result<Vec<String>, Error> {
        let f = self.each_fut(target, |e, n| async move { e.pause_node(&n, true).await });
        self.shared.run(f).await
    }

    /// See [`Cluster::resume`].
    pub async fn resume(&self, target: &str) -> Result<Vec<String>, Error> {
        let f = self.each_fut(target, |e, n| async move { e.pause_node(&n, false).await });
        self.shared.run(f).await
    }

    /// See [`Cluster::wait_ready`].
    pub async fn wait_ready(&self, cluster: Option<&str>, timeout: Duration) -> Result<(), Error> {
        let (e, c) = (self.engine(), cluster.map(str::to_string));
        self.shared
            .run(async move { e.wait_ready(c.as_deref(), timeout).await })
            .await
    }

    /// See [`Cluster::wait_leader`].
    pub async fn wait_leader(&self, cluster: &str, timeout: Duration) -> Result<String, Error> {
        let (e, c) = (self.engine(), cluster.to_string());
        self.shared
            .run(async move { e.wait_leader(&c, timeout).await })
            .await
    }

    /// See [`Cluster::wait_new_leader`].
    pub async fn wait_new_leader(
        &self,
        cluster: &str,
        old: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let (e, c, o) = (self.engine(), cluster.to_string(), old.to_string());
        self.shared
            .run(async move { e.wait_new_leader(&c, Some(&o), timeout).await })
            .await
    }

    /// See [`Cluster::fault`].
    pub async fn fault(
        &self,
        fault: troupe_spec::control::Fault,
    ) -> Result<troupe_spec::FaultRecord, Error> {
        let e = self.engine();
        self.shared.run(async move { e.fault(&fault).await }).await
    }

    /// Undoes one fault (`Some(id)`) or all; returns how many were undone.
    pub async fn heal(&self, id: Option<u32>) -> Result<usize, Error> {
        let e = self.engine();
        self.shared.run(async move { e.heal(id).await }).await
    }

    /// See [`Cluster::serve_control`].
    pub fn serve_control(&self) -> Result<tokio::sync::watch::Receiver<bool>, Error> {
        let Some(h) = self.shared.handle() else {
            return Err(Error::ShutDown);
        };
        let _guard = h.enter();
        let listener = crate::control::bind(self.state_dir())?;
        let down = Arc::new(tokio::sync::watch::channel(false).0);
        let rx = down.subscribe();
        let (e, i) = (self.engine(), self.shared.interrupt.clone());
        h.spawn(crate::control::serve(e, listener, i, down));
        Ok(rx)
    }

    /// Stops every node gracefully, dependents first, and waits until all are gone.
    pub async fn stop(self) {
        if let Some(f) = self.shared.shut_once(false) {
            let _ = self.shared.run(f).await;
        }
    }

    /// SIGKILLs every node at once and waits until they are gone (what dropping does).
    pub async fn kill_all(self) {
        if let Some(f) = self.shared.shut_once(true) {
            let _ = self.shared.run(f).await;
        }
    }
}

/// A snapshot of one node: endpoints, certificate paths, pid and state.
#[derive(Debug, Clone)]
pub struct Node(pub NodeDescriptor);

impl Node {
    pub fn name(&self) -> &str {
        &self.0.name
    }

    pub fn host(&self) -> &str {
        &self.0.host
    }

    /// The number of a port the spec declared; panics with the declared names if unknown,
    /// since a typo in a test should fail loudly.
    pub fn port(&self, name: &str) -> u16 {
        match self.0.ports.get(name) {
            Some(p) => *p,
            None => panic!(
                "node `{}` has no port `{name}`; declared: {:?}",
                self.0.name,
                self.0.ports.keys().collect::<Vec<_>>()
            ),
        }
    }

    /// `host:port` of a named port.
    pub fn addr(&self, name: &str) -> String {
        format!(
            "{}:{}",
            crate::plan::url_host(&self.0.host),
            self.port(name)
        )
    }

    /// The URL of a named port (`https://host:port` with TLS).
    pub fn url(&self, name: &str) -> String {
        self.0
            .urls
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("node `{}` has no port `{name}`", self.0.name))
    }

    pub fn pid(&self) -> Option<u32> {
        self.0.pid
    }

    pub fn state(&self) -> troupe_spec::NodeState {
        self.0.state
    }

    pub fn data_dir(&self) -> &Path {
        &self.0.data_dir
    }

    pub fn log(&self) -> &Path {
        &self.0.log
    }

    /// Certificate paths; panics if the spec has no `[tls]`.
    pub fn tls(&self) -> &troupe_spec::NodeTls {
        self.0.tls.as_ref().unwrap_or_else(|| {
            panic!(
                "node `{}` has no certificates: add [tls] to the spec",
                self.0.name
            )
        })
    }
}
