//! The search for a linearization of one key's calls (Wing & Gong, with Lowe's memoisation).
//!
//! Calls and returns are laid out in time order in a doubly linked list. Walking it from the
//! front, any call met before the first return is a candidate to take effect next; taking one
//! unlinks its call and return and restarts from the front. Reaching a return means the call it
//! belongs to had to happen by then and none of the ordering choices made so far allow it, so
//! the search backtracks: it relinks the last call taken and tries the next candidate after it.
//! Since a configuration (which calls are linearized, model state) determines everything that
//! can follow, each is explored once: a configuration seen before is pruned at once.
//!
//! What makes this fast:
//! - configurations are keyed by an incremental hash, the XOR of a random tag per linearized
//!   call, updated in O(1) when a call is taken or put back, mixed with the interned state;
//!   the set itself is only compared when hashes match;
//! - the memo is an open-addressing table of indices into flat arrays, not a map of boxed
//!   sets, and stores of each set only the span of words between "all taken" and "none
//!   taken" ([`Taken`]), a word or two even on a 10,000-call key;
//! - calls whose outcome is unknown (`info`) have no return in the list: they never force
//!   backtracking, and the search succeeds once every *acknowledged* call is placed, so an
//!   `info` call may take effect any time after its call, or never;
//! - a look-ahead at the next few pending reads. Before taking a call, each read whose return
//!   is among the next [`LOOKAHEAD`] returns must still be reachable: from the state the call
//!   leads to, or from a value some call placeable before that read may reset the state to
//!   (a write, a cas, a put). For a register, reachable means equal; for kv, a prefix, since
//!   only appends can come between. Without it, concurrent appends are tried in every order
//!   until the next read rejects them all, and each order is a new state, so ten clients
//!   appending to one key exhaust a gigabyte; with it, a wrong order dies at its first step.
//! - states that no pending call can observe any more are merged into one ([`Liveness`]), so
//!   the orders of writes or appends that are overwritten before anyone reads them collapse.
//!
//! Both prunings make the longest order found shorter than it could be (they stop before calls
//! that doom a later read), so a violation is explained by a second search without them.
//!
//! The memo's size and bytes are checked at every insertion and the clock every few thousand
//! steps, so the search ends with [`Search::OutOfBudget`] rather than running away.

use std::time::Instant;

use crate::hash::mix64;
use crate::model::{Liveness, StateId, States, Step};

/// One call of the key, compiled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyCall {
    pub(crate) call: u64,
    /// `None` for a call whose outcome is unknown.
    pub(crate) ret: Option<u64>,
    pub(crate) step: Step,
}

/// Limits of one search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) deadline: Option<Instant>,
    pub(crate) max_states: usize,
    pub(crate) max_bytes: usize,
    /// Prune with the look-ahead at pending reads and merge dead states (see the module docs).
    pub(crate) prune: bool,
}

/// Why a search stopped without a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exhausted {
    Time,
    States,
    Bytes,
}

#[derive(Debug)]
pub(crate) enum Search {
    Linearizable,
    Violation {
        /// The longest valid order found, as indices into the key's calls.
        longest: Vec<usize>,
        /// The model state after it.
        state: StateId,
        /// The acknowledged calls not in `longest` that had to come next: every one whose call
        /// precedes the earliest return among them.
        stuck: Vec<usize>,
    },
    OutOfBudget {
        why: Exhausted,
        configurations: usize,
    },
}

const NIL: u32 = u32::MAX;
const NONE: StateId = StateId::MAX;
/// What a list position holds.
const RETURN: u8 = 0;
const CALL: u8 = 1;
/// The head and tail sentinels.
const END: u8 = 2;
const EMPTY: u32 = u32::MAX;
/// Steps between two looks at the clock.
const CHECK_EVERY: u32 = 1 << 12;
/// How many pending returns the look-ahead examines.
pub(crate) const LOOKAHEAD: usize = 16;

