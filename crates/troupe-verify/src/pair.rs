//! Pairs each invocation with its completion: the first step of every checker.
//!
//! A history is a stream of lines; checkers reason about *calls*, each spanning from an
//! invocation to its completion. Pairing is per process, because a process runs one operation
//! at a time. It is also the one place that enforces the shape Jepsen's semantics need, so the
//! checkers can trust it: no completion without an invocation, no second invocation while one is
//! running, no process used again after an `info` (whose operation may still be in flight). An
//! invocation still open at the end of the history is treated as `info`: its client never
//! learned the outcome either.

use serde::Serialize;
use troupe_spec::history::{Op, OpType};

use crate::CheckError;
use crate::hash::FastMap;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// It may have happened, at any time after its call, or never; also a call still open when
    /// the history ends.
    Info,
}

/// One operation from its invocation to its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Call {
    /// Index of the invocation in the history.
    pub invoke: usize,
    /// Index of the completion, if the history has one.
    pub complete: Option<usize>,
    pub outcome: Outcome,
    /// Time of the invocation (ns).
    pub call_time: u64,
    /// Time of an `ok` or `fail` completion (ns). `None` for `info`: such a call never returns,
    /// so it may take effect arbitrarily late.
    pub return_time: Option<u64>,
}

#[derive(Clone, Copy)]
enum Slot {
    Running(usize),
    Idle,
    /// Gave up on the operation at this history index; may never be used again.
    InDoubt(usize),
}

/// Pairs invocations with completions, in the order of invocation.
pub fn pair(ops: &[Op]) -> Result<Vec<Call>, CheckError> {
    let mut calls: Vec<Call> = Vec::with_capacity(ops.len() / 2 + 1);
    // Per process: what it is doing, and (while running) the index of its call in `calls`.
    let mut slots: FastMap<u64, (Slot, usize)> = FastMap::default();
    for (index, op) in ops.iter().enumerate() {
        let slot = slots.get(&op.process).copied();
        match (op.kind, slot) {
            (_, Some((Slot::InDoubt(info), _))) => {
                return Err(CheckError::ReusedAfterInfo {
                    index,
                    process: op.process,
                    info,
                });
            }
            (OpType::Invoke, Some((Slot::Running(pending), _))) => {
                return Err(CheckError::InvokeWhilePending {
                    index,
                    process: op.process,
                    pending,
                });
            }
            (OpType::Invoke, None | Some((Slot::Idle, _))) => {
                slots.insert(op.process, (Slot::Running(index), calls.len()));
                calls.push(Call {
                    invoke: index,
                    complete: None,
                    outcome: Outcome::Info,
                    call_time: op.time,
                    return_time: None,
                });
            }
            (OpType::Ok | OpType::Fail | OpType::Info, None | Some((Slot::Idle, _))) => {
                return Err(CheckError::CompletionWithoutInvoke {
                    index,
                    process: op.process,
                });
            }
            (kind, Some((Slot::Running(pending), call_index))) => {
                let invoked = &ops[pending];
                if invoked.f != op.f || (op.key.is_some() && op.key != invoked.key) {
                    return Err(CheckError::MismatchedCompletion {
                        index,
                        process: op.process,
                        pending,
                        invoked: invoked.f.clone(),
                        invoked_key: invoked.key.clone(),
                        found: op.f.clone(),
                        found_key: op.key.clone(),
                    });
                }
                if op.time < invoked.time {
                    return Err(CheckError::CompletedBeforeInvoked {
                        index,
                        pending,
                        time: op.time,
                        invoked: invoked.time,
                    });
                }
                let (outcome, return_time, next) = match kind {
                    OpType::Ok => (Outcome::Ok, Some(op.time), Slot::Idle),
                    OpType::Fail => (Outcome::Fail, Some(op.time), Slot::Idle),
                    _ => (Outcome::Info, None, Slot::InDoubt(index)),
                };
                if let Some(call) = calls.get_mut(call_index) {
                    call.complete = Some(index);
                    call.outcome = outcome;
                    call.return_time = return_time;
                }
                slots.insert(op.process, (next, call_index));
            }
        }
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(process: u64, kind: OpType, f: &str, time: u64) -> Op {
        Op::new(process, kind, f, time).with_key("k")
    }

    #[test]
    fn pairs_per_process_and_leaves_open_calls_in_doubt() {
        let ops = [
            op(1, OpType::Invoke, "read", 1),
            op(2, OpType::Invoke, "write", 2),
            op(2, OpType::Fail, "write", 3),
            op(1, OpType::Ok, "read", 4),
            op(3, OpType::Invoke, "write", 5),
            op(3, OpType::Info, "write", 6),
            op(2, OpType::Invoke, "read", 7),
        ];
        let calls = pair(&ops).unwrap();
        let summary: Vec<_> = calls
            .iter()
            .map(|c| (c.invoke, c.complete, c.outcome, c.return_time))
            .collect();
        assert_eq!(
            summary,
            [
                (0, Some(3), Outcome::Ok, Some(4)),
                (1, Some(2), Outcome::Fail, Some(3)),
                (4, Some(5), Outcome::Info, None),
                (6, None, Outcome::Info, None),
            ]
        );
    }

    #[test]
    fn malformed_histories_are_refused_with_the_operation_named() {
        let cases: [(&[Op], &str); 5] = [
            (
                &[op(1, OpType::Ok, "read", 1)],
                "pair operation 0: process 1 completes an operation it never invoked",
            ),
            (
                &[
                    op(1, OpType::Invoke, "read", 1),
                    op(1, OpType::Invoke, "read", 2),
                ],
                "pair operation 1: process 1 invokes again while its operation 0 has not completed",
            ),
            (
                &[
                    op(1, OpType::Invoke, "read", 1),
                    op(1, OpType::Info, "read", 2),
                    op(1, OpType::Invoke, "read", 3),
                ],
                "pair operation 2: process 1 is used again after operation 1 left it in doubt",
            ),
            (
                &[
                    op(1, OpType::Invoke, "read", 1),
                    op(1, OpType::Ok, "write", 2),
                ],
                "pair operation 1: it completes \"write\" on key Some(\"k\"), but process 1 \
                 invoked \"read\"",
            ),
            (
                &[
                    op(1, OpType::Invoke, "read", 5),
                    op(1, OpType::Ok, "read", 2),
                ],
                "pair operation 1: it completes at 2 ns, before its invocation (operation 0) at \
                 5 ns",
            ),
        ];
        for (ops, expected) in cases {
            let err = pair(ops).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{err}");
        }
    }
}
