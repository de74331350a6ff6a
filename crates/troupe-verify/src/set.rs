//! The set checker: were acknowledged adds kept, and did nothing appear from nowhere?
//!
//! A set workload adds distinct values, then reads the whole set once at the end. That is much
//! cheaper to check than linearizability (one pass, no search) and it answers the question users
//! of queues and streams ask first: was an acknowledged write lost? Each anomaly is listed by
//! value, because a value is what a user can grep for in the system's own logs.
//!
//! Values are compared as JSON (`1` and `"1"` differ). An acknowledged add counts as lost only if
//! it returned before the final read was called; one that overlaps the read may or may not be
//! in it.
//!
//! Every other successful read is held to the same rule: it must hold every add acknowledged
//! before it was called. A workload that reads the set through each node at the end (each
//! node's own copy) so finds a copy that lost what the others kept, and names the node.

use std::fmt;

use serde::Serialize;
use serde_json::Value;
use troupe_spec::history::Op;

use crate::hash::FastMap;
use crate::pair::{Outcome, pair};
use crate::{CheckError, Model};

/// The verdict of [`set()`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SetVerdict {
    /// Nothing lost, nothing unexpected, nothing read twice.
    Valid,
    Invalid,
    /// The history has no successful final read to judge by.
    Unknown {
        reason: String,
    },
}

/// A value the final read returned more than once.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Duplicate {
    pub value: Value,
    pub count: usize,
}

/// What the final read says about the adds. Lists keep the order of the adds (lost,
/// recovered) or of the read (unexpected, failed but read, duplicated).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct SetReport {
    pub verdict: SetVerdict,
    /// Distinct values an add was called with.
    pub attempted: usize,
    /// Distinct values with an `ok` add.
    pub acknowledged: usize,
    /// Distinct values whose only adds ended in doubt (`info`).
    pub indeterminate: usize,
    /// History index of the final read's completion.
    pub final_read: Option<usize>,
    /// Elements in the final read, duplicates included.
    pub read_size: usize,
    /// Acknowledged before the read began, but missing from it.
    pub lost: Vec<Value>,
    /// Read, but never added.
    pub unexpected: Vec<Value>,
    /// Read, although every add of it failed (`fail` means it did not happen).
    pub failed_but_read: Vec<Value>,
    pub duplicated: Vec<Duplicate>,
    /// Added in doubt (`info`) and present in the read: they did happen.
    pub recovered: Vec<Value>,
    /// Reads other than the final one that miss acknowledged adds (their values are in `lost`
    /// too).
    pub other_reads: Vec<ReadLoss>,
}

/// A read, other than the final one, that misses adds acknowledged before it began.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ReadLoss {
    /// History index of the read's completion.
    pub read: usize,
    /// The node that served it, if the history says.
    pub node: Option<String>,
    pub lost: Vec<Value>,
}

#[derive(Default)]
struct Adds {
    value: Value,
    ok: bool,
    ok_before_read: bool,
    /// When its first acknowledgement returned.
    ok_at: Option<u64>,
    info: bool,
}

