//! The sequential specifications a history is judged against, compiled for speed.
//!
//! The search applies operations to model states millions of times, so neither states nor
//! operations stay as JSON. Each distinct state of one key is *interned* once into a small
//! integer: the state of a register is its value's canonical JSON text, that of a kv key its
//! string. A read then is one integer comparison, a write an assignment, and only an append
//! builds a new string, once per (state, append) pair thanks to a memo. Absent values are the
//! initial state: `null` for a register, the empty string (written `""` or `null`) for kv.

use std::rc::Rc;

use serde_json::Value;
use troupe_spec::history::Op;

use crate::CheckError;
use crate::hash::FastMap;

/// What a history's operations mean: one type with the workloads that record them, so a
/// workload's model is the checker's.
pub use troupe_spec::workload::{Model, UnknownModel};

/// An interned model state (or value) of one key.
pub(crate) type StateId = u32;

/// One operation, ready to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Legal only in this state, which it leaves as is.
    Read(StateId),
    /// Always legal; sets the state.
    Write(StateId),
    /// Legal only in the first state; sets the second.
    Cas(StateId, StateId),
    /// Always legal; appends this interned string.
    Append(StateId),
}

impl Step {
    /// The value a read requires.
    pub(crate) fn observes(self) -> Option<StateId> {
        match self {
            Step::Read(x) => Some(x),
            _ => None,
        }
    }

    /// The value this step may set, whatever the state before.
    pub(crate) fn resets_to(self) -> Option<StateId> {
        match self {
            Step::Write(v) | Step::Cas(_, v) => Some(v),
            Step::Read(_) | Step::Append(_) => None,
        }
    }
}

/// Bytes of read text [`States::observable`] may scan, summed over in-doubt calls.
const OBSERVE_WORK: usize = 1 << 28;

/// The interned states of one key, and the memo of appends.
pub(crate) struct States {
    model: Model,
    texts: Vec<Rc<str>>,
    ids: FastMap<Rc<str>, StateId>,
    appended: FastMap<u64, StateId>,
    bytes: usize,
}

impl States {
    pub(crate) fn new(model: Model) -> States {
        let mut states = States {
            model,
            texts: Vec::new(),
            ids: FastMap::default(),
            appended: FastMap::default(),
            bytes: 0,
        };
        // Id 0 is the initial state.
        let initial = match model {
            Model::Kv => "",
            Model::Register | Model::Set => "null",
        };
        states.intern(initial);
        // Id 1 is DEAD: a placeholder no text interns to.
        states.texts.push(Rc::from(""));
        states
    }

    pub(crate) const INITIAL: StateId = 0;
    /// Every state that no pending call can observe any more; see [`Liveness`].
    pub(crate) const DEAD: StateId = 1;

