//! Each kind of scenario step: what it does and how it fails.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use troupe_spec::scenario::{Expect, NodeOp, Step, StepKind, WaitUntil};

use troupe_spec::NodeState;

use super::output::{check, last_line, short};
use super::{Ctx, Failure, Runner, StepResult, fail};
use crate::cluster::Cluster;
use crate::report::{StepReport, Verdict};

impl Runner<'_> {
    pub(super) fn act(
        &self,
        step: &Step,
        ctx: &Ctx,
        depth: usize,
        deadline: Instant,
        children: &mut Vec<StepReport>,
    ) -> StepResult {
        match &step.kind {
            StepKind::Up { specs, set } => self.up(specs, set, ctx),
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
                let expect = self.render_expect(expect, ctx)?;
                let out = self.command(&["bash".into(), "-c".into(), script], ctx, deadline)?;
                self.checked(&step.name, &out, &expect)?;
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
                let expect = self.render_expect(expect, ctx)?;
                let out = self.command(&argv, ctx, deadline)?;
                self.checked(&step.name, &out, &expect)?;
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
                let expect = &self.render_expect(expect, ctx)?;
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
                max_parallel,
                steps,
            } => {
                let target = self.render(target, ctx)?;
                let selected = self.select(&target)?;
                let (nodes, left_out) = self.running(&target, selected);
                if nodes.is_empty() {
                    return fail(format!(
                        "no node of `{target}` is running ({})",
                        left_out.join(", ")
                    ));
                }
                let contexts = self.node_contexts(ctx, &nodes);
                children.extend(self.many(steps, contexts, *parallel, *max_parallel, depth));
                Ok(left_out_detail(&left_out))
            }
            StepKind::Repeat {
                times,
                parallel,
                max_parallel,
                steps,
            } => {
                let contexts = (1..=*times)
                    .map(|i| {
                        let mut c = ctx.clone();
                        c.locals.insert("ITERATION".into(), i.to_string());
                        c
                    })
                    .collect();
                children.extend(self.many(steps, contexts, *parallel, *max_parallel, depth));
                Ok(None)
            }
            StepKind::Parallel {
                steps,
                max_parallel,
            } => {
                children.extend(bounded(steps, *max_parallel, |s| {
                    self.run_step(s, ctx, depth + 1)
                }));
                Ok(None)
            }
            StepKind::Include { steps, .. } => {
                children.extend(self.run_steps(steps, ctx, depth + 1));
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
            StepKind::Heal { id: None } => {
                let mut n = 0;
                for c in self.clusters() {
                    n += c.heal().map_err(|e| Failure {
                        message: e.to_string(),
                        nodes: vec![],
                    })?;
                }
                Ok(Some(format!("healed {n} fault(s)")))
            }
            StepKind::Heal { id: Some(id) } => {
                // Fault ids are per run of a spec: heal it wherever it is active.
                let mut first_error = None;
                for c in self.clusters() {
                    match c.heal_fault(*id) {
                        Ok(()) => return Ok(Some(format!("healed fault {id}"))),
                        Err(e) => {
                            first_error.get_or_insert(e.to_string());
                        }
                    }
                }
                fail(
                    first_error
                        .unwrap_or_else(|| format!("there is no fault {id}: no cluster is up")),
                )
            }
            StepKind::Sleep(d) => {
                let end = crate::deadline::std_after(*d).min(deadline);
                while Instant::now() < end && self.interrupt.level() == 0 {
                    std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
                }
                Ok(None)
            }
            StepKind::Workload(spec) => self.start_workload(&step.name, spec, ctx),
            StepKind::EndWorkload { workload } => self.end_workload(workload, deadline),
            StepKind::Verify { workload } => self.verify(workload, deadline),
            _ => fail("this troupe does not know that kind of step"),
        }
    }

    /// The expectations with their regexes rendered (they are templates too) and compiled.
    fn render_expect(&self, expect: &Expect, ctx: &Ctx) -> Result<Expect, Failure> {
        let mut out = expect.clone();
        for re in [&mut out.stdout, &mut out.stderr].into_iter().flatten() {
            *re = self.render(re, ctx)?;
            if let Err(e) = regex::Regex::new(re) {
                return fail(format!(
                    "`{re}` (rendered) is not a valid regular expression: {e}"
                ));
            }
        }
        Ok(out)
    }

    /// [`check`], keeping a failing command's whole output in the run directory: the console
    /// and the reports show its last lines only.
    fn checked(
        &self,
        step: &str,
        out: &super::output::Output,
        expect: &Expect,
    ) -> Result<(), Failure> {
        check(out, expect).map_err(|mut f| {
            let slug = crate::report::slug(step);
            let dir = self.run_dir.join("output");
            let path = dir.join(format!("{slug}.log"));
            let text = format!(
                "--- stdout ---\n{}\n--- stderr ---\n{}",
                out.stdout, out.stderr
            );
            if std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, text))
                .is_ok()
            {
                f.message
                    .push_str(&format!("\n  full output: {}", path.display()));
            }
            f
        })
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

    /// The nested steps once per context, one after another or at once (at most
    /// `max_parallel` at a time). One after another, a failed round ends the step unless the
    /// scenario says `continue_on_failure`.
    fn many(
        &self,
        steps: &[Step],
        contexts: Vec<Ctx>,
        parallel: bool,
        max_parallel: Option<u32>,
        depth: usize,
    ) -> Vec<StepReport> {
        if parallel {
            bounded(&contexts, max_parallel, |c| {
                self.run_steps(steps, c, depth + 1)
            })
            .into_iter()
            .flatten()
            .collect()
        } else {
            let mut out = Vec::new();
            for c in &contexts {
                let r = self.run_steps(steps, c, depth + 1);
                let failed = r.iter().any(|s| s.verdict == Verdict::Failed);
                out.extend(r);
                if failed && !self.continue_on_failure {
                    break;
                }
            }
            out
        }
    }

    /// Of the nodes a `for_each` or `converge` target selected, those that are running, and
    /// the ones the scenario took down (stopped, killed, paused) as `name (state)`. A node
    /// that exited on its own is kept: a crash must fail the step, not vanish from it. A node
    /// named on its own, or `CLUSTER:all`, is kept whatever its state: the scenario asked for
    /// it.
    pub(super) fn running(&self, target: &str, nodes: Vec<String>) -> (Vec<String>, Vec<String>) {
        if target.ends_with(":all") || nodes.len() == 1 && nodes[0] == target {
            return (nodes, vec![]);
        }
        let states: Vec<(String, NodeState)> = self
            .descriptors()
            .iter()
            .flat_map(|d| d.nodes.iter())
            .map(|n| (n.name.clone(), n.state))
            .collect();
        let mut up = Vec::new();
        let mut left_out = Vec::new();
        for n in nodes {
            match states.iter().find(|(name, _)| *name == n).map(|(_, s)| *s) {
                Some(s @ (NodeState::Stopped | NodeState::Killed | NodeState::Paused)) => {
                    left_out.push(format!("{n} ({s})"))
                }
                _ => up.push(n),
            }
        }
        (up, left_out)
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

    /// The nodes of every target (rendered first), in order, each once.
    fn select_all(&self, targets: &[String], ctx: &Ctx) -> Result<Vec<String>, Failure> {
        let mut nodes: Vec<String> = Vec::new();
        for t in targets {
            let t = self.render(t, ctx)?;
            for n in self.select(&t)? {
                if !nodes.contains(&n) {
                    nodes.push(n);
                }
            }
        }
        Ok(nodes)
    }

    /// Acts on every selected node at once (a group stop goes leader first), like the command
    /// line does: a quorum system started one node at a time would never become ready.
    fn op(&self, op: NodeOp, targets: &[String], ctx: &Ctx, deadline: Instant) -> StepResult {
        let nodes = self.select_all(targets, ctx)?;
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
        let mut left_out = Vec::new();
        if on.is_empty() {
            let all: Vec<String> = self
                .descriptors()
                .iter()
                .flat_map(|d| d.nodes.iter().map(|n| n.name.clone()))
                .collect();
            (nodes, left_out) = self.running("", all);
        } else {
            for t in on {
                let t = self.render(t, ctx)?;
                let (up, down) = self.running(&t, self.select(&t)?);
                for n in up {
                    if !nodes.contains(&n) {
                        nodes.push(n);
                    }
                }
                for d in down {
                    if !left_out.contains(&d) {
                        left_out.push(d);
                    }
                }
            }
        }
        if nodes.is_empty() {
            return fail(if left_out.is_empty() {
                "no node to converge on".to_string()
            } else {
                format!(
                    "no node to converge on is running ({})",
                    left_out.join(", ")
                )
            });
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
                    "{} nodes agree after {rounds} round(s): {}{}",
                    outputs.len(),
                    short(&value),
                    left_out_detail(&left_out)
                        .map(|d| format!("; {d}"))
                        .unwrap_or_default()
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
}

/// `not running, left out: main-1 (killed)`, when nodes were left out.
fn left_out_detail(left_out: &[String]) -> Option<String> {
    (!left_out.is_empty()).then(|| format!("not running, left out: {}", left_out.join(", ")))
}

/// `f` on every item, on threads, at most `limit` at a time (every item at once without a
/// limit); the results in the items' order.
fn bounded<T: Sync, R: Send>(
    items: &[T],
    limit: Option<u32>,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let workers = limit.map_or(items.len(), |l| (l as usize).min(items.len()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    *results[i].lock().expect("result") = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|r| r.into_inner().expect("result").expect("every item ran"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use super::bounded;

    /// Every task waits (with a deadline) until `limit` tasks run at once, or no task is left
    /// to start: a pool that runs more than `limit` at a time is caught by the high-water
    /// mark, one that runs fewer hangs until the deadline and fails.
    fn high_water(items: usize, limit: Option<u32>) -> usize {
        // (running, started, highest running)
        let state = Mutex::new((0usize, 0usize, 0usize));
        let changed = Condvar::new();
        let fill = limit.map_or(items, |l| l as usize);
        let deadline = Instant::now() + Duration::from_secs(20);
        let out = bounded(&(0..items).collect::<Vec<_>>(), limit, |i| {
            let mut s = state.lock().unwrap();
            s.0 += 1;
            s.1 += 1;
            s.2 = s.2.max(s.0);
            changed.notify_all();
            while s.0 < fill && s.1 < items {
                let left = deadline.saturating_duration_since(Instant::now());
                assert!(!left.is_zero(), "only {} ran at once, expected {fill}", s.0);
                s = changed.wait_timeout(s, left).unwrap().0;
            }
            s.0 -= 1;
            changed.notify_all();
            *i
        });
        assert_eq!(out, (0..items).collect::<Vec<_>>(), "results in order");
        state.into_inner().unwrap().2
    }

    #[test]
    fn max_parallel_is_reached_and_never_exceeded() {
        assert_eq!(high_water(40, Some(3)), 3);
        assert_eq!(high_water(5, Some(1)), 1);
        // A limit above the count runs everything at once.
        assert_eq!(high_water(4, Some(10)), 4);
        assert_eq!(high_water(12, None), 12);
        assert_eq!(high_water(0, Some(2)), 0);
    }
}
