//! A scenario checked whole before anything starts: every spec it brings up loads (its own
//! errors shown in full), and every step is held against the clusters that will exist when it
//! runs: target names and selectors (with a did-you-mean), `on`, `cluster`, `for_each`, the
//! order of `up`, `down` and node operations, template syntax, and captured variables used
//! before any step captures them, `env.X` that the scenario does not declare, and `when`
//! expressions. Included steps are checked in place, their errors in their own file. A typo
//! costs a second, not a run.
//!
//! Strings that are templates are checked as far as they can be before rendering: their syntax
//! always, their target names only when they hold no `{{`.

use std::collections::BTreeSet;
use std::path::Path;

use troupe_spec::scenario::{Scenario, Step, StepKind, WaitUntil, parse_cut, parse_partition};
use troupe_spec::{InvalidSpec, Spec, SpecError};

use crate::select::{ClusterView, Topology};

/// Every problem found: the specs' own, then the scenario's.
pub fn check(scenario: &Scenario) -> Result<(), Vec<InvalidSpec>> {
    let mut c = Checker {
        scenario,
        views: Vec::new(),
        captured: BTreeSet::new(),
        specs: Vec::new(),
        errors: Vec::new(),
        templates: minijinja::Environment::new(),
        params: scenario.params(|name| std::env::var(name).ok()),
        applied: BTreeSet::new(),
    };
    c.steps(&scenario.steps, Nest::Top);
    // `finally` runs after any step, even the first: check it against what may be up.
    c.steps(&scenario.finally, Nest::Top);
    for (i, o) in scenario.overrides.iter().enumerate() {
        if !c.applied.contains(&i) {
            c.errors.push(
                troupe_spec::SpecSource::new(&scenario.source.path, "")
                    .error(
                        0..0,
                        format!(
                            "--set {}: no spec this scenario brings up has that cluster",
                            o.text()
                        ),
                    )
                    .with_help("check the cluster name against the specs' [clusters.NAME] tables"),
            );
        }
    }
    let mut all = c.specs;
    // Grouped by file: an included file's problems are its own.
    let mut errors = c.errors;
    while let Some(first) = errors.first() {
        let file = first.file.clone();
        let (mine, rest): (Vec<SpecError>, Vec<SpecError>) =
            errors.into_iter().partition(|e| e.file == file);
        all.push(InvalidSpec { file, errors: mine });
        errors = rest;
    }
    if all.is_empty() { Ok(()) } else { Err(all) }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nest {
    Top,
    /// Inside `for_each`: `node` is set.
    Node,
    /// Inside `repeat`: `vars.ITERATION` is set.
    Repeat,
}

struct Checker<'a> {
    scenario: &'a Scenario,
    /// Which of the scenario's `--set` overrides some spec took.
    applied: BTreeSet<usize>,
    /// Clusters up at this point of the scenario.
    views: Vec<ClusterView>,
    captured: BTreeSet<String>,
    specs: Vec<InvalidSpec>,
    errors: Vec<SpecError>,
    templates: minijinja::Environment<'static>,
    /// The `[env]` parameters, with the values this run will see.
    params: Vec<(String, String)>,
}

