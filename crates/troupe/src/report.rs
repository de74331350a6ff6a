//! What a scenario run produced: a tree of step results, metrics and a verdict, rendered as
//! JSON and JUnit XML. Reporters only read it; they never drive the run.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// Not run: its `when` was false, or an earlier step failed, or the run was interrupted.
    Skipped,
    /// A step marked `known_failure` failed, as expected: the scenario still passes.
    ExpectedFailure,
    /// A step marked `known_failure` passed: the known failure seems fixed, and the scenario
    /// fails until the mark is removed.
    UnexpectedPass,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Skipped => "skipped",
            Verdict::ExpectedFailure => "expected-failure",
            Verdict::UnexpectedPass => "unexpected-pass",
        }
    }

    /// Whether this verdict fails the scenario.
    pub fn fails_scenario(self) -> bool {
        matches!(self, Verdict::Failed | Verdict::UnexpectedPass)
    }
}

/// How many steps got each verdict, nested ones included (a step that ran nested steps is
/// counted through them, unless its own verdict is about its `known_failure`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub expected_failures: usize,
    pub unexpected_passes: usize,
}

impl Counts {
    fn add(&mut self, s: &StepReport) {
        let own = matches!(
            s.verdict,
            Verdict::ExpectedFailure | Verdict::UnexpectedPass
        );
        if !own && !s.children.is_empty() {
            for c in &s.children {
                self.add(c);
            }
            return;
        }
        match s.verdict {
            Verdict::Passed => self.passed += 1,
            Verdict::Failed => self.failed += 1,
            Verdict::Skipped => self.skipped += 1,
            Verdict::ExpectedFailure => self.expected_failures += 1,
            Verdict::UnexpectedPass => self.unexpected_passes += 1,
        }
    }

    /// `12 passed, 2 skipped, 1 expected failure`: the verdicts that occurred.
    pub fn summary(&self) -> String {
        let parts = [
            (self.passed, "passed", "passed"),
            (self.failed, "failed", "failed"),
            (self.skipped, "skipped", "skipped"),
            (
                self.expected_failures,
                "expected failure",
                "expected failures",
            ),
            (
                self.unexpected_passes,
                "unexpected pass",
                "unexpected passes",
            ),
        ];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, one, many)| format!("{n} {}", if *n == 1 { one } else { many }))
            .collect();
        if shown.is_empty() {
            "no steps".to_string()
        } else {
            shown.join(", ")
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "expected_failure": self.expected_failures,
            "unexpected_pass": self.unexpected_passes,
        })
    }
}

/// One step's outcome.
#[derive(Debug, Clone)]
pub struct StepReport {
    pub name: String,
    pub verdict: Verdict,
    pub duration: Duration,
    /// Why it failed (or, for an unexpected pass, that it passed).
    pub error: Option<String>,
    /// The reason given by `known_failure`, if the step is marked.
    pub known_failure: Option<String>,
    /// A short account of what it saw (the leader's name, agreed output, ...).
    pub detail: Option<String>,
    /// The last lines of the logs of the nodes the step touched, when it failed.
    pub logs: Vec<(String, Vec<String>)>,
    pub children: Vec<StepReport>,
}

impl StepReport {
    pub fn skipped(name: &str) -> StepReport {
        StepReport {
            name: name.to_string(),
            verdict: Verdict::Skipped,
            duration: Duration::ZERO,
            error: None,
            known_failure: None,
            detail: None,
            logs: vec![],
            children: vec![],
        }
    }

    /// A step not run, saying why (`when` false, an earlier failure, ...).
    pub fn skipped_because(name: &str, why: impl Into<String>) -> StepReport {
        let mut s = StepReport::skipped(name);
        s.detail = Some(why.into());
        s
    }

    /// The innermost failed step under an expected failure (or the step itself).
    pub fn innermost_failure(&self) -> &StepReport {
        self.children
            .iter()
            .find(|c| c.verdict == Verdict::Failed)
            .map_or(self, StepReport::innermost_failure)
    }

    /// The innermost step that fails the scenario, for "failed at ...".
    pub fn failed_leaf(&self) -> Option<&StepReport> {
        if !self.verdict.fails_scenario() {
            return None;
        }
        self.children
            .iter()
            .find_map(StepReport::failed_leaf)
            .or(Some(self))
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "verdict": self.verdict.as_str(),
            "duration_ms": ms(self.duration),
            "error": self.error,
            "known_failure": self.known_failure,
            "detail": self.detail,
            "logs": self.logs.iter().map(|(n, l)| json!({"node": n, "lines": l})).collect::<Vec<_>>(),
            "steps": self.children.iter().map(StepReport::json).collect::<Vec<_>>(),
        })
    }
}

