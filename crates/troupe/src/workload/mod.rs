//! Workloads: concurrent clients that run operations against real nodes while faults happen,
//! and record every call and return in a history ([`troupe_spec::history`]) for the checkers
//! ([`crate::verify`]).
//!
//! Each of `processes` slots runs one operation at a time: it takes the next operation of its
//! seeded sequence ([`generate`]), records the invocation, calls its client, and records how
//! the call ended. A call that ends in `info` (a timeout, a dropped connection) may still take
//! effect at any later time, so its process is never used again: the slot continues as a fresh
//! process, with a new client and a re-resolved target (a leader may have moved). A workload
//! ends when its `ops` or `duration` is reached or it is ended; calls in flight then finish
//! (within their timeout). A set workload then reads every element, retrying until it can.
//!
//! Workloads run on a runtime of their own, so a fast client is never slowed by the cluster's
//! bookkeeping, and the other way round.

mod client;
mod etcd;
mod generate;
mod http;
mod memory;
mod stdio;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;
use troupe_spec::history::{Op, OpType};

pub use client::Target;
use client::{BoxFuture, Client, Completion, Context};
use generate::{Fn, Generator, Invocation};
pub use troupe_spec::workload::{ClientSpec, HttpClientSpec, HttpOp, Model, WorkloadSpec};

use crate::error::Error;

/// Resolves a workload's `targets` (`None`: every node) to nodes, now.
pub type Resolve = Arc<
    dyn std::ops::Fn(Option<String>) -> BoxFuture<'static, Result<Vec<Target>, String>>
        + Send
        + Sync,
>;

/// Resolves targets against the nodes of `engines` (a scenario may run several specs): the
/// first engine that knows a target answers.
pub(crate) fn resolver(engines: Vec<Arc<crate::engine::Engine>>) -> Resolve {
    Arc::new(move |target: Option<String>| {
        let engines = engines.clone();
        Box::pin(async move {
            let mut out = Vec::new();
            let mut first_error = None;
            for e in &engines {
                let names: Vec<String> = match &target {
                    None => e.nodes.iter().map(|n| n.name().to_string()).collect(),
                    Some(t) => match e
                        .select(std::slice::from_ref(t), crate::engine::LEADER_WAIT)
                        .await
                    {
                        Ok(n) => n,
                        Err(err) => {
                            first_error.get_or_insert(err.to_string());
                            continue;
                        }
                    },
                };
                out.extend(targets_of(e, &names));
                if target.is_some() {
                    return Ok(out);
                }
            }
            match first_error {
                Some(e) if target.is_some() => Err(e),
                _ => Ok(out),
            }
        })
    })
}

/// The named nodes of `engine`, as clients need them.
fn targets_of(engine: &crate::engine::Engine, names: &[String]) -> Vec<Target> {
    let descriptor = engine.descriptor();
    names
        .iter()
        .filter_map(|name| {
            let node = engine.node(name).ok()?;
            let json = descriptor
                .nodes
                .iter()
                .find(|d| d.name == *name)
                .and_then(|d| serde_json::to_value(d).ok())
                .unwrap_or(Value::Null);
            Some(Target {
                name: name.clone(),
                urls: node.plan.urls.clone(),
                json,
                tls: node.tls.clone(),
            })
        })
        .collect()
}

/// Where a workload records, and what its clients see besides their node.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct WorkloadOptions {
    /// Time zero of the history (default: when the workload starts). A scenario passes its own
    /// start, so that steps, faults and operations share one clock.
    pub origin: Option<Instant>,
    /// Where `history` (and the stdio programs' `clients.log`) are written; `None`: nowhere.
    pub run_dir: Option<PathBuf>,
    /// The stdio programs' working directory.
    pub dir: Option<PathBuf>,
    /// Extra environment of stdio programs.
    pub env: Vec<(String, String)>,
}

impl WorkloadOptions {
    pub fn origin(mut self, origin: Instant) -> Self {
        self.origin = Some(origin);
        self
    }

