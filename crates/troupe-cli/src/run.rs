//! `troupe run`: a scenario with live progress, a summary table, reports and a verdict.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use troupe::Interrupt;
use troupe::report::{Report, StepReport, Verdict};
use troupe::scenario::{Event, RunOptions};
use troupe_spec::exit;
use troupe_spec::format_duration as human;
use troupe_spec::scenario::Scenario;

/// The long help's second half: what a scenario file can say beyond plain steps.
const RUN_HELP: &str = "\
Parameters: a scenario's [env] table declares variables with defaults ([env] VARIANT = \"plain\");
the caller's environment overrides them (VARIANT=mtls troupe run s.toml), and templates read them
as {{ env.VARIANT }}. Only declared variables are read from the caller's environment; an
undeclared env.X is refused before anything starts.

Step options:
  when = \"EXPR\"                 run the step only if the expression is true, e.g.
                                when = \"env.VARIANT == 'mtls'\"; otherwise it is skipped
  include = \"common.toml\"       a step running the [[step]] tables of another file, in place
                                (relative to the including file; cycles are refused)
  max_parallel = N              with parallel = true: at most N nested runs at a time
  continue_on_failure = true    the steps after this one run even if it fails (also a
                                scenario-level key: for every step)
  known_failure = \"why (link)\"  the step is expected to fail: failing is expected-failure
                                (the scenario passes), passing is unexpected-pass (it fails)

for_each and converge cover the nodes that are running: after a kill, `for_each = \"main\"`
leaves the killed node out (name it, or main:all, to include it); a crashed node stays in.

Verdicts: passed, failed, skipped, expected-failure, unexpected-pass; the summary counts each.
Exit status: 0 passed, 1 failed, 2 invalid scenario (nothing ran), 130 interrupted.
See docs/scenarios.md.";

#[derive(Args)]
#[command(after_long_help = RUN_HELP)]
pub struct RunArgs {
    /// The scenario file (TOML); see docs/scenarios.md.
    scenario: PathBuf,
    /// Write a JUnit XML report here (one test case per top-level step).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write the self-contained HTML report here: every client's calls on a timeline with the
    /// nodes' states, faults, leader changes and steps, the verdict and the anomaly (one file
    /// per workload: FILE for the first, FILE-STEP.html for the others).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write a JSON report here (steps, verdicts, durations, metrics).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep the run directory (every node's logs and data) after a passing run too; a failing
    /// run always keeps it.
    #[arg(long)]
    keep: bool,
    /// Where the clusters' state directories, histories and failed steps' output go, kept
    /// after the run [default: a new temporary directory, removed after a passing run].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Override one key of every spec the scenario brings up that has its cluster (repeatable),
    /// validated like the file: --set clusters.main.network=namespaces
    /// --set clusters.main.binary=$PWD/target/release/server. An `up` step's own
    /// `set = ["KEY=VALUE"]` applies after these.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::parse_set)]
    set: Vec<String>,
}

pub fn run(args: RunArgs) -> i32 {
    // Checked whole, with every spec it brings up, before anything starts.
    let scenario: Scenario =
        match troupe::scenario::load_with(&args.scenario, crate::overrides(&args.set)) {
            Ok(s) => s,
            Err(problems) => {
                for p in problems {
                    crate::report_invalid(p);
                }
                return exit::INVALID_INPUT;
            }
        };
    // Before the signal thread: a user namespace is entered only while single-threaded.
    if let Err(code) = crate::rootless::enter_if(crate::rootless::scenario_needs(&scenario)) {
        return code;
    }
    let interrupt = Interrupt::new();
    forward_signals(interrupt.clone());
    let n = scenario.steps.len();
    out!(
        "troupe: running `{}` ({n} step{})",
        scenario.name,
        if n == 1 { "" } else { "s" }
    );
    let current: Arc<Mutex<Option<(String, Instant)>>> = Arc::new(Mutex::new(None));
    let ticker_current = current.clone();
    std::thread::spawn(move || {
        // Live progress for long steps: a line every 10 s while one runs.
        loop {
            std::thread::sleep(Duration::from_secs(10));
            if let Some((name, since)) = ticker_current.lock().expect("progress").clone() {
                out!(
                    "      … {name}: still running after {}",
                    human(since.elapsed())
                );
            }
        }
    });
    let on_event = move |e: &Event| match e {
        Event::StepStarted { depth, name } => {
            *current.lock().expect("progress") = Some((name.to_string(), Instant::now()));
            out!("{}▸ {name}", "  ".repeat(depth + 1));
        }
        Event::StepEnded { depth, report } => {
            *current.lock().expect("progress") = None;
            print_result(*depth, report);
        }
        Event::Note(n) => out!("  · {n}"),
    };
    let opts = RunOptions {
        run_dir: args.run_dir.clone(),
        keep: args.keep,
        interrupt: interrupt.clone(),
        subreaper: true,
    };
    let report = troupe::scenario::run(&scenario, opts, &on_event);
    summary(&report);
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.to_json()).expect("json");
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("error: cannot write {}: {e}", path.display());
        }
    }
    if let Some(path) = &args.html {
        write_html(path, &report);
    }
    if let Some(path) = &args.junit
        && let Err(e) = std::fs::write(path, report.to_junit())
    {
        eprintln!("error: cannot write {}: {e}", path.display());
    }
    if report.interrupted {
        exit::INTERRUPTED
    } else if report.verdict == Verdict::Passed {
        exit::OK
    } else {
        exit::FAILURE
    }
}

