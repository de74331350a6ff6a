//! The six real kv histories from porcupine's test data, with their known verdicts.

use std::time::Duration;

use troupe_verify::{Budget, Model, Verdict, linearizable};

use crate::shared_history;

fn check(name: &str, expected: bool) {
    let Some(ops) = shared_history(name) else {
        return;
    };
    let verdict = linearizable(
        &ops,
        Model::Kv,
        Budget::new(Duration::from_secs(60), 10_000_000),
    )
    .unwrap();
    match (&verdict, expected) {
        (Verdict::Linearizable, true) => {}
        (Verdict::NotLinearizable(v), false) => {
            let text = verdict.to_string();
            let key = v.key.as_deref().expect("every call has a key");
            assert!(text.contains(&format!("key \"{key}\"")), "{text}");
            assert!(!v.stuck.is_empty(), "{text}");
            for op in &v.stuck {
                assert_eq!(ops[op.invoke].key.as_deref(), Some(key));
                assert!(text.contains(&format!("op {} (", op.invoke)) || v.stuck.len() > 5);
            }
            for op in &v.longest {
                assert_eq!(ops[op.invoke].key.as_deref(), Some(key));
            }
            eprintln!("{name}: {text}");
        }
        _ => panic!("{name}: expected linearizable = {expected}, got {verdict}"),
    }
}

#[test]
fn c01_ok_is_linearizable() {
    check("c01-ok.txt", true);
}

#[test]
fn c01_bad_is_not_linearizable() {
    check("c01-bad.txt", false);
}

#[test]
fn c10_ok_is_linearizable() {
    check("c10-ok.txt", true);
}

#[test]
fn c10_bad_is_not_linearizable() {
    check("c10-bad.txt", false);
}

#[test]
fn c50_ok_is_linearizable() {
    check("c50-ok.txt", true);
}

#[test]
fn c50_bad_is_not_linearizable() {
    check("c50-bad.txt", false);
}