/// Checks a set history: `add` calls (value = the element) and a final `read` (value = an
/// array of every element). The last successful read is the final one.
pub fn set(ops: &[Op]) -> Result<SetReport, CheckError> {
    let calls = pair(ops)?;
    for call in &calls {
        if let Some(op) = ops.get(call.invoke)
            && !matches!(op.f.as_str(), "add" | "read")
        {
            return Err(CheckError::UnknownOperation {
                index: call.invoke,
                model: Model::Set,
                f: op.f.clone(),
                expected: "add or read",
            });
        }
    }
    let read = calls
        .iter()
        .filter(|c| c.outcome == Outcome::Ok)
        .filter(|c| ops.get(c.invoke).is_some_and(|op| op.f == "read"))
        .max_by_key(|c| c.complete);
    let read_call_time = read.map_or(u64::MAX, |c| c.call_time);

    // Every distinct added value, in order of first add.
    let mut order: Vec<String> = Vec::new();
    let mut adds: FastMap<String, Adds> = FastMap::default();
    for call in &calls {
        let Some(invoke) = ops.get(call.invoke).filter(|op| op.f == "add") else {
            continue;
        };
        let value = match (&invoke.value, call.complete.and_then(|i| ops.get(i))) {
            (Value::Null, Some(done)) => &done.value,
            (v, _) => v,
        };
        let canonical = value.to_string();
        let entry = adds.entry(canonical.clone()).or_insert_with(|| {
            order.push(canonical);
            Adds {
                value: value.clone(),
                ..Adds::default()
            }
        });
        match call.outcome {
            Outcome::Ok => {
                entry.ok = true;
                if let Some(t) = call.return_time {
                    entry.ok_at = Some(entry.ok_at.map_or(t, |a| a.min(t)));
                }
                if call.return_time.is_some_and(|t| t < read_call_time) {
                    entry.ok_before_read = true;
                }
            }
            Outcome::Info => entry.info = true,
            Outcome::Fail => {}
        }
    }
    let acknowledged = adds.values().filter(|a| a.ok).count();
    let indeterminate = adds.values().filter(|a| !a.ok && a.info).count();
    let mut report = SetReport {
        verdict: SetVerdict::Valid,
        attempted: adds.len(),
        acknowledged,
        indeterminate,
        final_read: read.and_then(|c| c.complete),
        read_size: 0,
        lost: Vec::new(),
        unexpected: Vec::new(),
        failed_but_read: Vec::new(),
        duplicated: Vec::new(),
        recovered: Vec::new(),
        other_reads: Vec::new(),
    };
    let Some(read) = read else {
        report.verdict = SetVerdict::Unknown {
            reason: "the history has no successful final read".to_string(),
        };
        return Ok(report);
    };
    let read_op = read.complete.and_then(|i| ops.get(i));
    let elements = match read_op.map(|op| &op.value) {
        Some(Value::Array(elements)) => elements,
        other => {
            return Err(CheckError::BadValue {
                index: read.complete.unwrap_or(read.invoke),
                f: "read".to_string(),
                expected: "an array of every element",
                found: other.map_or_else(|| "nothing".to_string(), Value::to_string),
            });
        }
    };
    report.read_size = elements.len();

    // Count each element, in order of first appearance.
    let mut read_order: Vec<(String, &Value)> = Vec::new();
    let mut counts: FastMap<String, usize> = FastMap::default();
    for element in elements {
        let canonical = element.to_string();
        let count = counts.entry(canonical.clone()).or_insert_with(|| {
            read_order.push((canonical, element));
            0
        });
        *count = count.saturating_add(1);
    }

    for canonical in &order {
        let (Some(add), present) = (adds.get(canonical), counts.contains_key(canonical)) else {
            continue;
        };
        if add.ok_before_read && !present {
            report.lost.push(add.value.clone());
        }
        if !add.ok && add.info && present {
            report.recovered.push(add.value.clone());
        }
    }
    for (canonical, element) in &read_order {
        match adds.get(canonical) {
            None => report.unexpected.push((*element).clone()),
            Some(add) if !add.ok && !add.info => report.failed_but_read.push((*element).clone()),
            Some(_) => {}
        }
        let count = counts.get(canonical).copied().unwrap_or(0);
        if count > 1 {
            report.duplicated.push(Duplicate {
                value: (*element).clone(),
                count,
            });
        }
    }
    // Every other successful read: what was acknowledged before it began must be in it.
    for other in calls.iter().filter(|c| {
        c.outcome == Outcome::Ok
            && c.complete != read.complete
            && ops.get(c.invoke).is_some_and(|op| op.f == "read")
    }) {
        let Some(done) = other.complete.and_then(|i| ops.get(i)) else {
            continue;
        };
        let Value::Array(elements) = &done.value else {
            continue;
        };
        let present: std::collections::HashSet<String> =
            elements.iter().map(Value::to_string).collect();
        let lost: Vec<Value> = order
            .iter()
            .filter_map(|c| adds.get(c).map(|a| (c, a)))
            .filter(|(c, a)| a.ok_at.is_some_and(|t| t < other.call_time) && !present.contains(*c))
            .map(|(_, a)| a.value.clone())
            .collect();
        if lost.is_empty() {
            continue;
        }
        for v in &lost {
            if !report.lost.contains(v) {
                report.lost.push(v.clone());
            }
        }
        report.other_reads.push(ReadLoss {
            read: other.complete.unwrap_or(other.invoke),
            node: done
                .node
                .clone()
                .or_else(|| ops.get(other.invoke).and_then(|o| o.node.clone())),
            lost,
        });
    }
    if !(report.lost.is_empty()
        && report.unexpected.is_empty()
        && report.failed_but_read.is_empty()
        && report.duplicated.is_empty())
    {
        report.verdict = SetVerdict::Invalid;
    }
    Ok(report)
}

