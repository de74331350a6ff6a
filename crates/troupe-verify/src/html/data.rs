//! The report's data as JSON for the page's script: compact enough for 100,000 calls, and safe
//! inside a `<script>` element.
//!
//! Calls are columns of numbers rather than objects: a call's start is the difference from the
//! previous call's (small numbers are short), a duration is absent as `-1`, and every text (the
//! operation, key, argument, result, node, error) is an index into one table of distinct texts,
//! most used first so the common ones have one-digit indices. A call costs about forty bytes.
//!
//! The highlights of an anomaly are chosen here too, because they are what the page draws and
//! what the panel beside it explains: the same list feeds both.

use serde::Serialize;
use serde_json::Value;
use troupe_spec::history::Op;

use super::{Judgement, LeaderMark, NodeLane, StepMark, Timeline};
use crate::FaultWindow;
use crate::hash::FastMap;
use crate::linearizable::describe;
use crate::pair::{Call, Outcome};
use crate::stats::{Bucket, Stats};

/// Longest text kept in the table, in characters; longer ones (a final read of a big set) are
/// cut, with a note of how much is missing. The history file has them whole.
const MAX_TEXT: usize = 400;

/// Why an operation is highlighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Linearizability: had to come next after the longest valid order, and cannot.
    Stuck,
    /// Linearizability: part of the longest valid order found.
    Longest,
    /// Set: an add of a value acknowledged but missing from the final read.
    Lost,
    /// Set: an add of a value the final read returned more than once.
    Duplicated,
    /// Set: an add that failed, of a value the final read returned.
    FailedButRead,
    /// Set: a read other than the final one that misses adds acknowledged before it began.
    IncompleteRead,
    /// Set: the final read.
    FinalRead,
}

impl Role {
    const ALL: [Role; 7] = [
        Role::Stuck,
        Role::Longest,
        Role::Lost,
        Role::Duplicated,
        Role::FailedButRead,
        Role::IncompleteRead,
        Role::FinalRead,
    ];

    /// The name used in attributes and class names.
    pub(super) fn name(self) -> &'static str {
        match self {
            Role::Stuck => "stuck",
            Role::Longest => "longest",
            Role::Lost => "lost",
            Role::Duplicated => "duplicated",
            Role::FailedButRead => "failed-but-read",
            Role::IncompleteRead => "incomplete-read",
            Role::FinalRead => "final-read",
        }
    }

    /// Whether the operation is itself wrong, as opposed to context for one that is.
    pub(super) fn culprit(self) -> bool {
        !matches!(self, Role::Longest | Role::FinalRead)
    }

    /// What the role means, after the operation's description.
    pub(super) fn meaning(self) -> &'static str {
        match self {
            Role::Stuck => "cannot come next after the longest valid order",
            Role::Longest => "in the longest valid order found",
            Role::Lost => "acknowledged, but missing from the final read",
            Role::Duplicated => "its value was read more than once",
            Role::FailedButRead => "failed, yet its value was read",
            Role::IncompleteRead => "misses adds acknowledged before it began",
            Role::FinalRead => "the final read",
        }
    }

    fn index(self) -> usize {
        Role::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// An operation of an anomaly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Highlight {
    /// Position of the call in the encoded columns (the order of [`pair`]).
    pub call: usize,
    /// History index of its invocation.
    pub op: usize,
    pub role: Role,
    /// The call in words: `process 3: write("k1", 7) → ok`.
    pub text: String,
}

/// The encoded data, and what the markup needs of it.
#[derive(Debug)]
pub(super) struct Encoded {
    /// JSON, safe to place inside a `<script>` element as is.
    pub json: String,
    pub highlights: Vec<Highlight>,
    /// Distinct client processes, one lane each.
    pub processes: usize,
    pub calls: usize,
}

