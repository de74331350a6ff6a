//! Correct simulated histories must be linearizable; with one anomaly injected they must not
//! be, and the explanation must name the key and the impossible call.

use std::time::Duration;

use troupe_verify::{Budget, Model, linearizable};

use crate::sim::{Anomaly, Config, Rng, Store, generate};

fn budget() -> Budget {
    Budget::new(Duration::from_secs(60), 5_000_000)
}

fn model(store: Store) -> Model {
    match store {
        Store::Register => Model::Register,
        Store::Kv => Model::Kv,
    }
}

/// A random shape for `seed`: 2–9 processes, 20–419 calls, 1–5 keys, 0–5 % fails and doubts.
fn config(store: Store, seed: u64) -> Config {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d));
    Config {
        fail_percent: rng.below(6),
        info_percent: rng.below(6),
        ..Config::new(
            store,
            2 + rng.below(8),
            20 + rng.below(400),
            1 + rng.below(5),
        )
    }
}

fn all_linearizable(store: Store, seeds: std::ops::Range<u64>) {
    for seed in seeds {
        let cfg = config(store, seed);
        let history = generate(&cfg, seed);
        let verdict = linearizable(&history.ops, model(store), budget()).unwrap();
        assert!(verdict.is_linearizable(), "seed {seed} {cfg:?}: {verdict}");
    }
}

#[test]
fn correct_register_histories_are_linearizable() {
    all_linearizable(Store::Register, 0..200);
}

#[test]
fn correct_kv_histories_are_linearizable() {
    all_linearizable(Store::Kv, 0..200);
}

#[test]
fn many_clients_on_one_key_are_linearizable() {
    for seed in 0..10 {
        let cfg = Config {
            info_percent: 1,
            ..Config::new(Store::Kv, 20, 2_000, 1)
        };
        let history = generate(&cfg, 1_000 + seed);
        let verdict = linearizable(&history.ops, Model::Kv, budget()).unwrap();
        assert!(verdict.is_linearizable(), "seed {seed}: {verdict}");
    }
}

fn anomaly_is_found(store: Store, anomaly: Anomaly) {
    for seed in 0..60 {
        let cfg = Config {
            anomaly: Some(anomaly),
            ..config(store, seed)
        };
        let history = generate(&cfg, seed);
        let (key, bad) = history.bad.clone().expect("the script ran");
        let verdict = linearizable(&history.ops, model(store), budget()).unwrap();
        let Some(violation) = verdict.violation() else {
            panic!("seed {seed} {cfg:?}: {anomaly:?} at op {bad} on {key} not found: {verdict}");
        };
        assert_eq!(
            violation.key.as_deref(),
            Some(key.as_str()),
            "seed {seed}: {verdict}"
        );
        assert!(
            violation.stuck.iter().any(|op| op.invoke == bad),
            "seed {seed}: op {bad} not named: {verdict}"
        );
        let text = verdict.to_string();
        assert!(text.contains(&format!("key \"{key}\"")), "{text}");
        assert!(text.contains(&format!("op {bad} (")), "{text}");
    }
}

#[test]
fn register_stale_read_is_found() {
    anomaly_is_found(Store::Register, Anomaly::StaleRead);
}

#[test]
fn register_lost_write_is_found() {
    anomaly_is_found(Store::Register, Anomaly::LostWrite);
}

#[test]
fn register_value_from_nowhere_is_found() {
    anomaly_is_found(Store::Register, Anomaly::ValueFromNowhere);
}

#[test]
fn kv_stale_read_is_found() {
    anomaly_is_found(Store::Kv, Anomaly::StaleRead);
}

#[test]
fn kv_lost_append_is_found() {
    anomaly_is_found(Store::Kv, Anomaly::LostWrite);
}

#[test]
fn kv_duplicate_append_is_found() {
    anomaly_is_found(Store::Kv, Anomaly::DuplicateAppend);
}

#[test]
fn kv_value_from_nowhere_is_found() {
    anomaly_is_found(Store::Kv, Anomaly::ValueFromNowhere);
}

#[test]
fn stale_read_explanation_reads_as_a_sentence() {
    let cfg = Config {
        anomaly: Some(Anomaly::StaleRead),
        fail_percent: 0,
        info_percent: 0,
        ..Config::new(Store::Register, 1, 2, 1)
    };
    let history = generate(&cfg, 3);
    let (key, _) = history.bad.clone().unwrap();
    let verdict = linearizable(&history.ops, Model::Register, budget()).unwrap();
    let text = verdict.to_string();
    // One client, so the calls are sequential: random calls, then write a, write b, read b,
    // read a (stale).
    assert!(
        text.starts_with(&format!(
            "not linearizable: key \"{key}\" has no valid order of its "
        )),
        "{text}"
    );
    assert!(
        text.contains("The longest valid order found places "),
        "{text}"
    );
    assert!(text.contains("cannot come next."), "{text}");
    let json = serde_json::to_value(&verdict).unwrap();
    assert_eq!(json["verdict"], "not_linearizable");
    assert_eq!(json["key"], key.as_str());
    assert!(
        json["stuck"][0]["text"]
            .as_str()
            .unwrap()
            .contains(&format!("read(\"{key}\")"))
    );
}
