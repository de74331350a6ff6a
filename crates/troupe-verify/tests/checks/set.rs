//! The set checker on simulated set histories whose anomalies are known by construction.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use troupe_spec::history::{Op, OpType};
use troupe_verify::{SetVerdict, set};

use crate::sim::Rng;

/// What the simulated store did, to compare with what the checker says.
#[derive(Default)]
struct Truth {
    lost: Vec<Value>,
    recovered: Vec<Value>,
    unexpected: Vec<Value>,
    duplicated: Vec<Value>,
}

/// Concurrent adds of distinct integers; the store loses some acknowledged ones, applies some
/// in-doubt ones, invents one and stores one twice, as asked; then one final read.
fn simulate(seed: u64, lose: bool, invent: bool, duplicate: bool) -> (Vec<Op>, Truth) {
    let mut rng = Rng::new(seed);
    let mut ops = Vec::new();
    let mut truth = Truth::default();
    let mut stored: Vec<i64> = Vec::new();
    let mut time = 0u64;
    let mut tick = |rng: &mut Rng| {
        time += 1 + rng.below(10) as u64;
        time
    };
    let mut process = 0u64;
    let mut lost_one = false;
    for value in 0..200i64 {
        let t = tick(&mut rng);
        ops.push(Op::new(process, OpType::Invoke, "add", t).with_value(value));
        let roll = rng.below(100);
        let (kind, applied) = match roll {
            0..=9 => (OpType::Fail, false),
            10..=19 => (OpType::Info, rng.percent(50)),
            _ => (OpType::Ok, true),
        };
        let t = tick(&mut rng);
        ops.push(Op::new(process, kind, "add", t).with_value(value));
        let dropped = lose && kind == OpType::Ok && (!lost_one || rng.percent(5));
        if dropped {
            lost_one = true;
            truth.lost.push(json!(value));
        } else if applied {
            stored.push(value);
            if kind == OpType::Info {
                truth.recovered.push(json!(value));
            }
        }
        if kind == OpType::Info {
            process += 1;
        }
    }
    if invent {
        stored.push(1_000_000);
        truth.unexpected.push(json!(1_000_000));
    }
    if duplicate && let Some(&first) = stored.first() {
        stored.push(first);
        truth.duplicated.push(json!(first));
    }
    // Shuffle: a set has no order.
    for i in (1..stored.len()).rev() {
        stored.swap(i, rng.below(i + 1));
    }
    let t = tick(&mut rng);
    ops.push(Op::new(process, OpType::Invoke, "read", t));
    let t = tick(&mut rng);
    ops.push(Op::new(process, OpType::Ok, "read", t).with_value(json!(stored)));
    (ops, truth)
}

fn sorted(values: &[Value]) -> BTreeSet<String> {
    values.iter().map(Value::to_string).collect()
}

#[test]
fn a_correct_store_is_valid_and_recovered_adds_are_listed() {
    for seed in 0..50 {
        let (ops, truth) = simulate(seed, false, false, false);
        let report = set(&ops).unwrap();
        assert_eq!(report.verdict, SetVerdict::Valid, "seed {seed}: {report}");
        assert_eq!(sorted(&report.recovered), sorted(&truth.recovered));
        assert!(
            report
                .to_string()
                .starts_with("valid: the final read holds all ")
        );
    }
}

#[test]
fn every_lost_unexpected_and_duplicated_value_is_listed() {
    for seed in 0..50 {
        let (ops, truth) = simulate(seed, true, seed % 2 == 0, seed % 3 == 0);
        let report = set(&ops).unwrap();
        assert_eq!(report.verdict, SetVerdict::Invalid, "seed {seed}");
        assert_eq!(sorted(&report.lost), sorted(&truth.lost), "seed {seed}");
        assert_eq!(sorted(&report.unexpected), sorted(&truth.unexpected));
        let dups: Vec<Value> = report.duplicated.iter().map(|d| d.value.clone()).collect();
        assert_eq!(sorted(&dups), sorted(&truth.duplicated));
        assert_eq!(sorted(&report.recovered), sorted(&truth.recovered));
        let text = report.to_string();
        assert!(text.starts_with("invalid: "), "{text}");
        assert!(text.contains(&truth.lost[0].to_string()), "{text}");
    }
}

#[test]
fn an_add_overlapping_the_final_read_is_not_lost() {
    let ops = [
        Op::new(0, OpType::Invoke, "read", 0),
        Op::new(1, OpType::Invoke, "add", 1).with_value(7),
        Op::new(1, OpType::Ok, "add", 2).with_value(7),
        Op::new(0, OpType::Ok, "read", 3).with_value(json!([])),
    ];
    let report = set(&ops).unwrap();
    assert_eq!(report.verdict, SetVerdict::Valid, "{report}");
}

#[test]
fn no_final_read_is_unknown() {
    let ops = [
        Op::new(1, OpType::Invoke, "add", 1).with_value(7),
        Op::new(1, OpType::Ok, "add", 2).with_value(7),
        Op::new(0, OpType::Invoke, "read", 3),
        Op::new(0, OpType::Info, "read", 4),
    ];
    let report = set(&ops).unwrap();
    assert_eq!(
        report.to_string(),
        "unknown: the history has no successful final read"
    );
}
