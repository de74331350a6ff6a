//! Runs a scenario: its steps in order against real clusters, each with its deadline, then
//! its `finally` steps, whatever happened. Every outcome goes to one stream of events (for live
//! progress) and into one [`Report`] (for the summary, JSON and JUnit).
//!
//! Commands run in their own process groups, so a step that times out takes its whole command
//! with it. Waiting steps (`until`, `converge`, `wait`) poll a condition until their deadline;
//! a failure says what was last seen.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use troupe_spec::scenario::{Expect, NodeOp, Scenario, Step, StepKind, WaitUntil};
use troupe_spec::{Descriptor, NodeState, format_duration};

use crate::cluster::Cluster;
use crate::engine::Interrupt;
use crate::report::{Report, StepReport, Verdict};
use crate::template::Templates;

/// Options of one run.
pub struct RunOptions {
    /// Where the clusters' state directories go; default: a new temporary directory.
    pub run_dir: Option<PathBuf>,
    /// Keep the run directory after a passing run too.
    pub keep: bool,
    pub interrupt: Interrupt,
}

/// What happens during a run, as it happens.
pub enum Event<'a> {
    StepStarted {
        depth: usize,
        name: &'a str,
    },
    StepEnded {
        depth: usize,
        report: &'a StepReport,
    },
    /// Something worth a line: a cluster going down, a step still running.
    Note(&'a str),
}

/// Runs a scenario to its verdict. Never panics on a failing system: failures are steps.
pub fn run(scenario: &Scenario, opts: RunOptions, on_event: &(dyn Fn(&Event) + Sync)) -> Report {
    let started = Instant::now();
    let (run_dir, temporary) = match &opts.run_dir {
        Some(d) => (d.clone(), false),
        None => {
            let d = tempfile::Builder::new()
                .prefix(&format!("troupe-run-{}-", scenario.name))
                .tempdir()
                .map(|d| d.keep())
                .unwrap_or_else(|_| {
                    std::env::temp_dir().join(format!("troupe-run-{}", scenario.name))
                });
            (d, true)
        }
    };
    let _ = std::fs::create_dir_all(&run_dir);
    // Traversable (not listable) so that nodes running as another user reach their state dirs.
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o711));
    }
    let runner = Runner {
        dir: scenario.source.dir().to_path_buf(),
        run_dir: run_dir.clone(),
        clusters: Mutex::new(Vec::new()),
        vars: Mutex::new(BTreeMap::new()),
        ended: Mutex::new(HashMap::new()),
        metrics: Mutex::new(Vec::new()),
        faults: Mutex::new(Vec::new()),
        interrupt: opts.interrupt.clone(),
        deadline: scenario.timeout.map(|t| started + t),
        templates: Templates::new(),
        on_event,
    };
    let ctx = Ctx::default();
    let steps = runner.run_steps(&scenario.steps, &ctx, 0);
    let finally = runner.run_steps_all(&scenario.finally, &ctx, 0);
    runner.down_all();
    let mut metrics = runner.metrics.lock().expect("metrics").clone();
    let faults = runner.faults.lock().expect("faults").clone();
    let ended = runner.ended.lock().expect("ended").clone();
    for m in &scenario.measures {
        if let (Some(a), Some(b)) = (ended.get(&m.from), ended.get(&m.to)) {
            metrics.push((
                m.name.clone(),
                b.saturating_duration_since(*a).as_secs_f64() * 1000.0,
            ));
        }
    }
    let failed = steps
        .iter()
        .chain(&finally)
        .any(|s| s.verdict == Verdict::Failed);
    let interrupted = opts.interrupt.level() > 0;
    let verdict = if failed || interrupted {
        Verdict::Failed
    } else {
        Verdict::Passed
    };
    let keep = opts.keep || verdict != Verdict::Passed || !temporary;
    if !keep {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    Report {
        name: scenario.name.clone(),
        verdict,
        duration: started.elapsed(),
        steps,
        finally,
        metrics,
        state_dir: keep.then_some(run_dir),
        interrupted,
        faults,
    }
}

/// Per-step template context beyond the global variables.
#[derive(Default, Clone)]
struct Ctx {
    node: Option<Json>,
    locals: BTreeMap<String, String>,
}

