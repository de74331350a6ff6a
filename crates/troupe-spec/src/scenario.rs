//! Scenario files: ordered, named steps with deadlines, `[[measure]]` metrics and `[[finally]]`
//! steps (see docs/scenarios.md). Parsed and validated like specs, with the same errors.
//!
//! A scenario may declare `[env]` parameters; a step may carry a `when` condition,
//! `continue_on_failure` and `known_failure`, and an `include` step reads another file's steps
//! here, at load time, so that every later stage sees one tree of steps, each remembering the
//! file it was written in.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::control::Fault;
use crate::diag::{InvalidSpec, SpecSource};
use crate::duration::parse_duration;
use crate::fault::{self, Degrade, Percent, Rate};
use crate::load::{Validator, toml_error};
use crate::model::Spanned;

/// A whole scenario.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Scenario {
    pub name: String,
    pub source: SpecSource,
    pub timeout: Option<Duration>,
    /// Parameters from the `[env]` table: the caller's environment overrides each default.
    pub env: Vec<Param>,
    /// After a failed step, run the remaining steps anyway (every step's
    /// `continue_on_failure`).
    pub continue_on_failure: bool,
    pub steps: Vec<Step>,
    pub finally: Vec<Step>,
    pub measures: Vec<Measure>,
    /// `troupe run --set KEY=VALUE`: applied to every spec the scenario brings up that has the
    /// key's cluster (before each `up` step's own `set`).
    pub overrides: Vec<crate::overrides::Override>,
}

/// A parameter declared in the scenario's `[env]` table: `VARIANT = "plain"`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Param {
    pub name: String,
    pub default: String,
}

impl Scenario {
    /// Each declared parameter's value: `lookup(name)` (the caller's environment) if set,
    /// else its default. Undeclared variables are never read.
    pub fn params(&self, lookup: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|p| (p.name.clone(), lookup(&p.name).unwrap_or(p.default.clone())))
            .collect()
    }
}

/// One step.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Step {
    /// A template (nested steps may name themselves after `node.name` or `vars.ITERATION`).
    pub name: String,
    pub timeout: Duration,
    pub kind: StepKind,
    /// A minijinja expression (`env.VARIANT == 'mtls'`): when false the step is skipped.
    pub when: Option<String>,
    /// After this step fails, run the remaining steps anyway.
    pub continue_on_failure: bool,
    /// The step is expected to fail, for this reason (a bug link): failing is its
    /// `expected-failure` verdict, passing an `unexpected-pass` that fails the scenario.
    pub known_failure: Option<String>,
    /// Where the step is written: `span` is in this file (an included file's steps point into
    /// it).
    pub source: SpecSource,
    pub span: Range<usize>,
}

