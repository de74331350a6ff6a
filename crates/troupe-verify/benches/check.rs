//! The linearizability checker beside porcupine, in one run: `cargo bench -p troupe-verify`.
//!
//! 1. The six kv histories of `../shared/histories/kv/` (porcupine's own test data), each
//!    checked several times: min and median, next to porcupine's figures from that folder's
//!    README (Go, `go test -bench`, this machine). Skipped with a message if the folder is
//!    missing.
//! 2. Generated kv histories of 10,000 calls (20,000 lines) from the test suite's simulated
//!    store: spread over keys as a workload would, and all on one key with 20 clients.
//!
//! Only the check is timed; reading the file is not, as in porcupine's benchmark. Goals are
//! reported, never enforced: no slower than porcupine on any history, and a 10,000-call kv
//! history in under a second.

#[path = "../tests/checks/sim.rs"]
mod sim;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use troupe_spec::history::{Format, Op, read_all};
use troupe_verify::{Budget, Model, Verdict, linearizable};

use sim::{Config, Store, generate};

/// porcupine's medians (ms) from the shared README, and the known verdicts.
const SHARED: [(&str, f64, bool); 6] = [
    ("c01-ok.txt", 0.13, true),
    ("c01-bad.txt", 0.06, false),
    ("c10-ok.txt", 0.64, true),
    ("c10-bad.txt", 0.51, false),
    ("c50-ok.txt", 179.0, true),
    ("c50-bad.txt", 41.0, false),
];

const GOAL_10K: Duration = Duration::from_secs(1);

fn budget() -> Budget {
    Budget::new(Duration::from_secs(120), 50_000_000)
}

/// Checks `ops` until `runs` runs and at least half a second have passed (at most 200 runs);
/// returns the verdict and the min and median times.
fn time(ops: &[Op], runs: usize) -> (Verdict, Duration, Duration) {
    let mut times = Vec::new();
    let mut verdict = Verdict::Unknown {
        reason: "not run".to_string(),
    };
    let started = Instant::now();
    while times.len() < runs
        || (started.elapsed() < Duration::from_millis(500) && times.len() < 200)
    {
        let start = Instant::now();
        verdict = linearizable(ops, Model::Kv, budget()).expect("a well-formed history");
        times.push(start.elapsed());
    }
    times.sort();
    (verdict, times[0], times[times.len() / 2])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict_word(v: &Verdict) -> &'static str {
    match v {
        Verdict::Linearizable => "linearizable",
        Verdict::NotLinearizable(_) => "not linearizable",
        _ => "unknown",
    }
}

fn main() {
    println!(
        "{:<30} {:>6}  {:<17} {:>10} {:>10}  {:>10}  vs porcupine",
        "history", "lines", "verdict", "min ms", "median ms", "porcupine"
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/histories/kv");
    let mut all_met = true;
    if !dir.is_dir() {
        println!(
            "skipping the shared histories: {} is not on this machine",
            dir.display()
        );
    }
    for (name, porcupine_ms, expected) in SHARED {
        if !dir.is_dir() {
            break;
        }
        let path = dir.join(name);
        let ops = match std::fs::File::open(&path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                read_all(std::io::BufReader::new(f), Format::Jepsen).map_err(|e| e.to_string())
            }) {
            Ok(ops) => ops,
            Err(e) => {
                println!("skipping {}: {e}", path.display());
                continue;
            }
        };
        let (verdict, min, median) = time(&ops, 7);
        let right =
            verdict.is_linearizable() == expected && !matches!(verdict, Verdict::Unknown { .. });
        let ratio = porcupine_ms / ms(median);
        let met = right && ratio >= 1.0;
        all_met &= met;
        println!(
            "{:<30} {:>6}  {:<17} {:>10.3} {:>10.3}  {:>10.2}  {:>6.1}x faster{}",
            name,
            ops.len(),
            verdict_word(&verdict),
            ms(min),
            ms(median),
            porcupine_ms,
            ratio,
            if right { "" } else { "  WRONG VERDICT" }
        );
    }

    let shapes = [
        (
            "10k calls, 10 clients/10 keys",
            Config::new(Store::Kv, 10, 10_000, 10),
        ),
        (
            "10k calls, 20 clients/1 key",
            Config::new(Store::Kv, 20, 10_000, 1),
        ),
    ];
    for (label, cfg) in shapes {
        let ops = generate(&cfg, 2024).ops;
        let (verdict, min, median) = time(&ops, 5);
        let met = verdict.is_linearizable() && median < GOAL_10K;
        all_met &= met;
        println!(
            "{:<30} {:>6}  {:<17} {:>10.3} {:>10.3}  {:>10}  goal < {} ms{}",
            label,
            ops.len(),
            verdict_word(&verdict),
            ms(min),
            ms(median),
            "-",
            GOAL_10K.as_millis(),
            if met { "" } else { "  MISSED" }
        );
    }
    println!(
        "{}",
        if all_met {
            "every goal met"
        } else {
            "some goal missed"
        }
    );
}