impl Checker<'_> {
    fn err(&mut self, step: &Step, message: impl Into<String>, help: impl Into<String>) {
        self.err_at(step, key_of(&step.kind), message, help);
    }

    /// An error at `key` of the step (else its header), in the file the step is written in.
    fn err_at(
        &mut self,
        step: &Step,
        key: Option<&str>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let span = key
            .and_then(|k| key_span(&step.source.text, step.span.clone(), k))
            .unwrap_or_else(|| step.span.clone());
        let e = step
            .source
            .error(span, format!("step `{}`: {}", step.name, message.into()))
            .with_help(help);
        self.errors.push(e);
    }

    fn steps(&mut self, steps: &[Step], nest: Nest) {
        for s in steps {
            self.step(s, nest);
        }
    }

    /// A template's syntax, and the captured variables it reads.
    fn template(&mut self, step: &Step, text: &str, nest: Nest) {
        if !(text.contains("{{") || text.contains("{%") || text.contains("{#")) {
            return;
        }
        if let Err(e) = self.templates.template_from_str(text) {
            self.err(
                step,
                format!("template syntax error in `{text}`: {}", e.detail().unwrap_or("invalid")),
                "templates use Jinja syntax, e.g. {{ vars.LEADER }} or {{ node.urls.client }}: every `{{` needs its `}}`",
            );
            return;
        }
        self.names(step, None, text, nest);
    }

    /// A step's `when`: an expression's syntax, and the names it reads.
    fn when(&mut self, step: &Step, expr: &str, nest: Nest) {
        if let Err(e) = self.templates.compile_expression(expr) {
            self.err_at(
                step,
                Some("when"),
                format!("`when = \"{expr}\"` is not an expression: {}", e.detail().unwrap_or("invalid")),
                "write a Jinja expression without braces, e.g. when = \"env.VARIANT == 'mtls'\" or when = \"vars.LEADER != 'main-1'\"",
            );
            return;
        }
        self.names(step, Some("when"), expr, nest);
    }

    /// The `node`, `vars.X` and `env.X` a template or expression reads exist where it is.
    fn names(&mut self, step: &Step, key: Option<&str>, text: &str, nest: Nest) {
        let key = key.or(key_of(&step.kind));
        for var in names_used(text, "env.") {
            let declared = self.params.iter().any(|(n, _)| *n == var);
            if declared
                || var.starts_with("TROUPE_")
                || var == "PATH"
                || self.captured.contains(&var)
            {
                continue;
            }
            let names: Vec<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
            let hint = troupe_spec::suggest(&var, names.iter().copied())
                .map(|s| format!("did you mean `env.{s}`? "))
                .unwrap_or_default();
            let declared = if names.is_empty() {
                "the scenario declares no parameter".to_string()
            } else {
                format!("the scenario declares {}", names.join(", "))
            };
            self.err_at(
                step,
                key,
                format!("`env.{var}` is not a declared parameter ({declared})"),
                format!(
                    "{hint}declare it with a default in the scenario's [env] table, e.g. [env] {var} = \"...\": only declared variables are read from the caller's environment (besides TROUPE_*, PATH and captured variables)"
                ),
            );
        }
        if text.contains("node.") && nest != Nest::Node {
            self.err_at(
                step,
                key,
                format!("`{text}` uses `node`, which only steps inside `for_each` (and `converge`) have"),
                "put this step inside a for_each step, or name the node, e.g. {{ env.TROUPE_MAIN_1_CLIENT_URL }}",
            );
        }
        for var in names_used(text, "vars.") {
            if var == "ITERATION" && nest == Nest::Repeat {
                continue;
            }
            if !self.captured.contains(&var) {
                let known: Vec<&str> = self.captured.iter().map(String::as_str).collect();
                let hint = troupe_spec::suggest(&var, known.iter().copied())
                    .map(|s| format!("did you mean `vars.{s}`? "))
                    .unwrap_or_default();
                self.err_at(
                    step,
                    key,
                    format!("`vars.{var}` is used before any step captures it"),
                    format!(
                        "{hint}a variable exists once an earlier step has `capture = \"{var}\"`{}",
                        if known.is_empty() {
                            String::new()
                        } else {
                            format!(" (captured so far: {})", known.join(", "))
                        }
                    ),
                );
            }
        }
    }

    /// Targets that hold no template must name what will be up.
    fn targets(&mut self, step: &Step, targets: &[String], nest: Nest) {
        for t in targets {
            self.template(step, t, nest);
            if t.contains("{{") {
                continue;
            }
            if self.views.is_empty() {
                self.err(
                    step,
                    format!("`{t}`: no cluster is up at this step"),
                    "add an `up` step before it (after a `down`, bring the clusters up again)",
                );
                return;
            }
            let topo = Topology {
                clusters: &self.views,
            };
            if let Err(e) = topo.parse(t) {
                let (message, help) = match e {
                    crate::Error::Target { message, help } => (message, help.unwrap_or_default()),
                    other => (other.to_string(), String::new()),
                };
                self.err(step, message, help);
            }
        }
    }

    fn up(&mut self, step: &Step, specs: &[String], set: &[String], nest: Nest) {
        // The step's own overrides, where only parameters are templated; others wait for the run.
        let mut own = Vec::new();
        for kv in set {
            self.template(step, kv, nest);
            let text = if kv.contains("{{") {
                match self.with_params(kv) {
                    Some(t) => t,
                    None => return,
                }
            } else {
                kv.clone()
            };
            match troupe_spec::overrides::Override::parse(&text) {
                Ok(o) => own.push(o),
                Err(e) => {
                    self.err(step, format!("set: {e}"), "each entry is KEY=VALUE");
                    return;
                }
            }
        }
        for spec in specs {
            self.template(step, spec, nest);
            // A path that only reads parameters is known now: `cluster-{{ env.VARIANT }}.toml`.
            let (spec, rendered) = match self.with_params(spec) {
                Some(s) => (s, Some(spec)),
                None if spec.contains("{{") => continue,
                None => (spec.clone(), None),
            };
            let path = self.scenario.source.dir().join(&spec);
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut sets: Vec<troupe_spec::overrides::Override> = Vec::new();
            for (i, o) in self.scenario.overrides.iter().enumerate() {
                if o.applies_to(&text) {
                    self.applied.insert(i);
                    sets.push(o.clone());
                }
            }
            sets.extend(own.iter().cloned());
            let loaded =
                Spec::from_path_with(&path, &sets).and_then(|s| crate::plan::check(&s).map(|()| s));
            match loaded {
                Ok(s) => self.add(&s),
                Err(e) => {
                    if !path.exists() {
                        let from = match rendered {
                            Some(t) => format!(
                                " (`{t}` with {})",
                                self.params
                                    .iter()
                                    .filter(|(n, _)| t.contains(n.as_str()))
                                    .map(|(n, v)| format!("{n}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            ),
                            None => String::new(),
                        };
                        self.err(
                            step,
                            format!("{} does not exist{from}", path.display()),
                            "`up` paths are relative to the scenario file",
                        );
                    } else {
                        self.specs.push(e);
                    }
                }
            }
        }
    }

    fn add(&mut self, spec: &Spec) {
        for c in spec.clusters.values() {
            self.views.retain(|v| v.name != c.name);
            self.views.push(ClusterView {
                name: c.name.clone(),
                nodes: (1..=c.nodes)
                    .map(|i| crate::plan::node_name(&c.name, i))
                    .collect(),
                has_role_probe: c.role.is_some(),
            });
        }
    }

    /// A template that reads only `env` parameters, rendered with their values.
    fn with_params(&self, text: &str) -> Option<String> {
        if !text.contains("{{") || text.contains("vars.") || text.contains("node.") {
            return None;
        }
        let env: std::collections::BTreeMap<String, String> = self.params.iter().cloned().collect();
        let mut strict = minijinja::Environment::new();
        strict.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        strict
            .render_str(text, minijinja::context! { env => env })
            .ok()
    }

    fn step(&mut self, step: &Step, nest: Nest) {
        self.template(step, &step.name, nest);
        if let Some(w) = &step.when {
            self.when(step, w, nest);
        }
        match &step.kind {
            StepKind::Up { specs, set } => self.up(step, specs, set, nest),
            StepKind::Down => self.views.clear(),
            StepKind::Op { targets, .. } => self.targets(step, targets, nest),
            StepKind::Sh {
                script,
                capture,
                expect,
            }
            | StepKind::Until {
                script,
                capture,
                expect,
                ..
            } => {
                self.template(step, script, nest);
                for re in [&expect.stdout, &expect.stderr].into_iter().flatten() {
                    self.template(step, re, nest);
                }
                self.capture(capture);
            }
            StepKind::Exec {
                argv,
                capture,
                expect,
            } => {
                for a in argv {
                    self.template(step, a, nest);
                }
                for re in [&expect.stdout, &expect.stderr].into_iter().flatten() {
                    self.template(step, re, nest);
                }
                self.capture(capture);
            }
            StepKind::Wait {
                until,
                cluster,
                capture,
            } => {
                self.wait(step, *until, cluster.as_deref());
                self.capture(capture);
            }
            StepKind::Converge {
                script,
                on,
                reference,
                capture,
                ..
            } => {
                self.template(step, script, Nest::Node);
                self.targets(step, on, nest);
                if let Some(r) = reference {
                    self.targets(step, std::slice::from_ref(r), nest);
                }
                if on.is_empty() && self.views.is_empty() {
                    self.err(
                        step,
                        "no cluster is up at this step",
                        "add an `up` step before it",
                    );
                }
                self.capture(capture);
            }
            StepKind::ForEach { target, steps, .. } => {
                self.targets(step, std::slice::from_ref(target), nest);
                self.steps(steps, Nest::Node);
            }
            StepKind::Repeat { steps, .. } => self.steps(
                steps,
                if nest == Nest::Node {
                    nest
                } else {
                    Nest::Repeat
                },
            ),
            StepKind::Parallel { steps, .. } | StepKind::Include { steps, .. } => {
                self.steps(steps, nest)
            }
            StepKind::Fault(f) => {
                use troupe_spec::control::Fault;
                let targets: Vec<String> = match f {
                    Fault::Isolate { targets, .. } | Fault::Degrade { targets, .. } => {
                        targets.clone()
                    }
                    Fault::Partition { groups, .. } => groups.concat(),
                    Fault::Cut { from, to, .. } => from.iter().chain(to).cloned().collect(),
                    _ => Vec::new(),
                };
                self.targets(step, &targets, nest);
            }
            StepKind::Partition { text, bridge } => {
                self.template(step, text, nest);
                if !text.contains("{{")
                    && let Ok(groups) = parse_partition(text)
                {
                    self.targets(step, &groups.concat(), nest);
                    let all = groups.concat();
                    for (i, t) in all.iter().enumerate() {
                        if all[..i].contains(t) {
                            self.err(
                                step,
                                format!("`{t}` is on both sides of the partition"),
                                "put each target in one group only",
                            );
                        }
                    }
                }
                if let Some(b) = bridge {
                    self.targets(step, std::slice::from_ref(b), nest);
                }
            }
            StepKind::Cut { text } | StepKind::Reset { text } => {
                self.template(step, text, nest);
                if !text.contains("{{")
                    && let Ok((from, to, _)) = parse_cut(text)
                {
                    self.targets(step, &from, nest);
                    self.targets(step, &to, nest);
                    if let Some(t) = from.iter().find(|t| to.contains(t)) {
                        self.err(
                            step,
                            format!("`{t}` is on both ends of the cut"),
                            "a link joins two different targets",
                        );
                    }
                }
            }
            StepKind::Heal { .. }
            | StepKind::Sleep(_)
            | StepKind::EndWorkload { .. }
            | StepKind::Verify { .. } => {}
            StepKind::Workload(w) => {
                if self.views.is_empty() {
                    self.err(
                        step,
                        "no cluster is up for the workload",
                        "add an `up` step before it",
                    );
                } else if let Some(t) = &w.targets {
                    self.targets(step, std::slice::from_ref(t), nest);
                }
            }
            _ => {}
        }
    }

    fn capture(&mut self, capture: &Option<String>) {
        if let Some(c) = capture {
            self.captured.insert(c.clone());
        }
    }

    fn wait(&mut self, step: &Step, until: WaitUntil, cluster: Option<&str>) {
        if self.views.is_empty() {
            self.err(
                step,
                "no cluster is up at this step",
                "add an `up` step before it",
            );
            return;
        }
        if let Some(c) = cluster
            && !c.contains("{{")
            && !self.views.iter().any(|v| v.name == c)
        {
            let names: Vec<&str> = self.views.iter().map(|v| v.name.as_str()).collect();
            let hint = troupe_spec::suggest(c, names.iter().copied())
                .map(|s| format!("did you mean `{s}`? "))
                .unwrap_or_default();
            self.err(
                step,
                format!("no cluster named `{c}` is up"),
                format!("{hint}clusters up here: {}", names.join(", ")),
            );
            return;
        }
        if until == WaitUntil::Leader {
            let with_roles: Vec<&ClusterView> = self
                .views
                .iter()
                .filter(|v| v.has_role_probe && cluster.is_none_or(|c| c == v.name))
                .collect();
            if with_roles.is_empty() {
                self.err(
                    step,
                    "waiting for a leader needs a role probe, and no cluster here has one",
                    "add a [clusters.NAME.role] table to the spec (see the README's role probes)",
                );
            } else if with_roles.len() > 1 && cluster.is_none() {
                self.err(
                    step,
                    format!(
                        "several clusters have a role probe ({}): which leader?",
                        with_roles
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "add `cluster = \"NAME\"`",
                );
            }
        }
    }
}

/// The key that makes a step what it is, where its errors point.
fn key_of(kind: &StepKind) -> Option<&'static str> {
    Some(match kind {
        StepKind::Up { .. } => "up",
        StepKind::Op { op, .. } => op.name(),
        StepKind::Sh { .. } => "sh",
        StepKind::Exec { .. } => "exec",
        StepKind::Wait {
            cluster: Some(_), ..
        } => "cluster",
        StepKind::Wait { .. } => "wait",
        StepKind::Until { .. } => "until",
        StepKind::Converge { on, .. } if !on.is_empty() => "on",
        StepKind::Converge { .. } => "converge",
        StepKind::ForEach { .. } => "for_each",
        StepKind::Include { .. } => "include",
        StepKind::Partition { .. } => "partition",
        StepKind::Cut { .. } => "cut",
        StepKind::Reset { .. } => "reset",
        StepKind::Fault(troupe_spec::control::Fault::Isolate { .. }) => "isolate",
        StepKind::Fault(troupe_spec::control::Fault::Degrade { .. }) => "degrade",
        StepKind::Workload(w) if w.targets.is_some() => "targets",
        _ => return None,
    })
}

/// The span of the line `key = ...` inside a step's table, if it is written there.
fn key_span(text: &str, step: std::ops::Range<usize>, key: &str) -> Option<std::ops::Range<usize>> {
    // The span is the `[[step]]` header; the table runs to the next header.
    let table = text.get(step.start..)?;
    let mut offset = 0;
    for (i, line) in table.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_start();
        if i > 0 && trimmed.starts_with('[') {
            break;
        }
        if let Some(rest) = trimmed.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            let start = step.start + offset + (line.len() - trimmed.len());
            return Some(start..start + line.trim_end().len() - (line.len() - trimmed.len()));
        }
        offset += line.len();
    }
    None
}