/// What a step does.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StepKind {
    /// Bring up specs (paths relative to the scenario), with `set = ["KEY=VALUE", ...]`
    /// overrides (templates) applied to each.
    Up {
        specs: Vec<String>,
        set: Vec<String>,
    },
    /// Stop every cluster the scenario brought up.
    Down,
    /// A node operation on targets.
    Op { op: NodeOp, targets: Vec<String> },
    /// A shell command (`bash -c`).
    Sh {
        script: String,
        expect: Expect,
        capture: Option<String>,
    },
    /// A program and its arguments, no shell.
    Exec {
        argv: Vec<String>,
        expect: Expect,
        capture: Option<String>,
    },
    /// Wait until every node is ready, or a cluster has a leader (captured if asked).
    Wait {
        until: WaitUntil,
        cluster: Option<String>,
        capture: Option<String>,
    },
    /// A shell command retried until it passes its expectations (its stdout then captured if
    /// asked).
    Until {
        script: String,
        expect: Expect,
        interval: Duration,
        capture: Option<String>,
    },
    /// The same shell command on every node of `on`, until all outputs agree.
    Converge {
        script: String,
        on: Vec<String>,
        equals: Option<String>,
        reference: Option<String>,
        interval: Duration,
        /// The value every node agreed on.
        capture: Option<String>,
    },
    /// The nested steps once per node of `target`, with `node` set.
    ForEach {
        target: String,
        parallel: bool,
        /// With `parallel`, at most this many at a time.
        max_parallel: Option<u32>,
        steps: Vec<Step>,
    },
    /// The nested steps `times` times, with `vars.ITERATION` = 1..times.
    Repeat {
        times: u32,
        parallel: bool,
        /// With `parallel`, at most this many at a time.
        max_parallel: Option<u32>,
        steps: Vec<Step>,
    },
    /// The nested steps at the same time (at most `max_parallel` at a time).
    Parallel {
        steps: Vec<Step>,
        max_parallel: Option<u32>,
    },
    /// The steps of another file (`path` as written, relative to the including file), in
    /// place.
    Include { path: String, steps: Vec<Step> },
    /// A fixed pause (discouraged: wait on a condition instead).
    Sleep(Duration),
    /// A network fault on targets (isolate, degrade); targets are templates.
    Fault(crate::control::Fault),
    /// A partition, `"a | b c"` (a template: parsed once rendered).
    Partition {
        text: String,
        bridge: Option<String>,
    },
    /// A cut, `"a -> b"` or `"a <-> b"` (a template: parsed once rendered).
    Cut { text: String },
    /// A reset of the links `"a -> b"` (link proxies; a template).
    Reset { text: String },
    /// Undo the fault with this id (`heal = 2`: faults are numbered from 1 in the order they
    /// were injected), or every fault (`heal = true`, `id` absent).
    Heal { id: Option<u32> },
    /// Concurrent clients recording a history while the following steps run; see
    /// [`crate::workload`].
    Workload(Box<crate::workload::WorkloadSpec>),
    /// Wait for the named workload (or every one) to end, then check its history with its
    /// model's checker.
    Verify { workload: Option<String> },
    /// End the named workload (or every one) now.
    EndWorkload { workload: Option<String> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeOp {
    Kill,
    Stop,
    Start,
    Restart,
    Pause,
    Resume,
}

impl NodeOp {
    pub fn name(self) -> &'static str {
        match self {
            NodeOp::Kill => "kill",
            NodeOp::Stop => "stop",
            NodeOp::Start => "start",
            NodeOp::Restart => "restart",
            NodeOp::Pause => "pause",
            NodeOp::Resume => "resume",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitUntil {
    Ready,
    Leader,
}

/// What a command must show to pass.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Expect {
    /// Exit status (default 0).
    pub status: Option<i32>,
    /// Regexes.
    pub stdout: Option<String>,
    pub stderr: Option<String>,
}

/// A metric: from the end of one step to the end of another.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Measure {
    pub name: String,
    pub from: String,
    pub to: String,
}

/// A string or a list of strings.
#[derive(Debug, Clone)]
struct OneOrMany(Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    env: Option<Spanned<indexmap::IndexMap<String, Spanned<toml::Value>>>>,
    continue_on_failure: Option<Spanned<bool>>,
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
    #[serde(default)]
    finally: Vec<Spanned<RawStep>>,
    #[serde(default)]
    measure: Vec<Spanned<RawMeasure>>,
}

/// A file of shared steps, for `include`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInclude {
    #[serde(default)]
    step: Vec<Spanned<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMeasure {
    name: Spanned<String>,
    from: Spanned<String>,
    to: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    status: Option<i32>,
    stdout: Option<Spanned<String>>,
    stderr: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStep {
    name: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    when: Option<Spanned<String>>,
    continue_on_failure: Option<Spanned<bool>>,
    known_failure: Option<Spanned<String>>,
    include: Option<Spanned<String>>,
    max_parallel: Option<Spanned<i64>>,
    up: Option<Spanned<OneOrMany>>,
    set: Option<Vec<Spanned<String>>>,
    down: Option<Spanned<bool>>,
    kill: Option<Spanned<OneOrMany>>,
    stop: Option<Spanned<OneOrMany>>,
    start: Option<Spanned<OneOrMany>>,
    restart: Option<Spanned<OneOrMany>>,
    pause: Option<Spanned<OneOrMany>>,
    resume: Option<Spanned<OneOrMany>>,
    sh: Option<Spanned<String>>,
    exec: Option<Spanned<Vec<String>>>,
    expect: Option<Spanned<RawExpect>>,
    capture: Option<Spanned<String>>,
    wait: Option<Spanned<String>>,
    cluster: Option<Spanned<String>>,
    until: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    converge: Option<Spanned<String>>,
    on: Option<Spanned<OneOrMany>>,
    equals: Option<Spanned<String>>,
    reference: Option<Spanned<String>>,
    for_each: Option<Spanned<String>>,
    repeat: Option<Spanned<i64>>,
    parallel: Option<Spanned<bool>>,
    #[serde(default)]
    steps: Vec<Spanned<RawStep>>,
    sleep: Option<Spanned<String>>,
    partition: Option<Spanned<String>>,
    bridge: Option<Spanned<String>>,
    isolate: Option<Spanned<OneOrMany>>,
    host: Option<Spanned<bool>>,
    cut: Option<Spanned<String>>,
    reset: Option<Spanned<String>>,
    degrade: Option<Spanned<OneOrMany>>,
    delay: Option<Spanned<String>>,
    jitter: Option<Spanned<String>>,
    loss: Option<Spanned<toml::Value>>,
    rate: Option<Spanned<String>>,
    /// `true`, or a fault id; checked in [`heal`].
    heal: Option<Spanned<toml::Value>>,
    workload: Option<Spanned<crate::workload::RawWorkload>>,
    /// `true` (every workload) or a workload step's name.
    verify: Option<Spanned<toml::Value>>,
    end_workload: Option<Spanned<toml::Value>>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Scenario {
    pub fn from_path(path: impl AsRef<Path>) -> Result<Scenario, InvalidSpec> {
        let path = path.as_ref();
        let text = crate::load::read_text(
            path,
            "scenario",
            "check the path; scenarios are TOML files such as examples/etcd-kv/scenario.toml",
        )?;
        Scenario::from_str(path, &text)
    }

    #[allow(
        clippy::should_implement_trait,
        reason = "needs a path as well as the text"
    )]
    pub fn from_str(path: impl AsRef<Path>, text: &str) -> Result<Scenario, InvalidSpec> {
        let src = SpecSource::new(path.as_ref(), text);
        let raw: RawScenario = toml::from_str(text).map_err(|e| toml_error(&src, &e))?;
        let mut v = Validator {
            src: &src,
            errors: Vec::new(),
        };
        let name = raw
            .name
            .map(Spanned::into_inner)
            .or_else(|| {
                let stem = src.path.file_stem()?.to_string_lossy().into_owned();
                if stem != "scenario" {
                    return Some(stem);
                }
                // `scenario.toml` is named after its directory (made absolute, so that
                // `troupe run scenario.toml` from inside it gets the same name).
                let abs = std::path::absolute(&src.path).ok()?;
                Some(abs.parent()?.file_name()?.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "scenario".into());
        let timeout = raw.timeout.as_ref().and_then(|t| v.positive(t));
        let env = raw.env.map(|e| params(&mut v, e)).unwrap_or_default();
        let continue_on_failure = raw.continue_on_failure.is_some_and(Spanned::into_inner);
        if raw.step.is_empty() {
            v.err(
                0..0,
                "the scenario has no steps",
                "add [[step]] tables, e.g. [[step]] name = \"up\" up = \"cluster.toml\"",
            );
        }
        let chain = [(src.path.display().to_string(), identity(&src.path))];
        let steps = steps_of(&mut v, raw.step, &chain);
        let finally = steps_of(&mut v, raw.finally, &chain);
        check_workloads(&mut v, &[&steps, &finally]);
        let mut measures = Vec::new();
        for m in raw.measure {
            let m = m.into_inner();
            for end in [&m.from, &m.to] {
                if !contains_step(&steps, end.get_ref()) && !contains_step(&finally, end.get_ref())
                {
                    let mut names = Vec::new();
                    all_names(&steps, &mut names);
                    all_names(&finally, &mut names);
                    let hint = match crate::suggest(end.get_ref(), names.iter().map(String::as_str))
                    {
                        Some(s) => format!("did you mean `{s}`? "),
                        None => String::new(),
                    };
                    v.err(end.span(), format!("no step is named `{}`", end.get_ref()), format!("{hint}a measure runs from the end of one named step to the end of another"));
                }
            }
            measures.push(Measure {
                name: m.name.into_inner(),
                from: m.from.into_inner(),
                to: m.to.into_inner(),
            });
        }
        if v.errors.is_empty() {
            Ok(Scenario {
                name,
                source: src.clone(),
                timeout,
                env,
                continue_on_failure,
                steps,
                finally,
                measures,
                overrides: Vec::new(),
            })
        } else {
            Err(InvalidSpec {
                file: src.path.clone(),
                errors: v.errors,
            })
        }
    }
}

impl StepKind {
    /// The nested steps of a `for_each`, `repeat`, `parallel` or `include` step.
    pub fn nested(&self) -> &[Step] {
        match self {
            StepKind::ForEach { steps, .. }
            | StepKind::Repeat { steps, .. }
            | StepKind::Parallel { steps, .. }
            | StepKind::Include { steps, .. } => steps,
            _ => &[],
        }
    }
}

fn contains_step(steps: &[Step], name: &str) -> bool {
    steps
        .iter()
        .any(|s| s.name == name || contains_step(s.kind.nested(), name))
}

fn all_names(steps: &[Step], out: &mut Vec<String>) {
    for s in steps {
        out.push(s.name.clone());
        all_names(s.kind.nested(), out);
    }
}

/// The files being read, outermost first: as written (for messages) and as identities (to see
/// a cycle).
type Chain<'c> = &'c [(String, PathBuf)];

/// A file's identity, whatever path reaches it.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The `[env]` table: names that can be environment variables, string defaults.
fn params(
    v: &mut Validator<'_>,
    table: Spanned<indexmap::IndexMap<String, Spanned<toml::Value>>>,
) -> Vec<Param> {
    let mut out = Vec::new();
    for (name, value) in table.into_inner() {
        let at = crate::diag::key_span(
            &v.src.text,
            &format!("env.{}", crate::diag::quote_key(&name)),
        )
        .unwrap_or_else(|| value.span());
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            v.err(
                at,
                format!("`{name}` cannot be an environment variable's name"),
                "use letters, digits and `_`, not starting with a digit, e.g. VARIANT = \"plain\"",
            );
            continue;
        }
        if name.starts_with("TROUPE_") || name == "PATH" {
            v.err(
                at,
                format!("`{name}` is troupe's own variable"),
                "TROUPE_* variables describe the clusters (see `troupe env`) and PATH finds `troupe`: choose another name for the parameter",
            );
            continue;
        }
        match value.get_ref() {
            toml::Value::String(s) => out.push(Param {
                name,
                default: s.clone(),
            }),
            other => v.err(
                value.span(),
                format!(
                    "expected a string as the default of `{name}`, found {}",
                    describe(other)
                ),
                format!(
                    "environment variables are strings: quote it, e.g. {name} = \"{}\"",
                    match other {
                        toml::Value::String(s) => s.clone(),
                        toml::Value::Integer(i) => i.to_string(),
                        toml::Value::Boolean(b) => b.to_string(),
                        toml::Value::Float(f) => f.to_string(),
                        _ => "value".to_string(),
                    }
                ),
            ),
        }
    }
    out
}

/// An `include` step's steps, read from the file it names (relative to the including file).
fn include(v: &mut Validator<'_>, at: &Spanned<String>, chain: Chain<'_>) -> Option<Vec<Step>> {
    let written = at.get_ref();
    if written.contains("{{") || written.contains("{%") {
        v.err(
            at.span(),
            format!("`{written}`: an include path cannot be a template"),
            "included steps are read before the run: include each variant in a step of its own and choose with `when`, e.g. when = \"env.VARIANT == 'mtls'\"",
        );
        return None;
    }
    let path = v.src.dir().join(written);
    let id = identity(&path);
    if chain.iter().any(|(_, c)| *c == id) {
        let mut names: Vec<&str> = chain.iter().map(|(n, _)| n.as_str()).collect();
        let shown = path.display().to_string();
        names.push(&shown);
        v.err(
            at.span(),
            format!("include cycle: {}", names.join(" → ")),
            "an included file cannot include a file that includes it: move the shared steps into a file of their own",
        );
        return None;
    }
    if !path.is_file() {
        // A misspelt file name: the TOML files beside where it was looked for.
        let beside: Vec<String> = path
            .parent()
            .and_then(|d| std::fs::read_dir(d).ok())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        let wanted = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hint = crate::suggest(&wanted, beside.iter().map(String::as_str))
            .map(|s| {
                let fixed = Path::new(written).with_file_name(s);
                format!("did you mean include = \"{}\"? ", fixed.display())
            })
            .unwrap_or_default();
        v.err(
            at.span(),
            format!("{} does not exist", path.display()),
            format!("{hint}include paths are relative to the file that includes them, e.g. include = \"common.toml\" beside it"),
        );
        return None;
    }
    let text = match crate::load::read_text(
        &path,
        "step list",
        "an included file holds [[step]] tables",
    ) {
        Ok(t) => t,
        Err(e) => {
            v.errors.extend(e.errors);
            return None;
        }
    };
    let src = SpecSource::new(&path, text.as_str());
    let raw: RawInclude = match toml::from_str(&text) {
        Ok(r) => r,
        Err(e) => {
            v.errors.push(toml_error(&src, &e));
            return None;
        }
    };
    let mut inner = Validator {
        src: &src,
        errors: Vec::new(),
    };
    if raw.step.is_empty() {
        inner.err(
            0..0,
            "the included file has no steps",
            "an included file holds [[step]] tables, e.g. [[step]] name = \"check\" sh = \"true\"",
        );
    }
    let mut chain = chain.to_vec();
    chain.push((path.display().to_string(), id));
    let steps = steps_of(&mut inner, raw.step, &chain);
    v.errors.extend(inner.errors);
    Some(steps)
}

fn steps_of(v: &mut Validator<'_>, raw: Vec<Spanned<RawStep>>, chain: Chain<'_>) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for r in raw {
        if let Some(s) = step(v, r, chain) {
            if out.iter().any(|o| o.name == s.name) {
                v.err(
                    s.span.clone(),
                    format!("two steps are named `{}`", s.name),
                    "give each step a name of its own: reports and measures refer to steps by name",
                );
            }
            out.push(s);
        }
    }
    out
}

fn step(v: &mut Validator<'_>, raw: Spanned<RawStep>, chain: Chain<'_>) -> Option<Step> {
    let span = raw.span();
    let mut r = raw.into_inner();
    // An include is named after its file unless it says otherwise.
    let default_name = r
        .include
        .as_ref()
        .map(|i| format!("include {}", i.get_ref()));
    let Some(name) = r.name.take().map(Spanned::into_inner).or(default_name) else {
        v.err(
            span.clone(),
            "this step has no name",
            "add `name = \"...\"`: reports, failures and measures refer to steps by name",
        );
        return None;
    };
    check_options(v, &r);
    let when = r.when.as_ref().and_then(|w| {
        if w.get_ref().trim().is_empty() {
            v.err(
                w.span(),
                "the condition is empty",
                "write an expression, e.g. when = \"env.VARIANT == 'mtls'\", or remove `when`",
            );
            return None;
        }
        if w.get_ref().contains("{{") || w.get_ref().contains("{%") {
            v.err(
                w.span(),
                "`when` is an expression, not a template",
                "write it without braces, e.g. when = \"env.VARIANT == 'mtls'\"",
            );
            return None;
        }
        Some(w.get_ref().clone())
    });
    let known_failure = r.known_failure.as_ref().and_then(|k| {
        if k.get_ref().trim().is_empty() {
            v.err(
                k.span(),
                "a known failure needs a reason",
                "say why the step fails and where the bug is tracked, e.g. known_failure = \"stale read after restart (https://example.com/issues/42)\"",
            );
            return None;
        }
        Some(k.get_ref().clone())
    });
    let continue_on_failure = r.continue_on_failure.as_ref().is_some_and(|c| *c.get_ref());
    let timeout = match &r.timeout {
        Some(t) => v.positive(t)?,
        None => DEFAULT_TIMEOUT,
    };
    let op = |o: &Option<Spanned<OneOrMany>>, op: NodeOp| {
        o.as_ref().map(|t| (op, t.get_ref().0.clone()))
    };
    let ops: Vec<(NodeOp, Vec<String>)> = [
        op(&r.kill, NodeOp::Kill),
        op(&r.stop, NodeOp::Stop),
        op(&r.start, NodeOp::Start),
        op(&r.restart, NodeOp::Restart),
        op(&r.pause, NodeOp::Pause),
        op(&r.resume, NodeOp::Resume),
    ]
    .into_iter()
    .flatten()
    .collect();
    let container = r.for_each.is_some()
        || r.repeat.is_some()
        || r.parallel.as_ref().is_some_and(|p| *p.get_ref());
    let leaf_kinds = [
        ("up", r.up.is_some()),
        ("down", r.down.as_ref().is_some_and(|d| *d.get_ref())),
        ("kill/stop/start/restart/pause/resume", !ops.is_empty()),
        ("sh", r.sh.is_some()),
        ("exec", r.exec.is_some()),
        ("wait", r.wait.is_some()),
        ("until", r.until.is_some()),
        ("converge", r.converge.is_some()),
        ("sleep", r.sleep.is_some()),
        ("partition", r.partition.is_some()),
        ("isolate", r.isolate.is_some()),
        ("cut", r.cut.is_some()),
        ("reset", r.reset.is_some()),
        ("degrade", r.degrade.is_some()),
        (
            "heal",
            r.heal
                .as_ref()
                .is_some_and(|h| !matches!(h.get_ref(), toml::Value::Boolean(false))),
        ),
        ("workload", r.workload.is_some()),
        ("verify", r.verify.is_some()),
        ("end_workload", r.end_workload.is_some()),
        ("include", r.include.is_some()),
    ];
    let set: Vec<&str> = leaf_kinds
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect();
    let kinds_help = "a step is one of: up, down, kill/stop/start/restart/pause/resume, sh, exec, wait, until, converge, sleep, partition/isolate/cut/degrade/heal, workload/verify/end_workload, include, or for_each/repeat/parallel with nested [[step.steps]]";
    if ops.len() > 1 {
        v.err(
            span.clone(),
            format!("step `{name}` has {} node operations", ops.len()),
            "use one step per operation",
        );
        return None;
    }
    if container {
        if !set.is_empty() {
            v.err(
                span.clone(),
                format!(
                    "step `{name}` has nested steps and also `{}`",
                    set.join("`, `")
                ),
                "move the action into a [[step.steps]] table",
            );
            return None;
        }
        if r.steps.is_empty() {
            v.err(
                span.clone(),
                format!("step `{name}` runs nested steps but has none"),
                "add [[step.steps]] tables under it",
            );
            return None;
        }
    } else if set.len() != 1 {
        let msg = if set.is_empty() {
            format!("step `{name}` does nothing")
        } else {
            format!("step `{name}` does several things: {}", set.join(", "))
        };
        v.err(span.clone(), msg, kinds_help);
        return None;
    } else if !r.steps.is_empty() {
        v.err(span.clone(), format!("step `{name}` has nested steps but is not for_each, repeat or parallel"), "add `parallel = true`, `repeat = N` or `for_each = \"CLUSTER\"`, or move the nested steps up");
        return None;
    }
    let parallel = r.parallel.as_ref().is_some_and(|p| *p.get_ref());
    let max_parallel = r.max_parallel.as_ref().and_then(|m| {
        if !parallel {
            v.err(
                m.span(),
                "`max_parallel` only applies to a step with `parallel = true`",
                "add parallel = true (with repeat, for_each or nested steps), or remove max_parallel",
            );
            return None;
        }
        match u32::try_from(*m.get_ref()) {
            Ok(n @ 1..=100_000) => Some(n),
            _ => {
                v.err(
                    m.span(),
                    format!("`max_parallel` needs a count from 1 to 100000, found {}", m.get_ref()),
                    "e.g. max_parallel = 4: at most 4 of the nested runs at a time",
                );
                None
            }
        }
    });
    let expect = match r.expect.take() {
        Some(e) => {
            let e = e.into_inner();
            // A regex with a template in it is checked once rendered, when the step runs.
            let regex = |v: &mut Validator<'_>, s: &Spanned<String>| {
                if s.get_ref().contains("{{") {
                    Some(s.get_ref().clone())
                } else {
                    v.regex(s)
                }
            };
            let stdout = e.stdout.as_ref().and_then(|s| regex(v, s));
            let stderr = e.stderr.as_ref().and_then(|s| regex(v, s));
            Expect {
                status: e.status,
                stdout,
                stderr,
            }
        }
        None => Expect::default(),
    };
    let interval = |v: &mut Validator<'_>, default: u64| match &r.interval {
        Some(i) => v.positive(i),
        None => Some(Duration::from_millis(default)),
    };
    let capture = r.capture.as_ref().map(|c| c.get_ref().clone());
    if let Some(c) = &r.capture {
        let ok = !c.get_ref().is_empty()
            && c.get_ref()
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !c.get_ref().starts_with(|ch: char| ch.is_ascii_digit());
        if !ok {
            v.err(c.span(), format!("`{}` cannot be a variable name", c.get_ref()), "use letters, digits and `_`, e.g. capture = \"LEADER\"; it becomes $LEADER in later shell steps");
        }
        if r.sh.is_none()
            && r.exec.is_none()
            && r.wait.is_none()
            && r.until.is_none()
            && r.converge.is_none()
        {
            v.err(
                c.span(),
                "only `sh`, `exec`, `until`, `converge` and `wait` steps can capture",
                "capture a command's output, the value nodes converged on, or the leader's name",
            );
        }
    }
    let kind = if let Some(target) = r.for_each {
        StepKind::ForEach {
            target: target.into_inner(),
            parallel,
            max_parallel,
            steps: steps_of(v, r.steps, chain),
        }
    } else if let Some(times) = r.repeat {
        let n = match u32::try_from(*times.get_ref()) {
            Ok(n @ 1..=100_000) => n,
            _ => {
                v.err(
                    times.span(),
                    "`repeat` needs a count from 1 to 100000",
                    "e.g. repeat = 50",
                );
                1
            }
        };
        StepKind::Repeat {
            times: n,
            parallel,
            max_parallel,
            steps: steps_of(v, r.steps, chain),
        }
    } else if container {
        StepKind::Parallel {
            steps: steps_of(v, r.steps, chain),
            max_parallel,
        }
    } else if let Some(i) = &r.include {
        StepKind::Include {
            path: i.get_ref().clone(),
            steps: include(v, i, chain)?,
        }
    } else if let Some(p) = r.partition {
        // A template is checked once rendered; plain text now.
        if !p.get_ref().contains("{{")
            && let Err(e) = parse_partition(p.get_ref())
        {
            v.err(p.span(), e, "separate groups of targets with `|`, e.g. partition = \"main:leader | main:followers\"");
        }
        StepKind::Partition {
            text: p.into_inner(),
            bridge: r.bridge.map(Spanned::into_inner),
        }
    } else if let Some(i) = r.isolate {
        if i.get_ref().0.is_empty() {
            v.err(
                i.span(),
                format!("step `{name}` isolates no target"),
                "name a node, a cluster or CLUSTER:SELECTOR, e.g. isolate = \"main:leader\"",
            );
        }
        StepKind::Fault(Fault::Isolate {
            targets: i.into_inner().0,
            host: r.host.as_ref().is_some_and(|h| *h.get_ref()),
        })
    } else if let Some(c) = r.cut {
        if !c.get_ref().contains("{{")
            && let Err(e) = parse_cut(c.get_ref())
        {
            v.err(c.span(), e, "write cut = \"A -> B\" (one way) or \"A <-> B\" (both ways), with targets on each side");
            return None;
        }
        StepKind::Cut {
            text: c.into_inner(),
        }
    } else if let Some(c) = r.reset {
        if !c.get_ref().contains("{{") && !matches!(parse_cut(c.get_ref()), Ok((_, _, true))) {
            v.err(
                c.span(),
                format!("`{}` is not a reset", c.get_ref()),
                "write reset = \"A -> B\": the connections from A to B are reset",
            );
            return None;
        }
        StepKind::Reset {
            text: c.into_inner(),
        }
    } else if let Some(d) = &r.degrade {
        let params = degrade(v, d, &r)?;
        if d.get_ref().0.is_empty() {
            v.err(
                d.span(),
                format!("step `{name}` degrades no target"),
                "name a node, a cluster or CLUSTER:SELECTOR, e.g. degrade = \"main-2\"",
            );
        }
        StepKind::Fault(Fault::degrade(d.get_ref().0.clone(), &params))
    } else if let Some(h) = &r.heal
        && !matches!(h.get_ref(), toml::Value::Boolean(false))
    {
        StepKind::Heal { id: heal(v, h)? }
    } else if let Some(w) = r.workload {
        let at = w.span();
        StepKind::Workload(Box::new(w.into_inner().check(v, at)?))
    } else if let Some(x) = &r.verify {
        StepKind::Verify {
            workload: workload_ref(v, x, "verify")?,
        }
    } else if let Some(x) = &r.end_workload {
        StepKind::EndWorkload {
            workload: workload_ref(v, x, "end_workload")?,
        }
    } else if let Some(up) = r.up {
        let mut set = Vec::new();
        for kv in r.set.take().unwrap_or_default() {
            // A template is checked once rendered; a plain one now.
            if !kv.get_ref().contains("{{")
                && let Err(e) = crate::overrides::Override::parse(kv.get_ref())
            {
                v.err(
                    kv.span(),
                    e,
                    "each entry is KEY=VALUE, e.g. set = [\"clusters.main.network=namespaces\"]",
                );
            }
            set.push(kv.into_inner());
        }
        StepKind::Up {
            specs: up.into_inner().0,
            set,
        }
    } else if r.down.as_ref().is_some_and(|d| *d.get_ref()) {
        StepKind::Down
    } else if let Some((op, targets)) = ops.into_iter().next() {
        if targets.is_empty() {
            v.err(
                span.clone(),
                format!("step `{name}` names no target"),
                "name a node, a cluster, or CLUSTER:SELECTOR",
            );
        }
        StepKind::Op { op, targets }
    } else if let Some(sh) = r.sh {
        StepKind::Sh {
            script: sh.into_inner(),
            expect,
            capture,
        }
    } else if let Some(exec) = r.exec {
        if exec.get_ref().is_empty() {
            v.err(
                exec.span(),
                "the command is empty",
                "e.g. exec = [\"etcdctl\", \"get\", \"k\"]",
            );
        }
        StepKind::Exec {
            argv: exec.into_inner(),
            expect,
            capture,
        }
    } else if let Some(w) = r.wait {
        let until = match w.get_ref().as_str() {
            "ready" => WaitUntil::Ready,
            "leader" => WaitUntil::Leader,
            other => {
                v.err(w.span(), format!("cannot wait for `{other}`"), "wait = \"ready\" (every node ready) or \"leader\" (a cluster has a leader); to wait on a command use `until`");
                WaitUntil::Ready
            }
        };
        StepKind::Wait {
            until,
            cluster: r.cluster.map(Spanned::into_inner),
            capture,
        }
    } else if let Some(u) = r.until {
        StepKind::Until {
            script: u.into_inner(),
            expect,
            interval: interval(v, 50)?,
            capture,
        }
    } else if let Some(c) = r.converge {
        if r.equals.is_some() && r.reference.is_some() {
            v.err(
                span.clone(),
                "`equals` and `reference` both say what to agree on",
                "keep one",
            );
        }
        StepKind::Converge {
            script: c.into_inner(),
            on: r.on.map(|o| o.into_inner().0).unwrap_or_default(),
            equals: r.equals.map(Spanned::into_inner),
            reference: r.reference.map(Spanned::into_inner),
            interval: interval(v, 100)?,
            capture,
        }
    } else {
        let s = r.sleep.expect("one kind is set");
        StepKind::Sleep(v.duration(&s)?)
    };
    Some(Step {
        name,
        timeout,
        kind,
        when,
        continue_on_failure,
        known_failure,
        source: v.src.clone(),
        span,
    })
}