    /// Rough heap use, for the memory budget.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn intern(&mut self, text: &str) -> StateId {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = StateId::try_from(self.texts.len()).unwrap_or(StateId::MAX);
        let shared: Rc<str> = text.into();
        // The text plus the table entries.
        self.bytes = self.bytes.saturating_add(text.len()).saturating_add(64);
        self.texts.push(Rc::clone(&shared));
        self.ids.insert(shared, id);
        id
    }

    /// How many distinct states are interned; ids beyond `u32` are refused by the search.
    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether `step` may be taken in `state`.
    #[inline]
    pub(crate) fn legal(&self, state: StateId, step: Step) -> bool {
        match step {
            Step::Read(expected) | Step::Cas(expected, _) => state == expected,
            Step::Write(_) | Step::Append(_) => true,
        }
    }

    /// The state after a legal `step` from `state`.
    #[inline]
    pub(crate) fn apply(&mut self, state: StateId, step: Step) -> StateId {
        match step {
            Step::Read(_) => state,
            Step::Write(value) | Step::Cas(_, value) => value,
            Step::Append(_) if state == States::DEAD => States::DEAD,
            Step::Append(suffix) => self.append(state, suffix),
        }
    }

    fn text(&self, id: StateId) -> &str {
        self.texts.get(id as usize).map_or("", |t| t)
    }

    /// Whether the model can reach `target` from `from` by steps that never reset the state:
    /// for a register, only if they are equal (reads); for kv, by appends.
    #[inline]
    pub(crate) fn extends(&self, from: StateId, target: StateId) -> bool {
        from == target
            || (self.model == Model::Kv
                && from != States::DEAD
                && self.text(target).starts_with(self.text(from)))
    }

    /// [`States::extends`] from the state that legal `step` leads to from `state`, without
    /// building that state: a doomed append costs a comparison, not a new string.
    #[inline]
    pub(crate) fn leads_to(&self, state: StateId, step: Step, target: StateId) -> bool {
        match (self.model, step) {
            (Model::Kv, Step::Append(_)) if state == States::DEAD => false,
            (Model::Kv, Step::Append(suffix)) => {
                let (head, tail, goal) = (self.text(state), self.text(suffix), self.text(target));
                goal.starts_with(head)
                    && goal
                        .get(head.len()..)
                        .is_some_and(|rest| rest.starts_with(tail))
            }
            (_, Step::Write(v) | Step::Cas(_, v)) => self.extends(v, target),
            (_, Step::Read(_) | Step::Append(_)) => self.extends(state, target),
        }
    }

    fn append(&mut self, state: StateId, suffix: StateId) -> StateId {
        let key = (u64::from(state) << 32) | u64::from(suffix);
        if let Some(&id) = self.appended.get(&key) {
            return id;
        }
        let text = {
            let head = self.texts.get(state as usize).map_or("", |t| t);
            let tail = self.texts.get(suffix as usize).map_or("", |t| t);
            let mut text = String::with_capacity(head.len().saturating_add(tail.len()));
            text.push_str(head);
            text.push_str(tail);
            text
        };
        let id = self.intern(&text);
        self.appended.insert(key, id);
        self.bytes = self.bytes.saturating_add(32);
        id
    }

    /// Which in-doubt steps could have an effect that some call observes; the others may be
    /// left out without changing the verdict.
    ///
    /// An in-doubt write whose value no read returns and no cas expects can be removed from any
    /// valid order: between it and the next write nothing can have looked at the state (a read
    /// would have returned the value, a cas would have failed), so the order without it is
    /// valid too. Likewise an in-doubt append whose text is in no read (every read between it
    /// and the next put would contain it), and an in-doubt put that no read starts with.
    /// Unique values make most in-doubt calls that never took effect unobservable, and each
    /// one left in doubles the configurations the search may have to visit.
    pub(crate) fn observable(&self, steps: &[Step], in_doubt: &[bool]) -> Vec<bool> {
        let mut read = vec![false; self.texts.len()];
        let mut expected = vec![false; self.texts.len()];
        for step in steps {
            match *step {
                Step::Read(x) => set(&mut read, x),
                Step::Cas(e, _) => set(&mut expected, e),
                Step::Write(_) | Step::Append(_) => {}
            }
        }
        let reads: Vec<&str> = read
            .iter()
            .zip(&self.texts)
            .filter(|(r, _)| **r)
            .map(|(_, t)| &**t)
            .collect();
        // Searching every read for every in-doubt text is quadratic; past a point, keep them
        // all (sound, only slower to search) rather than spend unbudgeted time here.
        let doubts = in_doubt.iter().filter(|d| **d).count();
        let read_bytes = reads.iter().map(|r| r.len().max(1)).sum::<usize>();
        if self.model == Model::Kv && doubts.saturating_mul(read_bytes) > OBSERVE_WORK {
            return vec![true; steps.len()];
        }
        let seen = |flags: &[bool], id: StateId| flags.get(id as usize).copied().unwrap_or(false);
        steps
            .iter()
            .zip(in_doubt)
            .map(|(step, &doubt)| {
                if !doubt {
                    return true;
                }
                match (self.model, *step) {
                    (_, Step::Read(_)) => true,
                    (Model::Kv, Step::Append(s)) => {
                        let s = self.text(s);
                        !s.is_empty() && reads.iter().any(|r| r.contains(s))
                    }
                    (Model::Kv, Step::Write(v)) => {
                        let v = self.text(v);
                        reads.iter().any(|r| r.starts_with(v))
                    }
                    (_, Step::Write(v) | Step::Cas(_, v)) => seen(&read, v) || seen(&expected, v),
                    (_, Step::Append(_)) => true,
                }
            })
            .collect()
    }

    /// A state as JSON, for explanations.
    pub(crate) fn value(&self, id: StateId) -> Value {
        if id == States::DEAD {
            return Value::String("<a value no later read returns>".to_string());
        }
        let text = self.text(id);
        match self.model {
            Model::Kv => Value::String(text.to_string()),
            Model::Register | Model::Set => {
                serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
            }
        }
    }

    /// Compiles one call of this key into a step; `Ok(None)` for a call that can be left out
    /// without changing the verdict (a read whose result is unknown).
    pub(crate) fn compile(
        &mut self,
        ops: &[Op],
        invoke: usize,
        complete: Option<usize>,
        known_result: bool,
    ) -> Result<Option<Step>, CheckError> {
        let Some(call) = ops.get(invoke) else {
            return Ok(None);
        };
        let result = complete.and_then(|i| ops.get(i)).map(|op| &op.value);
        // The argument is on the invocation; fall back to the completion's copy.
        let argument = match (&call.value, result) {
            (Value::Null, Some(r)) => r,
            (v, _) => v,
        };
        let bad = |expected: &'static str, found: &Value| CheckError::BadValue {
            index: invoke,
            f: call.f.clone(),
            expected,
            found: found.to_string(),
        };
        match (self.model, call.f.as_str()) {
            (Model::Register, "read") => {
                if !known_result {
                    return Ok(None);
                }
                let value = result.unwrap_or(&Value::Null);
                Ok(Some(Step::Read(self.intern(&value.to_string()))))
            }
            (Model::Register, "write") => Ok(Some(Step::Write(self.intern(&argument.to_string())))),
            (Model::Register, "cas") => match argument {
                Value::Array(pair) if pair.len() == 2 => {
                    let expected = self.intern(&pair[0].to_string());
                    let new = self.intern(&pair[1].to_string());
                    Ok(Some(Step::Cas(expected, new)))
                }
                other => Err(bad("a value [expected, new]", other)),
            },
            (Model::Kv, "get") => {
                if !known_result {
                    return Ok(None);
                }
                match result.unwrap_or(&Value::Null) {
                    Value::Null => Ok(Some(Step::Read(States::INITIAL))),
                    Value::String(s) => Ok(Some(Step::Read(self.intern(s)))),
                    other => Err(bad("a string or null result", other)),
                }
            }
            (Model::Kv, f @ ("put" | "append")) => {
                let text = match argument {
                    Value::Null => "",
                    Value::String(s) => s.as_str(),
                    other => return Err(bad("a string value", other)),
                };
                let id = self.intern(text);
                Ok(Some(if f == "put" {
                    Step::Write(id)
                } else {
                    Step::Append(id)
                }))
            }
            (model, f) => Err(CheckError::UnknownOperation {
                index: invoke,
                model,
                f: f.to_string(),
                expected: match model {
                    Model::Register => "read, write or cas",
                    Model::Kv => "get, put or append",
                    Model::Set => "add or read",
                },
            }),
        }
    }
}

