//! `troupe verify`: judge a recorded history, from troupe or from Jepsen, without a cluster.

use std::io::BufReader;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use troupe::verify::{self, Budget, Verdict};
use troupe_spec::exit;
use troupe_spec::history::{Format, Op};
use troupe_spec::workload::Model;

#[derive(Args)]
pub struct VerifyArgs {
    /// The history: JSON Lines as troupe writes it (history.jsonl), or Jepsen's text with
    /// --format jepsen. `-` reads standard input.
    history: PathBuf,
    /// What the operations mean: register (read/write/cas), kv (get/put/append) or set
    /// (add, then a final read).
    #[arg(long, value_enum)]
    model: ModelArg,
    /// The history's text form.
    #[arg(long, value_enum, default_value_t = FormatArg::Jsonl)]
    format: FormatArg,
    /// Write the verdict, its explanation and the statistics as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the self-contained HTML report here (opens from disk, no network).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Give up (verdict unknown, exit 6) after this long.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    time_limit: Duration,
    /// Give up (verdict unknown, exit 6) after remembering this many search states of one key.
    #[arg(long, value_name = "N", default_value_t = 50_000_000)]
    max_states: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModelArg {
    Register,
    Kv,
    Set,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// One JSON object per line (troupe's history format).
    Jsonl,
    /// Jepsen's EDN maps, one per line: {:process 0, :type :invoke, :f :read, :value nil}.
    Jepsen,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    troupe_spec::parse_duration(s)
}

pub fn run(args: VerifyArgs) -> i32 {
    let model = match args.model {
        ModelArg::Register => Model::Register,
        ModelArg::Kv => Model::Kv,
        ModelArg::Set => Model::Set,
    };
    let format = match args.format {
        FormatArg::Jsonl => Format::JsonLines,
        FormatArg::Jepsen => Format::Jepsen,
    };
    let shown = args.history.display().to_string();
    let ops = match read(&args.history, format) {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    let started = Instant::now();
    let budget = Budget::new(args.time_limit, args.max_states);
    let judged = match model {
        Model::Set => verify::set(&ops).map(troupe::workload::Judgement::Set),
        model => {
            verify::linearizable(&ops, model, budget).map(troupe::workload::Judgement::Linearizable)
        }
    };
    let judged = match judged {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {shown} is not a valid {model} history: {e}");
            eprintln!(
                "  help: see the README's \"History format\" section; --format jepsen reads Jepsen's text"
            );
            return exit::INVALID_INPUT;
        }
    };
    let took = started.elapsed();
    let stats = verify::stats(&ops, &[]).ok();
    let calls = ops
        .iter()
        .filter(|o| o.kind != troupe_spec::history::OpType::Invoke)
        .count();
    println!(
        "{shown}: {calls} calls, {model} model, checked in {}",
        troupe_spec::format_duration(took)
    );
    println!("{judged}");
    if let Some(s) = &stats
        && let Some(l) = s.all.latency
    {
        println!(
            "calls: {} ok, {} fail, {} info; latency p50 {} p99 {} max {}",
            s.all.ok,
            s.all.fail,
            s.all.info,
            ns(l.p50),
            ns(l.p99),
            ns(l.max)
        );
    }
    let mut code = match judged.valid() {
        Some(true) => exit::OK,
        Some(false) => exit::FAILURE,
        None => exit::UNKNOWN,
    };
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "history": shown,
            "model": model.as_str(),
            "calls": calls,
            "verdict": match judged.valid() { Some(true) => "valid", Some(false) => "invalid", None => "unknown" },
            "explanation": judged.to_string(),
            "check": judged.to_json(),
            "checked_in_ms": took.as_secs_f64() * 1000.0,
            "stats": stats,
        });
        if let Err(e) = std::fs::write(path, serde_json::to_string_pretty(&doc).expect("json")) {
            eprintln!("error: cannot write {}: {e}", path.display());
            code = exit::FAILURE;
        }
    }
    if let Some(path) = &args.html {
        let timeline = verify::html::Timeline::new(format!("{shown} ({model})"));
        let j = match &judged {
            troupe::workload::Judgement::Linearizable(v) => {
                verify::html::Judgement::Linearizable(v)
            }
            troupe::workload::Judgement::Set(r) => verify::html::Judgement::Set(r),
            _ => verify::html::Judgement::None,
        };
        match verify::html::render(&ops, j, &timeline) {
            Ok(page) => match std::fs::write(path, page) {
                Ok(()) => println!("report: {}", path.display()),
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    code = exit::FAILURE;
                }
            },
            Err(e) => {
                eprintln!("error: cannot render the report: {e}");
                code = exit::FAILURE;
            }
        }
    }
    if let troupe::workload::Judgement::Linearizable(Verdict::Unknown { .. }) = &judged {
        eprintln!("  help: raise --time-limit or --max-states, or check fewer operations per key");
    }
    code
}

fn read(path: &std::path::Path, format: Format) -> Result<Vec<Op>, String> {
    let shown = path.display();
    let result = if path.as_os_str() == "-" {
        troupe_spec::history::read_all(std::io::stdin().lock(), format)
    } else {
        let f = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        troupe_spec::history::read_all(BufReader::new(f), format)
    };
    result.map_err(|e| {
        let hint = match format {
            Format::JsonLines => "is it Jepsen's text? add --format jepsen",
            _ => "is it troupe's JSON Lines? drop --format jepsen",
        };
        format!("{shown}:{}: {e} ({hint})", e.line())
    })
}

fn ns(n: u64) -> String {
    troupe_spec::format_duration(Duration::from_nanos(n))
}
