//! Histories that cannot be checked give errors that name the operation or line, never a panic
//! or a verdict.

use std::time::Duration;

use serde_json::json;
use troupe_spec::history::{Format, HistoryError, Op, OpType, Reader, read_all};
use troupe_verify::{Budget, CheckError, Model, linearizable, set, stats};

fn budget() -> Budget {
    Budget::new(Duration::from_secs(5), 1 << 20)
}

fn op(process: u64, kind: OpType, f: &str, time: u64) -> Op {
    Op::new(process, kind, f, time).with_key("k")
}

#[test]
fn every_checker_refuses_a_malformed_history() {
    let reused = [
        op(1, OpType::Invoke, "write", 1).with_value(1),
        op(1, OpType::Info, "write", 2),
        op(1, OpType::Invoke, "read", 3),
        op(1, OpType::Ok, "read", 4),
    ];
    let expected = CheckError::ReusedAfterInfo {
        index: 2,
        process: 1,
        info: 1,
    };
    assert_eq!(
        linearizable(&reused, Model::Register, budget()),
        Err(expected.clone())
    );
    assert_eq!(set(&reused).unwrap_err(), expected);
    assert_eq!(stats(&reused, &[]).unwrap_err(), expected);

    let orphan = [op(4, OpType::Ok, "read", 1)];
    assert_eq!(
        linearizable(&orphan, Model::Kv, budget())
            .unwrap_err()
            .to_string(),
        "pair operation 0: process 4 completes an operation it never invoked"
    );

    let twice = [
        op(2, OpType::Invoke, "get", 1),
        op(2, OpType::Invoke, "get", 2),
    ];
    assert!(matches!(
        linearizable(&twice, Model::Kv, budget()),
        Err(CheckError::InvokeWhilePending {
            index: 1,
            process: 2,
            pending: 0
        })
    ));
}

#[test]
fn operations_the_model_does_not_know_are_named() {
    let ops = [
        op(0, OpType::Invoke, "incr", 1),
        op(0, OpType::Ok, "incr", 2),
    ];
    assert_eq!(
        linearizable(&ops, Model::Kv, budget())
            .unwrap_err()
            .to_string(),
        "check operation 0: the kv model has no operation \"incr\" (expected get, put or append)"
    );
    let ops = [
        op(0, OpType::Invoke, "append", 1).with_value(5),
        op(0, OpType::Ok, "append", 2),
    ];
    assert_eq!(
        linearizable(&ops, Model::Kv, budget())
            .unwrap_err()
            .to_string(),
        "check operation 0: append needs a string value, found 5"
    );
    let ops = [
        op(0, OpType::Invoke, "cas", 1).with_value(json!([1])),
        op(0, OpType::Ok, "cas", 2),
    ];
    assert!(
        linearizable(&ops, Model::Register, budget())
            .unwrap_err()
            .to_string()
            .contains("cas needs a value [expected, new], found [1]")
    );
    assert!(matches!(
        linearizable(&ops, Model::Set, budget()),
        Err(CheckError::UnsupportedModel { model: Model::Set })
    ));
}

#[test]
fn a_bad_jepsen_line_is_located() {
    let text = "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n\
                {:process 0, :type :ok, :f :get, :key \"1\", :value \"x 0 0 y\"}\n\
                {:process 1, :type :invoke, :f :put, :key \"1\" :value 1.5}\n";
    let err = read_all(text.as_bytes(), Format::Jepsen).unwrap_err();
    assert_eq!(err.line(), 3);
    assert_eq!(
        err.to_string(),
        "parse line 3, column 54: expected an integer that fits in 64 bits, found \"1.5\""
    );
}

#[test]
fn a_bad_json_line_is_located_and_reading_goes_on() {
    let text = "{\"process\":0,\"type\":\"invoke\",\"f\":\"get\",\"time\":1}\n\
                {\"process\":0,\"type\":\"ok\",\"f\":\"get\",\"time\":\"soon\"}\n\
                {\"process\":0,\"type\":\"ok\",\"f\":\"get\",\"time\":2}\n";
    let results: Vec<Result<Op, HistoryError>> =
        Reader::new(text.as_bytes(), Format::JsonLines).collect();
    assert_eq!(results.len(), 3);
    let err = results[1].as_ref().unwrap_err();
    assert_eq!(err.line(), 2);
    assert!(
        err.to_string()
            .contains("invalid type: string \"soon\", expected u64"),
        "{err}"
    );
    assert!(results[2].is_ok());
}

#[test]
fn garbage_never_panics() {
    let mut rng = crate::sim::Rng::new(42);
    let alphabet: Vec<char> = "{}[]():\"\\ ,0123456789-abcdefnilptyrocesvku;#\n"
        .chars()
        .collect();
    for _ in 0..2_000 {
        let len = rng.below(80);
        let text: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        for format in [Format::Jepsen, Format::JsonLines] {
            let ops: Vec<Op> = Reader::new(text.as_bytes(), format)
                .filter_map(Result::ok)
                .collect();
            let _ = linearizable(&ops, Model::Kv, budget());
            let _ = set(&ops);
            let _ = stats(&ops, &[]);
        }
    }
}