/// The calls, one column per field; see the module's documentation.
#[derive(Debug, Default, Serialize)]
struct Columns {
    /// Index into `processes`.
    lane: Vec<u32>,
    /// Start minus the previous call's start (the first: its start).
    start: Vec<i64>,
    /// Completion minus start, `-1` with no completion. For `info`, when the client gave up.
    dur: Vec<i64>,
    /// 0 ok, 1 fail, 2 info.
    kind: Vec<u8>,
    f: Vec<u32>,
    key: Vec<u32>,
    arg: Vec<u32>,
    /// The completion's value when it differs from the argument, else 0.
    ret: Vec<u32>,
    node: Vec<u32>,
    error: Vec<u32>,
    /// History index of the invocation minus the previous call's (the first: its index).
    op: Vec<i64>,
}

#[derive(Serialize)]
struct RoleInfo {
    name: &'static str,
    culprit: bool,
    meaning: &'static str,
}

#[derive(Serialize)]
struct Payload<'a> {
    /// The time range of everything shown (ns).
    extent: [u64; 2],
    /// First and last operation times; `info` calls are drawn open until the last.
    history: [u64; 2],
    strings: Vec<String>,
    processes: Vec<u64>,
    calls: Columns,
    roles: Vec<RoleInfo>,
    /// `[call, role index]`.
    highlights: Vec<[usize; 2]>,
    nodes: &'a [NodeLane],
    faults: &'a [FaultWindow],
    leaders: &'a [LeaderMark],
    steps: &'a [StepMark],
    series: &'a [Bucket],
}