    pub fn run_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.run_dir = Some(dir.into());
        self
    }

    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    pub fn env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }
}

/// What a finished workload recorded.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct History {
    pub model: Model,
    pub seed: u64,
    /// Every invocation and completion, in time order.
    pub ops: Vec<Op>,
    /// Where it was written, if it was.
    pub path: Option<PathBuf>,
    /// Wall time from the workload's start to its end.
    pub elapsed: Duration,
}

impl History {
    /// Completed calls (`ok`, `fail`, `info`).
    pub fn calls(&self) -> usize {
        self.ops.iter().filter(|o| o.kind != OpType::Invoke).count()
    }

    /// Checks it with its model's checker, within `budget` (linearizability only).
    pub fn check(
        &self,
        budget: crate::verify::Budget,
    ) -> Result<Judgement, crate::verify::CheckError> {
        match self.model {
            Model::Set => crate::verify::set(&self.ops).map(Judgement::Set),
            model => {
                crate::verify::linearizable(&self.ops, model, budget).map(Judgement::Linearizable)
            }
        }
    }
}

/// A checker's verdict on a history.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Judgement {
    Linearizable(crate::verify::Verdict),
    Set(crate::verify::SetReport),
}

impl Judgement {
    /// `Some(true)` valid, `Some(false)` invalid, `None` unknown.
    pub fn valid(&self) -> Option<bool> {
        match self {
            Judgement::Linearizable(crate::verify::Verdict::Linearizable) => Some(true),
            Judgement::Linearizable(crate::verify::Verdict::NotLinearizable(_)) => Some(false),
            Judgement::Linearizable(_) => None,
            Judgement::Set(r) => Some(r.verdict == crate::verify::SetVerdict::Valid),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Judgement::Linearizable(v) => serde_json::to_value(v).unwrap_or(Value::Null),
            Judgement::Set(r) => serde_json::to_value(r).unwrap_or(Value::Null),
        }
    }
}

impl std::fmt::Display for Judgement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Judgement::Linearizable(v) => write!(f, "{v}"),
            Judgement::Set(r) => write!(f, "{r}"),
        }
    }
}

/// A running workload. Dropping it ends it at once and kills its client programs; call
/// [`Workload::finish`] or [`Workload::wait`] to keep what it recorded.
pub struct Workload {
    rt: Option<tokio::runtime::Runtime>,
    stop: Arc<watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<Result<Vec<Op>, String>>>,
    spec: WorkloadSpec,
    seed: u64,
    started: Instant,
    run_dir: Option<PathBuf>,
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = &self.task {
            t.abort();
        }
        if let Some(rt) = self.rt.take() {
            // Allowed anywhere, even inside another runtime; the clients' drops kill their
            // programs as the tasks go.
            rt.shutdown_background();
        }
    }
}

