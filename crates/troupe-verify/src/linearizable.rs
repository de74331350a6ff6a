//! The linearizability checker: splits a history by key, searches each key, explains a failure.
//!
//! Keys of a register or kv store are independent objects, and a history is linearizable
//! exactly when each key's sub-history is (linearizability is compositional). Splitting turns
//! one search over all operations, exponential in the worst case, into many small ones; the
//! README of the shared histories measures the difference at three orders of magnitude.
//!
//! Keys are checked smallest first: most keys are cheap, and a small bad key is found before
//! time goes into a big good one. The first bad key ends the check. A key that runs out of
//! memoised states is set aside as unknown while the other keys are still checked, since one of
//! them may yet prove the history wrong; running out of time ends everything.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;
use troupe_spec::history::Op;

use crate::CheckError;
use crate::hash::FastMap;
use crate::model::{Model, States};
use crate::pair::{Call, Outcome, pair};
use crate::wgl::{Exhausted, KeyCall, Limits, Search, search};

/// How much a check may spend before it answers [`Verdict::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Budget {
    /// Wall-clock time for the whole history.
    pub time: Duration,
    /// Memoised configurations (set of linearized calls, model state) for one key; each costs
    /// about 50 bytes.
    pub max_states: usize,
    /// Rough bound on the memory of one key's search, memo and interned states together.
    pub max_bytes: usize,
}

impl Budget {
    /// A budget of `time` and `max_states`, with the default memory bound (1 GiB).
    pub fn new(time: Duration, max_states: usize) -> Budget {
        Budget {
            time,
            max_states,
            ..Budget::default()
        }
    }

    pub fn with_max_bytes(mut self, max_bytes: usize) -> Budget {
        self.max_bytes = max_bytes;
        self
    }
}

impl Default for Budget {
    /// One minute, ten million configurations, 1 GiB.
    fn default() -> Budget {
        Budget {
            time: Duration::from_secs(60),
            max_states: 10_000_000,
            max_bytes: 1 << 30,
        }
    }
}

/// The answer of [`linearizable`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Verdict {
    /// Every key has an order of its calls that the model accepts.
    Linearizable,
    /// At least one key has none; the first one found is explained.
    NotLinearizable(Box<Violation>),
    /// The budget ran out before an answer.
    Unknown { reason: String },
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }

    pub fn violation(&self) -> Option<&Violation> {
        match self {
            Verdict::NotLinearizable(v) => Some(v),
            _ => None,
        }
    }
}

/// Why a history is not linearizable, for people (`Display`) and reports (`Serialize`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Violation {
    pub model: Model,
    /// The key with no valid order (`None`: operations without a key).
    pub key: Option<String>,
    /// Calls checked on that key (`fail` calls and reads of unknown outcome are left out).
    pub calls: usize,
    /// The longest order of calls on the key that the model accepts and that respects real
    /// time, as far as the search got before every way on was blocked.
    pub longest: Vec<OpRef>,
    /// The value of the key after `longest`.
    pub state: Value,
    /// The acknowledged calls that had to come next after `longest` (each was called before
    /// the earliest of them returned) and of which none can.
    pub stuck: Vec<OpRef>,
}

/// A call, pointing into the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct OpRef {
    /// Index of the invocation in the history.
    pub invoke: usize,
    /// Index of the completion, if any.
    pub complete: Option<usize>,
    pub process: u64,
    /// The call in a compact form: `process 3: write("k1", 7) → ok`.
    pub text: String,
}

impl OpRef {
    fn new(ops: &[Op], call: &Call) -> OpRef {
        let process = ops.get(call.invoke).map_or(0, |op| op.process);
        OpRef {
            invoke: call.invoke,
            complete: call.complete,
            process,
            text: describe(ops, call),
        }
    }
}