/// Encodes everything the page's script draws; `calls` are `ops` paired.
pub(super) fn encode(
    ops: &[Op],
    calls: &[Call],
    judgement: Judgement<'_>,
    timeline: &Timeline,
    stats: &Stats,
) -> Encoded {
    let highlights = highlights(ops, calls, judgement);

    let mut processes: Vec<u64> = calls
        .iter()
        .filter_map(|c| ops.get(c.invoke))
        .map(|op| op.process)
        .collect();
    processes.sort_unstable();
    processes.dedup();
    let lanes: FastMap<u64, u32> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, u32::try_from(i).unwrap_or(u32::MAX)))
        .collect();

    let mut strings = Interner::default();
    let mut columns = Columns::default();
    let (mut last_start, mut last_op) = (0i64, 0i64);
    for call in calls {
        let Some(invoke) = ops.get(call.invoke) else {
            continue;
        };
        let complete = call.complete.and_then(|i| ops.get(i));
        columns
            .lane
            .push(lanes.get(&invoke.process).copied().unwrap_or(0));
        let start = signed(call.call_time);
        columns.start.push(start.saturating_sub(last_start));
        last_start = start;
        columns
            .dur
            .push(complete.map_or(-1, |done| signed(done.time.saturating_sub(call.call_time))));
        columns.kind.push(match call.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
        });
        columns.f.push(strings.text(&invoke.f));
        columns
            .key
            .push(invoke.key.as_deref().map_or(0, |k| strings.text(k)));
        columns.arg.push(strings.value(&invoke.value));
        columns.ret.push(match complete {
            Some(done) if done.value != invoke.value => strings.value(&done.value),
            _ => 0,
        });
        let node = complete
            .and_then(|op| op.node.as_deref())
            .or(invoke.node.as_deref());
        columns.node.push(node.map_or(0, |n| strings.text(n)));
        let error = complete
            .and_then(|op| op.error.as_deref())
            .or(invoke.error.as_deref());
        columns.error.push(error.map_or(0, |e| strings.text(e)));
        let op = signed(u64::try_from(call.invoke).unwrap_or(u64::MAX));
        columns.op.push(op.saturating_sub(last_op));
        last_op = op;
    }
    let strings = strings.finish(&mut columns);

    let history = [
        ops.iter().map(|op| op.time).min().unwrap_or(0),
        ops.iter().map(|op| op.time).max().unwrap_or(0),
    ];
    let payload = Payload {
        extent: extent(ops, timeline),
        history,
        strings,
        processes,
        calls: columns,
        roles: Role::ALL
            .iter()
            .map(|r| RoleInfo {
                name: r.name(),
                culprit: r.culprit(),
                meaning: r.meaning(),
            })
            .collect(),
        highlights: highlights
            .iter()
            .map(|h| [h.call, h.role.index()])
            .collect(),
        nodes: &timeline.nodes,
        faults: &timeline.faults,
        leaders: &timeline.leaders,
        steps: &timeline.steps,
        series: &stats.series,
    };
    let (processes, calls) = (payload.processes.len(), calls.len());

    Encoded {
        json: script_json(&payload),
        highlights,
        processes,
        calls,
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The time range of the operations and of everything on the timeline.
fn extent(ops: &[Op], timeline: &Timeline) -> [u64; 2] {
    let mut times: Vec<u64> = ops.iter().map(|op| op.time).collect();
    for node in &timeline.nodes {
        for span in &node.spans {
            times.push(span.start);
            times.extend(span.end);
        }
    }
    for fault in &timeline.faults {
        times.extend([fault.start, fault.end]);
    }
    times.extend(timeline.leaders.iter().map(|l| l.at));
    for step in &timeline.steps {
        times.extend([step.start, step.end]);
    }
    let first = times.iter().copied().min().unwrap_or(0);
    let last = times.iter().copied().max().unwrap_or(0);
    [first, last.max(first.saturating_add(1))]
}

/// Serialises `value` as JSON that cannot end the `<script>` element it sits in: `<`, `>` and
/// `&` only occur inside JSON strings, where `\u003c` and friends mean the same.
pub(super) fn script_json(value: &impl Serialize) -> String {
    let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    let mut out = String::with_capacity(json.len() + json.len() / 64);
    let mut copied = 0;
    for (i, byte) in json.bytes().enumerate() {
        let escaped = match byte {
            b'<' => "\\u003c",
            b'>' => "\\u003e",
            b'&' => "\\u0026",
            _ => continue,
        };
        // ASCII bytes are character boundaries.
        out.push_str(json.get(copied..i).unwrap_or_default());
        out.push_str(escaped);
        copied = i + 1;
    }
    out.push_str(json.get(copied..).unwrap_or_default());
    out
}

/// Distinct texts, each with an index; 0 is the empty text, meaning "none".
#[derive(Default)]
struct Interner {
    index: FastMap<String, u32>,
    texts: Vec<String>,
    uses: Vec<u64>,
}

impl Interner {
    fn text(&mut self, text: &str) -> u32 {
        if self.texts.is_empty() {
            self.texts.push(String::new());
            self.uses.push(u64::MAX);
        }
        let cut;
        // A text of at most MAX_TEXT bytes has at most MAX_TEXT characters.
        let text = if text.len() > MAX_TEXT {
            cut = truncate(text, MAX_TEXT);
            cut.as_str()
        } else {
            text
        };
        let i = match self.index.get(text) {
            Some(&i) => i,
            None => {
                let i = u32::try_from(self.texts.len()).unwrap_or(u32::MAX);
                self.index.insert(text.to_string(), i);
                self.texts.push(text.to_string());
                self.uses.push(0);
                i
            }
        };
        if let Some(uses) = self.uses.get_mut(i as usize) {
            *uses = uses.saturating_add(1);
        }
        i
    }

    /// A JSON value as its JSON text; `null` is "none".
    fn value(&mut self, value: &Value) -> u32 {
        match value {
            Value::Null => 0,
            other => self.text(&other.to_string()),
        }
    }

    /// The table, most used first (then in order of first use), with the columns renumbered.
    fn finish(self, columns: &mut Columns) -> Vec<String> {
        let mut order: Vec<usize> = (0..self.texts.len()).collect();
        // Index 0 ("none") has u64::MAX uses and stays first.
        order.sort_by(|&a, &b| self.uses[b].cmp(&self.uses[a]).then(a.cmp(&b)));
        let mut renumber = vec![0u32; self.texts.len()];
        for (new, &old) in order.iter().enumerate() {
            renumber[old] = u32::try_from(new).unwrap_or(u32::MAX);
        }
        for column in [
            &mut columns.f,
            &mut columns.key,
            &mut columns.arg,
            &mut columns.ret,
            &mut columns.node,
            &mut columns.error,
        ] {
            for i in column.iter_mut() {
                *i = renumber.get(*i as usize).copied().unwrap_or(0);
            }
        }
        let mut texts: Vec<Option<String>> = self.texts.into_iter().map(Some).collect();
        let mut table: Vec<String> = order
            .iter()
            .map(|&old| texts[old].take().unwrap_or_default())
            .collect();
        if table.is_empty() {
            table.push(String::new());
        }
        table
    }
}

/// `text` cut to `max` characters, with a note of how many more there were.
pub(super) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => {
            let rest = text[cut..].chars().count();
            format!("{}… ({rest} more characters)", &text[..cut])
        }
    }
}