/// Which states some call not yet taken could still observe.
///
/// A state that no pending read returns (for kv: that no pending read starts with, since only
/// appends could come before it) and that no pending cas expects can only be left by a write or
/// a put: every read before that fails. All such states have the same future, so the search
/// treats them as one, [`States::DEAD`]. This collapses the orders of concurrent appends or
/// writes that a put or write erases before anyone reads them, which otherwise count as that
/// many distinct states.
///
/// Observers are counted per observed value; for kv the values are sorted by text, so those
/// starting with a state's text are one range, summed by a Fenwick tree.
pub(crate) struct Liveness {
    kv: bool,
    /// Per call: the rank of the value it observes, or `NO_RANK`.
    rank: Vec<u32>,
    /// The distinct observed values, by rank.
    values: Vec<StateId>,
    /// Untaken observers per rank, and their Fenwick tree (1-based).
    counts: Vec<u32>,
    tree: Vec<u32>,
}

const NO_RANK: u32 = u32::MAX;

impl Liveness {
    pub(crate) fn new(states: &States, steps: &[Step]) -> Liveness {
        let observed = |step: &Step| match *step {
            Step::Read(x) | Step::Cas(x, _) => Some(x),
            Step::Write(_) | Step::Append(_) => None,
        };
        let kv = states.model == Model::Kv;
        let mut values: Vec<StateId> = steps.iter().filter_map(observed).collect();
        if kv {
            values.sort_unstable_by(|a, b| states.text(*a).cmp(states.text(*b)).then(a.cmp(b)));
        } else {
            values.sort_unstable();
        }
        values.dedup();
        let rank_of = |x: StateId| -> u32 {
            let found = if kv {
                values.binary_search_by(|v| states.text(*v).cmp(states.text(x)).then(v.cmp(&x)))
            } else {
                values.binary_search(&x)
            };
            found.map_or(NO_RANK, |r| r as u32)
        };
        let rank: Vec<u32> = steps
            .iter()
            .map(|s| observed(s).map_or(NO_RANK, rank_of))
            .collect();
        let mut live = Liveness {
            kv,
            rank,
            counts: vec![0; values.len()],
            tree: vec![0; values.len() + 1],
            values,
        };
        for call in 0..live.rank.len() {
            live.untake(call);
        }
        live
    }

