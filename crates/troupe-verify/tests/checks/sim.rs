//! A simulated, correct register or kv store with concurrent clients, and a way to inject one
//! anomaly whose place in the history is known.
//!
//! Each client moves through invoke → take effect → complete, and a seeded PRNG picks which
//! client moves next, so calls overlap at random while the store applies each operation
//! atomically at one instant between its call and its return: the history is linearizable by
//! construction. Some calls fail (no effect) or end in doubt (`info`, with or without effect,
//! after which the client takes a fresh process id), as real clients do.
//!
//! An anomaly is injected as a short script on one key while no other call on that key is
//! running and none of its earlier calls ended in doubt, so the injected read is provably
//! impossible (values are unique) and is the call a checker must name. Other keys keep running
//! concurrently around the script. Shared with the bench (`#[path]`), hence `pub` items that one
//! of the two does not use.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};
use troupe_spec::history::{Op, OpType};

/// SplitMix64: tiny, seedable, good enough to shuffle a simulation.
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

    /// Uniform-enough in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    pub fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Register,
    Kv,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    /// A read returns a value already overwritten, after another read saw the new one.
    StaleRead,
    /// An acknowledged write never takes effect, and a later read shows it.
    LostWrite,
    /// An append takes effect twice (kv only).
    DuplicateAppend,
    /// A read returns a value nobody wrote.
    ValueFromNowhere,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub store: Store,
    pub processes: usize,
    /// Calls invoked by the random clients (the script adds a few).
    pub calls: usize,
    pub keys: usize,
    /// Chance that a call fails without effect (writes, puts, appends; a cas fails on its own).
    pub fail_percent: usize,
    /// Chance that a call ends in doubt (half of those took effect).
    pub info_percent: usize,
    pub anomaly: Option<Anomaly>,
    /// Draw written values from a tiny set (0–2; "", "a", "b", "ab") instead of unique ones,
    /// so that different orders can produce equal states. Not with an anomaly, whose proof
    /// needs unique values.
    pub small_values: bool,
}

impl Config {
    pub fn new(store: Store, processes: usize, calls: usize, keys: usize) -> Config {
        Config {
            store,
            processes,
            calls,
            keys,
            fail_percent: 3,
            info_percent: 3,
            anomaly: None,
            small_values: false,
        }
    }
}

/// A generated history, and where its injected anomaly is.
pub struct Generated {
    pub ops: Vec<Op>,
    /// The key of the anomaly and the history index of the invocation of the impossible read.
    pub bad: Option<(String, usize)>,
}

struct Pending {
    f: &'static str,
    key: String,
    arg: Value,
    completion: Option<(OpType, Value)>,
}

struct Client {
    process: u64,
    pending: Option<Pending>,
}

/// What a script step does to the store.
#[derive(Clone)]
enum Effect {
    Apply,
    Skip,
    Twice,
    Respond(Value),
}

#[derive(Clone)]
struct Step {
    f: &'static str,
    arg: Value,
    effect: Effect,
    bad: bool,
}

struct Sim<'a> {
    cfg: &'a Config,
    rng: Rng,
    ops: Vec<Op>,
    time: u64,
    unique: u64,
    register: HashMap<String, Value>,
    kv: HashMap<String, String>,
}