/// Refuses the options of one kind of step on another, where they would be ignored.
fn check_options(v: &mut Validator<'_>, r: &RawStep) {
    fn at<T>(key: &Option<Spanned<T>>) -> Option<Range<usize>> {
        key.as_ref().map(Spanned::span)
    }
    let (degrade, partition, isolate) = (
        r.degrade.is_some(),
        r.partition.is_some(),
        r.isolate.is_some(),
    );
    let options = [
        ("delay", at(&r.delay), "degrade", degrade),
        ("jitter", at(&r.jitter), "degrade", degrade),
        ("loss", at(&r.loss), "degrade", degrade),
        ("rate", at(&r.rate), "degrade", degrade),
        ("bridge", at(&r.bridge), "partition", partition),
        ("host", at(&r.host), "isolate", isolate),
        (
            "set",
            r.set.as_ref().and_then(|s| s.first()).map(Spanned::span),
            "up",
            r.up.is_some(),
        ),
    ];
    for (key, span, owner, applies) in options {
        if let Some(span) = span
            && !applies
        {
            v.err(
                span,
                format!("`{key}` only applies to a `{owner}` step"),
                format!("remove it, or make this a `{owner}` step"),
            );
        }
    }
}

/// A degrade step's `delay`, `jitter`, `loss` and `rate`, each checked where it is written.
fn degrade(v: &mut Validator<'_>, at: &Spanned<OneOrMany>, r: &RawStep) -> Option<Degrade> {
    let mut ok = true;
    let mut delay = |v: &mut Validator<'_>, d: &Option<Spanned<String>>, key: &str| {
        let Some(d) = d else {
            return Duration::ZERO;
        };
        let checked =
            parse_duration(d.get_ref()).and_then(|t| fault::check_delay(key, t).map(|()| t));
        checked.unwrap_or_else(|e| {
            v.err(
                d.span(),
                e,
                format!(
                    "write a duration from 0ms to 60s, e.g. {key} = \"{}\"",
                    if key == "delay" { "50ms" } else { "5ms" }
                ),
            );
            ok = false;
            Duration::ZERO
        })
    };
    let delay_d = delay(v, &r.delay, "delay");
    let jitter = delay(v, &r.jitter, "jitter");
    let loss = match &r.loss {
        None => Percent::ZERO,
        Some(l) => {
            let checked = match l.get_ref() {
                toml::Value::Integer(i) => Percent::new(*i as f64),
                toml::Value::Float(f) => Percent::new(*f),
                other => Err(format!(
                    "expected a percentage from 0 to 100, e.g. 1.5; found {}",
                    describe(other)
                )),
            };
            checked.unwrap_or_else(|e| {
                v.err(
                    l.span(),
                    e,
                    "loss is the percent of packets dropped, a number without quotes or `%`, e.g. loss = 1.5",
                );
                ok = false;
                Percent::ZERO
            })
        }
    };
    let rate = r.rate.as_ref().and_then(|t| {
        Rate::parse(t.get_ref())
            .map_err(|e| {
                v.err(
                    t.span(),
                    e,
                    "e.g. rate = \"1mbit\" (bits per second) or rate = \"125kbps\" (bytes per second)",
                );
                ok = false;
            })
            .ok()
    });
    if !ok {
        return None;
    }
    Degrade::new(delay_d, jitter, loss, rate)
        .map_err(|e| {
            v.err(
                at.span(),
                e,
                "add what the link should suffer below `degrade`, e.g. delay = \"50ms\", jitter = \"5ms\", loss = 1.5 or rate = \"1mbit\"",
            )
        })
        .ok()
}