/// The set of linearized calls: a bitset, its incremental hash, and the span of words that
/// tells it apart. Words below `lo` are all ones, words from `hi` on all zeros; the search
/// takes calls roughly in time order, so the span is a word or two however long the history,
/// and the memo stores only that span.
struct Taken {
    words: Vec<u64>,
    hash: u64,
    /// The first word not all ones.
    lo: usize,
    /// One past the last word not all zeros (never below `lo`).
    hi: usize,
}

impl Taken {
    fn new(calls: usize) -> Taken {
        Taken {
            words: vec![0; calls.div_ceil(64).max(1)],
            hash: 0,
            lo: 0,
            hi: 0,
        }
    }

    #[inline]
    fn set(&mut self, i: usize, tag: u64) {
        let w = i / 64;
        self.words[w] |= 1u64 << (i % 64);
        self.hash ^= tag;
        self.hi = self.hi.max(w + 1);
        while self.lo < self.hi && self.words[self.lo] == u64::MAX {
            self.lo += 1;
        }
    }

    #[inline]
    fn clear(&mut self, i: usize, tag: u64) {
        let w = i / 64;
        self.words[w] &= !(1u64 << (i % 64));
        self.hash ^= tag;
        self.lo = self.lo.min(w);
        while self.hi > self.lo && self.words[self.hi - 1] == 0 {
            self.hi -= 1;
        }
    }

    /// The words that tell this set apart, and where they start.
    #[inline]
    fn span(&self) -> (usize, &[u64]) {
        (self.lo, &self.words[self.lo..self.hi])
    }
}

/// One memoised configuration; its span of words is `arena[start..start + len]`.
#[derive(Clone, Copy)]
struct Entry {
    hash: u64,
    start: usize,
    lo: u32,
    len: u32,
    state: StateId,
}

/// The memo of configurations: an open-addressing table of indices into flat arrays.
struct Seen {
    /// Indices into `entries`, `EMPTY` where free; length a power of two.
    slots: Vec<u32>,
    entries: Vec<Entry>,
    arena: Vec<u64>,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            slots: vec![EMPTY; 64],
            entries: Vec::new(),
            arena: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn bytes(&self) -> usize {
        self.slots
            .capacity()
            .saturating_mul(4)
            .saturating_add(
                self.entries
                    .capacity()
                    .saturating_mul(std::mem::size_of::<Entry>()),
            )
            .saturating_add(self.arena.capacity().saturating_mul(8))
    }

    /// Records a configuration; `false` if it was already there.
    #[inline]
    fn insert(&mut self, hash: u64, state: StateId, taken: &Taken) -> bool {
        let (lo, words) = taken.span();
        let mask = self.slots.len() - 1;
        let mut at = (hash as usize) & mask;
        loop {
            let slot = self.slots[at];
            if slot == EMPTY {
                break;
            }
            let e = self.entries[slot as usize];
            if e.hash == hash
                && e.state == state
                && e.lo as usize == lo
                && self.arena[e.start..e.start + e.len as usize] == *words
            {
                return false;
            }
            at = (at + 1) & mask;
        }
        self.slots[at] = self.entries.len() as u32;
        self.entries.push(Entry {
            hash,
            start: self.arena.len(),
            lo: lo as u32,
            len: words.len() as u32,
            state,
        });
        self.arena.extend_from_slice(words);
        if self.entries.len() * 2 > self.slots.len() {
            self.grow();
        }
        true
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        let mask = size - 1;
        let mut slots = vec![EMPTY; size];
        for (k, e) in self.entries.iter().enumerate() {
            let mut at = (e.hash as usize) & mask;
            while slots[at] != EMPTY {
                at = (at + 1) & mask;
            }
            slots[at] = k as u32;
        }
        self.slots = slots;
    }
}

/// The tag a state adds to a configuration's hash.
#[inline]
fn state_tag(state: StateId) -> u64 {
    mix64(u64::from(state) ^ 0x2545_f491_4f6c_dd1d)
}

/// The calls and returns of one key in time order, as a doubly linked list over positions:
/// 0 is the head sentinel, then the entries, then the tail sentinel.
struct Timeline {
    next: Vec<u32>,
    prev: Vec<u32>,
    kinds: Vec<u8>,
    /// The call each position belongs to.
    holds: Vec<u32>,
    /// Per call: the position of its call entry and of its return entry (`NIL` if in doubt).
    call_pos: Vec<u32>,
    ret_pos: Vec<u32>,
}