/// A whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub verdict: Verdict,
    pub duration: Duration,
    pub steps: Vec<StepReport>,
    pub finally: Vec<StepReport>,
    /// Name → milliseconds, in the order they were recorded.
    pub metrics: Vec<(String, f64)>,
    /// Kept on failure (or with --keep): every node's logs and data.
    pub state_dir: Option<PathBuf>,
    pub interrupted: bool,
    /// Network faults injected during the run (spec name, record with start and end).
    pub faults: Vec<(String, troupe_spec::FaultRecord)>,
    /// Every workload the run started: its history, and its verdict if a step checked it.
    pub workloads: Vec<WorkloadOutcome>,
    /// When things happened, for timelines.
    pub timeline: RunTimeline,
}

/// A workload's history and verdict.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkloadOutcome {
    /// The name of the step that started it.
    pub step: String,
    pub history: std::sync::Arc<crate::workload::History>,
    /// `None` if no `verify` step checked it.
    pub judgement: Option<crate::workload::Judgement>,
    pub checked_in: Option<Duration>,
}

impl WorkloadOutcome {
    fn json(&self) -> serde_json::Value {
        let h = &self.history;
        json!({
            "step": self.step,
            "model": h.model.as_str(),
            "seed": h.seed,
            "calls": h.calls(),
            "history": h.path,
            "verdict": self.judgement.as_ref().map(|j| match j.valid() {
                Some(true) => "valid",
                Some(false) => "invalid",
                None => "unknown",
            }),
            "explanation": self.judgement.as_ref().map(ToString::to_string),
            "check": self.judgement.as_ref().map(crate::workload::Judgement::to_json),
            "checked_in_ms": self.checked_in.map(ms),
        })
    }
}

/// The run's clock and what happened on it: top-level steps, and the clusters' last
/// descriptors (node states, leader changes and faults, in Unix milliseconds).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RunTimeline {
    /// Unix milliseconds at the run's time zero (the time zero of workload histories).
    pub origin_unix_ms: u64,
    /// Top-level steps: name, start and end in ns since time zero, passed.
    pub steps: Vec<(String, u64, u64, bool)>,
    pub descriptors: Vec<troupe_spec::Descriptor>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

impl Report {
    /// The first failed step, innermost.
    pub fn failed_step(&self) -> Option<&StepReport> {
        self.steps
            .iter()
            .chain(&self.finally)
            .find_map(StepReport::failed_leaf)
    }