/// The operations of the anomaly in `judgement`, in the order the panel lists them: culprits
/// first, then context.
fn highlights(ops: &[Op], calls: &[Call], judgement: Judgement<'_>) -> Vec<Highlight> {
    let by_invoke: FastMap<usize, usize> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| (c.invoke, i))
        .collect();
    let mut out: Vec<Highlight> = Vec::new();
    let mut push = |call: usize, role: Role| {
        if out.iter().any(|h| h.call == call) {
            return;
        }
        if let Some(c) = calls.get(call) {
            out.push(Highlight {
                call,
                op: c.invoke,
                role,
                text: describe(ops, c),
            });
        }
    };
    match judgement {
        Judgement::Linearizable(verdict) => {
            if let Some(v) = verdict.violation() {
                for (refs, role) in [(&v.stuck, Role::Stuck), (&v.longest, Role::Longest)] {
                    for r in refs {
                        if let Some(&call) = by_invoke.get(&r.invoke) {
                            push(call, role);
                        }
                    }
                }
            }
        }
        Judgement::Set(report) => {
            let canonical = |values: &mut dyn Iterator<Item = &Value>| -> Vec<String> {
                values.map(Value::to_string).collect()
            };
            let lost = canonical(&mut report.lost.iter());
            let duplicated = canonical(&mut report.duplicated.iter().map(|d| &d.value));
            let failed = canonical(&mut report.failed_but_read.iter());
            for (values, role) in [
                (&lost, Role::Lost),
                (&duplicated, Role::Duplicated),
                (&failed, Role::FailedButRead),
            ] {
                if values.is_empty() {
                    continue;
                }
                for (i, call) in calls.iter().enumerate() {
                    let Some(invoke) = ops.get(call.invoke).filter(|op| op.f == "add") else {
                        continue;
                    };
                    // As the checker does: the add's value, else what its completion says.
                    let value = match (&invoke.value, call.complete.and_then(|c| ops.get(c))) {
                        (Value::Null, Some(done)) => &done.value,
                        (v, _) => v,
                    };
                    if values.contains(&value.to_string()) {
                        push(i, role);
                    }
                }
            }
            for other in &report.other_reads {
                if let Some(call) = calls.iter().position(|c| c.complete == Some(other.read)) {
                    push(call, Role::IncompleteRead);
                }
            }
            let anomalous = !(lost.is_empty()
                && duplicated.is_empty()
                && failed.is_empty()
                && report.unexpected.is_empty());
            if anomalous
                && let Some(read) = report.final_read
                && let Some(call) = calls.iter().position(|c| c.complete == Some(read))
            {
                push(call, Role::FinalRead);
            }
        }
        Judgement::None => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use troupe_spec::history::OpType;

    use super::*;
    use crate::html::Timeline;
    use crate::{Budget, Model, Verdict, linearizable, set, stats};

    fn encoded(ops: &[Op], judgement: Judgement<'_>) -> (Encoded, Value) {
        let stats = stats(ops, &[]).unwrap();
        let calls = crate::pair(ops).unwrap();
        let e = encode(ops, &calls, judgement, &Timeline::new("t"), &stats);
        let v: Value = serde_json::from_str(&e.json).unwrap();
        (e, v)
    }

    #[test]
    fn script_json_cannot_end_the_script_element() {
        let nasty = "</script><script>alert(1)</script><!-- & -->";
        let out = script_json(&json!({ "v": nasty, "w": ["</SCRIPT", "a>b"] }));
        for forbidden in ["<", ">", "&"] {
            assert!(!out.contains(forbidden), "{out}");
        }
        let back: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["v"], nasty);
        assert_eq!(back["w"][0], "</SCRIPT");
    }

    #[test]
    fn calls_are_columns_of_deltas_and_text_indices() {
        let ops = [
            Op::new(7, OpType::Invoke, "write", 100)
                .with_key("k")
                .with_value(json!("</script>")),
            Op::new(2, OpType::Invoke, "read", 150).with_key("k"),
            Op::new(7, OpType::Ok, "write", 180)
                .with_key("k")
                .with_value(json!("</script>"))
                .with_node("n1"),
            Op::new(2, OpType::Info, "read", 400)
                .with_key("k")
                .with_error("timeout"),
            Op::new(7, OpType::Invoke, "read", 500).with_key("k"),
            Op::new(7, OpType::Fail, "read", 510).with_key("k"),
        ];
        let (e, v) = encoded(&ops, Judgement::None);
        assert_eq!((e.calls, e.processes), (3, 2));
        assert!(!e.json.contains("</script>"));
        let calls = &v["calls"];
        assert_eq!(v["processes"], json!([2, 7]));
        assert_eq!(calls["lane"], json!([1, 0, 1]));
        assert_eq!(calls["start"], json!([100, 50, 350]));
        assert_eq!(calls["dur"], json!([80, 250, 10]));
        assert_eq!(calls["kind"], json!([0, 2, 1]));
        assert_eq!(calls["op"], json!([0, 1, 3]));
        // "k" is used three times, "read" twice: the most used texts come first.
        assert_eq!(v["strings"][0], "");
        assert_eq!(v["strings"][1], "k");
        assert_eq!(v["strings"][2], "read");
        let text = |column: &str, i: usize| {
            let index = calls[column][i].as_u64().unwrap() as usize;
            v["strings"][index].as_str().unwrap().to_string()
        };
        assert_eq!(text("f", 0), "write");
        assert_eq!(text("arg", 0), "\"</script>\"");
        // The completion repeats the argument: no separate result.
        assert_eq!(text("ret", 0), "");
        assert_eq!(text("node", 0), "n1");
        assert_eq!(text("error", 1), "timeout");
        assert_eq!(v["history"], json!([100, 510]));
        assert_eq!(v["extent"], json!([100, 510]));
    }

    #[test]
    fn long_texts_are_cut_with_a_note() {
        let long = "x".repeat(MAX_TEXT + 5);
        assert_eq!(
            truncate(&long, MAX_TEXT),
            format!("{}… (5 more characters)", "x".repeat(MAX_TEXT))
        );
        assert_eq!(truncate("é", 1), "é");
        assert_eq!(truncate("éé", 1), "é… (1 more characters)");
    }

    #[test]
    fn a_violation_highlights_its_stuck_calls_then_its_longest_order() {
        // 1 writes 1; 2 reads 1; 3 then reads the initial value: stale.
        let ops = [
            Op::new(1, OpType::Invoke, "write", 0)
                .with_key("x")
                .with_value(1),
            Op::new(1, OpType::Ok, "write", 10)
                .with_key("x")
                .with_value(1),
            Op::new(2, OpType::Invoke, "read", 20).with_key("x"),
            Op::new(2, OpType::Ok, "read", 30)
                .with_key("x")
                .with_value(1),
            Op::new(3, OpType::Invoke, "read", 40).with_key("x"),
            Op::new(3, OpType::Ok, "read", 50).with_key("x"),
        ];
        let budget = Budget::new(Duration::from_secs(5), 100_000);
        let verdict = linearizable(&ops, Model::Register, budget).unwrap();
        let (e, v) = encoded(&ops, Judgement::Linearizable(&verdict));
        let roles: Vec<(usize, usize, Role)> = e
            .highlights
            .iter()
            .map(|h| (h.call, h.op, h.role))
            .collect();
        assert_eq!(
            roles,
            [
                (2, 4, Role::Stuck),
                (0, 0, Role::Longest),
                (1, 2, Role::Longest)
            ]
        );
        assert_eq!(e.highlights[0].text, "process 3: read(\"x\") → null");
        assert_eq!(v["highlights"], json!([[2, 0], [0, 1], [1, 1]]));
        assert_eq!(v["roles"][0]["name"], "stuck");

        let fine = Verdict::Linearizable;
        assert!(
            encoded(&ops[..4], Judgement::Linearizable(&fine))
                .0
                .highlights
                .is_empty()
        );
    }

    #[test]
    fn a_set_highlights_the_adds_of_bad_values_and_the_final_read() {
        let add = |p: u64, value: i64, t: u64, outcome: OpType| {
            [
                Op::new(p, OpType::Invoke, "add", t).with_value(value),
                Op::new(p, outcome, "add", t + 1).with_value(value),
            ]
        };
        let mut ops: Vec<Op> = Vec::new();
        ops.extend(add(0, 1, 0, OpType::Ok));
        ops.extend(add(0, 2, 10, OpType::Ok)); // lost
        ops.extend(add(1, 3, 20, OpType::Fail)); // failed, yet read
        ops.extend(add(1, 4, 30, OpType::Ok)); // read twice
        ops.push(Op::new(2, OpType::Invoke, "read", 40));
        ops.push(Op::new(2, OpType::Ok, "read", 50).with_value(json!([1, 3, 4, 4, 9])));
        let report = set(&ops).unwrap();
        let (e, _) = encoded(&ops, Judgement::Set(&report));
        let roles: Vec<(usize, Role)> = e.highlights.iter().map(|h| (h.op, h.role)).collect();
        assert_eq!(
            roles,
            [
                (2, Role::Lost),
                (6, Role::Duplicated),
                (4, Role::FailedButRead),
                (8, Role::FinalRead)
            ]
        );
        assert_eq!(e.highlights[0].text, "process 0: add(2) → ok");

        // A node's copy that lost an add: that read, beside the add.
        let mut ops: Vec<Op> = Vec::new();
        ops.extend(add(0, 1, 0, OpType::Ok));
        ops.extend(add(0, 2, 10, OpType::Ok));
        ops.push(Op::new(1, OpType::Invoke, "read", 20));
        ops.push(
            Op::new(1, OpType::Ok, "read", 30)
                .with_value(json!([1]))
                .with_node("n2"),
        );
        ops.push(Op::new(2, OpType::Invoke, "read", 40));
        ops.push(Op::new(2, OpType::Ok, "read", 50).with_value(json!([1, 2])));
        let report = set(&ops).unwrap();
        let (e, _) = encoded(&ops, Judgement::Set(&report));
        let roles: Vec<(usize, Role)> = e.highlights.iter().map(|h| (h.op, h.role)).collect();
        assert_eq!(
            roles,
            [
                (2, Role::Lost),
                (4, Role::IncompleteRead),
                (6, Role::FinalRead)
            ]
        );

        // Only a value from nowhere: the final read alone.
        let mut ops: Vec<Op> = add(0, 1, 0, OpType::Ok).to_vec();
        ops.push(Op::new(2, OpType::Invoke, "read", 40));
        ops.push(Op::new(2, OpType::Ok, "read", 50).with_value(json!([1, 9])));
        let report = set(&ops).unwrap();
        let (e, _) = encoded(&ops, Judgement::Set(&report));
        let roles: Vec<(usize, Role)> = e.highlights.iter().map(|h| (h.op, h.role)).collect();
        assert_eq!(roles, [(2, Role::FinalRead)]);
    }
}