fn write_html(path: &std::path::Path, report: &Report) {
    let pages = match report.html_pages() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: cannot render the HTML report: {e}");
            return;
        }
    };
    for (i, (step, page)) in pages.iter().enumerate() {
        let file = if i == 0 {
            path.to_path_buf()
        } else {
            let slug = troupe::report::slug(step);
            let stem = path
                .file_stem()
                .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
            path.with_file_name(format!("{stem}-{slug}.html"))
        };
        match std::fs::write(&file, page) {
            Ok(()) => out!("report: {}", file.display()),
            Err(e) => eprintln!("error: cannot write {}: {e}", file.display()),
        }
    }
}

fn forward_signals(interrupt: Interrupt) {
    crate::signal::Signals::install().on_each(move |_| {
        interrupt.trigger();
        if interrupt.level() >= 2 {
            eprintln!("troupe: interrupted again: killing every node now");
        } else {
            eprintln!(
                "troupe: interrupted: stopping the current step, then the `finally` steps (Ctrl-C again to kill)"
            );
        }
    });
}

fn print_result(depth: usize, r: &StepReport) {
    let pad = "  ".repeat(depth + 1);
    match r.verdict {
        Verdict::Passed => {
            let detail = r
                .detail
                .as_deref()
                .map(|d| format!("  {d}"))
                .unwrap_or_default();
            out!("{pad}✓ {}  {}{detail}", r.name, human(r.duration));
        }
        Verdict::Skipped => match &r.detail {
            Some(why) => out!("{pad}- {}  skipped: {why}", r.name),
            None => out!("{pad}- {}  skipped", r.name),
        },
        Verdict::UnexpectedPass => {
            out!("{pad}! {}  {}  unexpected pass", r.name, human(r.duration));
            if let Some(e) = &r.error {
                out!("{pad}    {e}");
            }
        }
        Verdict::Failed | Verdict::ExpectedFailure => {
            if r.verdict == Verdict::ExpectedFailure {
                out!(
                    "{pad}✗ {}  {}  expected failure: {}",
                    r.name,
                    human(r.duration),
                    r.known_failure.as_deref().unwrap_or("")
                );
            } else {
                out!("{pad}✗ {}  {}", r.name, human(r.duration));
            }
            if let Some(e) = &r.error
                && e != troupe::scenario::NESTED_FAILED
            {
                for l in e.lines() {
                    out!("{pad}    {l}");
                }
            }
            for (node, lines) in &r.logs {
                out!("{pad}    last lines of {node}'s log:");
                for l in lines {
                    out!("{pad}      | {l}");
                }
            }
        }
    }
}

fn summary(r: &Report) {
    out!();
    let rows: Vec<(&StepReport, &str)> = r
        .steps
        .iter()
        .map(|s| (s, ""))
        .chain(r.finally.iter().map(|s| (s, " (finally)")))
        .collect();
    let width = rows
        .iter()
        .map(|(s, f)| s.name.chars().count() + f.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out!("{:<width$}  {:<16}  TIME", "STEP", "VERDICT");
    for (s, f) in rows {
        out!(
            "{:<width$}  {:<16}  {}",
            format!("{}{f}", s.name),
            s.verdict.as_str(),
            human(s.duration)
        );
    }
    if !r.metrics.is_empty() {
        out!();
        let w = r
            .metrics
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(6);
        out!("{:<w$}  VALUE", "METRIC");
        for (k, v) in &r.metrics {
            out!("{k:<w$}  {}", human(Duration::from_secs_f64(v / 1000.0)));
        }
    }
    if !r.faults.is_empty() {
        out!();
        out!("FAULT");
        for (spec, f) in &r.faults {
            let held = f
                .healed_at_ms
                .map(|h| {
                    format!(
                        "healed after {}",
                        human(Duration::from_millis(h.saturating_sub(f.started_at_ms)))
                    )
                })
                .unwrap_or_else(|| "never healed (removed at down)".into());
            out!("{spec}: {}  ({held})", f.description);
        }
    }
    out!();
    out!("steps: {}", r.counts().summary());
    match (r.verdict, r.failed_step()) {
        (Verdict::Passed, _) => out!("PASSED: {} in {}", r.name, human(r.duration)),
        (_, Some(s)) if s.verdict == Verdict::UnexpectedPass => out!(
            "FAILED: {} at step `{}` after {}: it passed, but is marked as a known failure ({}); the known failure seems fixed",
            r.name,
            s.name,
            human(r.duration),
            s.known_failure.as_deref().unwrap_or("")
        ),
        (_, Some(s)) => out!(
            "FAILED: {} at step `{}` after {}",
            r.name,
            s.name,
            human(r.duration)
        ),
        _ => out!(
            "FAILED: {}{} after {}",
            r.name,
            if r.interrupted { " (interrupted)" } else { "" },
            human(r.duration)
        ),
    }
    if let Some(d) = &r.state_dir {
        out!("logs and data kept in {}", d.display());
    }
}
