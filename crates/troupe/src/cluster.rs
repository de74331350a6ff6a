//! The blocking, test-friendly API: [`Cluster::start`] returns once every node is ready; dropping
//! the [`Cluster`] stops everything.
//!
//! A `Cluster` owns a small tokio runtime of its own. Every node is spawned from that runtime's
//! worker threads, which live as long as the cluster; this matters because the parent-death
//! signal that kills nodes when troupe dies fires when the *spawning thread* exits. It also
//! means the API works the same from a plain `#[test]`, from inside `#[tokio::test]`, and from a
//! `static` cluster shared by many tests.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use troupe_spec::{Descriptor, NodeDescriptor, Spec};

use crate::engine::{Engine, Interrupt};
use crate::error::Error;

enum SpecInput {
    Path(PathBuf),
    Text { path: PathBuf, text: String },
    Spec(Box<Spec>),
}

/// Options for starting a cluster; see [`Cluster::builder`].
pub struct ClusterBuilder {
    spec: SpecInput,
    state_dir: Option<PathBuf>,
    keep: Option<bool>,
    interrupt: Interrupt,
}

impl ClusterBuilder {
    /// Where certificates, data, configs, logs and `cluster.json` go. Default: a fresh
    /// temporary directory, removed when the cluster is dropped after a passing test and kept
    /// (and printed) after a failing one. A directory given here is always kept.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
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

    /// Validates the spec, prepares the run and starts every node, returning once all are ready.
    /// On failure nothing is left running and the state directory is kept for its logs.
    pub fn start(self) -> Result<Cluster, Error> {
        let spec = match self.spec {
            SpecInput::Path(p) => Spec::from_path(&p)?,
            SpecInput::Text { path, text } => Spec::from_str(&path, &text)?,
            SpecInput::Spec(s) => *s,
        };
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
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("troupe")
            .enable_all()
            .build()
            .map_err(|e| crate::error::io_err("start a runtime in", &state_dir, e))?;
        crate::sys::become_subreaper();
        let engine = match Engine::prepare(&spec, &state_dir) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                if temporary {
                    let _ = std::fs::remove_dir_all(&state_dir);
                }
                return Err(e);
            }
        };
        let cluster = Cluster {
            rt: Some(rt),
            engine,
            remove_on_drop: self.keep.map(|k| !k),
            temporary,
            interrupt: self.interrupt,
            stopped: false,
        };
        let (engine, interrupt) = (cluster.engine.clone(), cluster.interrupt.clone());
        match cluster.block(async move {
            engine.start_all(&interrupt).await?;
            engine.spawn_role_watchers();
            Ok::<(), Error>(())
        }) {
            Ok(()) => Ok(cluster),
            Err(e) => {
                let mut cluster = cluster;
                cluster.stopped = true;
                // Keep the logs that explain the failure.
                cluster.remove_on_drop = Some(false);
                eprintln!(
                    "troupe: state directory kept: {}",
                    cluster.state_dir().display()
                );
                Err(e)
            }
        }
    }
}