/// `heal = true` (every fault) or `heal = ID` (one fault).
fn heal(v: &mut Validator<'_>, h: &Spanned<toml::Value>) -> Option<Option<u32>> {
    const HINT: &str = "write heal = true to heal every fault, or heal = ID to heal one: faults are numbered from 1 in the order they are injected, as `troupe status` lists them";
    match h.get_ref() {
        toml::Value::Boolean(true) => Some(None),
        toml::Value::Integer(i) => match u32::try_from(*i) {
            Ok(id @ 1..) => Some(Some(id)),
            _ => {
                v.err(
                    h.span(),
                    format!("expected a fault id from 1 to {}, found {i}", u32::MAX),
                    HINT,
                );
                None
            }
        },
        other => {
            v.err(
                h.span(),
                format!("expected true or a fault id, found {}", describe(other)),
                HINT,
            );
            None
        }
    }
}

/// `verify = true` / `end_workload = true` (every workload) or a workload step's name; whether
/// the name exists is checked once every step is read ([`check_workloads`]).
fn workload_ref(
    v: &mut Validator<'_>,
    x: &Spanned<toml::Value>,
    key: &str,
) -> Option<Option<String>> {
    match x.get_ref() {
        toml::Value::Boolean(true) => Some(None),
        toml::Value::String(s) => Some(Some(s.clone())),
        other => {
            v.err(
                x.span(),
                format!("expected true or a workload step's name, found {}", describe(other)),
                format!("write {key} = true for every workload, or {key} = \"NAME\" with the name of a step that has a [step.workload] table"),
            );
            None
        }
    }
}