/// `process 3: write("k1", 7) → ok`, `process 0: get("5") → "x 0 1 y"`, `... → info`.
pub(crate) fn describe(ops: &[Op], call: &Call) -> String {
    let Some(invoke) = ops.get(call.invoke) else {
        return String::new();
    };
    let result = call.complete.and_then(|i| ops.get(i)).map(|op| &op.value);
    let mut args: Vec<String> = Vec::new();
    if let Some(key) = &invoke.key {
        args.push(Value::String(key.clone()).to_string());
    }
    let is_read = matches!(invoke.f.as_str(), "read" | "get");
    match &invoke.value {
        Value::Null => {}
        Value::Array(pair) if invoke.f == "cas" => args.extend(pair.iter().map(Value::to_string)),
        other => args.push(other.to_string()),
    }
    let returned = match call.outcome {
        Outcome::Ok if is_read => result.map_or_else(|| "null".to_string(), Value::to_string),
        Outcome::Ok => "ok".to_string(),
        Outcome::Fail => "fail".to_string(),
        Outcome::Info => "info".to_string(),
    };
    format!(
        "process {}: {}({}) → {}",
        invoke.process,
        invoke.f,
        args.join(", "),
        returned
    )
}

/// Checks that the history is linearizable under `model` (`Register` or `Kv`).
///
/// `fail` calls are left out (they did not happen); `info` calls may take effect at any time
/// after their call, or never. Calls are ordered by `time`; calls whose times touch overlap.
pub fn linearizable(ops: &[Op], model: Model, budget: Budget) -> Result<Verdict, CheckError> {
    if !matches!(model, Model::Register | Model::Kv) {
        return Err(CheckError::UnsupportedModel { model });
    }
    let start = Instant::now();
    let calls = pair(ops)?;

    // Group by key, keeping the order of invocation within each.
    let mut keys: FastMap<Option<&str>, Vec<usize>> = FastMap::default();
    for (c, call) in calls.iter().enumerate() {
        let key = ops.get(call.invoke).and_then(|op| op.key.as_deref());
        keys.entry(key).or_default().push(c);
    }
    let mut keys: Vec<(Option<&str>, Vec<usize>)> = keys.into_iter().collect();
    keys.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then(a.0.cmp(&b.0)));

    let limits = Limits {
        deadline: start.checked_add(budget.time),
        max_states: budget.max_states,
        max_bytes: budget.max_bytes,
        prune: true,
    };
    let mut unknown: Vec<String> = Vec::new();
    for (key, members) in &keys {
        let KeyCalls {
            mut states,
            compiled,
            origin,
        } = compile_key(ops, &calls, members, model)?;
        match search(&compiled, &mut states, &limits) {
            Search::Linearizable => {}
            found @ Search::Violation { .. } => {
                // The prunings stop orders before the calls that doom a later read, so the
                // longest order found ends early and names the wrong calls. Search again
                // without them for the natural explanation, on a small budget: the verdict is
                // already known.
                let plain = Limits {
                    max_states: limits.max_states.min(EXPLAIN_STATES),
                    prune: false,
                    ..limits
                };
                let explained = match search(&compiled, &mut states, &plain) {
                    better @ Search::Violation { .. } => better,
                    _ => found,
                };
                let Search::Violation {
                    longest,
                    state,
                    stuck,
                } = explained
                else {
                    continue;
                };
                let refs = |local: &[usize]| -> Vec<OpRef> {
                    local
                        .iter()
                        .filter_map(|&l| origin.get(l))
                        .filter_map(|&c| calls.get(c))
                        .map(|call| OpRef::new(ops, call))
                        .collect()
                };
                return Ok(Verdict::NotLinearizable(Box::new(Violation {
                    model,
                    key: key.map(str::to_string),
                    calls: compiled.len(),
                    longest: refs(&longest),
                    state: states.value(state),
                    stuck: refs(&stuck),
                })));
            }
            Search::OutOfBudget {
                why,
                configurations,
            } => {
                let key = key_name(*key);
                let spent = match why {
                    Exhausted::Time => {
                        return Ok(Verdict::Unknown {
                            reason: format!(
                                "the time budget of {:?} ran out while checking key {key} \
                                 ({} calls, {configurations} configurations explored)",
                                budget.time,
                                compiled.len(),
                            ),
                        });
                    }
                    Exhausted::States => format!("the budget of {} states", budget.max_states),
                    Exhausted::Bytes => format!("the memory budget of {} bytes", budget.max_bytes),
                };
                unknown.push(format!(
                    "key {key} ({} calls) used up {spent} after {configurations} configurations",
                    compiled.len()
                ));
            }
        }
    }
    Ok(match unknown.split_first() {
        None => Verdict::Linearizable,
        Some((first, rest)) => Verdict::Unknown {
            reason: if rest.is_empty() {
                format!("{first}; every other key is linearizable")
            } else {
                format!(
                    "{first}, and {} more key{} did too; every other key is linearizable",
                    rest.len(),
                    if rest.len() == 1 { "" } else { "s" }
                )
            },
        },
    })
}

