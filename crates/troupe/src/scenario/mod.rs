//! Runs a scenario: its steps in order against real clusters, each with its deadline, then
//! its `finally` steps, whatever happened. Every outcome goes to one stream of events (for live
//! progress) and into one [`Report`] (for the summary, JSON and JUnit).
//!
//! The run loop is here; each kind of step is in `steps`, and commands and their output in
//! `output`. Commands run through the one command runner ([`crate::command`]) in their own
//! process groups, so a step that times out takes its whole command with it. Waiting steps
//! (`until`, `converge`, `wait`) poll a condition until their deadline; a failure says what
//! was last seen.
//!
//! A step's verdict is decided here, in one place: a false `when` skips it (saying why), a
//! failure skips the steps after it unless it (or the scenario) says `continue_on_failure`,
//! and `known_failure` turns a failure into an expected one and a pass into a failure of the
//! scenario. `[env]` parameters are resolved once, from the caller's environment, when the run
//! starts.

mod check;
mod output;
mod steps;
mod workloads;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use troupe_spec::scenario::{Scenario, Step};
use troupe_spec::{Descriptor, NodeState, format_duration};

use crate::cluster::Cluster;
use crate::engine::Interrupt;
use crate::report::{Report, StepReport, Verdict};
use crate::template::Templates;

pub use check::{check, load, load_with};

/// Options of one run.
pub struct RunOptions {
    /// Where the clusters' state directories go; default: a new temporary directory.
    pub run_dir: Option<PathBuf>,
    /// Keep the run directory after a passing run too.
    pub keep: bool,
    pub interrupt: Interrupt,
    /// Make this process a child subreaper while clusters run (see
    /// [`crate::ClusterBuilder::subreaper`]).
    pub subreaper: bool,
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
    let origin_unix_ms = crate::unix_ms();
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
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("troupe-run")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let mut step = StepReport::skipped("start the scenario's runtime");
            step.verdict = Verdict::Failed;
            step.error = Some(format!("cannot start a runtime: {e}"));
            return Report {
                name: scenario.name.clone(),
                verdict: Verdict::Failed,
                duration: started.elapsed(),
                steps: vec![step],
                finally: vec![],
                metrics: vec![],
                state_dir: None,
                interrupted: false,
                faults: vec![],
                workloads: vec![],
                timeline: crate::report::RunTimeline::default(),
            };
        }
    };
    let runner = Runner {
        rt,
        origin: started,
        workloads: Mutex::new(Vec::new()),
        marks: Mutex::new(Vec::new()),
        descriptors: Mutex::new(Vec::new()),
        dir: scenario.source.dir().to_path_buf(),
        run_dir: run_dir.clone(),
        clusters: Mutex::new(Vec::new()),
        vars: Mutex::new(BTreeMap::new()),
        ended: Mutex::new(HashMap::new()),
        metrics: Mutex::new(Vec::new()),
        faults: Mutex::new(Vec::new()),
        interrupt: opts.interrupt.clone(),
        subreaper: opts.subreaper,
        deadline: scenario
            .timeout
            .map(|t| crate::deadline::std_from(started, t)),
        templates: Templates::new(),
        params: scenario.params(|name| std::env::var(name).ok()),
        continue_on_failure: scenario.continue_on_failure,
        overrides: scenario.overrides.clone(),
        on_event,
    };
    let ctx = Ctx::default();
    let steps = runner.run_steps(&scenario.steps, &ctx, 0);
    let finally = runner.run_steps_all(&scenario.finally, &ctx, 0);
    let workloads = runner.finish_workloads();
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
        .any(|s| s.verdict.fails_scenario());
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
        workloads,
        timeline: crate::report::RunTimeline {
            origin_unix_ms,
            steps: runner.marks.lock().expect("marks").clone(),
            descriptors: runner.descriptors.lock().expect("descriptors").clone(),
        },
    }
}

/// Per-step template context beyond the global variables.
#[derive(Default, Clone)]
struct Ctx {
    node: Option<Json>,
    locals: BTreeMap<String, String>,
}

struct Runner<'a> {
    /// Runs commands (and their output readers) for every step thread.
    rt: tokio::runtime::Runtime,
    /// Time zero of the run, of its workloads' histories and of its timeline.
    origin: Instant,
    workloads: Mutex<Vec<workloads::Started>>,
    /// Top-level steps: name, start, end (ns since `origin`), passed.
    marks: Mutex<Vec<(String, u64, u64, bool)>>,
    /// Each cluster's descriptor as it went down.
    descriptors: Mutex<Vec<Descriptor>>,
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
    subreaper: bool,
    deadline: Option<Instant>,
    templates: Templates,
    /// The scenario's `[env]` parameters, resolved against the caller's environment.
    params: Vec<(String, String)>,
    /// The scenario's `continue_on_failure`.
    continue_on_failure: bool,
    /// `troupe run --set`.
    overrides: Vec<troupe_spec::overrides::Override>,
    on_event: &'a (dyn Fn(&Event) + Sync),
}