impl Sim<'_> {
    fn fresh(&mut self) -> u64 {
        self.unique += 1;
        self.unique
    }

    fn value(&mut self) -> Value {
        if self.cfg.small_values {
            json!(self.rng.below(3))
        } else {
            json!(self.fresh())
        }
    }

    fn token(&mut self, process: u64) -> String {
        if self.cfg.small_values {
            return ["", "a", "b", "ab"][self.rng.below(4)].to_string();
        }
        let n = self.fresh();
        format!("x {process} {n} y")
    }

    fn emit(&mut self, process: u64, kind: OpType, f: &str, key: &str, value: Value) -> usize {
        self.time += 1 + self.rng.below(40) as u64;
        let op = Op::new(process, kind, f, self.time)
            .with_key(key)
            .with_value(value);
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// Applies a call to the store and returns its result.
    fn apply(&mut self, f: &str, key: &str, arg: &Value) -> Result<Value, ()> {
        match f {
            "read" => Ok(self.register.get(key).cloned().unwrap_or(Value::Null)),
            "write" => {
                self.register.insert(key.to_string(), arg.clone());
                Ok(arg.clone())
            }
            "cas" => {
                let current = self.register.get(key).cloned().unwrap_or(Value::Null);
                if current == arg[0] {
                    self.register.insert(key.to_string(), arg[1].clone());
                    Ok(arg.clone())
                } else {
                    Err(())
                }
            }
            "get" => Ok(match self.kv.get(key) {
                Some(s) => Value::String(s.clone()),
                // Absent reads either way, as real stores differ.
                None if self.rng.percent(50) => Value::Null,
                None => json!(""),
            }),
            "put" => {
                self.kv
                    .insert(key.to_string(), arg.as_str().unwrap_or("").to_string());
                Ok(arg.clone())
            }
            "append" => {
                self.kv
                    .entry(key.to_string())
                    .or_default()
                    .push_str(arg.as_str().unwrap_or(""));
                Ok(arg.clone())
            }
            _ => Err(()),
        }
    }

    fn random_call(&mut self, process: u64, key: String) -> Pending {
        let roll = self.rng.below(100);
        let (f, arg) = match self.cfg.store {
            Store::Register if roll < 45 => ("read", Value::Null),
            Store::Register if roll < 85 => ("write", self.value()),
            Store::Register => {
                let current = self.register.get(&key).cloned().unwrap_or(Value::Null);
                let expected = if self.rng.percent(60) {
                    current
                } else {
                    json!(self.rng.below(self.unique as usize + 1))
                };
                ("cas", json!([expected, self.value()]))
            }
            Store::Kv if roll < 45 => ("get", Value::Null),
            Store::Kv if roll < 55 => ("put", json!(self.token(process))),
            Store::Kv => ("append", json!(self.token(process))),
        };
        Pending {
            f,
            key,
            arg,
            completion: None,
        }
    }

    /// Takes effect (or not) and decides how the call will complete.
    fn take_effect(&mut self, p: &mut Pending) {
        let is_read = matches!(p.f, "read" | "get");
        if !is_read && self.rng.percent(self.cfg.fail_percent) {
            p.completion = Some((OpType::Fail, p.arg.clone()));
            return;
        }
        if self.rng.percent(self.cfg.info_percent) {
            if self.rng.percent(50) {
                let _ = self.apply(p.f, &p.key, &p.arg);
            }
            p.completion = Some((OpType::Info, p.arg.clone()));
            return;
        }
        p.completion = Some(match self.apply(p.f, &p.key, &p.arg) {
            Ok(result) => (OpType::Ok, result),
            Err(()) => (OpType::Fail, p.arg.clone()),
        });
    }

    fn script(&mut self, anomaly: Anomaly, process: u64) -> Vec<Step> {
        let step = |f, arg, effect, bad| Step {
            f,
            arg,
            effect,
            bad,
        };
        let (a, b, c) = match self.cfg.store {
            Store::Register => (json!(self.fresh()), json!(self.fresh()), json!(0)),
            Store::Kv => (
                json!(self.token(process)),
                json!(self.token(process)),
                json!(self.token(process)),
            ),
        };
        match (self.cfg.store, anomaly) {
            (Store::Register, Anomaly::StaleRead) => vec![
                step("write", a.clone(), Effect::Apply, false),
                step("write", b, Effect::Apply, false),
                step("read", Value::Null, Effect::Apply, false),
                step("read", Value::Null, Effect::Respond(a), true),
            ],
            (Store::Register, Anomaly::LostWrite) => vec![
                step("write", a, Effect::Apply, false),
                step("write", b, Effect::Skip, false),
                step("read", Value::Null, Effect::Apply, true),
            ],
            (Store::Register, _) => {
                let nowhere = json!(1_000_000_000 + self.fresh());
                vec![step("read", Value::Null, Effect::Respond(nowhere), true)]
            }
            (Store::Kv, Anomaly::StaleRead) => vec![
                step("put", a.clone(), Effect::Apply, false),
                step("append", b, Effect::Apply, false),
                step("get", Value::Null, Effect::Apply, false),
                step("get", Value::Null, Effect::Respond(a), true),
            ],
            (Store::Kv, Anomaly::LostWrite) => vec![
                step("put", a, Effect::Apply, false),
                step("append", b, Effect::Skip, false),
                step("append", c, Effect::Apply, false),
                step("get", Value::Null, Effect::Apply, true),
            ],
            (Store::Kv, Anomaly::DuplicateAppend) => vec![
                step("put", a, Effect::Apply, false),
                step("append", b, Effect::Twice, false),
                step("get", Value::Null, Effect::Apply, true),
            ],
            (Store::Kv, Anomaly::ValueFromNowhere) => vec![step(
                "get",
                Value::Null,
                Effect::Respond(json!("x nowhere y")),
                true,
            )],
        }
    }
}