    /// Verdicts of every step, `finally` ones included.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for s in self.steps.iter().chain(&self.finally) {
            c.add(s);
        }
        c
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "verdict": self.verdict.as_str(),
            "counts": self.counts().json(),
            "duration_ms": ms(self.duration),
            "failed_step": self.failed_step().map(|s| s.name.clone()),
            "interrupted": self.interrupted,
            "steps": self.steps.iter().map(StepReport::json).collect::<Vec<_>>(),
            "finally": self.finally.iter().map(StepReport::json).collect::<Vec<_>>(),
            "metrics": self.metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "state_dir": self.state_dir,
            "faults": self.faults.iter().map(|(spec, f)| json!({
                "spec": spec,
                "id": f.id,
                "description": f.description,
                "started_at_ms": f.started_at_ms,
                "healed_at_ms": f.healed_at_ms,
            })).collect::<Vec<_>>(),
            "workloads": self.workloads.iter().map(WorkloadOutcome::json).collect::<Vec<_>>(),
            "split_brains": self.timeline.descriptors.iter().flat_map(|d| {
                d.clusters.iter().flat_map(move |c| c.split_brains.iter().map(move |w| json!({
                    "spec": d.name,
                    "cluster": c.name,
                    "from_ms": w.from_ms,
                    "to_ms": w.to_ms,
                    "nodes": w.nodes,
                })))
            }).collect::<Vec<_>>(),
        })
    }

    /// The self-contained HTML report: one page per workload (step name, page), or one page
    /// of the run alone if it started none.
    pub fn html_pages(&self) -> Result<Vec<(String, String)>, String> {
        use crate::verify::html::{self, LeaderMark, NodeLane, NodeSpan, StepMark, Timeline};
        let t = &self.timeline;
        let ns = |unix_ms: u64| {
            unix_ms
                .saturating_sub(t.origin_unix_ms)
                .saturating_mul(1_000_000)
        };
        let end = self.duration.as_nanos() as u64;
        let mut base = Timeline::new(&self.name);
        for d in &t.descriptors {
            for n in &d.nodes {
                let mut lane = NodeLane::new(&n.name);
                for (i, e) in n.events.iter().enumerate() {
                    let until = n.events.get(i + 1).map(|next| ns(next.at_ms));
                    lane = lane.with_span(NodeSpan::new(ns(e.at_ms), until, e.state.to_string()));
                }
                base = base.with_node(lane);
            }
            for c in &d.clusters {
                // A split brain is a band on the timeline, as a fault is: when, and who.
                for w in &c.split_brains {
                    base = base.with_fault((
                        ns(w.from_ms),
                        w.to_ms.map_or(end, ns),
                        format!(
                            "split brain in {}: {} claim to lead",
                            c.name,
                            w.nodes.join(", ")
                        ),
                    ));
                }
                for change in &c.leader_changes {
                    base = base.with_leader(LeaderMark::new(
                        ns(change.at_ms),
                        &c.name,
                        change.leader.clone(),
                    ));
                }
            }
        }
        for (_, f) in &self.faults {
            let healed = f.healed_at_ms.map_or(end, ns);
            base = base.with_fault((ns(f.started_at_ms), healed, f.description.clone()));
        }
        for (name, start, stop, passed) in &t.steps {
            base = base.with_step(StepMark::new(name, *start, *stop, *passed));
        }
        if self.workloads.is_empty() {
            let page =
                html::render(&[], html::Judgement::None, &base).map_err(|e| e.to_string())?;
            return Ok(vec![(String::new(), page)]);
        }
        let mut pages = Vec::new();
        for w in &self.workloads {
            let timeline = base.clone().with_seed(w.history.seed);
            let judgement = match &w.judgement {
                Some(crate::workload::Judgement::Linearizable(v)) => {
                    html::Judgement::Linearizable(v)
                }
                Some(crate::workload::Judgement::Set(r)) => html::Judgement::Set(r),
                None => html::Judgement::None,
            };
            let page = html::render(&w.history.ops, judgement, &timeline)
                .map_err(|e| format!("the history of `{}`: {e}", w.step))?;
            pages.push((w.step.clone(), page));
        }
        Ok(pages)
    }

    /// One test suite; one test case per top-level step (and finally step).
    pub fn to_junit(&self) -> String {
        let all: Vec<&StepReport> = self.steps.iter().chain(&self.finally).collect();
        let failures = all.iter().filter(|s| s.verdict.fails_scenario()).count();
        let skipped = all
            .iter()
            .filter(|s| matches!(s.verdict, Verdict::Skipped | Verdict::ExpectedFailure))
            .count();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        x.push_str(&format!(
            "<testsuites name=\"troupe\" tests=\"{}\" failures=\"{failures}\" time=\"{:.3}\">\n",
            all.len(),
            self.duration.as_secs_f64()
        ));
        x.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">\n",
            esc(&self.name),
            all.len(),
            self.duration.as_secs_f64()
        ));
        if !self.metrics.is_empty() {
            x.push_str("    <properties>\n");
            for (k, v) in &self.metrics {
                x.push_str(&format!(
                    "      <property name=\"{}\" value=\"{v:.3}ms\"/>\n",
                    esc(k)
                ));
            }
            x.push_str("    </properties>\n");
        }
        for s in all {
            x.push_str(&format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                esc(&self.name),
                esc(&s.name),
                s.duration.as_secs_f64()
            ));
            match s.verdict {
                Verdict::Passed => x.push_str("/>\n"),
                Verdict::Skipped => match &s.detail {
                    Some(why) => x.push_str(&format!(
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                        esc(why)
                    )),
                    None => x.push_str(">\n      <skipped/>\n    </testcase>\n"),
                },
                // JUnit has no "expected failure": a skip that says so, with what failed.
                Verdict::ExpectedFailure => {
                    let reason = s.known_failure.clone().unwrap_or_default();
                    let leaf = s.innermost_failure();
                    x.push_str(&format!(
                        ">\n      <skipped type=\"expected-failure\" message=\"expected failure: {}\">{}</skipped>\n    </testcase>\n",
                        esc(&reason),
                        esc(leaf.error.as_deref().unwrap_or(""))
                    ));
                }
                Verdict::Failed | Verdict::UnexpectedPass => {
                    let leaf = s.failed_leaf().unwrap_or(s);
                    let message = leaf.error.clone().unwrap_or_default();
                    let mut body = format!("failed at step `{}`: {message}", leaf.name);
                    for (node, lines) in &leaf.logs {
                        body.push_str(&format!(
                            "\n--- last lines of {node}'s log ---\n{}",
                            lines.join("\n")
                        ));
                    }
                    let kind = match leaf.verdict {
                        Verdict::UnexpectedPass => " type=\"unexpected-pass\"",
                        _ => "",
                    };
                    x.push_str(&format!(
                        ">\n      <failure{kind} message=\"{}\">{}</failure>\n    </testcase>\n",
                        esc(message.lines().next().unwrap_or("")),
                        esc(&body)
                    ));
                }
            }
        }
        x.push_str("  </testsuite>\n</testsuites>\n");
        x
    }
}

