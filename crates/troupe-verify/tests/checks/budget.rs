//! A budget ends a check with `unknown`, quickly, instead of a hang or an out-of-memory.

use std::time::{Duration, Instant};

use troupe_verify::{Budget, Model, Verdict, linearizable};

use crate::shared_history;
use crate::sim::{Config, Store, generate};

#[test]
fn a_tiny_state_budget_on_c50_ok_gives_unknown_quickly() {
    let Some(ops) = shared_history("c50-ok.txt") else {
        return;
    };
    let start = Instant::now();
    let verdict = linearizable(&ops, Model::Kv, Budget::new(Duration::from_secs(60), 10)).unwrap();
    let took = start.elapsed();
    let Verdict::Unknown { reason } = &verdict else {
        panic!("expected unknown, got {verdict}");
    };
    assert!(
        reason.contains("used up the budget of 10 states"),
        "{reason}"
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn a_zero_time_budget_gives_unknown() {
    // Enough calls on one key that the search looks at the clock at least once.
    let cfg = Config::new(Store::Kv, 10, 20_000, 1);
    let ops = generate(&cfg, 5).ops;
    let verdict = linearizable(&ops, Model::Kv, Budget::new(Duration::ZERO, 1 << 30)).unwrap();
    let Verdict::Unknown { reason } = &verdict else {
        panic!("expected unknown, got {verdict}");
    };
    assert!(
        reason.starts_with("the time budget of 0ns ran out while checking key \"k0\""),
        "{reason}"
    );
}

#[test]
fn a_tiny_memory_budget_gives_unknown() {
    let cfg = Config::new(Store::Register, 5, 500, 1);
    let ops = generate(&cfg, 9).ops;
    let budget = Budget::new(Duration::from_secs(60), 1 << 30).with_max_bytes(1_000);
    let verdict = linearizable(&ops, Model::Register, budget).unwrap();
    assert!(
        matches!(&verdict, Verdict::Unknown { reason } if reason.contains("memory budget of 1000 bytes")),
        "{verdict}"
    );
}