impl Timeline {
    fn new(calls: &[KeyCall]) -> Timeline {
        let n = calls.len();
        // Events sorted by time; at equal times calls come first, so touching calls overlap.
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(n * 2);
        for (i, c) in calls.iter().enumerate() {
            events.push((c.call, false, i as u32));
            if let Some(ret) = c.ret {
                events.push((ret, true, i as u32));
            }
        }
        events.sort_unstable();
        let len = events.len();
        let mut t = Timeline {
            next: (0..len + 2).map(|p| (p + 1) as u32).collect(),
            prev: (0..len + 2).map(|p| p.wrapping_sub(1) as u32).collect(),
            kinds: vec![END; len + 2],
            holds: vec![0; len + 2],
            call_pos: vec![NIL; n],
            ret_pos: vec![NIL; n],
        };
        t.next[len + 1] = NIL;
        t.prev[0] = NIL;
        for (p, &(_, is_ret, i)) in events.iter().enumerate() {
            let pos = p + 1;
            t.holds[pos] = i;
            if is_ret {
                t.kinds[pos] = RETURN;
                t.ret_pos[i as usize] = pos as u32;
            } else {
                t.kinds[pos] = CALL;
                t.call_pos[i as usize] = pos as u32;
            }
        }
        t
    }

    #[inline]
    fn first(&self) -> usize {
        self.next[0] as usize
    }

    #[inline]
    fn unlink(&mut self, pos: usize) {
        let (p, n) = (self.prev[pos] as usize, self.next[pos] as usize);
        self.next[p] = n as u32;
        self.prev[n] = p as u32;
    }

    #[inline]
    fn relink(&mut self, pos: usize) {
        let (p, n) = (self.prev[pos] as usize, self.next[pos] as usize);
        self.next[p] = pos as u32;
        self.prev[n] = pos as u32;
    }
}

/// Per call, what the look-ahead needs: the value it reads and the value it may set.
struct Effects {
    observes: Vec<StateId>,
    resets: Vec<StateId>,
    /// Scratch: values settable before the read being examined.
    settable: Vec<StateId>,
}

impl Effects {
    /// Whether, after call `taken` (step `step` from `state`), every read among the next
    /// [`LOOKAHEAD`] pending returns can still return its value.
    #[inline]
    fn feasible(
        &mut self,
        line: &Timeline,
        states: &States,
        taken: u32,
        state: StateId,
        step: Step,
    ) -> bool {
        self.settable.clear();
        let mut returns = 0;
        let mut pos = line.first();
        loop {
            let kind = line.kinds[pos];
            if kind == END {
                return true;
            }
            let call = line.holds[pos];
            if call != taken {
                if kind == RETURN {
                    let x = self.observes[call as usize];
                    if x != NONE
                        && !states.leads_to(state, step, x)
                        && !self.settable.iter().any(|&v| states.extends(v, x))
                    {
                        return false;
                    }
                    returns += 1;
                    if returns == LOOKAHEAD {
                        return true;
                    }
                } else {
                    let v = self.resets[call as usize];
                    if v != NONE && !self.settable.contains(&v) {
                        self.settable.push(v);
                    }
                }
            }
            pos = line.next[pos] as usize;
        }
    }
}