    fn add(&mut self, rank: u32, up: bool) {
        let Some(count) = self.counts.get_mut(rank as usize) else {
            return;
        };
        *count = if up {
            count.saturating_add(1)
        } else {
            count.saturating_sub(1)
        };
        let mut i = rank as usize + 1;
        while i < self.tree.len() {
            self.tree[i] = if up {
                self.tree[i].saturating_add(1)
            } else {
                self.tree[i].saturating_sub(1)
            };
            i += i & i.wrapping_neg();
        }
    }

    /// Observers among ranks `0..end`.
    fn below(&self, end: usize) -> u32 {
        let mut i = end.min(self.tree.len().saturating_sub(1));
        let mut sum = 0u32;
        while i > 0 {
            sum = sum.saturating_add(self.tree[i]);
            i &= i - 1;
        }
        sum
    }

    /// Call `call` was taken.
    #[inline]
    pub(crate) fn take(&mut self, call: usize) {
        if let Some(&r) = self.rank.get(call) {
            self.add(r, false);
        }
    }

    /// Call `call` was put back.
    #[inline]
    pub(crate) fn untake(&mut self, call: usize) {
        if let Some(&r) = self.rank.get(call) {
            self.add(r, true);
        }
    }

    /// Whether no untaken call can observe `state` or, for kv, any extension of it.
    pub(crate) fn is_dead(&self, states: &States, state: StateId) -> bool {
        if state == States::DEAD {
            return true;
        }
        if !self.kv {
            return match self.values.binary_search(&state) {
                Ok(r) => self.counts.get(r).copied().unwrap_or(0) == 0,
                Err(_) => true,
            };
        }
        let text = states.text(state);
        let start = self.values.partition_point(|v| states.text(*v) < text);
        let len = self.values.get(start..).map_or(0, |rest| {
            rest.partition_point(|v| states.text(*v).starts_with(text))
        });
        self.below(start.saturating_add(len)) == self.below(start)
    }
}

fn set(flags: &mut [bool], id: StateId) {
    if let Some(flag) = flags.get_mut(id as usize) {
        *flag = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_memoised_and_interned() {
        let mut s = States::new(Model::Kv);
        let a = s.intern("a");
        let once = s.apply(States::INITIAL, Step::Append(a));
        let twice = s.apply(once, Step::Append(a));
        assert_eq!(once, a);
        assert_eq!(s.value(twice), "aa");
        assert_eq!(s.apply(once, Step::Append(a)), twice);
        assert!(!s.legal(twice, Step::Read(a)));
        assert!(s.leads_to(States::INITIAL, Step::Append(a), twice));
        assert!(s.extends(once, twice) && !s.extends(twice, once));
    }

    #[test]
    fn register_values_compare_as_json() {
        let mut s = States::new(Model::Register);
        let one = s.intern(&serde_json::json!({"b": 1, "a": [1]}).to_string());
        let again = s.intern(&serde_json::json!({"a": [1], "b": 1}).to_string());
        assert_eq!(one, again);
        assert_eq!(s.value(States::INITIAL), Value::Null);
        assert!(s.legal(one, Step::Cas(one, States::INITIAL)));
        assert_eq!(s.apply(one, Step::Cas(one, States::INITIAL)), 0);
        assert!(!s.extends(States::INITIAL, one));
    }

    #[test]
    fn model_names_parse_and_print() {
        for m in [Model::Register, Model::Kv, Model::Set] {
            assert_eq!(m.as_str().parse::<Model>(), Ok(m));
        }
        assert_eq!(
            "queue".parse::<Model>().unwrap_err().to_string(),
            "parse model \"queue\" (expected register, kv or set)"
        );
    }
}