/// How many values a sentence lists before "and N more".
const LISTED: usize = 10;

fn list(values: &[Value]) -> String {
    let mut text: Vec<String> = values.iter().take(LISTED).map(Value::to_string).collect();
    if values.len() > LISTED {
        text.push(format!("and {} more", values.len() - LISTED));
    }
    text.join(", ")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl fmt::Display for SetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        match &self.verdict {
            SetVerdict::Unknown { reason } => return write!(f, "unknown: {reason}"),
            SetVerdict::Valid => parts.push(format!(
                "valid: the final read holds all {} acknowledged add{}",
                self.acknowledged,
                plural(self.acknowledged)
            )),
            SetVerdict::Invalid => {
                let mut anomaly = |n: usize, what: String, values: &[Value]| {
                    if n > 0 {
                        parts.push(format!("{what} ({})", list(values)));
                    }
                };
                let n = self.lost.len();
                anomaly(
                    n,
                    format!(
                        "{n} acknowledged add{} lost, of {}",
                        plural(n),
                        self.acknowledged
                    ),
                    &self.lost,
                );
                let n = self.unexpected.len();
                anomaly(
                    n,
                    format!("{n} value{} read but never added", plural(n)),
                    &self.unexpected,
                );
                let n = self.failed_but_read.len();
                anomaly(
                    n,
                    format!("{n} value{} read although the add failed", plural(n)),
                    &self.failed_but_read,
                );
                let n = self.duplicated.len();
                let dups: Vec<Value> = self.duplicated.iter().map(|d| d.value.clone()).collect();
                anomaly(
                    n,
                    format!("{n} value{} read more than once", plural(n)),
                    &dups,
                );
                for r in &self.other_reads {
                    let by = r
                        .node
                        .as_ref()
                        .map(|n| format!(" (through {n})"))
                        .unwrap_or_default();
                    parts.push(format!(
                        "the read at op {}{by} misses {} of them ({})",
                        r.read,
                        r.lost.len(),
                        list(&r.lost)
                    ));
                }
                if let Some(first) = parts.first_mut() {
                    first.insert_str(0, "invalid: ");
                }
            }
        }
        if !self.recovered.is_empty() {
            parts.push(format!(
                "{} of {} add{} in doubt landed ({})",
                self.recovered.len(),
                self.indeterminate,
                plural(self.indeterminate),
                list(&self.recovered)
            ));
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use troupe_spec::history::OpType;

    fn add(ops: &mut Vec<Op>, process: u64, value: i64, outcome: OpType) {
        let t = ops.len() as u64;
        ops.push(Op::new(process, OpType::Invoke, "add", t).with_value(value));
        ops.push(Op::new(process, outcome, "add", t + 1).with_value(value));
    }

    fn read(ops: &mut Vec<Op>, process: u64, values: Value) {
        let t = ops.len() as u64;
        ops.push(Op::new(process, OpType::Invoke, "read", t));
        ops.push(Op::new(process, OpType::Ok, "read", t + 1).with_value(values));
    }

    #[test]
    fn every_anomaly_is_listed_by_value() {
        let mut ops = Vec::new();
        add(&mut ops, 0, 1, OpType::Ok);
        add(&mut ops, 0, 2, OpType::Ok);
        add(&mut ops, 0, 3, OpType::Fail);
        add(&mut ops, 1, 4, OpType::Info);
        add(&mut ops, 2, 5, OpType::Info);
        add(&mut ops, 3, 6, OpType::Ok);
        read(&mut ops, 3, json!([1, 3, 4, 4, 6, 9]));
        let r = set(&ops).unwrap();
        assert_eq!(r.verdict, SetVerdict::Invalid);
        assert_eq!(r.lost, [json!(2)]);
        assert_eq!(r.unexpected, [json!(9)]);
        assert_eq!(r.failed_but_read, [json!(3)]);
        assert_eq!(
            r.duplicated,
            [Duplicate {
                value: json!(4),
                count: 2
            }]
        );
        assert_eq!(r.recovered, [json!(4)]);
        assert_eq!((r.attempted, r.acknowledged, r.indeterminate), (6, 3, 2));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["verdict"], "invalid");
        assert_eq!(json["lost"], json!([2]));
        assert_eq!(json["duplicated"], json!([{"value": 4, "count": 2}]));
        assert_eq!(
            r.to_string(),
            "invalid: 1 acknowledged add lost, of 3 (2); 1 value read but never added (9); \
             1 value read although the add failed (3); 1 value read more than once (4); \
             1 of 2 adds in doubt landed (4)"
        );
    }

    #[test]
    fn a_complete_read_is_valid() {
        let mut ops = Vec::new();
        add(&mut ops, 0, 1, OpType::Ok);
        add(&mut ops, 1, 2, OpType::Info);
        read(&mut ops, 0, json!([2, 1]));
        let r = set(&ops).unwrap();
        assert_eq!(r.verdict, SetVerdict::Valid);
        assert_eq!(
            r.to_string(),
            "valid: the final read holds all 1 acknowledged add; 1 of 1 add in doubt landed (2)"
        );
    }

    #[test]
    fn a_node_whose_copy_lost_acknowledged_adds_is_named() {
        let mut ops = Vec::new();
        add(&mut ops, 0, 1, OpType::Ok);
        add(&mut ops, 1, 2, OpType::Ok);
        // Each node's copy read at the end: nats-2's lacks 2; nats-1's, the last, has both.
        read(&mut ops, 2, json!([1]));
        ops[5].node = Some("nats-2".into());
        read(&mut ops, 3, json!([1, 2]));
        let r = set(&ops).unwrap();
        assert_eq!(r.verdict, SetVerdict::Invalid);
        assert_eq!(r.lost, vec![json!(2)]);
        assert_eq!(r.other_reads.len(), 1);
        assert_eq!(r.other_reads[0].node.as_deref(), Some("nats-2"));
        let text = r.to_string();
        assert!(
            text.contains("1 acknowledged add lost")
                && text.contains("(through nats-2)")
                && text.contains("misses 1 of them (2)"),
            "{text}"
        );
        // An add acknowledged after a read began may be missing from it.
        let mut ops = vec![
            Op::new(0, OpType::Invoke, "add", 0).with_value(7),
            Op::new(1, OpType::Invoke, "read", 1),
            Op::new(0, OpType::Ok, "add", 2).with_value(7),
            Op::new(1, OpType::Ok, "read", 3).with_value(json!([])),
        ];
        read(&mut ops, 2, json!([7]));
        assert_eq!(set(&ops).unwrap().verdict, SetVerdict::Valid);
    }
}