/// Searches for a linearization of `calls`, starting from [`States::INITIAL`].
pub(crate) fn search(calls: &[KeyCall], states: &mut States, limits: &Limits) -> Search {
    let n = calls.len();
    // Every position must fit in a u32 with room for the sentinels and NIL.
    if n >= (u32::MAX as usize) / 4 || limits.max_states == 0 {
        return Search::OutOfBudget {
            why: Exhausted::States,
            configurations: 0,
        };
    }
    // Memo indices are u32.
    let max_states = limits.max_states.min(u32::MAX as usize / 2);
    let mut line = Timeline::new(calls);
    let mut effects = Effects {
        observes: calls
            .iter()
            .map(|c| c.step.observes().unwrap_or(NONE))
            .collect(),
        resets: calls
            .iter()
            .map(|c| c.step.resets_to().unwrap_or(NONE))
            .collect(),
        settable: Vec::new(),
    };
    let steps: Vec<Step> = calls.iter().map(|c| c.step).collect();
    let mut live = Liveness::new(states, &steps);

    let tags: Vec<u64> = (0..n as u64).map(mix64).collect();
    let mut taken = Taken::new(n);
    let mut seen = Seen::new();

    // Acknowledged calls not yet taken; the search succeeds when none is left.
    let mut remaining = calls.iter().filter(|c| c.ret.is_some()).count();
    let mut state = States::INITIAL;
    // The calls taken so far (by call position), with the state before each.
    let mut stack: Vec<(u32, StateId)> = Vec::with_capacity(n);
    let mut longest: Vec<u32> = Vec::new();
    let mut longest_state = States::INITIAL;
    let mut countdown = CHECK_EVERY;

    let mut pos = line.first();
    loop {
        if remaining == 0 {
            return Search::Linearizable;
        }
        countdown -= 1;
        if countdown == 0 {
            countdown = CHECK_EVERY;
            if limits.deadline.is_some_and(|d| Instant::now() >= d) {
                return Search::OutOfBudget {
                    why: Exhausted::Time,
                    configurations: seen.len(),
                };
            }
        }
        if line.kinds[pos] == CALL {
            let i = line.holds[pos] as usize;
            let step = calls[i].step;
            let next = if states.legal(state, step)
                && (!limits.prune || effects.feasible(&line, states, i as u32, state, step))
            {
                live.take(i);
                let after = states.apply(state, step);
                Some(if limits.prune && live.is_dead(states, after) {
                    States::DEAD
                } else {
                    after
                })
            } else {
                None
            };
            if let Some(after) = next {
                taken.set(i, tags[i]);
                if seen.insert(taken.hash ^ state_tag(after), after, &taken) {
                    if seen.len() >= max_states {
                        return Search::OutOfBudget {
                            why: Exhausted::States,
                            configurations: seen.len(),
                        };
                    }
                    if seen.bytes().saturating_add(states.bytes()) >= limits.max_bytes
                        || states.len() >= (u32::MAX / 2) as usize
                    {
                        return Search::OutOfBudget {
                            why: Exhausted::Bytes,
                            configurations: seen.len(),
                        };
                    }
                    stack.push((pos as u32, state));
                    state = after;
                    // Take the call: unlink its call entry and its return entry.
                    line.unlink(pos);
                    let r = line.ret_pos[i];
                    if r != NIL {
                        line.unlink(r as usize);
                        remaining -= 1;
                    }
                    pos = line.first();
                    continue;
                }
                taken.clear(i, tags[i]);
                live.untake(i);
            }
            pos = line.next[pos] as usize;
        } else {
            // A return (or the tail): every candidate at this depth has been tried.
            if stack.len() > longest.len() {
                longest = stack.iter().map(|&(p, _)| line.holds[p as usize]).collect();
                longest_state = state;
            }
            let Some((back, before)) = stack.pop() else {
                break;
            };
            let back = back as usize;
            let i = line.holds[back] as usize;
            state = before;
            taken.clear(i, tags[i]);
            live.untake(i);
            let r = line.ret_pos[i];
            if r != NIL {
                line.relink(r as usize);
                remaining += 1;
            }
            line.relink(back);
            pos = line.next[back] as usize;
        }
    }

    // No order: say which calls were stuck after the longest order found.
    let mut placed = vec![false; n];
    for &i in &longest {
        placed[i as usize] = true;
    }
    let first_return = (0..n)
        .filter(|&i| !placed[i] && line.ret_pos[i] != NIL)
        .map(|i| line.ret_pos[i])
        .min()
        .unwrap_or(NIL);
    let mut stuck: Vec<usize> = (0..n)
        .filter(|&i| !placed[i] && line.ret_pos[i] != NIL && line.call_pos[i] < first_return)
        .collect();
    stuck.sort_by_key(|&i| line.call_pos[i]);
    Search::Violation {
        longest: longest.iter().map(|&i| i as usize).collect(),
        state: longest_state,
        stuck,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Model;

    fn limits() -> Limits {
        Limits {
            deadline: None,
            max_states: 1_000_000,
            max_bytes: usize::MAX,
            prune: true,
        }
    }

    fn call(call: u64, ret: Option<u64>, step: Step) -> KeyCall {
        KeyCall { call, ret, step }
    }

    fn register() -> (States, StateId) {
        let mut s = States::new(Model::Register);
        let one = s.intern("1");
        (s, one)
    }

    #[test]
    fn overlapping_write_and_read_may_be_ordered_either_way() {
        let (mut s, one) = register();
        for read in [0, one] {
            let calls = [
                call(0, Some(10), Step::Read(read)),
                call(5, Some(15), Step::Write(one)),
            ];
            let result = search(&calls, &mut s, &limits());
            assert!(matches!(result, Search::Linearizable), "{result:?}");
        }
    }

    #[test]
    fn touching_calls_overlap() {
        let (mut s, one) = register();
        // The read of 1 returns at the instant the write of 1 is called.
        let calls = [
            call(0, Some(10), Step::Read(one)),
            call(10, Some(20), Step::Write(one)),
        ];
        let result = search(&calls, &mut s, &limits());
        assert!(matches!(result, Search::Linearizable), "{result:?}");
    }

    #[test]
    fn stale_read_reports_the_longest_order_and_the_stuck_read() {
        let (mut s, one) = register();
        let calls = [
            call(0, Some(10), Step::Write(one)),
            call(20, Some(30), Step::Read(0)),
            call(40, Some(50), Step::Read(one)),
        ];
        let plain = Limits {
            prune: false,
            ..limits()
        };
        let Search::Violation {
            longest,
            state,
            stuck,
        } = search(&calls, &mut s, &plain)
        else {
            panic!("expected a violation");
        };
        assert_eq!((longest, state, stuck), (vec![0], one, vec![1]));
        // Pruned, the verdict is the same, but the write is refused at once: the read after
        // it could never return 0.
        let Search::Violation { longest, stuck, .. } = search(&calls, &mut s, &limits()) else {
            panic!("expected a violation");
        };
        assert_eq!((longest, stuck), (vec![], vec![0]));
    }

    #[test]
    fn an_info_call_may_happen_late_or_never() {
        let (mut s, one) = register();
        for read in [0, one] {
            let calls = [
                call(0, None, Step::Write(one)),
                call(20, Some(30), Step::Read(read)),
            ];
            let result = search(&calls, &mut s, &limits());
            assert!(matches!(result, Search::Linearizable), "{result:?}");
        }
        // ...but not before it was called.
        let calls = [
            call(0, Some(10), Step::Read(one)),
            call(20, None, Step::Write(one)),
        ];
        assert!(matches!(
            search(&calls, &mut s, &limits()),
            Search::Violation { .. }
        ));
    }

    #[test]
    fn taken_keeps_a_canonical_span() {
        let mut t = Taken::new(200);
        for i in 0..64 {
            t.set(i, mix64(i as u64));
        }
        assert_eq!(t.span(), (1, &[][..]));
        t.set(130, 1);
        assert_eq!(t.span(), (1, &[0, 1 << 2][..]));
        t.clear(3, mix64(3));
        assert_eq!(t.span(), (0, &[!(1u64 << 3), 0, 1 << 2][..]));
        t.clear(130, 1);
        t.set(3, mix64(3));
        assert_eq!(t.span(), (1, &[][..]));
        let mut other = Taken::new(200);
        for i in (0..64).rev() {
            other.set(i, mix64(i as u64));
        }
        assert_eq!((other.span(), other.hash), (t.span(), t.hash));
    }

    #[test]
    fn the_state_budget_ends_the_search() {
        let (mut s, one) = register();
        let calls: Vec<KeyCall> = (0..10)
            .map(|i| call(i, Some(100), Step::Write(one)))
            .collect();
        let tight = Limits {
            max_states: 3,
            ..limits()
        };
        assert!(matches!(
            search(&calls, &mut s, &tight),
            Search::OutOfBudget {
                why: Exhausted::States,
                ..
            }
        ));
    }
}