/// Every workload step, however deeply nested.
fn workloads(steps: &[Step]) -> Vec<&Step> {
    let mut out = Vec::new();
    for s in steps {
        match &s.kind {
            StepKind::Workload(_) => out.push(s),
            other => out.extend(workloads(other.nested())),
        }
    }
    out
}

/// `verify` and `end_workload` name workload steps that exist, and workloads write distinct
/// history files.
fn check_workloads(v: &mut Validator<'_>, all: &[&[Step]]) {
    let found: Vec<&Step> = all.iter().flat_map(|s| workloads(s)).collect();
    let mut files: Vec<(&str, &str)> = Vec::new();
    for w in &found {
        if let StepKind::Workload(spec) = &w.kind {
            if let Some((_, other)) = files.iter().find(|(f, _)| *f == spec.history) {
                step_err(
                    v,
                    w,
                    format!(
                        "workloads `{other}` and `{}` both write {}",
                        w.name, spec.history
                    ),
                    "give one of them its own file, e.g. history = \"history-2.jsonl\"",
                );
            }
            files.push((spec.history.as_str(), w.name.as_str()));
        }
    }
    fn refs<'a>(steps: &'a [Step], out: &mut Vec<(&'a Step, &'a str)>) {
        for s in steps {
            match &s.kind {
                StepKind::Verify { workload: Some(n) }
                | StepKind::EndWorkload { workload: Some(n) } => out.push((s, n)),
                other => refs(other.nested(), out),
            }
        }
    }
    let mut named = Vec::new();
    for steps in all {
        refs(steps, &mut named);
    }
    for (step, name) in named {
        if !found.iter().any(|w| w.name == name) {
            let hint = crate::suggest(name, found.iter().map(|w| w.name.as_str()))
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            step_err(
                v,
                step,
                format!(
                    "step `{}` names `{name}`, which is not a workload step",
                    step.name
                ),
                format!(
                    "{hint}name a step that has a [step.workload] table, or write true for every workload"
                ),
            );
        }
    }
}

