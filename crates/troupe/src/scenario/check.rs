//! A scenario checked whole before anything starts: every spec it brings up loads (its own
//! errors shown in full), and every step is held against the clusters that will exist when it
//! runs: target names and selectors (with a did-you-mean), `on`, `cluster`, `for_each`, the
//! order of `up`, `down` and node operations, template syntax, and captured variables used
//! before any step captures them. A typo costs a second, not a run.
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
    };
    c.steps(&scenario.steps, Nest::Top);
    // `finally` runs after any step, even the first: check it against what may be up.
    c.steps(&scenario.finally, Nest::Top);
    let mut all = c.specs;
    if !c.errors.is_empty() {
        all.push(InvalidSpec {
            file: scenario.source.path.clone(),
            errors: c.errors,
        });
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
    /// Clusters up at this point of the scenario.
    views: Vec<ClusterView>,
    captured: BTreeSet<String>,
    specs: Vec<InvalidSpec>,
    errors: Vec<SpecError>,
    templates: minijinja::Environment<'static>,
}

impl Checker<'_> {
    fn err(&mut self, step: &Step, message: impl Into<String>, help: impl Into<String>) {
        let key = key_of(&step.kind);
        let span = key
            .and_then(|k| key_span(&self.scenario.source.text, step.span.clone(), k))
            .unwrap_or_else(|| step.span.clone());
        let e = self
            .scenario
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
        if text.contains("node.") && nest != Nest::Node {
            self.err(
                step,
                format!("`{text}` uses `node`, which only steps inside `for_each` (and `converge`) have"),
                "put this step inside a for_each step, or name the node, e.g. {{ env.TROUPE_MAIN_1_CLIENT_URL }}",
            );
        }
        for var in vars_used(text) {
            if var == "ITERATION" && nest == Nest::Repeat {
                continue;
            }
            if !self.captured.contains(&var) {
                let known: Vec<&str> = self.captured.iter().map(String::as_str).collect();
                let hint = troupe_spec::suggest(&var, known.iter().copied())
                    .map(|s| format!("did you mean `vars.{s}`? "))
                    .unwrap_or_default();
                self.err(
                    step,
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

    fn up(&mut self, step: &Step, specs: &[String], nest: Nest) {
        for spec in specs {
            self.template(step, spec, nest);
            if spec.contains("{{") {
                continue;
            }
            let path = self.scenario.source.dir().join(spec);
            let loaded = Spec::from_path(&path).and_then(|s| crate::plan::check(&s).map(|()| s));
            match loaded {
                Ok(s) => self.add(&s),
                Err(e) => {
                    if !path.exists() {
                        self.err(
                            step,
                            format!("{} does not exist", path.display()),
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

    fn step(&mut self, step: &Step, nest: Nest) {
        self.template(step, &step.name, nest);
        match &step.kind {
            StepKind::Up(specs) => self.up(step, specs, nest),
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
            StepKind::Parallel { steps } => self.steps(steps, nest),
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
        StepKind::Up(_) => "up",
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

/// The `vars.NAME` a template reads.
fn vars_used(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("vars.") {
        let before = rest[..i].chars().last();
        let after = &rest[i + 5..];
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
    let s = Scenario::from_path(path).map_err(|e| vec![e])?;
    check(&s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_are_found_in_templates() {
        assert_eq!(
            vars_used("{{ vars.OLD }} x {{ vars.NEW_1|upper }} {{ env.vars.X }}"),
            ["OLD", "NEW_1"]
        );
    }
}