struct Runner<'a> {
    dir: PathBuf,
    run_dir: PathBuf,
    /// Clusters brought up, by spec path.
    clusters: Mutex<Vec<(PathBuf, Arc<Cluster>)>>,
    vars: Mutex<BTreeMap<String, String>>,
    ended: Mutex<HashMap<String, Instant>>,
    metrics: Mutex<Vec<(String, f64)>>,
    /// Faults of clusters already down: spec name, record.
    faults: Mutex<Vec<(String, troupe_spec::FaultRecord)>>,
    interrupt: Interrupt,
    deadline: Option<Instant>,
    templates: Templates,
    on_event: &'a (dyn Fn(&Event) + Sync),
}

type StepResult = Result<Option<String>, Failure>;

/// Why a step failed, and which nodes' logs explain it.
struct Failure {
    message: String,
    nodes: Vec<String>,
}

fn fail<T>(message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        message: message.into(),
        nodes: vec![],
    })
}

impl Runner<'_> {
    fn clusters(&self) -> Vec<Arc<Cluster>> {
        self.clusters
            .lock()
            .expect("clusters")
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    fn descriptors(&self) -> Vec<Descriptor> {
        self.clusters().iter().map(|c| c.descriptor()).collect()
    }

    /// `TROUPE_*` of every cluster, then captured variables.
    fn env(&self, ctx: &Ctx) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .descriptors()
            .iter()
            .flat_map(crate::envvars::vars)
            .collect();
        // The troupe running the scenario comes first on PATH, so steps can call `troupe`.
        if let Ok(exe) = std::env::current_exe() {
            let path = std::env::var("PATH").unwrap_or_default();
            if let Some(dir) = exe.parent() {
                env.push(("PATH".into(), format!("{}:{path}", dir.display())));
            }
            env.push(("TROUPE_BIN".into(), exe.display().to_string()));
        }
        env.extend(self.vars.lock().expect("vars").clone());
        env.extend(ctx.locals.clone());
        if let Some(n) = &ctx.node {
            env.push((
                "TROUPE_NODE".into(),
                n["name"].as_str().unwrap_or("").to_string(),
            ));
        }
        env
    }

    fn render(&self, text: &str, ctx: &Ctx) -> Result<String, Failure> {
        let env = self.env(ctx);
        let mut vars: BTreeMap<String, String> = self.vars.lock().expect("vars").clone();
        vars.extend(ctx.locals.clone());
        let mut c = json!({
            "env": env.into_iter().collect::<BTreeMap<_, _>>(),
            "vars": vars,
        });
        if let Some(n) = &ctx.node {
            c["node"] = n.clone();
        }
        self.templates.render(text, &c).map_err(|e| Failure {
            message: format!(
                "template error in `{text}`: {}{}",
                e.message,
                e.help.map(|h| format!(" ({h})")).unwrap_or_default()
            ),
            nodes: vec![],
        })
    }

    /// Steps in order; after a failure (or an interrupt) the rest are skipped.
    fn run_steps(&self, steps: &[Step], ctx: &Ctx, depth: usize) -> Vec<StepReport> {
        let mut out = Vec::new();
        let mut failed = false;
        for s in steps {
            if failed || self.interrupt.level() > 0 || self.past_deadline() {
                out.push(StepReport::skipped(
                    &self.render(&s.name, ctx).unwrap_or_else(|_| s.name.clone()),
                ));
                continue;
            }
            let r = self.run_step(s, ctx, depth);
            failed = r.verdict == Verdict::Failed;
            out.push(r);
        }
        out
    }

    /// `finally` steps: every one runs, whatever the others did.
    fn run_steps_all(&self, steps: &[Step], ctx: &Ctx, depth: usize) -> Vec<StepReport> {
        steps.iter().map(|s| self.run_step(s, ctx, depth)).collect()
    }

    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn run_step(&self, step: &Step, ctx: &Ctx, depth: usize) -> StepReport {
        let name = self
            .render(&step.name, ctx)
            .unwrap_or_else(|_| step.name.clone());
        (self.on_event)(&Event::StepStarted { depth, name: &name });
        let started = Instant::now();
        let mut deadline = started + step.timeout;
        if let Some(d) = self.deadline {
            deadline = deadline.min(d);
        }
        let mut children = Vec::new();
        let result = self.act(step, ctx, depth, deadline, &mut children);
        let duration = started.elapsed();
        let child_failed = children.iter().any(|c| c.verdict == Verdict::Failed);
        // Measures only span steps that passed: a failed step's end says nothing.
        if result.is_ok() && !child_failed {
            self.ended
                .lock()
                .expect("ended")
                .insert(name.clone(), Instant::now());
        }
        let (verdict, error, detail, logs) = match result {
            Ok(detail) if !child_failed => (Verdict::Passed, None, detail, vec![]),
            Ok(_) => (
                Verdict::Failed,
                Some("a nested step failed".to_string()),
                None,
                vec![],
            ),
            Err(f) => {
                let logs = self.log_tails(&f.nodes);
                (Verdict::Failed, Some(f.message), None, logs)
            }
        };
        let report = StepReport {
            name,
            verdict,
            duration,
            error,
            detail,
            logs,
            children,
        };
        (self.on_event)(&Event::StepEnded {
            depth,
            report: &report,
        });
        report
    }

    fn act(
        &self,
        step: &Step,
        ctx: &Ctx,
        depth: usize,
        deadline: Instant,
        children: &mut Vec<StepReport>,
    ) -> StepResult {
        match &step.kind {
            StepKind::Up(specs) => self.up(specs, ctx),
            StepKind::Down => {
                self.down_all();
                Ok(None)
            }
            StepKind::Op { op, targets } => self.op(*op, targets, ctx, deadline),
            StepKind::Sh {
                script,
                expect,
                capture,
            } => {
                let script = self.render(script, ctx)?;
                let out = self.command(&["bash".into(), "-c".into(), script], ctx, deadline)?;
                check(&out, expect)?;
                self.capture(capture, &out.stdout);
                Ok(None)
            }
            StepKind::Exec {
                argv,
                expect,
                capture,
            } => {
                let argv: Vec<String> = argv
                    .iter()
                    .map(|a| self.render(a, ctx))
                    .collect::<Result<_, _>>()?;
                let out = self.command(&argv, ctx, deadline)?;
                check(&out, expect)?;
                self.capture(capture, &out.stdout);
                Ok(None)
            }
            StepKind::Wait {
                until,
                cluster,
                capture,
            } => self.wait(*until, cluster.as_deref(), capture, deadline),
            StepKind::Until {
                script,
                expect,
                interval,
                capture,
            } => {
                let script = self.render(script, ctx)?;
                let mut attempts = 0;
                loop {
                    attempts += 1;
                    let last = match self.command(
                        &["bash".into(), "-c".into(), script.clone()],
                        ctx,
                        deadline,
                    ) {
                        Ok(out) => match check(&out, expect) {
                            Ok(()) => {
                                self.capture(capture, &out.stdout);
                                return Ok(Some(format!("passed after {attempts} attempt(s)")));
                            }
                            Err(f) => f.message,
                        },
                        Err(f) => f.message,
                    };
                    if Instant::now() + *interval >= deadline || self.interrupt.level() > 0 {
                        return fail(format!("never passed in {attempts} attempts; last: {last}"));
                    }
                    std::thread::sleep(*interval);
                }
            }
            StepKind::Converge {
                script,
                on,
                equals,
                reference,
                interval,
                capture,
            } => {
                let (agreed, summary) = self.converge(
                    script,
                    on,
                    equals.as_deref(),
                    reference.as_deref(),
                    *interval,
                    ctx,
                    deadline,
                )?;
                self.capture(capture, &agreed);
                Ok(Some(summary))
            }
            StepKind::ForEach {
                target,
                parallel,
                steps,
            } => {
                let target = self.render(target, ctx)?;
                let nodes = self.select(&target)?;
                let contexts = self.node_contexts(ctx, &nodes);
                children.extend(self.many(steps, contexts, *parallel, depth));
                Ok(None)
            }
            StepKind::Repeat {
                times,
                parallel,
                steps,
            } => {
                let contexts = (1..=*times)
                    .map(|i| {
                        let mut c = ctx.clone();
                        c.locals.insert("ITERATION".into(), i.to_string());
                        c
                    })
                    .collect();
                children.extend(self.many(steps, contexts, *parallel, depth));
                Ok(None)
            }
            StepKind::Parallel { steps } => {
                let results: Vec<StepReport> = std::thread::scope(|scope| {
                    let handles: Vec<_> = steps
                        .iter()
                        .map(|s| scope.spawn(move || self.run_step(s, ctx, depth + 1)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| h.join().expect("step thread"))
                        .collect()
                });
                children.extend(results);
                Ok(None)
            }
            StepKind::Partition { text, bridge } => {
                let text = self.render(text, ctx)?;
                let groups =
                    troupe_spec::scenario::parse_partition(&text).map_err(|e| Failure {
                        message: e,
                        nodes: vec![],
                    })?;
                let bridge = bridge.as_ref().map(|b| self.render(b, ctx)).transpose()?;
                self.fault(troupe_spec::control::Fault::Partition { groups, bridge })
            }
            StepKind::Cut { text } => {
                let text = self.render(text, ctx)?;
                let (from, to, one_way) =
                    troupe_spec::scenario::parse_cut(&text).map_err(|e| Failure {
                        message: e,
                        nodes: vec![],
                    })?;
                self.fault(troupe_spec::control::Fault::Cut { from, to, one_way })
            }
            StepKind::Reset { text } => {
                let text = self.render(text, ctx)?;
                let (from, to, _) =
                    troupe_spec::scenario::parse_cut(&text).map_err(|e| Failure {
                        message: e,
                        nodes: vec![],
                    })?;
                self.fault(troupe_spec::control::Fault::Reset { from, to })
            }
            StepKind::Fault(f) => {
                let render_all = |ts: &[String]| {
                    ts.iter()
                        .map(|t| self.render(t, ctx))
                        .collect::<Result<Vec<_>, _>>()
                };
                let f = match f {
                    troupe_spec::control::Fault::Isolate { targets, host } => {
                        troupe_spec::control::Fault::Isolate {
                            targets: render_all(targets)?,
                            host: *host,
                        }
                    }
                    troupe_spec::control::Fault::Degrade {
                        targets,
                        delay_ms,
                        jitter_ms,
                        loss_pct,
                        rate,
                    } => troupe_spec::control::Fault::Degrade {
                        targets: render_all(targets)?,
                        delay_ms: *delay_ms,
                        jitter_ms: *jitter_ms,
                        loss_pct: *loss_pct,
                        rate: rate.clone(),
                    },
                    other => other.clone(),
                };
                self.fault(f)
            }
            StepKind::Heal => {
                let mut n = 0;
                for c in self.clusters() {
                    n += c.heal().map_err(|e| Failure {
                        message: e.to_string(),
                        nodes: vec![],
                    })?;
                }
                Ok(Some(format!("healed {n} fault(s)")))
            }
            StepKind::Sleep(d) => {
                let end = (Instant::now() + *d).min(deadline);
                while Instant::now() < end && self.interrupt.level() == 0 {
                    std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
                }
                Ok(None)
            }
            _ => fail("this troupe does not know that kind of step"),
        }
    }

    /// Applies a rendered fault on the cluster that holds its first target.
    fn fault(&self, f: troupe_spec::control::Fault) -> StepResult {
        let first = match &f {
            troupe_spec::control::Fault::Partition { groups, .. } => {
                groups.first().and_then(|g| g.first()).cloned()
            }
            troupe_spec::control::Fault::Isolate { targets, .. }
            | troupe_spec::control::Fault::Degrade { targets, .. } => targets.first().cloned(),
            troupe_spec::control::Fault::Cut { from, .. } => from.first().cloned(),
            _ => None,
        };
        let first = first.ok_or_else(|| Failure {
            message: "the fault names no target".into(),
            nodes: vec![],
        })?;
        let node = self
            .select(&first)?
            .into_iter()
            .next()
            .ok_or_else(|| Failure {
                message: format!("`{first}` selects no node"),
                nodes: vec![],
            })?;
        let c = self.cluster_of(&node).expect("selected nodes exist");
        let rec = c.fault(f).map_err(|e| Failure {
            message: e.to_string(),
            nodes: vec![],
        })?;
        Ok(Some(format!("fault {}: {}", rec.id, rec.description)))
    }

    /// The nested steps once per context, one after another or all at once.
    fn many(
        &self,
        steps: &[Step],
        contexts: Vec<Ctx>,
        parallel: bool,
        depth: usize,
    ) -> Vec<StepReport> {
        if parallel {
            std::thread::scope(|scope| {
                let handles: Vec<_> = contexts
                    .iter()
                    .map(|c| scope.spawn(move || self.run_steps(steps, c, depth + 1)))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("step thread"))
                    .collect()
            })
        } else {
            let mut out = Vec::new();
            for c in &contexts {
                let r = self.run_steps(steps, c, depth + 1);
                let failed = r.iter().any(|s| s.verdict == Verdict::Failed);
                out.extend(r);
                if failed {
                    break;
                }
            }
            out
        }
    }

    /// `ctx` with `node` set to each node's descriptor entry, for per-node templates.
    fn node_contexts(&self, ctx: &Ctx, nodes: &[String]) -> Vec<Ctx> {
        let descriptors = self.descriptors();
        nodes
            .iter()
            .map(|n| {
                let mut c = ctx.clone();
                c.node = descriptors
                    .iter()
                    .flat_map(|d| d.nodes.iter())
                    .find(|d| &d.name == n)
                    .map(|d| serde_json::to_value(d).expect("node json"));
                c
            })
            .collect()
    }

    fn capture(&self, name: &Option<String>, value: &str) {
        if let Some(n) = name {
            self.vars
                .lock()
                .expect("vars")
                .insert(n.clone(), value.trim().to_string());
        }
    }

    fn up(&self, specs: &[String], ctx: &Ctx) -> StepResult {
        let mut started = Vec::new();
        for spec in specs {
            let spec = self.render(spec, ctx)?;
            let path = self.dir.join(&spec);
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "spec".into());
            let mut state = self.run_dir.join(&stem);
            let mut i = 2;
            while state.exists() {
                state = self.run_dir.join(format!("{stem}-{i}"));
                i += 1;
            }
            let cluster = Cluster::builder(&path)
                .state_dir(&state)
                .interrupt(self.interrupt.clone())
                .start()
                .map_err(|e| Failure {
                    message: format!("{spec} did not come up: {e}"),
                    nodes: match &e {
                        crate::Error::Start(f) => vec![f.node.clone()],
                        _ => vec![],
                    },
                })?;
            // Steps may drive the cluster with `troupe status`, `troupe kill`, ... too.
            if let Err(e) = cluster.serve_control() {
                (self.on_event)(&Event::Note(&format!(
                    "no control socket for `{}`: {e}",
                    cluster.name()
                )));
            }
            started.push(format!(
                "{} ({} nodes)",
                cluster.name(),
                cluster.nodes().len()
            ));
            self.clusters
                .lock()
                .expect("clusters")
                .push((path, Arc::new(cluster)));
        }
        Ok(Some(format!("up: {}", started.join(", "))))
    }

    /// Stops every cluster, recording its formation and failover times and its faults first.
    fn down_all(&self) {
        let clusters: Vec<(PathBuf, Arc<Cluster>)> =
            std::mem::take(&mut *self.clusters.lock().expect("clusters"));
        for (_, c) in clusters.into_iter().rev() {
            for name in c.cluster_names() {
                let Some(s) = c.cluster_status(&name) else {
                    continue;
                };
                let mut m = self.metrics.lock().expect("metrics");
                let label = format!("{}/{name}", c.name());
                if let Some(f) = s.formation_ms {
                    m.push((format!("{label} formation"), f));
                }
                for (i, f) in s.failovers.iter().enumerate() {
                    if let (Some(ms), Some(to)) = (f.ms, &f.to) {
                        m.push((
                            format!(
                                "{label} failover {} ({} {} -> {to})",
                                i + 1,
                                f.cause,
                                f.from
                            ),
                            ms,
                        ));
                    }
                }
            }
            self.faults.lock().expect("faults").extend(
                c.descriptor()
                    .faults
                    .into_iter()
                    .map(|f| (c.name().to_string(), f)),
            );
            (self.on_event)(&Event::Note(&format!("stopping `{}`", c.name())));
            match Arc::try_unwrap(c) {
                Ok(c) => c.stop(),
                Err(shared) => drop(shared), // the last holder stops it
            }
        }
    }

    /// Node names for a target, from whichever cluster knows it.
    fn select(&self, target: &str) -> Result<Vec<String>, Failure> {
        let clusters = self.clusters();
        if clusters.is_empty() {
            return fail(format!(
                "`{target}`: no cluster is up (add an `up` step first)"
            ));
        }
        let mut first_error = None;
        for c in &clusters {
            match c.select(target) {
                Ok(n) => return Ok(n),
                Err(e) => {
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        fail(first_error.unwrap_or_default())
    }

    fn cluster_of(&self, node: &str) -> Option<Arc<Cluster>> {
        self.clusters().into_iter().find(|c| c.node(node).is_ok())
    }

    /// Acts on every selected node at once (a group stop goes leader first), like the command
    /// line does: a quorum system started one node at a time would never become ready.
    fn op(&self, op: NodeOp, targets: &[String], ctx: &Ctx, deadline: Instant) -> StepResult {
        let mut nodes: Vec<String> = Vec::new();
        for t in targets {
            let t = self.render(t, ctx)?;
            for n in self.select(&t)? {
                if !nodes.contains(&n) {
                    nodes.push(n);
                }
            }
        }
        // One call per cluster object, with its nodes as targets, in a thread each.
        let mut by_cluster: Vec<(Arc<Cluster>, Vec<String>)> = Vec::new();
        for n in &nodes {
            let c = self.cluster_of(n).expect("selected nodes exist");
            match by_cluster.iter_mut().find(|(x, _)| Arc::ptr_eq(x, &c)) {
                Some((_, list)) => list.push(n.clone()),
                None => by_cluster.push((c, vec![n.clone()])),
            }
        }
        let (tx, rx) = mpsc::channel();
        let mut pending = 0;
        for (c, list) in by_cluster {
            let jobs: Vec<Vec<String>> = if op == NodeOp::Stop {
                vec![list]
            } else {
                list.into_iter().map(|n| vec![n]).collect()
            };
            for job in jobs {
                pending += 1;
                let (c, tx) = (c.clone(), tx.clone());
                std::thread::spawn(move || {
                    let r = match (op, job.as_slice()) {
                        (NodeOp::Stop, _) => c.stop_nodes(&job),
                        (NodeOp::Kill, [n]) => c.kill(n),
                        (NodeOp::Start, [n]) => c.start_node(n),
                        (NodeOp::Restart, [n]) => c.restart_node(n),
                        (NodeOp::Pause, [n]) => c.pause(n),
                        (NodeOp::Resume, [n]) => c.resume(n),
                        _ => Ok(vec![]),
                    };
                    let _ = tx.send((job, r));
                });
            }
        }
        for _ in 0..pending {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((_, Ok(_))) => {}
                Ok((job, Err(e))) => {
                    return Err(Failure {
                        message: format!("{} {}: {e}", op.name(), job.join(" ")),
                        nodes: job,
                    });
                }
                Err(_) => {
                    return Err(Failure {
                        message: format!(
                            "{} {} did not finish before the step's deadline",
                            op.name(),
                            nodes.join(" ")
                        ),
                        nodes,
                    });
                }
            }
        }
        Ok(Some(format!("{}: {}", op.name(), nodes.join(", "))))
    }

    fn wait(
        &self,
        until: WaitUntil,
        cluster: Option<&str>,
        capture: &Option<String>,
        deadline: Instant,
    ) -> StepResult {
        let left = deadline.saturating_duration_since(Instant::now());
        let clusters = self.clusters();
        match until {
            WaitUntil::Ready => {
                for c in &clusters {
                    if cluster.is_some_and(|n| !c.cluster_names().iter().any(|x| x == n)) {
                        continue;
                    }
                    c.wait_ready(cluster, left).map_err(|e| Failure {
                        message: e.to_string(),
                        nodes: vec![],
                    })?;
                }
                Ok(None)
            }
            WaitUntil::Leader => {
                let with_roles: Vec<(Arc<Cluster>, String)> = clusters
                    .iter()
                    .flat_map(|c| {
                        c.cluster_names()
                            .into_iter()
                            .filter(|n| c.has_role_probe(n))
                            .map(move |n| (c.clone(), n))
                    })
                    .collect();
                let (c, name) = match (cluster, with_roles.as_slice()) {
                    (Some(want), _) => match with_roles.iter().find(|(_, n)| n == want) {
                        Some(x) => x.clone(),
                        None => {
                            return fail(format!("no cluster `{want}` with a role probe is up"));
                        }
                    },
                    (None, [one]) => one.clone(),
                    (None, []) => {
                        return fail(
                            "no cluster that is up has a role probe, so no leader can be seen",
                        );
                    }
                    (None, _) => {
                        return fail(
                            "several clusters have a role probe: say which with `cluster = \"...\"`",
                        );
                    }
                };
                let leader = c.wait_leader(&name, left).map_err(|e| Failure {
                    message: e.to_string(),
                    nodes: c
                        .cluster_nodes(&name)
                        .iter()
                        .map(|n| n.name().to_string())
                        .collect(),
                })?;
                self.capture(capture, &leader);
                Ok(Some(format!("leader of {name}: {leader}")))
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one call site; the step's fields"
    )]
    fn converge(
        &self,
        script: &str,
        on: &[String],
        equals: Option<&str>,
        reference: Option<&str>,
        interval: Duration,
        ctx: &Ctx,
        deadline: Instant,
    ) -> Result<(String, String), Failure> {
        let mut nodes = Vec::new();
        if on.is_empty() {
            for d in self.descriptors() {
                nodes.extend(
                    d.nodes
                        .iter()
                        .filter(|n| n.pid.is_some())
                        .map(|n| n.name.clone()),
                );
            }
        } else {
            for t in on {
                let t = self.render(t, ctx)?;
                for n in self.select(&t)? {
                    if !nodes.contains(&n) {
                        nodes.push(n);
                    }
                }
            }
        }
        if nodes.is_empty() {
            return fail("no node to converge on");
        }
        if let Some(r) = reference
            && !nodes.iter().any(|n| n == r)
        {
            nodes.push(r.to_string());
        }
        let contexts: Vec<(String, Ctx)> = nodes
            .iter()
            .cloned()
            .zip(self.node_contexts(ctx, &nodes))
            .collect();
        let scripts: Vec<String> = contexts
            .iter()
            .map(|(_, c)| self.render(script, c))
            .collect::<Result<_, _>>()?;
        let mut rounds = 0;
        // The last round that ran to completion: what a failure reports, since a round cut
        // off by the deadline only says that it was cut off.
        let mut last_complete: Option<Vec<(String, Result<String, String>)>> = None;
        loop {
            rounds += 1;
            let round_started = Instant::now();
            let outputs: Vec<(String, Result<String, String>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = contexts
                    .iter()
                    .zip(&scripts)
                    .map(|((n, c), s)| {
                        scope.spawn(move || {
                            let r = match self.command(
                                &["bash".into(), "-c".into(), s.clone()],
                                c,
                                deadline,
                            ) {
                                Ok(o) if o.status == Some(0) => Ok(o.stdout.trim().to_string()),
                                Ok(o) => Err(format!(
                                    "exit status {:?}: {}",
                                    o.status,
                                    last_line(&o.stderr)
                                )),
                                Err(f) => Err(f.message),
                            };
                            (n.clone(), r)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("converge thread"))
                    .collect()
            });
            let target: Option<String> = match (equals, reference) {
                (Some(e), _) => Some(self.render(e, ctx)?),
                (None, Some(r)) => outputs
                    .iter()
                    .find(|(n, _)| n == r)
                    .and_then(|(_, o)| o.clone().ok()),
                (None, None) => None,
            };
            let values: Vec<&String> = outputs
                .iter()
                .filter_map(|(_, o)| o.as_ref().ok())
                .collect();
            let all_ok = values.len() == outputs.len();
            let agreed = all_ok
                && values.windows(2).all(|w| w[0] == w[1])
                && target
                    .as_ref()
                    .is_none_or(|t| values.first().is_some_and(|v| *v == t));
            if agreed {
                let value = values.first().map(|v| v.to_string()).unwrap_or_default();
                let summary = format!(
                    "{} nodes agree after {rounds} round(s): {}",
                    outputs.len(),
                    short(&value)
                );
                return Ok((value, summary));
            }
            let cut_off = Instant::now() >= deadline && round_started < deadline;
            if !cut_off || last_complete.is_none() {
                last_complete = Some(outputs.clone());
            }
            if Instant::now() + interval >= deadline || self.interrupt.level() > 0 {
                let outputs = last_complete.unwrap_or(outputs);
                let mut msg = format!(
                    "{} nodes did not agree within the deadline ({rounds} rounds)",
                    outputs.len()
                );
                if let Some(t) = &target {
                    msg.push_str(&format!("; expected: {}", short(t)));
                }
                msg.push_str("; last outputs:");
                for (n, o) in &outputs {
                    match o {
                        Ok(v) if v.is_empty() => msg.push_str(&format!("\n    {n}: (empty)")),
                        Ok(v) => msg.push_str(&format!("\n    {n}: {}", short(v))),
                        Err(e) => msg.push_str(&format!("\n    {n}: failed: {e}")),
                    }
                }
                return Err(Failure {
                    message: msg,
                    nodes,
                });
            }
            std::thread::sleep(interval);
        }
    }

    /// Runs a command in its own process group with the run's variables, until `deadline`.
    fn command(&self, argv: &[String], ctx: &Ctx, deadline: Instant) -> Result<Output, Failure> {
        let Some((program, args)) = argv.split_first() else {
            return fail("empty command");
        };
        let mut child = std::process::Command::new(program)
            .args(args)
            .envs(self.env(ctx))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| Failure {
                message: format!("cannot run `{program}`: {e}"),
                nodes: vec![],
            })?;
        let pid = child.id();
        let mut out_pipe = child.stdout.take().expect("stdout");
        let mut err_pipe = child.stderr.take().expect("stderr");
        let out_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = out_pipe.read_to_end(&mut s);
            s
        });
        let err_t = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = err_pipe.read_to_end(&mut s);
            s
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match rx.recv_timeout(slice) {
                Ok(s) => break Some(s),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline || self.interrupt.level() > 0 {
                        break None;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            }
        };
        let Some(status) = status else {
            crate::sys::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = rx.recv();
            let (o, e) = (
                out_t.join().unwrap_or_default(),
                err_t.join().unwrap_or_default(),
            );
            let why = if self.interrupt.level() > 0 {
                "interrupted"
            } else {
                "did not finish before the step's deadline"
            };
            return fail(format!(
                "`{}` {why}{}",
                short(&argv.join(" ")),
                tail_of(&String::from_utf8_lossy(&o), &String::from_utf8_lossy(&e))
            ));
        };
        // Whatever the command left in its group goes with it.
        crate::sys::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
        let status = status.map_err(|e| Failure {
            message: format!("waiting for `{program}`: {e}"),
            nodes: vec![],
        })?;
        Ok(Output {
            status: status.code(),
            stdout: String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned(),
            stderr: String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned(),
        })
    }

    /// Last lines of the logs of `nodes`; if none named, of nodes that exited unexpectedly.
    fn log_tails(&self, nodes: &[String]) -> Vec<(String, Vec<String>)> {
        let descriptors = self.descriptors();
        let all: Vec<_> = descriptors.iter().flat_map(|d| d.nodes.iter()).collect();
        let chosen: Vec<_> = if nodes.is_empty() {
            all.iter()
                .filter(|n| n.state == NodeState::Exited)
                .copied()
                .collect()
        } else {
            all.iter()
                .filter(|n| nodes.contains(&n.name))
                .copied()
                .collect()
        };
        chosen
            .into_iter()
            .take(6)
            .map(|n| (n.name.clone(), crate::probe::log_tail(&n.log, 10)))
            .collect()
    }
}

struct Output {
    status: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Expectations see output without its trailing newlines, so `^hello$` matches `hello\n`
/// (Rust's `$` does not match before a final newline).
fn check(out: &Output, expect: &Expect) -> Result<(), Failure> {
    let want = expect.status.unwrap_or(0);
    if out.status != Some(want) {
        let got = out.status.map_or("killed by a signal".to_string(), |c| {
            format!("exit status {c}")
        });
        return fail(format!(
            "{got}, expected {want}{}",
            tail_of(&out.stdout, &out.stderr)
        ));
    }
    for (what, re, text) in [
        ("stdout", &expect.stdout, &out.stdout),
        ("stderr", &expect.stderr, &out.stderr),
    ] {
        if let Some(re) = re
            && !regex::Regex::new(re).is_ok_and(|r| r.is_match(text.trim_end_matches(['\n', '\r'])))
        {
            let seen = if text.trim().is_empty() {
                format!(" ({what} was empty)")
            } else {
                String::new()
            };
            return fail(format!(
                "{what} does not match /{re}/{seen}{}",
                tail_of(&out.stdout, &out.stderr)
            ));
        }
    }
    Ok(())
}

fn last_line(s: &str) -> String {
    short(s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(""))
}

fn short(s: &str) -> String {
    let one: String = s.trim().replace('\n', "\\n");
    if one.chars().count() > 160 {
        format!("{}…", one.chars().take(160).collect::<String>())
    } else {
        one
    }
}

fn tail_of(stdout: &str, stderr: &str) -> String {
    let mut s = String::new();
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if !lines.is_empty() {
            s.push_str(&format!("\n  {name}:"));
            for l in &lines[lines.len().saturating_sub(5)..] {
                s.push_str(&format!("\n    | {}", short(l)));
            }
        }
    }
    s
}

/// `1.25s`, for reporters.
pub fn human(d: Duration) -> String {
    format_duration(d)
}