/// An error at a step, in the file the step is written in (an included file's, perhaps).
fn step_err(v: &mut Validator<'_>, step: &Step, msg: impl Into<String>, help: impl Into<String>) {
    v.errors
        .push(step.source.error(step.span.clone(), msg).with_help(help));
}

/// A TOML value as a person would name it in an error.
fn describe(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string {s:?}"),
        toml::Value::Integer(i) => format!("{i}"),
        toml::Value::Float(f) => format!("{f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Datetime(d) => format!("the date {d}"),
        toml::Value::Array(_) => "an array".to_string(),
        toml::Value::Table(_) => "a table".to_string(),
    }
}

/// `"a-1 | a-2 a-3"` → groups of targets (at least two).
pub fn parse_partition(text: &str) -> Result<Vec<Vec<String>>, String> {
    let groups: Vec<Vec<String>> = text
        .split('|')
        .map(|g| g.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|g| !g.is_empty())
        .collect();
    if groups.len() < 2 {
        return Err(format!(
            "`{text}` is not a partition: it needs at least two groups"
        ));
    }
    Ok(groups)
}

/// `"a -> b"` (one way) or `"a <-> b"` → (from, to, one way).
pub fn parse_cut(text: &str) -> Result<(Vec<String>, Vec<String>, bool), String> {
    let (one_way, parts) = match text.split_once("<->") {
        Some(p) => (false, Some(p)),
        None => (true, text.split_once("->")),
    };
    match parts {
        Some((a, b)) if !a.trim().is_empty() && !b.trim().is_empty() => Ok((
            a.split_whitespace().map(str::to_string).collect(),
            b.split_whitespace().map(str::to_string).collect(),
            one_way,
        )),
        _ => Err(format!("`{text}` is not a cut")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_kinds() {
        let s = Scenario::from_str(
            "examples/x/scenario.toml",
            r#"
[[step]]
name = "up"
up = "cluster.toml"
[[step]]
name = "kill"
kill = ["main:leader"]
[[step]]
name = "read"
sh = "echo v"
expect = { stdout = '^v$' }
capture = "V"
[[step]]
name = "same"
converge = "echo {{ node.name }}"
on = "main"
equals = "x"
[[step]]
name = "many"
parallel = true
repeat = 3
[[step.steps]]
name = "n{{ vars.ITERATION }}"
sh = "true"
[[measure]]
name = "m"
from = "up"
to = "same"
[[finally]]
name = "down"
down = true
"#,
        )
        .unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(s.steps.len(), 5);
        assert!(matches!(
            s.steps[4].kind,
            StepKind::Repeat {
                times: 3,
                parallel: true,
                ..
            }
        ));
        assert_eq!(s.finally.len(), 1);
    }

    #[test]
    fn partitions_and_cuts_parse_after_rendering_and_plain_ones_are_checked_at_load() {
        assert_eq!(
            parse_partition("a-1 | a-2 a-3").unwrap(),
            vec![vec!["a-1".to_string()], vec!["a-2".into(), "a-3".into()]]
        );
        assert!(parse_partition("a-1 a-2").is_err());
        assert_eq!(
            parse_cut("a -> b c").unwrap(),
            (vec!["a".into()], vec!["b".into(), "c".into()], true)
        );
        assert!(!parse_cut("a <-> b").unwrap().2);
        assert!(parse_cut("a b").is_err());
        let templated = "[[step]]\nname = \"p\"\npartition = \"{{ vars.OLD }} | main:followers\"\n";
        assert!(Scenario::from_str("s.toml", templated).is_ok());
        let e = Scenario::from_str(
            "s.toml",
            "[[step]]\nname = \"p\"\npartition = \"main-1 main-2\"\n",
        )
        .unwrap_err();
        assert!(
            format!("{e:?}").contains("needs at least two groups"),
            "{e:?}"
        );
    }

    #[test]
    fn a_step_that_does_two_things_or_nothing_is_refused() {
        let e = Scenario::from_str(
            "s.toml",
            "[[step]]\nname = \"x\"\nsh = \"true\"\nup = \"a.toml\"\n",
        )
        .unwrap_err();
        assert!(
            format!("{e:?}").contains("does several things: up, sh"),
            "{e:?}"
        );
        let e = Scenario::from_str("s.toml", "[[step]]\nname = \"x\"\n").unwrap_err();
        assert!(format!("{e:?}").contains("does nothing"), "{e:?}");
        let e = Scenario::from_str("s.toml", "[[step]]\nname = \"x\"\nsh = \"true\"\n[[measure]]\nname = \"m\"\nfrom = \"y\"\nto = \"x\"\n").unwrap_err();
        assert!(format!("{e:?}").contains("no step is named `y`"), "{e:?}");
    }

    fn step_kinds(text: &str) -> Vec<StepKind> {
        let s = Scenario::from_str("s.toml", text).unwrap_or_else(|e| panic!("{e:?}"));
        s.steps.into_iter().map(|s| s.kind).collect()
    }

    #[test]
    fn degrade_steps_carry_checked_parameters() {
        let kinds = step_kinds(
            r#"
[[step]]
name = "slow"
degrade = "main-2"
delay = "50ms"
jitter = "5ms"
loss = 1.5
rate = "1mbit"
[[step]]
name = "lossy"
degrade = ["main-1", "main-3"]
loss = 100
[[step]]
name = "jittery"
degrade = "main-1"
jitter = "60s"
"#,
        );
        let params: Vec<Degrade> = kinds
            .iter()
            .map(|k| match k {
                StepKind::Fault(f) => f.degrade_params().unwrap().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            params[0].to_string(),
            "delay 50ms, jitter 5ms, loss 1.5%, rate 1000000bit"
        );
        assert_eq!(params[1].loss().get(), 100.0);
        assert_eq!(params[2].jitter(), Duration::from_secs(60));
        assert!(matches!(
            &kinds[1],
            StepKind::Fault(Fault::Degrade { targets, .. }) if targets.len() == 2
        ));
    }

    #[test]
    fn degrade_parameters_out_of_range_are_refused_where_they_are_written() {
        let e = Scenario::from_str(
            "s.toml",
            r#"[[step]]
name = "loss above 100"
degrade = "main-1"
loss = 150
[[step]]
name = "negative loss"
degrade = "main-1"
loss = -1
[[step]]
name = "loss with a percent sign"
degrade = "main-1"
loss = "5%"
[[step]]
name = "no rate"
degrade = "main-1"
rate = "fast"
[[step]]
name = "zero rate"
degrade = "main-1"
rate = "0kbit"
[[step]]
name = "negative delay"
degrade = "main-1"
delay = "-5ms"
[[step]]
name = "long jitter"
degrade = "main-1"
jitter = "2m"
[[step]]
name = "huge delay"
degrade = "main-1"
delay = "99999999999999999999h"
[[step]]
name = "nothing to do"
degrade = "main-1"
[[step]]
name = "zeros do nothing either"
degrade = "main-1"
delay = "0ms"
loss = 0
[[step]]
name = "no target"
degrade = []
delay = "5ms"
[[step]]
name = "loss on an isolate"
isolate = "main-1"
loss = 5
"#,
        )
        .unwrap_err();
        insta::assert_snapshot!(format!("{e:?}"));
    }

    #[test]
    fn heal_takes_true_or_a_fault_id() {
        let kinds = step_kinds(
            "[[step]]\nname = \"all\"\nheal = true\n[[step]]\nname = \"one\"\nheal = 2\n",
        );
        assert!(matches!(kinds[0], StepKind::Heal { id: None }));
        assert!(matches!(kinds[1], StepKind::Heal { id: Some(2) }));
        let e = Scenario::from_str(
            "s.toml",
            r#"[[step]]
name = "zero"
heal = 0
[[step]]
name = "negative"
heal = -3
[[step]]
name = "too big"
heal = 4294967296
[[step]]
name = "quoted"
heal = "2"
[[step]]
name = "nothing"
heal = false
"#,
        )
        .unwrap_err();
        insta::assert_snapshot!(format!("{e:?}"));
    }

    #[test]
    fn a_false_heal_or_down_beside_another_kind_does_not_take_over_the_step() {
        // Both were checked for presence, not truth, and turned an `sh` step into a heal or a down.
        let kinds = step_kinds(
            "[[step]]\nname = \"a\"\nheal = false\nsh = \"true\"\n[[step]]\nname = \"b\"\ndown = false\nkill = \"main-1\"\n",
        );
        assert!(matches!(kinds[0], StepKind::Sh { .. }), "{:?}", kinds[0]);
        assert!(
            matches!(
                kinds[1],
                StepKind::Op {
                    op: NodeOp::Kill,
                    ..
                }
            ),
            "{:?}",
            kinds[1]
        );
    }

    #[test]
    fn every_example_scenario_still_loads() {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut loaded = 0;
        for dir in std::fs::read_dir(&examples).unwrap() {
            for file in std::fs::read_dir(dir.unwrap().path()).unwrap() {
                let path = file.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if path.extension().is_some_and(|e| e == "toml") && text.contains("[[step]]") {
                    Scenario::from_str(&path, &text).unwrap_or_else(|e| panic!("{e:?}"));
                    loaded += 1;
                }
            }
        }
        assert!(loaded > 0, "no scenario under {}", examples.display());
    }

    #[test]
    fn parameters_conditions_and_failure_options_parse() {
        let s = Scenario::from_str(
            "s.toml",
            r#"continue_on_failure = true
[env]
VARIANT = "plain"
SIZE = "3"
[[step]]
name = "up"
up = "cluster-{{ env.VARIANT }}.toml"
[[step]]
name = "only with mtls"
when = "env.VARIANT == 'mtls'"
sh = "true"
continue_on_failure = true
[[step]]
name = "stale read"
known_failure = "stale read after restart (https://example.com/42)"
sh = "false"
[[step]]
name = "many"
repeat = 10
parallel = true
max_parallel = 2
[[step.steps]]
name = "n{{ vars.ITERATION }}"
sh = "true"
"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(s.continue_on_failure);
        let lookup = |n: &str| (n == "VARIANT").then(|| "mtls".to_string());
        let params = |lookup: &dyn Fn(&str) -> Option<String>| {
            s.params(lookup)
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let given = params(&lookup);
        assert_eq!(
            (given["VARIANT"].as_str(), given["SIZE"].as_str()),
            ("mtls", "3")
        );
        assert_eq!(params(&|_| None)["VARIANT"], "plain");
        assert_eq!(s.steps[1].when.as_deref(), Some("env.VARIANT == 'mtls'"));
        assert!(s.steps[1].continue_on_failure && !s.steps[0].continue_on_failure);
        assert!(
            s.steps[2]
                .known_failure
                .as_deref()
                .unwrap()
                .starts_with("stale read")
        );
        assert!(matches!(
            s.steps[3].kind,
            StepKind::Repeat {
                times: 10,
                parallel: true,
                max_parallel: Some(2),
                ..
            }
        ));
    }

    #[test]
    fn bad_parameters_conditions_and_limits_are_refused_where_they_are_written() {
        let e = Scenario::from_str(
            "s.toml",
            r#"[env]
VARIANT = "plain"
1ST = "x"
TROUPE_CA = "/tmp/ca.pem"
SIZE = 3
[[step]]
name = "empty condition"
when = " "
sh = "true"
[[step]]
name = "condition in braces"
when = "{{ env.VARIANT == 'mtls' }}"
sh = "true"
[[step]]
name = "no reason"
known_failure = ""
sh = "true"
[[step]]
name = "limit without parallel"
repeat = 3
max_parallel = 2
[[step.steps]]
name = "x{{ vars.ITERATION }}"
sh = "true"
[[step]]
name = "zero limit"
parallel = true
max_parallel = 0
[[step.steps]]
name = "y"
sh = "true"
[[step]]
name = "templated include"
include = "steps-{{ env.VARIANT }}.toml"
"#,
        )
        .unwrap_err();
        insta::assert_snapshot!(format!("{e:?}"));
    }

    /// A scratch directory of files, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str, files: &[(&str, &str)]) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("troupe-spec-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for (path, text) in files {
                let path = dir.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn included_steps_come_in_place_from_files_relative_to_the_includer() {
        let dir = Scratch::new(
            "include",
            &[
                (
                    "s.toml",
                    "[[step]]\nname = \"first\"\nsh = \"true\"\n[[step]]\ninclude = \"shared/common.toml\"\nwhen = \"true\"\n[[step]]\nname = \"last\"\nsh = \"true\"\n[[measure]]\nname = \"m\"\nfrom = \"first\"\nto = \"deep\"\n",
                ),
                (
                    "shared/common.toml",
                    "[[step]]\nname = \"shared one\"\nsh = \"true\"\n[[step]]\nname = \"more\"\ninclude = \"more.toml\"\n",
                ),
                (
                    "shared/more.toml",
                    "[[step]]\nname = \"deep\"\nsh = \"true\"\n",
                ),
            ],
        );
        let s = Scenario::from_path(dir.0.join("s.toml")).unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<&str> = s.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["first", "include shared/common.toml", "last"]);
        let StepKind::Include { path, steps } = &s.steps[1].kind else {
            panic!("{:?}", s.steps[1].kind)
        };
        assert_eq!(path, "shared/common.toml");
        assert_eq!(steps[0].name, "shared one");
        assert!(steps[0].source.path.ends_with("shared/common.toml"));
        assert_eq!(steps[1].kind.nested()[0].name, "deep");
        assert!(
            steps[1].kind.nested()[0]
                .source
                .path
                .ends_with("shared/more.toml")
        );
    }

    #[test]
    fn include_cycles_and_mistakes_in_included_files_are_named_where_they_are() {
        let dir = Scratch::new(
            "include-cycle",
            &[
                (
                    "s.toml",
                    "[[step]]\ninclude = \"a.toml\"\n[[step]]\ninclude = \"bad.toml\"\n[[step]]\ninclude = \"missing.toml\"\n",
                ),
                (
                    "a.toml",
                    "[[step]]\nname = \"to b\"\ninclude = \"b.toml\"\n",
                ),
                (
                    "b.toml",
                    "[[step]]\nname = \"back to a\"\ninclude = \"a.toml\"\n",
                ),
                (
                    "bad.toml",
                    "[[step]]\nname = \"typo\"\nsh = \"true\"\nwehn = \"true\"\n",
                ),
            ],
        );
        let e = Scenario::from_path(dir.0.join("s.toml")).unwrap_err();
        let text = format!("{e:?}").replace(&dir.0.display().to_string(), "DIR");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn workloads_parse_with_defaults_and_options() {
        let kinds = step_kinds(
            r#"[[step]]
name = "clients"
[step.workload]
model = "register"
client = "etcd"
processes = 10
duration = "20s"
rate = 500
mix = { read = 60, write = 30, cas = 10 }
targets = "etcd"
seed = 7
serializable = true
[[step]]
name = "stdio"
[step.workload]
model = "set"
client = "stdio"
command = ["python3", "c.py", "{{ node.urls.client }}"]
ops = 100
history = "set.jsonl"
[[step]]
name = "end"
end_workload = "stdio"
[[step]]
name = "check"
verify = true
"#,
        );
        let StepKind::Workload(w) = &kinds[0] else {
            panic!("{:?}", kinds[0])
        };
        assert_eq!(
            (w.model, w.processes, w.seed),
            (crate::workload::Model::Register, 10, Some(7))
        );
        assert_eq!(w.duration, Some(Duration::from_secs(20)));
        assert_eq!(w.rate, Some(500.0));
        assert_eq!(w.mix.iter().map(|(_, x)| *x).sum::<u32>(), 100);
        assert!(matches!(
            w.client,
            crate::workload::ClientSpec::Etcd {
                serializable: true,
                ..
            }
        ));
        let StepKind::Workload(set) = &kinds[1] else {
            panic!()
        };
        assert_eq!(
            (set.keys, set.ops, set.history.as_str()),
            (1, Some(100), "set.jsonl")
        );
        assert!(matches!(&kinds[2], StepKind::EndWorkload { workload: Some(n) } if n == "stdio"));
        assert!(matches!(&kinds[3], StepKind::Verify { workload: None }));
    }

    #[test]
    fn workload_mistakes_are_named_where_they_are() {
        let e = Scenario::from_str(
            "s.toml",
            r#"[[step]]
name = "clients"
[step.workload]
model = "register"
client = "etdc"
[[step]]
name = "bad mix"
[step.workload]
model = "kv"
client = "memory"
mix = { get = 50, red = 50 }
processes = 0
serializable = true
[[step]]
name = "same file"
[step.workload]
model = "set"
client = "memory"
[[step]]
name = "no command"
[step.workload]
model = "set"
client = "stdio"
history = "s.jsonl"
[[step]]
name = "check"
verify = "client"
"#,
        )
        .unwrap_err();
        insta::assert_snapshot!(format!("{e:?}"));
    }
}