/// A running cluster. Dropping it stops every node (SIGTERM to each process group, a grace
/// period, then SIGKILL).
pub struct Cluster {
    rt: Option<tokio::runtime::Runtime>,
    engine: Arc<Engine>,
    /// `None`: remove a temporary state dir unless the thread is panicking.
    remove_on_drop: Option<bool>,
    temporary: bool,
    interrupt: Interrupt,
    stopped: bool,
}

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
            state_dir: None,
            keep: None,
            interrupt: Interrupt::new(),
        }
    }

    /// Runs a future on the cluster's runtime and waits for it from any thread, even one that
    /// is itself inside an async runtime.
    fn block<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt
            .as_ref()
            .expect("runtime lives until drop")
            .spawn(async move {
                let _ = tx.send(fut.await);
            });
        rx.recv().expect("troupe engine task panicked")
    }

    pub fn name(&self) -> &str {
        &self.engine.plan.name
    }

    pub fn state_dir(&self) -> &Path {
        &self.engine.state.path
    }

    /// The run's CA certificate, when TLS is on.
    pub fn ca(&self) -> Option<&Path> {
        self.engine.plan.ca.as_deref()
    }

    /// The live descriptor (what `cluster.json` holds, with current pids and states).
    pub fn descriptor(&self) -> Descriptor {
        self.engine.descriptor()
    }

    /// Every node, in start order.
    pub fn nodes(&self) -> Vec<Node> {
        self.descriptor().nodes.into_iter().map(Node).collect()
    }

    /// One node by name (`main-1`).
    pub fn node(&self, name: &str) -> Result<Node, Error> {
        self.engine.slot(name)?;
        Ok(self
            .nodes()
            .into_iter()
            .find(|n| n.0.name == name)
            .expect("slot exists"))
    }

    /// The nodes of one cluster of the spec.
    pub fn cluster_nodes(&self, cluster: &str) -> Vec<Node> {
        self.nodes()
            .into_iter()
            .filter(|n| n.0.cluster == cluster)
            .collect()
    }

    /// The node names a target stands for: a node (`main-1`), a cluster (`main`: all its
    /// nodes), or `CLUSTER:SELECTOR` with SELECTOR one of `leader`, `followers`, `random`,
    /// `one`, `minority`, `majority`, `all`. `leader` and `followers` need a role probe and
    /// wait up to 10 s for a leader.
    pub fn select(&self, target: &str) -> Result<Vec<String>, Error> {
        let (e, t) = (self.engine.clone(), vec![target.to_string()]);
        self.block(async move { e.select(&t, Duration::from_secs(10)).await })
    }

    fn each<F, Fut>(&self, target: &str, op: F) -> Result<Vec<String>, Error>
    where
        F: Fn(Arc<Engine>, String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Error>> + Send + 'static,
    {
        let nodes = self.select(target)?;
        let (e, list) = (self.engine.clone(), nodes.clone());
        self.block(async move {
            let mut set = tokio::task::JoinSet::new();
            for n in list {
                set.spawn(op(e.clone(), n));
            }
            while let Some(r) = set.join_next().await {
                r.expect("node operation panicked")?;
            }
            Ok::<(), Error>(())
        })?;
        Ok(nodes)
    }

    /// SIGKILLs the target's process groups and waits until they are gone. Returns the nodes.
    pub fn kill(&self, target: &str) -> Result<Vec<String>, Error> {
        self.each(target, |e, n| async move { e.kill_node(&n).await })
    }

    /// Stops the target gracefully (its stop signal, grace, then SIGKILL) and waits until it is
    /// gone. Several nodes of a cluster with a role probe stop leader first, one at a time.
    pub fn stop_node(&self, target: &str) -> Result<Vec<String>, Error> {
        let nodes = self.select(target)?;
        let (e, list, i) = (self.engine.clone(), nodes.clone(), self.interrupt.clone());
        self.block(async move { e.stop_nodes(&list, &i).await })?;
        Ok(nodes)
    }

    /// Stops these nodes (names, not targets) gracefully; see [`Cluster::stop_node`].
    pub fn stop_nodes(&self, names: &[String]) -> Result<Vec<String>, Error> {
        let (e, list, i) = (self.engine.clone(), names.to_vec(), self.interrupt.clone());
        self.block(async move { e.stop_nodes(&list, &i).await })?;
        Ok(names.to_vec())
    }

    /// Starts stopped or killed nodes again, with the same ports, data and certificates, and
    /// waits until their readiness probes pass.
    pub fn start_node(&self, target: &str) -> Result<Vec<String>, Error> {
        self.each(target, |e, n| async move { e.start_node(&n).await })
    }

    /// Stop then start.
    pub fn restart_node(&self, target: &str) -> Result<Vec<String>, Error> {
        self.each(target, |e, n| async move { e.restart_node(&n).await })
    }

    /// SIGSTOPs the target's process groups.
    pub fn pause(&self, target: &str) -> Result<Vec<String>, Error> {
        self.each(target, |e, n| async move { e.pause_node(&n, true).await })
    }

    /// SIGCONTs the target's process groups.
    pub fn resume(&self, target: &str) -> Result<Vec<String>, Error> {
        self.each(target, |e, n| async move { e.pause_node(&n, false).await })
    }

    /// The node the cluster's role probe last saw leading.
    pub fn leader(&self, cluster: &str) -> Option<String> {
        self.engine.live.get(cluster).and_then(|l| l.leader())
    }

    /// Waits until every node (of `cluster`, or of every started cluster) is ready.
    pub fn wait_ready(&self, cluster: Option<&str>, timeout: Duration) -> Result<(), Error> {
        let (e, c) = (self.engine.clone(), cluster.map(str::to_string));
        self.block(async move { e.wait_ready(c.as_deref(), timeout).await })
    }

    /// Whether a cluster of this run has a role probe.
    pub fn has_role_probe(&self, cluster: &str) -> bool {
        self.engine
            .live
            .get(cluster)
            .is_some_and(|l| l.has_role_probe)
    }

    /// The names of the clusters of the spec, in start order.
    pub fn cluster_names(&self) -> Vec<String> {
        self.engine
            .plan
            .clusters
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// Waits until `cluster` has a leader (its role probe says so), up to `timeout`.
    pub fn wait_leader(&self, cluster: &str, timeout: Duration) -> Result<String, Error> {
        let (e, c) = (self.engine.clone(), cluster.to_string());
        self.block(async move { e.wait_leader(&c, timeout).await })
    }

    /// Waits until `cluster` has a leader other than `old`, up to `timeout`.
    pub fn wait_new_leader(
        &self,
        cluster: &str,
        old: &str,
        timeout: Duration,
    ) -> Result<String, Error> {
        let live = self
            .engine
            .live
            .get(cluster)
            .cloned()
            .ok_or_else(|| Error::Target {
                message: format!("no cluster named `{cluster}`"),
                help: None,
            })?;
        let old = old.to_string();
        let found = self.block(async move {
            let mut rx = live.subscribe();
            tokio::time::timeout(
                timeout,
                rx.wait_for(|l| l.as_ref().is_some_and(|l| *l != old)),
            )
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|l| l.clone()))
        });
        found.ok_or_else(|| Error::Timeout {
            message: format!(
                "no new leader in cluster `{cluster}` after {}",
                troupe_spec::format_duration(timeout)
            ),
            help: None,
        })
    }

    /// Leader, formation time, leader changes and failovers of one cluster of the spec.
    pub fn cluster_status(&self, cluster: &str) -> Option<troupe_spec::ClusterStatus> {
        self.engine.live.get(cluster).map(|l| l.status())
    }

    /// Injects a network fault (partition, isolate, cut, degrade) on nodes in network
    /// namespaces; returns its record. Refused, never skipped, when a node is not in one.
    pub fn fault(
        &self,
        fault: troupe_spec::control::Fault,
    ) -> Result<troupe_spec::FaultRecord, Error> {
        let e = self.engine.clone();
        self.block(async move { e.fault(&fault).await })
    }

    /// Undoes every network fault; returns how many were active.
    pub fn heal(&self) -> Result<usize, Error> {
        let e = self.engine.clone();
        self.block(async move { e.heal().await })
    }

    /// Serves `<state-dir>/control.sock` so that `troupe status`, `troupe kill` and friends
    /// (or any program speaking the JSON-lines protocol) can drive this cluster. The returned
    /// receiver turns `true` when a client asked for `down` (every node is stopped by then).
    pub fn serve_control(&self) -> Result<tokio::sync::watch::Receiver<bool>, Error> {
        let _guard = self.rt.as_ref().expect("runtime").enter();
        let listener = crate::control::bind(self.state_dir())?;
        let down = Arc::new(tokio::sync::watch::channel(false).0);
        let rx = down.subscribe();
        let (e, i) = (self.engine.clone(), self.interrupt.clone());
        self.rt
            .as_ref()
            .expect("runtime")
            .spawn(crate::control::serve(e, listener, i, down));
        Ok(rx)
    }

    /// Waits until `node` exits on its own (or is stopped), up to `timeout`; returns its exit
    /// description, or `None` on timeout.
    pub fn wait_exit(&self, node: &str, timeout: Duration) -> Result<Option<String>, Error> {
        let proc = self.engine.slot(node)?.proc.lock().expect("slot").clone();
        let Some(proc) = proc else {
            return Ok(Some("not started".into()));
        };
        Ok(self.block(async move {
            tokio::time::timeout(timeout, proc.exited())
                .await
                .ok()
                .and_then(|s| s.exit)
        }))
    }

    /// Stops every node gracefully, dependents first, and waits until all are gone.
    pub fn stop(mut self) {
        self.shutdown(false);
    }

    /// SIGKILLs every node at once.
    pub fn kill_all(mut self) {
        self.shutdown(true);
    }

    /// Keep the state directory after this cluster is dropped.
    pub fn keep_state_dir(&mut self) {
        self.remove_on_drop = Some(false);
    }

    fn shutdown(&mut self, kill: bool) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let (e, i) = (self.engine.clone(), self.interrupt.clone());
        self.block(async move {
            if kill {
                e.kill_all().await;
            } else {
                e.stop_all(&i).await;
            }
            let _ = e.write_descriptor();
            e.destroy_network();
        });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown(false);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        let remove = self
            .remove_on_drop
            .unwrap_or(self.temporary && !std::thread::panicking());
        if remove {
            let _ = std::fs::remove_dir_all(self.state_dir());
        } else if std::thread::panicking() || self.temporary {
            eprintln!(
                "troupe: state directory of `{}` kept: {}",
                self.name(),
                self.state_dir().display()
            );
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

    /// `http(s)://host:port` of a named port.
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
