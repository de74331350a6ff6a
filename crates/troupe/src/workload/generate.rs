//! The operations a workload asks for: a seeded sequence per process slot, independent of
//! what the system answers, so the same seed always asks for the same operations.
//!
//! Values are unique per workload (slot *s* of *p* writes `s + 1`, `s + 1 + p`, ...), so a read
//! names the one write it saw: a stale read cannot hide behind a value written twice.

use serde_json::{Value, json};
use troupe_spec::workload::Model;

/// One operation to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub f: Fn,
    pub key: Option<String>,
    /// The argument: the written value, `[expected, new]` for `cas`, the appended text.
    pub value: Value,
}

/// The operations of every model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fn {
    Read,
    Write,
    Cas,
    Get,
    Put,
    Append,
    Add,
    /// A set's final read of every element.
    ReadAll,
}

impl Fn {
    pub fn name(self) -> &'static str {
        match self {
            Fn::Read | Fn::ReadAll => "read",
            Fn::Write => "write",
            Fn::Cas => "cas",
            Fn::Get => "get",
            Fn::Put => "put",
            Fn::Append => "append",
            Fn::Add => "add",
        }
    }

    fn parse(name: &str) -> Option<Fn> {
        Some(match name {
            "read" => Fn::Read,
            "write" => Fn::Write,
            "cas" => Fn::Cas,
            "get" => Fn::Get,
            "put" => Fn::Put,
            "append" => Fn::Append,
            "add" => Fn::Add,
            _ => return None,
        })
    }

    /// Whether it only observes: a read that fails or times out changed nothing.
    pub fn is_read(self) -> bool {
        matches!(self, Fn::Read | Fn::Get | Fn::ReadAll)
    }
}

/// SplitMix64: small, fast, and good enough to pick operations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by Lemire's multiply-shift.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// The operation sequence of one process slot.
#[derive(Debug, Clone)]
pub struct Generator {
    rng: Rng,
    model: Model,
    /// Cumulative weights, with the operation each ends.
    mix: Vec<(u64, Fn)>,
    keys: u32,
    slot: u64,
    slots: u64,
    count: u64,
    /// The last value this slot gave each key, for its next `cas`.
    last: Vec<Value>,
}

impl Generator {
    pub fn new(
        model: Model,
        mix: &[(String, u32)],
        keys: u32,
        seed: u64,
        slot: u64,
        slots: u64,
    ) -> Generator {
        let mut total = 0u64;
        let mix = mix
            .iter()
            .filter(|(_, w)| *w > 0)
            .filter_map(|(f, w)| {
                total += u64::from(*w);
                Some((total, Fn::parse(f)?))
            })
            .collect();
        Generator {
            rng: Rng::new(seed ^ slot.wrapping_mul(0xd6e8_feb8_6659_fd93)),
            model,
            mix,
            keys: keys.max(1),
            slot,
            slots: slots.max(1),
            count: 0,
            last: vec![Value::Null; keys.max(1) as usize],
        }
    }

    /// A value no other slot, and no earlier call of this slot, uses.
    fn unique(&mut self) -> u64 {
        self.count += 1;
        self.slot + 1 + (self.count - 1) * self.slots
    }

    pub fn next_op(&mut self) -> Invocation {
        let total = self.mix.last().map_or(1, |(t, _)| *t);
        let pick = self.rng.below(total);
        let f = self
            .mix
            .iter()
            .find(|(upto, _)| pick < *upto)
            .map_or(Fn::Read, |(_, f)| *f);
        let k = self.rng.below(u64::from(self.keys)) as usize;
        let key = match self.model {
            Model::Set => None,
            _ => Some(format!("k{k}")),
        };
        let value = match f {
            Fn::Read | Fn::Get | Fn::ReadAll => Value::Null,
            Fn::Write | Fn::Add => {
                let v = json!(self.unique());
                self.last[k] = v.clone();
                v
            }
            Fn::Cas => {
                let new = json!(self.unique());
                let expected = std::mem::replace(&mut self.last[k], new.clone());
                json!([expected, new])
            }
            Fn::Put | Fn::Append => json!(format!("{} ", self.unique())),
        };
        Invocation { f, key, value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mix(m: Model) -> Vec<(String, u32)> {
        m.default_mix()
    }

    #[test]
    fn the_same_seed_asks_for_the_same_operations() {
        let a: Vec<_> = {
            let mut g = Generator::new(Model::Register, &mix(Model::Register), 5, 42, 3, 10);
            (0..100).map(|_| g.next_op()).collect()
        };
        let mut g = Generator::new(Model::Register, &mix(Model::Register), 5, 42, 3, 10);
        let b: Vec<_> = (0..100).map(|_| g.next_op()).collect();
        assert_eq!(a, b);
        let mut other = Generator::new(Model::Register, &mix(Model::Register), 5, 43, 3, 10);
        let c: Vec<_> = (0..100).map(|_| other.next_op()).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn values_are_unique_across_slots_and_cas_expects_the_slots_last_value() {
        let mut seen = std::collections::HashSet::new();
        for slot in 0..4 {
            let mut g = Generator::new(Model::Set, &mix(Model::Set), 1, 1, slot, 4);
            for _ in 0..50 {
                assert!(seen.insert(g.next_op().value.to_string()));
            }
        }
        let mut g = Generator::new(Model::Register, &[("cas".into(), 1)], 1, 1, 0, 1);
        assert_eq!(g.next_op().value, json!([null, 1]));
        assert_eq!(g.next_op().value, json!([1, 2]));
    }

    #[test]
    fn the_mix_is_followed() {
        let mut g = Generator::new(Model::Register, &mix(Model::Register), 5, 9, 0, 1);
        let mut cas = 0;
        for _ in 0..10_000 {
            if g.next_op().f == Fn::Cas {
                cas += 1;
            }
        }
        assert!((800..1200).contains(&cas), "{cas} cas of 10000 at 10 %");
    }
}