/// Generates a history from `cfg` and `seed`; the same pair always gives the same history.
pub fn generate(cfg: &Config, seed: u64) -> Generated {
    let mut sim = Sim {
        cfg,
        rng: Rng::new(seed),
        ops: Vec::new(),
        time: 0,
        unique: 0,
        register: HashMap::new(),
        kv: HashMap::new(),
    };
    let keys: Vec<String> = (0..cfg.keys.max(1)).map(|k| format!("k{k}")).collect();
    let mut clients: Vec<Client> = (0..cfg.processes.max(1))
        .map(|p| Client {
            process: p as u64,
            pending: None,
        })
        .collect();
    let mut next_process = clients.len() as u64;
    let mut invoked = 0usize;
    let mut in_doubt: HashSet<String> = HashSet::new();

    // The anomaly's script: its key, its steps, the step running, its process.
    let mut reserved: Option<String> = None;
    let mut script: Vec<Step> = Vec::new();
    let mut script_started = cfg.anomaly.is_none();
    let mut script_client = Client {
        process: u64::MAX,
        pending: None,
    };
    let mut bad: Option<(String, usize)> = None;

    loop {
        let idle = clients.iter().all(|c| c.pending.is_none());
        if invoked >= cfg.calls && idle && script_started && reserved.is_none() {
            break;
        }
        // Reserve a key for the script half-way through.
        if let Some(anomaly) = cfg.anomaly
            && !script_started
            && invoked >= cfg.calls / 2
        {
            // A key none of whose calls ended in doubt or may still do so.
            let clean: Vec<&String> = keys
                .iter()
                .filter(|k| !in_doubt.contains(*k))
                .filter(|k| {
                    !clients
                        .iter()
                        .any(|c| c.pending.as_ref().is_some_and(|p| &p.key == *k))
                })
                .collect();
            let key = if clean.is_empty() {
                "k-fresh".to_string()
            } else {
                clean[sim.rng.below(clean.len())].clone()
            };
            script_client.process = next_process;
            next_process += 1;
            script = sim.script(anomaly, script_client.process);
            script.reverse();
            reserved = Some(key);
            script_started = true;
        }
        // Run the script once nothing else is running on its key.
        if let Some(key) = reserved.clone()
            && !clients
                .iter()
                .any(|c| c.pending.as_ref().is_some_and(|p| p.key == key))
            && sim.rng.percent(40)
        {
            let process = script_client.process;
            match script_client.pending.take() {
                None => match script.pop() {
                    None => reserved = None,
                    Some(step) => {
                        let index =
                            sim.emit(process, OpType::Invoke, step.f, &key, step.arg.clone());
                        if step.bad {
                            bad = Some((key.clone(), index));
                        }
                        let result = match step.effect {
                            Effect::Apply => {
                                sim.apply(step.f, &key, &step.arg).unwrap_or(Value::Null)
                            }
                            Effect::Skip => step.arg.clone(),
                            Effect::Twice => {
                                let _ = sim.apply(step.f, &key, &step.arg);
                                sim.apply(step.f, &key, &step.arg).unwrap_or(Value::Null)
                            }
                            Effect::Respond(v) => v,
                        };
                        script_client.pending = Some(Pending {
                            f: step.f,
                            key: key.clone(),
                            arg: step.arg,
                            completion: Some((OpType::Ok, result)),
                        });
                    }
                },
                Some(p) => {
                    let (kind, value) = p.completion.unwrap_or((OpType::Ok, Value::Null));
                    sim.emit(process, kind, p.f, &key, value);
                }
            }
            continue;
        }

        let c = sim.rng.below(clients.len());
        let process = clients[c].process;
        match clients[c].pending.take() {
            None => {
                if invoked >= cfg.calls {
                    continue;
                }
                let choices: Vec<&String> = keys
                    .iter()
                    .filter(|k| Some(*k) != reserved.as_ref())
                    .collect();
                if choices.is_empty() {
                    continue;
                }
                let key = choices[sim.rng.below(choices.len())].clone();
                let p = sim.random_call(process, key);
                sim.emit(process, OpType::Invoke, p.f, &p.key, p.arg.clone());
                invoked += 1;
                clients[c].pending = Some(p);
            }
            Some(mut p) if p.completion.is_none() => {
                sim.take_effect(&mut p);
                clients[c].pending = Some(p);
            }
            Some(p) => {
                let (kind, value) = p.completion.unwrap_or((OpType::Info, Value::Null));
                let value = if matches!(kind, OpType::Info) && matches!(p.f, "read" | "get") {
                    Value::Null
                } else {
                    value
                };
                sim.emit(process, kind, p.f, &p.key, value);
                if kind == OpType::Info {
                    in_doubt.insert(p.key.clone());
                    clients[c].process = next_process;
                    next_process += 1;
                }
            }
        }
    }
    Generated { ops: sim.ops, bad }
}