/// A step's name as a file name: lowercase letters and digits, `-` for the rest, 60 at most.
pub fn slug(name: &str) -> String {
    name.chars()
        .take(60)
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

fn esc(s: &str) -> String {
    s.chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_names_the_failed_step_and_escapes() {
        let mut failed = StepReport::skipped("converge <a> & b");
        failed.verdict = Verdict::Failed;
        failed.error = Some("nodes differ: \"1\" vs \"2\"".into());
        let r = Report {
            name: "s".into(),
            verdict: Verdict::Failed,
            duration: Duration::from_millis(1500),
            steps: vec![failed, StepReport::skipped("next")],
            finally: vec![],
            metrics: vec![("lag".into(), 12.5)],
            state_dir: None,
            interrupted: false,
            faults: vec![],
            workloads: vec![],
            timeline: RunTimeline::default(),
        };
        let x = r.to_junit();
        assert!(x.contains("failures=\"1\" skipped=\"1\""), "{x}");
        assert!(x.contains("name=\"converge &lt;a&gt; &amp; b\""), "{x}");
        assert!(
            x.contains("message=\"nodes differ: &quot;1&quot; vs &quot;2&quot;\""),
            "{x}"
        );
        assert!(
            x.contains("<property name=\"lag\" value=\"12.500ms\"/>"),
            "{x}"
        );
        assert_eq!(r.to_json()["failed_step"], "converge <a> & b");
    }

    #[test]
    fn junit_and_json_tell_skips_expected_failures_and_unexpected_passes_apart() {
        let skipped =
            StepReport::skipped_because("mtls only", "when `env.VARIANT == 'mtls'` is false");
        let mut expected = StepReport::skipped("stale read");
        expected.verdict = Verdict::ExpectedFailure;
        expected.known_failure = Some("bug <42>".into());
        expected.error = Some("exit status 1, expected 0".into());
        let mut unexpected = StepReport::skipped("fixed");
        unexpected.verdict = Verdict::UnexpectedPass;
        unexpected.known_failure = Some("bug 7".into());
        unexpected.error = Some("passed, but it is marked as a known failure (bug 7)".into());
        let r = Report {
            name: "s".into(),
            verdict: Verdict::Failed,
            duration: Duration::from_millis(10),
            steps: vec![skipped, expected, unexpected],
            finally: vec![],
            metrics: vec![],
            state_dir: None,
            interrupted: false,
            faults: vec![],
            workloads: vec![],
            timeline: RunTimeline::default(),
        };
        let x = r.to_junit();
        assert!(x.contains("failures=\"1\" skipped=\"2\""), "{x}");
        assert!(
            x.contains("<skipped message=\"when `env.VARIANT == 'mtls'` is false\"/>"),
            "{x}"
        );
        assert!(
            x.contains("<skipped type=\"expected-failure\" message=\"expected failure: bug &lt;42&gt;\">exit status 1, expected 0</skipped>"),
            "{x}"
        );
        assert!(
            x.contains("<failure type=\"unexpected-pass\" message=\"passed, but"),
            "{x}"
        );
        let j = r.to_json();
        assert_eq!(j["steps"][1]["verdict"], "expected-failure");
        assert_eq!(j["steps"][1]["known_failure"], "bug <42>");
        assert_eq!(j["steps"][2]["verdict"], "unexpected-pass");
        assert_eq!(j["failed_step"], "fixed");
        assert_eq!(
            j["counts"],
            json!({"passed": 0, "failed": 0, "skipped": 1, "expected_failure": 1, "unexpected_pass": 1})
        );
        assert_eq!(
            r.counts().summary(),
            "1 skipped, 1 expected failure, 1 unexpected pass"
        );
    }
}