/// The `NAME` of each `vars.NAME` (or `env.NAME`: `prefix`) a template reads.
fn names_used(text: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        let after = &rest[i + prefix.len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !name.is_empty()
            && !out.contains(&name)
        {
            out.push(name);
        }
        rest = after;
    }
    out
}

/// Loads and checks a scenario file: its syntax, then [`check`].
pub fn load(path: &Path) -> Result<Scenario, Vec<InvalidSpec>> {
    load_with(path, Vec::new())
}

/// [`load`] with `troupe run --set` overrides, applied to every spec that has the key's cluster.
pub fn load_with(
    path: &Path,
    overrides: Vec<troupe_spec::overrides::Override>,
) -> Result<Scenario, Vec<InvalidSpec>> {
    let mut s = Scenario::from_path(path).map_err(|e| vec![e])?;
    s.overrides = overrides;
    check(&s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_are_found_in_templates() {
        assert_eq!(
            names_used(
                "{{ vars.OLD }} x {{ vars.NEW_1|upper }} {{ env.vars.X }}",
                "vars."
            ),
            ["OLD", "NEW_1"]
        );
        assert_eq!(
            names_used("env.VARIANT == 'mtls' and env.TROUPE_CA", "env."),
            ["VARIANT", "TROUPE_CA"]
        );
    }
}