type StepResult = Result<Option<String>, Failure>;

/// The error of a step whose own work passed and a nested step failed.
pub const NESTED_FAILED: &str = "a nested step failed";

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
        env.extend(self.params.iter().cloned());
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
        // Every node of every cluster up, by name: `nodes[vars.NEW].addrs.client`.
        let descriptors = self.descriptors();
        c["nodes"] = descriptors
            .iter()
            .flat_map(|d| d.nodes.iter())
            .map(|n| (n.name.clone(), serde_json::to_value(n).expect("node json")))
            .collect::<serde_json::Map<_, _>>()
            .into();
        // Every cluster's roles now: `clusters.main.leader`, `clusters.main.leaders | length`.
        c["clusters"] = descriptors
            .iter()
            .flat_map(|d| d.clusters.iter())
            .map(|c| {
                (
                    c.name.clone(),
                    json!({"leader": c.leader, "leaders": c.leaders, "split_brains": c.split_brains}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
        self.templates.render(text, &c).map_err(|e| Failure {
            message: format!(
                "template error in `{text}`: {}{}",
                e.message,
                e.help.map(|h| format!(" ({h})")).unwrap_or_default()
            ),
            nodes: vec![],
        })
    }

    /// Steps in order; after a failure the rest are skipped, unless the failed step (or the
    /// scenario) says `continue_on_failure`; after an interrupt or the scenario's deadline,
    /// always.
    fn run_steps(&self, steps: &[Step], ctx: &Ctx, depth: usize) -> Vec<StepReport> {
        let mut out = Vec::new();
        let mut failed: Option<String> = None;
        for s in steps {
            let why = if self.interrupt.level() > 0 {
                Some("the run was interrupted".to_string())
            } else if self.past_deadline() {
                Some("the scenario's timeout passed".to_string())
            } else {
                failed.as_ref().map(|f| format!("`{f}` failed"))
            };
            if let Some(why) = why {
                out.push(StepReport::skipped_because(
                    &self.render(&s.name, ctx).unwrap_or_else(|_| s.name.clone()),
                    why,
                ));
                continue;
            }
            let r = self.run_step(s, ctx, depth);
            if r.verdict == Verdict::Failed && !(s.continue_on_failure || self.continue_on_failure)
            {
                failed = Some(r.name.clone());
            }
            out.push(r);
        }
        out
    }

    /// A step's `when`: whether it runs, or why its condition cannot be evaluated.
    fn condition(&self, expr: &str, ctx: &Ctx) -> Result<bool, Failure> {
        let wrapped = format!("{{% if {expr} %}}true{{% else %}}false{{% endif %}}");
        match self.render(&wrapped, ctx) {
            Ok(v) => Ok(v == "true"),
            Err(f) => fail(
                f.message
                    .replace(&format!("`{wrapped}`"), &format!("`when = \"{expr}\"`")),
            ),
        }
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
        let condition = step.when.as_ref().map(|w| (w, self.condition(w, ctx)));
        if let Some((w, Ok(false))) = &condition {
            let report = StepReport::skipped_because(&name, format!("when `{w}` is false"));
            (self.on_event)(&Event::StepEnded {
                depth,
                report: &report,
            });
            return report;
        }
        (self.on_event)(&Event::StepStarted { depth, name: &name });
        let started = Instant::now();
        let mut deadline = crate::deadline::std_from(started, step.timeout);
        if let Some(d) = self.deadline {
            deadline = deadline.min(d);
        }
        let mut children = Vec::new();
        let result = match condition {
            Some((_, Err(f))) => Err(f),
            _ => self.act(step, ctx, depth, deadline, &mut children),
        };
        let duration = started.elapsed();
        let child_failed = children.iter().any(|c| c.verdict.fails_scenario());
        // Measures only span steps that passed: a failed step's end says nothing.
        if result.is_ok() && !child_failed {
            self.ended
                .lock()
                .expect("ended")
                .insert(name.clone(), Instant::now());
        }
        let (mut verdict, mut error, detail, logs) = match result {
            Ok(detail) if !child_failed => (Verdict::Passed, None, detail, vec![]),
            Ok(_) => (
                Verdict::Failed,
                Some(NESTED_FAILED.to_string()),
                None,
                vec![],
            ),
            Err(f) => {
                let logs = self.log_tails(&f.nodes);
                (Verdict::Failed, Some(f.message), None, logs)
            }
        };
        if let Some(reason) = &step.known_failure {
            if verdict == Verdict::Failed {
                verdict = Verdict::ExpectedFailure;
            } else {
                verdict = Verdict::UnexpectedPass;
                error = Some(format!(
                    "passed, but it is marked as a known failure ({reason}): the known failure seems fixed; remove `known_failure` from the step"
                ));
            }
        }
        if depth == 0 {
            let ns = |t: Instant| t.saturating_duration_since(self.origin).as_nanos() as u64;
            self.marks.lock().expect("marks").push((
                name.clone(),
                ns(started),
                ns(Instant::now()),
                verdict == Verdict::Passed,
            ));
        }
        let report = StepReport {
            name,
            verdict,
            duration,
            error,
            known_failure: step.known_failure.clone(),
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

    fn capture(&self, name: &Option<String>, value: &str) {
        if let Some(n) = name {
            self.vars
                .lock()
                .expect("vars")
                .insert(n.clone(), value.trim().to_string());
        }
    }

    fn up(&self, specs: &[String], set: &[String], ctx: &Ctx) -> StepResult {
        let mut started = Vec::new();
        let own: Vec<String> = set
            .iter()
            .map(|kv| self.render(kv, ctx))
            .collect::<Result<_, _>>()?;
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
            // `troupe run --set` where the spec has the key's cluster, then the step's own.
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut builder = Cluster::builder(&path);
            for o in self.overrides.iter().filter(|o| o.applies_to(&text)) {
                builder = builder.set(o.text());
            }
            for kv in &own {
                builder = builder.set(kv.clone());
            }
            let cluster = builder
                .state_dir(&state)
                .interrupt(self.interrupt.clone())
                .subreaper(self.subreaper)
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
            let n = cluster.nodes().len();
            started.push(format!(
                "{} ({n} node{})",
                cluster.name(),
                if n == 1 { "" } else { "s" }
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
            self.descriptors
                .lock()
                .expect("descriptors")
                .push(c.descriptor());
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

/// `1.25s`, for reporters.
pub fn human(d: Duration) -> String {
    format_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a scenario of shell steps (no cluster) from `files` in a scratch directory, the
    /// scenario in `s.toml`.
    fn run_files(files: &[(&str, &str)]) -> Report {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let scenario = load(&dir.path().join("s.toml")).unwrap_or_else(|e| panic!("{e:?}"));
        let opts = RunOptions {
            run_dir: Some(dir.path().join("run")),
            keep: false,
            interrupt: Interrupt::new(),
            subreaper: false,
        };
        run(&scenario, opts, &|_| {})
    }

    fn verdicts(steps: &[StepReport]) -> Vec<(&str, &'static str)> {
        steps
            .iter()
            .map(|s| (s.name.as_str(), s.verdict.as_str()))
            .collect()
    }

    #[test]
    fn a_false_condition_skips_the_step_and_says_why_and_parameters_reach_commands() {
        let r = run_files(&[(
            "s.toml",
            r#"[env]
SCENARIO_TEST_VARIANT_7F3 = "plain"
[[step]]
name = "mtls only"
when = "env.SCENARIO_TEST_VARIANT_7F3 == 'mtls'"
sh = "false"
[[step]]
name = "plain only"
when = "env.SCENARIO_TEST_VARIANT_7F3 == 'plain'"
sh = "test \"$SCENARIO_TEST_VARIANT_7F3\" = plain"
[[step]]
name = "in a template"
sh = "echo {{ env.SCENARIO_TEST_VARIANT_7F3 }}"
expect = { stdout = '^plain$' }
"#,
        )]);
        assert_eq!(
            verdicts(&r.steps),
            [
                ("mtls only", "skipped"),
                ("plain only", "passed"),
                ("in a template", "passed")
            ],
            "{r:#?}"
        );
        assert_eq!(
            r.steps[0].detail.as_deref(),
            Some("when `env.SCENARIO_TEST_VARIANT_7F3 == 'mtls'` is false")
        );
        assert_eq!(r.verdict, Verdict::Passed);
        assert_eq!(r.counts().summary(), "2 passed, 1 skipped");
    }

    #[test]
    fn a_condition_that_cannot_be_evaluated_fails_its_step_and_names_it() {
        let r = run_files(&[(
            "s.toml",
            r#"[[step]]
name = "bad condition"
when = "1 // 0 == 1"
sh = "true"
"#,
        )]);
        assert_eq!(verdicts(&r.steps), [("bad condition", "failed")]);
        let e = r.steps[0].error.as_deref().unwrap();
        assert!(e.contains("`when = \"1 // 0 == 1\"`"), "{e}");
    }

    #[test]
    fn a_known_failure_that_fails_is_expected_and_one_that_passes_fails_the_scenario() {
        let r = run_files(&[(
            "s.toml",
            r#"[[step]]
name = "stale read"
known_failure = "stale read after restart (https://example.com/42)"
sh = "exit 3"
[[step]]
name = "after it"
sh = "true"
"#,
        )]);
        assert_eq!(
            verdicts(&r.steps),
            [("stale read", "expected-failure"), ("after it", "passed")]
        );
        assert_eq!(r.verdict, Verdict::Passed, "an expected failure passes");
        assert!(
            r.steps[0]
                .error
                .as_deref()
                .unwrap()
                .contains("exit status 3")
        );

        let r = run_files(&[(
            "s.toml",
            r#"[[step]]
name = "fixed now"
known_failure = "flaky (https://example.com/7)"
sh = "true"
[[step]]
name = "after it"
sh = "true"
"#,
        )]);
        assert_eq!(
            verdicts(&r.steps),
            [("fixed now", "unexpected-pass"), ("after it", "passed")]
        );
        assert_eq!(r.verdict, Verdict::Failed);
        assert_eq!(r.failed_step().unwrap().name, "fixed now");
        assert!(
            r.steps[0]
                .error
                .as_deref()
                .unwrap()
                .contains("the known failure seems fixed"),
            "{:?}",
            r.steps[0].error
        );
        assert_eq!(r.counts().unexpected_passes, 1);
    }

    #[test]
    fn continue_on_failure_runs_and_reports_every_remaining_step() {
        let r = run_files(&[(
            "s.toml",
            r#"[[step]]
name = "fails but goes on"
continue_on_failure = true
sh = "false"
[[step]]
name = "still runs"
sh = "true"
[[step]]
name = "fails and stops"
sh = "false"
[[step]]
name = "never runs"
sh = "true"
"#,
        )]);
        assert_eq!(
            verdicts(&r.steps),
            [
                ("fails but goes on", "failed"),
                ("still runs", "passed"),
                ("fails and stops", "failed"),
                ("never runs", "skipped")
            ]
        );
        assert_eq!(
            r.steps[3].detail.as_deref(),
            Some("`fails and stops` failed")
        );
        assert_eq!(r.verdict, Verdict::Failed);
        assert_eq!(r.failed_step().unwrap().name, "fails but goes on");

        // Scenario-wide, nested steps included.
        let r = run_files(&[(
            "s.toml",
            r#"continue_on_failure = true
[[step]]
name = "rounds"
repeat = 3
[[step.steps]]
name = "round {{ vars.ITERATION }}"
sh = "test {{ vars.ITERATION }} != 2"
[[step]]
name = "after"
sh = "true"
"#,
        )]);
        assert_eq!(
            verdicts(&r.steps[0].children),
            [
                ("round 1", "passed"),
                ("round 2", "failed"),
                ("round 3", "passed")
            ]
        );
        assert_eq!(
            verdicts(&r.steps),
            [("rounds", "failed"), ("after", "passed")]
        );
        assert_eq!(r.counts().summary(), "3 passed, 1 failed");
    }

    #[test]
    fn included_steps_run_in_place_and_a_limited_parallel_step_runs_them_all() {
        let r = run_files(&[
            (
                "s.toml",
                r#"[[step]]
name = "before"
sh = "echo one"
capture = "ONE"
[[step]]
include = "common.toml"
[[step]]
name = "skipped include"
include = "common.toml"
when = "vars.ONE == 'two'"
[[step]]
name = "limited"
parallel = true
repeat = 6
max_parallel = 2
[[step.steps]]
name = "n{{ vars.ITERATION }}"
sh = "true"
"#,
            ),
            (
                "common.toml",
                r#"[[step]]
name = "shared"
sh = "test {{ vars.ONE }} = one"
"#,
            ),
        ]);
        assert_eq!(
            verdicts(&r.steps),
            [
                ("before", "passed"),
                ("include common.toml", "passed"),
                ("skipped include", "skipped"),
                ("limited", "passed")
            ],
            "{r:#?}"
        );
        assert_eq!(verdicts(&r.steps[1].children), [("shared", "passed")]);
        assert_eq!(r.steps[3].children.len(), 6);
    }
}
