//! Workload steps of a scenario: `workload` starts one that runs while the following steps
//! do, `end_workload` ends it, `verify` waits for it to end and judges its history with its
//! model's checker. Whatever still runs when the scenario ends is ended, and its history kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use troupe_spec::format_duration;
use troupe_spec::workload::{Model, WorkloadSpec};

use super::{Ctx, Failure, Runner, StepResult, fail};
use crate::report::WorkloadOutcome;
use crate::workload::{Workload, WorkloadOptions};

/// A workload step's run: the workload while it runs, its outcome once it ended.
pub(super) struct Started {
    step: String,
    workload: Option<Workload>,
    outcome: Option<WorkloadOutcome>,
}

impl Runner<'_> {
    pub(super) fn start_workload(&self, name: &str, spec: &WorkloadSpec, ctx: &Ctx) -> StepResult {
        let engines: Vec<_> = self.clusters().iter().map(|c| c.engine()).collect();
        if engines.is_empty() {
            return fail("no cluster is up for the workload (add an `up` step first)");
        }
        if self
            .workloads
            .lock()
            .expect("workloads")
            .iter()
            .any(|w| w.step == name)
        {
            return fail(format!(
                "workload `{name}` already ran (a workload step cannot repeat)"
            ));
        }
        let opts = WorkloadOptions::default()
            .origin(self.origin)
            .run_dir(&self.run_dir)
            .dir(&self.dir)
            .env(self.env(ctx));
        let w = Workload::start(spec.clone(), crate::workload::resolver(engines), opts).map_err(
            |e| Failure {
                message: e.to_string(),
                nodes: vec![],
            },
        )?;
        let detail = format!(
            "{} {} client{} on the {} model, seed {}{}",
            spec.processes,
            spec.client.name(),
            if spec.processes == 1 { "" } else { "s" },
            spec.model,
            w.seed(),
            match (spec.ops, spec.duration) {
                (Some(n), _) => format!(", {n} operations"),
                (None, Some(d)) => format!(", for {}", format_duration(d)),
                (None, None) => ", until ended".to_string(),
            }
        );
        self.workloads.lock().expect("workloads").push(Started {
            step: name.to_string(),
            workload: Some(w),
            outcome: None,
        });
        Ok(Some(detail))
    }

    /// The workload steps `name` designates (`None`: every one started so far).
    fn chosen(&self, name: &Option<String>, verb: &str) -> Result<Vec<String>, Failure> {
        let all: Vec<String> = self
            .workloads
            .lock()
            .expect("workloads")
            .iter()
            .map(|w| w.step.clone())
            .collect();
        match name {
            None if all.is_empty() => {
                fail(format!("there is no workload to {verb}: none has started"))
            }
            None => Ok(all),
            Some(n) if all.contains(n) => Ok(vec![n.clone()]),
            Some(n) => fail(format!(
                "workload `{n}` has not started, so there is nothing to {verb}"
            )),
        }
    }

    /// Waits until the workload of step `name` ended, up to `deadline`, and keeps its history.
    fn collect(&self, name: &str, deadline: Instant) -> Result<(), Failure> {
        let taken = {
            let mut all = self.workloads.lock().expect("workloads");
            let w = all.iter_mut().find(|w| w.step == name).expect("chosen");
            if w.outcome.is_some() {
                return Ok(());
            }
            w.workload.take()
        };
        let Some(mut workload) = taken else {
            // Another step is collecting it; wait for that.
            while Instant::now() < deadline {
                if self.outcome_of(name).is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            return fail(format!("workload `{name}` did not end in time"));
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let result = workload.wait_timeout(left);
        let mut all = self.workloads.lock().expect("workloads");
        let slot = all.iter_mut().find(|w| w.step == name).expect("chosen");
        match result {
            None => {
                let spec = workload.spec().clone();
                slot.workload = Some(workload);
                fail(format!(
                    "workload `{name}` is still running at this step's deadline{}: end it first with end_workload = \"{name}\", or give this step a longer timeout",
                    spec.duration
                        .map(|d| format!(" (it runs for {})", format_duration(d)))
                        .unwrap_or_default()
                ))
            }
            Some(Err(e)) => fail(format!("workload `{name}` failed: {e}")),
            Some(Ok(history)) => {
                slot.outcome = Some(WorkloadOutcome {
                    step: name.to_string(),
                    history: Arc::new(history),
                    judgement: None,
                    checked_in: None,
                });
                Ok(())
            }
        }
    }

    fn outcome_of(&self, name: &str) -> Option<WorkloadOutcome> {
        self.workloads
            .lock()
            .expect("workloads")
            .iter()
            .find(|w| w.step == name)
            .and_then(|w| w.outcome.clone())
    }

    pub(super) fn end_workload(&self, name: &Option<String>, deadline: Instant) -> StepResult {
        let names = self.chosen(name, "end")?;
        for n in &names {
            if let Some(w) = self
                .workloads
                .lock()
                .expect("workloads")
                .iter()
                .find(|w| w.step == *n)
                .and_then(|w| w.workload.as_ref())
            {
                w.end();
            }
        }
        let mut calls = Vec::new();
        for n in &names {
            self.collect(n, deadline)?;
            if let Some(o) = self.outcome_of(n) {
                calls.push(format!("`{n}`: {} calls", o.history.calls()));
            }
        }
        Ok(Some(format!("ended {}", calls.join(", "))))
    }

    pub(super) fn verify(&self, name: &Option<String>, deadline: Instant) -> StepResult {
        let names = self.chosen(name, "verify")?;
        let mut lines = Vec::new();
        for n in &names {
            self.collect(n, deadline)?;
            let outcome = self.outcome_of(n).expect("collected");
            let budget = crate::verify::Budget::new(
                deadline.saturating_duration_since(Instant::now()),
                100_000_000,
            );
            let started = Instant::now();
            let judged = outcome.history.check(budget).map_err(|e| Failure {
                message: format!("the history of `{n}` cannot be checked: {e}"),
                nodes: vec![],
            })?;
            let took = started.elapsed();
            let valid = judged.valid();
            let text = judged.to_string();
            if let Some(w) = self
                .workloads
                .lock()
                .expect("workloads")
                .iter_mut()
                .find(|w| w.step == *n)
                && let Some(o) = &mut w.outcome
            {
                o.judgement = Some(judged);
                o.checked_in = Some(took);
            }
            let h = &outcome.history;
            let summary = format!(
                "`{n}` ({}, seed {}, {} calls, checked in {})",
                h.model,
                h.seed,
                h.calls(),
                format_duration(took)
            );
            match valid {
                Some(true) => lines.push(format!("{summary}: {}", short(h.model, &text))),
                Some(false) => return fail(format!("{summary}: {text}")),
                None => return fail(format!("{summary}: could not decide: {text}")),
            }
        }
        Ok(Some(lines.join("; ")))
    }

    /// Ends what still runs and returns every workload's outcome, for the report.
    pub(super) fn finish_workloads(&self) -> Vec<WorkloadOutcome> {
        let names: Vec<String> = self
            .workloads
            .lock()
            .expect("workloads")
            .iter()
            .map(|w| {
                if let Some(wl) = &w.workload {
                    wl.end();
                }
                w.step.clone()
            })
            .collect();
        let deadline = crate::deadline::std_after(Duration::from_secs(60));
        names
            .iter()
            .filter_map(|n| {
                let _ = self.collect(n, deadline);
                self.outcome_of(n)
            })
            .collect()
    }
}

/// A passing verdict in a few words.
fn short(model: Model, text: &str) -> String {
    match model {
        Model::Set => "no acknowledged add lost".to_string(),
        _ => text.split(':').next().unwrap_or(text).to_string(),
    }
}