/// One key's calls, compiled for the search, and the index in `calls` each came from.
struct KeyCalls {
    states: States,
    compiled: Vec<KeyCall>,
    origin: Vec<usize>,
}

/// Compiles the calls of one key (`members`, indices into `calls`): `fail` calls and reads of
/// unknown result are left out, and so are in-doubt calls no one could have observed.
fn compile_key(
    ops: &[Op],
    calls: &[Call],
    members: &[usize],
    model: Model,
) -> Result<KeyCalls, CheckError> {
    let mut states = States::new(model);
    let mut compiled: Vec<KeyCall> = Vec::with_capacity(members.len());
    let mut origin: Vec<usize> = Vec::with_capacity(members.len());
    for &c in members {
        let Some(call) = calls.get(c) else {
            continue;
        };
        // Compiled even when it failed, so that a malformed call is reported either way.
        let step = states.compile(ops, call.invoke, call.complete, call.outcome == Outcome::Ok)?;
        if let Some(step) = step
            && call.outcome != Outcome::Fail
        {
            compiled.push(KeyCall {
                call: call.call_time,
                ret: call.return_time,
                step,
            });
            origin.push(c);
        }
    }
    let steps: Vec<_> = compiled.iter().map(|c| c.step).collect();
    let in_doubt: Vec<bool> = compiled.iter().map(|c| c.ret.is_none()).collect();
    let keep = states.observable(&steps, &in_doubt);
    if keep.contains(&false) {
        let mut flags = keep.iter();
        compiled.retain(|_| flags.next().copied().unwrap_or(true));
        let mut flags = keep.iter();
        origin.retain(|_| flags.next().copied().unwrap_or(true));
    }
    Ok(KeyCalls {
        states,
        compiled,
        origin,
    })
}

fn key_name(key: Option<&str>) -> String {
    match key {
        Some(k) => Value::String(k.to_string()).to_string(),
        None => "(none)".to_string(),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Linearizable => f.write_str("linearizable"),
            Verdict::NotLinearizable(v) => write!(f, "not linearizable: {v}"),
            Verdict::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// Configurations the second search, which only improves an explanation, may use.
const EXPLAIN_STATES: usize = 1_000_000;

/// How many calls of a list a sentence names before "and N more".
const NAMED: usize = 5;

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "key {} has no valid order of its {} calls under the {} model. ",
            key_name(self.key.as_deref()),
            self.calls,
            self.model
        )?;
        match self.longest.last() {
            None => write!(f, "From the initial value {}", self.state)?,
            Some(last) => write!(
                f,
                "The longest valid order found places {} of them, ending with op {} ({}), and \
                 leaves the value {}; after it",
                self.longest.len(),
                last.invoke,
                last.text,
                self.state
            )?,
        }
        match self.stuck.as_slice() {
            [] => f.write_str(", nothing fits."),
            [one] => write!(f, ", op {} ({}) cannot come next.", one.invoke, one.text),
            many => {
                f.write_str(", none of these can come next: ")?;
                for (i, op) in many.iter().take(NAMED).enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "op {} ({})", op.invoke, op.text)?;
                }
                if many.len() > NAMED {
                    write!(f, "; and {} more", many.len() - NAMED)?;
                }
                f.write_str(".")
            }
        }
    }
}