impl Workload {
    /// Starts `spec` on the nodes `resolve` finds. Checks the spec first.
    pub fn start(
        spec: WorkloadSpec,
        resolve: Resolve,
        opts: WorkloadOptions,
    ) -> Result<Workload, Error> {
        spec.check()
            .map_err(|e| Error::Workload(format!("invalid workload: {e}")))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("troupe-workload")
            .enable_all()
            .build()
            .map_err(|e| Error::Workload(format!("cannot start the workload's runtime: {e}")))?;
        let seed = spec.seed.unwrap_or_else(random_seed);
        let started = Instant::now();
        let origin = opts.origin.unwrap_or(started);
        let (stop, stop_rx) = watch::channel(false);
        let ctx = Arc::new(Context {
            templates: crate::template::Templates::new(),
            dir: opts.dir.clone(),
            env: opts.env.clone(),
            log: opts
                .run_dir
                .as_ref()
                .map(|d| d.join(client_log_name(&spec.history))),
            memory: memory::Store::default(),
            id: format!("{:012x}", random_seed() & 0xffff_ffff_ffff),
            fatal: std::sync::Mutex::new(None),
        });
        let task = rt.spawn(drive(spec.clone(), seed, resolve, ctx, origin, stop_rx));
        Ok(Workload {
            rt: Some(rt),
            stop: Arc::new(stop),
            task: Some(task),
            spec,
            seed,
            started,
            run_dir: opts.run_dir,
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn spec(&self) -> &WorkloadSpec {
        &self.spec
    }

    /// Asks it to end: no new call starts; calls in flight finish within their timeout.
    pub fn end(&self) {
        let _ = self.stop.send(true);
    }

    /// Whether it has ended (reached its `ops` or `duration`, or was ended).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits up to `limit` for it to end on its own; `None` if it still runs.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<Result<History, Error>> {
        let task = self.task.as_mut()?;
        let rt = self.rt.as_ref()?;
        let got = rt.block_on(async { tokio::time::timeout(limit, task).await });
        let result = got.ok()?;
        self.task = None;
        Some(self.history(result))
    }

    /// Waits for it to end on its own, and returns (and writes) its history.
    pub fn wait(mut self) -> Result<History, Error> {
        self.wait_timeout(troupe_spec::MAX_DURATION)
            .unwrap_or_else(|| Err(Error::Workload("the workload never ended".into())))
    }

    /// Ends it now, and returns (and writes) its history.
    pub fn finish(self) -> Result<History, Error> {
        self.end();
        self.wait()
    }

    fn history(
        &self,
        result: Result<Result<Vec<Op>, String>, tokio::task::JoinError>,
    ) -> Result<History, Error> {
        let ops = match result {
            Ok(Ok(ops)) => ops,
            Ok(Err(e)) => return Err(Error::Workload(e)),
            Err(e) => return Err(Error::Workload(format!("the workload failed: {e}"))),
        };
        let path = match &self.run_dir {
            Some(dir) => {
                let path = dir.join(&self.spec.history);
                write_history(&path, &ops)?;
                Some(path)
            }
            None => None,
        };
        Ok(History {
            model: self.spec.model,
            seed: self.seed,
            ops,
            path,
            elapsed: self.started.elapsed(),
        })
    }
}

fn client_log_name(history: &str) -> String {
    let stem = Path::new(history)
        .file_stem()
        .map_or_else(|| "history".into(), |s| s.to_string_lossy().into_owned());
    format!("{stem}.clients.log")
}

fn write_history(path: &Path, ops: &[Op]) -> Result<(), Error> {
    let file = std::fs::File::create(path).map_err(|e| crate::error::io_err("create", path, e))?;
    let mut w = troupe_spec::history::Writer::new(std::io::BufWriter::new(file));
    for op in ops {
        w.write(op)
            .map_err(|e| Error::Workload(format!("cannot write {}: {e}", path.display())))?;
    }
    w.flush()
        .map_err(|e| Error::Workload(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

fn random_seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    generate::Rng::new(t ^ u64::from(std::process::id())).next_u64() >> 16
}

/// Counters every slot shares.
struct Shared {
    spec: WorkloadSpec,
    seed: u64,
    origin: Instant,
    started: tokio::time::Instant,
    deadline: Option<tokio::time::Instant>,
    issued: AtomicU64,
    tickets: AtomicU64,
    next_process: AtomicU64,
    /// Set when the workload cannot go on (a client program that cannot start).
    halt: std::sync::atomic::AtomicBool,
    resolve: Resolve,
    ctx: Arc<Context>,
}

impl Shared {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    fn ended(&self, stop: &watch::Receiver<bool>) -> bool {
        *stop.borrow()
            || self.halt.load(Ordering::Relaxed)
            || self
                .deadline
                .is_some_and(|d| tokio::time::Instant::now() >= d)
    }
}

/// Waits `d`, or less if the workload ends meanwhile. Returns whether it ended.
async fn pause(d: Duration, stop: &mut watch::Receiver<bool>, shared: &Shared) -> bool {
    let until = shared
        .deadline
        .map_or(tokio::time::Instant::now() + d, |end| {
            end.min(tokio::time::Instant::now() + d)
        });
    tokio::select! {
        _ = tokio::time::sleep_until(until) => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    shared.ended(stop)
}

/// How long a slot waits after a target could not be resolved or reached.
const BACKOFF: Duration = Duration::from_millis(50);

async fn drive(
    spec: WorkloadSpec,
    seed: u64,
    resolve: Resolve,
    ctx: Arc<Context>,
    origin: Instant,
    stop: watch::Receiver<bool>,
) -> Result<Vec<Op>, String> {
    // The targets must exist now; later they may be briefly unknown (no leader).
    let first = resolve(spec.targets.clone()).await?;
    if first.is_empty() {
        return Err(format!(
            "the workload's targets `{}` name no node",
            spec.targets.as_deref().unwrap_or("(every node)")
        ));
    }
    let started = tokio::time::Instant::now();
    let shared = Arc::new(Shared {
        deadline: spec.duration.map(|d| started + d),
        next_process: AtomicU64::new(u64::from(spec.processes)),
        spec,
        seed,
        origin,
        started,
        issued: AtomicU64::new(0),
        tickets: AtomicU64::new(0),
        halt: std::sync::atomic::AtomicBool::new(false),
        resolve,
        ctx,
    });
    let mut slots = tokio::task::JoinSet::new();
    for slot in 0..shared.spec.processes {
        slots.spawn(run_slot(shared.clone(), u64::from(slot), stop.clone()));
    }
    let mut per_slot = Vec::new();
    while let Some(r) = slots.join_next().await {
        per_slot.push(r.map_err(|e| format!("a workload process failed: {e}"))?);
    }
    if let Some(fatal) = shared.ctx.fatal.lock().expect("fatal").clone() {
        return Err(fatal);
    }
    if shared.spec.model == Model::Set {
        per_slot.push(final_read(&shared).await);
    }
    let mut ops: Vec<Op> = per_slot.into_iter().flatten().collect();
    ops.sort_by_key(|o| o.time);
    Ok(ops)
}

fn op(kind: OpType, process: u64, inv: &Invocation, time: u64, node: &str) -> Op {
    let mut op = Op::new(process, kind, inv.f.name(), time).with_node(node);
    op.key.clone_from(&inv.key);
    op
}

/// One process slot: operations one at a time until the workload ends.
async fn run_slot(shared: Arc<Shared>, slot: u64, mut stop: watch::Receiver<bool>) -> Vec<Op> {
    let spec = &shared.spec;
    let mut generator = Generator::new(
        spec.model,
        &spec.mix,
        spec.keys,
        shared.seed,
        slot,
        u64::from(spec.processes),
    );
    let mut ops = Vec::new();
    let mut process = slot;
    let mut target: Option<Target> = None;
    let mut client: Option<Box<dyn Client>> = None;
    loop {
        if shared.ended(&stop) {
            break;
        }
        if let Some(limit) = spec.ops
            && shared.issued.fetch_add(1, Ordering::Relaxed) >= limit
        {
            break;
        }
        if let Some(rate) = spec.rate {
            let ticket = shared.tickets.fetch_add(1, Ordering::Relaxed);
            let at = shared.started + Duration::from_secs_f64(ticket as f64 / rate);
            let now = tokio::time::Instant::now();
            if at > now && pause(at - now, &mut stop, &shared).await {
                break;
            }
        }
        let t = match &target {
            Some(t) => t.clone(),
            None => {
                let found = tokio::select! {
                    r = (shared.resolve)(spec.targets.clone()) => r,
                    _ = stop.wait_for(|s| *s) => break,
                };
                match found {
                    Ok(nodes) if !nodes.is_empty() => {
                        let t = nodes[(slot as usize) % nodes.len()].clone();
                        target = Some(t.clone());
                        t
                    }
                    _ => {
                        if pause(BACKOFF, &mut stop, &shared).await {
                            break;
                        }
                        continue;
                    }
                }
            }
        };
        let inv = generator.next_op();
        let mut invoke = op(OpType::Invoke, process, &inv, shared.now(), &t.name);
        invoke.value = inv.value.clone();
        ops.push(invoke);
        let mut unreachable = false;
        let done = match &mut client {
            Some(c) => call(c.as_mut(), &inv, spec.timeout).await,
            None => match tokio::time::timeout(
                spec.timeout,
                client::connect(spec, &shared.ctx, &t, process),
            )
            .await
            {
                Ok(Ok(mut c)) => {
                    let done = call(c.as_mut(), &inv, spec.timeout).await;
                    client = Some(c);
                    done
                }
                Ok(Err(e)) => {
                    unreachable = true;
                    Completion::Fail(e)
                }
                Err(_) => Completion::Info(format!(
                    "connecting timed out after {}",
                    troupe_spec::format_duration(spec.timeout)
                )),
            },
        };
        let (kind, value, error) = match done {
            Completion::Ok(v) => (
                OpType::Ok,
                if inv.f.is_read() {
                    v
                } else {
                    inv.value.clone()
                },
                None,
            ),
            Completion::Fail(e) => (OpType::Fail, inv.value.clone(), Some(e)),
            Completion::Info(e) => (OpType::Info, inv.value.clone(), Some(e)),
        };
        let mut complete = op(kind, process, &inv, shared.now(), &t.name);
        complete.value = value;
        complete.error = error;
        ops.push(complete);
        if kind == OpType::Info {
            // It may still happen: this process is done; the slot goes on as a new one.
            process = shared.next_process.fetch_add(1, Ordering::Relaxed);
            client = None;
            target = None;
        } else if client.as_ref().is_some_and(|c| c.broken()) {
            client = None;
            target = None;
        }
        if unreachable {
            target = None;
            if shared.ctx.fatal.lock().expect("fatal").is_some() {
                shared.halt.store(true, Ordering::Relaxed);
                break;
            }
            if pause(BACKOFF, &mut stop, &shared).await {
                break;
            }
        }
    }
    ops
}

async fn call(c: &mut dyn Client, inv: &Invocation, timeout: Duration) -> Completion {
    match tokio::time::timeout(timeout, c.call(inv)).await {
        Ok(done) => done,
        Err(_) => Completion::Info(format!(
            "timed out after {}",
            troupe_spec::format_duration(timeout)
        )),
    }
}

/// A set workload's last word: every element, read through each target node (so from each
/// node's own copy, where the system serves reads locally), each retried (each try recorded)
/// until it succeeds or `final_read` runs out.
async fn final_read(shared: &Shared) -> Vec<Op> {
    let spec = &shared.spec;
    let deadline = tokio::time::Instant::now() + spec.final_read;
    let inv = Invocation {
        f: Fn::ReadAll,
        key: None,
        value: Value::Null,
    };
    let mut ops = Vec::new();
    let mut nodes = Vec::new();
    while nodes.is_empty() && tokio::time::Instant::now() < deadline {
        nodes = (shared.resolve)(spec.targets.clone())
            .await
            .unwrap_or_default();
        if nodes.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for t in &nodes {
        while tokio::time::Instant::now() < deadline {
            let process = shared.next_process.fetch_add(1, Ordering::Relaxed);
            ops.push(op(OpType::Invoke, process, &inv, shared.now(), &t.name));
            // Reading everything may take much longer than one operation: it gets what is left.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let done = match tokio::time::timeout(
                spec.timeout,
                client::connect(spec, &shared.ctx, t, process),
            )
            .await
            {
                Ok(Ok(mut c)) => call(c.as_mut(), &inv, left.max(spec.timeout)).await,
                Ok(Err(e)) => Completion::Fail(e),
                Err(_) => Completion::Fail("connecting timed out".into()),
            };
            let (kind, value, error) = match done {
                Completion::Ok(v) => (OpType::Ok, v, None),
                // A read changes nothing: a failed or unanswered one is simply not a read.
                Completion::Fail(e) | Completion::Info(e) => (OpType::Fail, Value::Null, Some(e)),
            };
            let mut complete = op(kind, process, &inv, shared.now(), &t.name);
            complete.value = value;
            complete.error = error;
            ops.push(complete);
            if kind == OpType::Ok {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    ops
}
