//! Workloads: concurrent clients that run operations against a cluster and record a history
//! (see docs/workloads.md). This module holds what a user writes, parsed and checked: the
//! `[step.workload]` table of a scenario, or a [`WorkloadSpec`] built in Rust.
//!
//! ```
//! use std::time::Duration;
//! use troupe_spec::workload::{ClientSpec, Model, WorkloadSpec};
//!
//! let w = WorkloadSpec::new(Model::Register, ClientSpec::etcd())
//!     .processes(10)
//!     .duration(Duration::from_secs(20))
//!     .seed(7);
//! assert_eq!(w.mix[0], ("read".to_string(), 45));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::Validator;
use crate::model::Spanned;

/// What a history's operations mean, and so which checker judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// One JSON value per key: `read` (returns it), `write` (sets it), `cas` with value
    /// `[expected, new]` (sets `new` if the value is `expected`; an `ok` cas succeeded).
    Register,
    /// One string per key: `get` (returns it), `put` (sets it), `append` (concatenates).
    Kv,
    /// A set: `add` (value), then a final `read` whose value is every element.
    Set,
}

impl Model {
    pub const ALL: [Model; 3] = [Model::Register, Model::Kv, Model::Set];

    pub fn as_str(self) -> &'static str {
        match self {
            Model::Register => "register",
            Model::Kv => "kv",
            Model::Set => "set",
        }
    }

    /// Its operations, in the order they are documented.
    pub fn operations(self) -> &'static [&'static str] {
        match self {
            Model::Register => &["read", "write", "cas"],
            Model::Kv => &["get", "put", "append"],
            Model::Set => &["add"],
        }
    }

    /// The mix a workload uses when none is given (percent per operation).
    pub fn default_mix(self) -> Vec<(String, u32)> {
        let mix: &[(&str, u32)] = match self {
            Model::Register => &[("read", 45), ("write", 45), ("cas", 10)],
            Model::Kv => &[("get", 50), ("put", 25), ("append", 25)],
            Model::Set => &[("add", 100)],
        };
        mix.iter().map(|(f, w)| (f.to_string(), *w)).collect()
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown model name; lists the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parse model {0:?} (expected register, kv or set)")]
pub struct UnknownModel(pub String);

impl FromStr for Model {
    type Err = UnknownModel;

    fn from_str(s: &str) -> Result<Model, UnknownModel> {
        match s {
            "register" => Ok(Model::Register),
            "kv" => Ok(Model::Kv),
            "set" => Ok(Model::Set),
            _ => Err(UnknownModel(s.to_string())),
        }
    }
}

/// One workload: who calls what, how often, for how long.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkloadSpec {
    pub model: Model,
    pub client: ClientSpec,
    /// Concurrent clients (default 5).
    pub processes: u32,
    /// Stop after this many operations (all processes together).
    pub ops: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// At most this many operations per second, all processes together.
    pub rate: Option<f64>,
    /// Keys the operations spread over (default 5; a set uses one).
    pub keys: u32,
    /// Weight per operation; see [`Model::default_mix`].
    pub mix: Vec<(String, u32)>,
    /// How long one operation may take; past it, it is recorded as `info` (default 2s).
    pub timeout: Duration,
    /// Which nodes the clients talk to (a target as elsewhere: a cluster, a node,
    /// `CLUSTER:leader`); process *i* takes the *i*-th node, round robin. `None`: every node.
    pub targets: Option<String>,
    /// Seeds the operation sequence; `None` picks one (and reports it).
    pub seed: Option<u64>,
    /// The history's file name in the run directory (default `history.jsonl`).
    pub history: String,
    /// A set workload's final read: how long it is retried before the check gives up.
    pub final_read: Duration,
}

impl WorkloadSpec {
    pub fn new(model: Model, client: ClientSpec) -> WorkloadSpec {
        WorkloadSpec {
            model,
            client,
            processes: 5,
            ops: None,
            duration: None,
            rate: None,
            keys: 5,
            mix: model.default_mix(),
            timeout: Duration::from_secs(2),
            targets: None,
            seed: None,
            history: "history.jsonl".into(),
            final_read: Duration::from_secs(30),
        }
    }

    pub fn processes(mut self, n: u32) -> Self {
        self.processes = n;
        self
    }

    pub fn ops(mut self, n: u64) -> Self {
        self.ops = Some(n);
        self
    }

    pub fn duration(mut self, d: Duration) -> Self {
        self.duration = Some(d);
        self
    }

    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = Some(per_second);
        self
    }

    pub fn keys(mut self, n: u32) -> Self {
        self.keys = n;
        self
    }

    pub fn mix(mut self, mix: &[(&str, u32)]) -> Self {
        self.mix = mix.iter().map(|(f, w)| (f.to_string(), *w)).collect();
        self
    }

    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    pub fn targets(mut self, target: impl Into<String>) -> Self {
        self.targets = Some(target.into());
        self
    }

    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub fn history(mut self, file: impl Into<String>) -> Self {
        self.history = file.into();
        self
    }

    pub fn final_read(mut self, d: Duration) -> Self {
        self.final_read = d;
        self
    }

    /// The same checks as a scenario's, for specs built in Rust.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_PROCESSES).contains(&self.processes) {
            return Err(format!(
                "processes must be from 1 to {MAX_PROCESSES}, not {}",
                self.processes
            ));
        }
        if self.keys == 0 || self.keys > MAX_KEYS {
            return Err(format!(
                "keys must be from 1 to {MAX_KEYS}, not {}",
                self.keys
            ));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(format!("rate must be a positive number, not {r}"));
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0".into());
        }
        check_mix(self.model, &self.mix)?;
        check_file_name(&self.history)?;
        if let ClientSpec::Stdio { command } = &self.client
            && command.first().is_none_or(|p| p.trim().is_empty())
        {
            return Err("the stdio client's command is empty; name the program to start".into());
        }
        if let ClientSpec::Http(h) = &self.client {
            for (f, _) in &self.mix {
                if !h.ops.contains_key(f) {
                    return Err(format!(
                        "the http client has no request for `{f}`; add [step.workload.http.{f}]"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// How clients talk to the system under test.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientSpec {
    /// etcd's v3 API through its JSON gateway, with the run's TLS when the node has it.
    Etcd {
        /// Reads answered by the member itself, possibly stale, instead of through the leader.
        serializable: bool,
        /// Prefix of every key the workload touches (default `troupe/`), followed by an id of
        /// the workload's own, so that no two workloads on one cluster share keys.
        prefix: String,
    },
    /// Any JSON-over-HTTP store, one request template per operation.
    Http(HttpClientSpec),
    /// A long-lived program per process that speaks JSON Lines on stdin and stdout.
    Stdio {
        /// The program and its arguments (templates: `{{ node.urls.client }}`, ...).
        command: Vec<String>,
    },
    /// An in-process store, correct by construction: no server at all. Measures troupe's own
    /// ceiling, and checks the harness itself.
    Memory,
}

impl ClientSpec {
    pub fn etcd() -> ClientSpec {
        ClientSpec::Etcd {
            serializable: false,
            prefix: "troupe/".into(),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            ClientSpec::Etcd { .. } => "etcd",
            ClientSpec::Http(_) => "http",
            ClientSpec::Stdio { .. } => "stdio",
            ClientSpec::Memory => "memory",
        }
    }
}

/// Requests of the HTTP template client, by operation name.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct HttpClientSpec {
    pub ops: BTreeMap<String, HttpOp>,
}

/// One operation as an HTTP request. `url`, `body` and header values are templates over
/// `node` (as in specs) and `op`: `op.key`, `op.value` (JSON text), and for `cas`
/// `op.expected` and `op.new` (JSON text).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct HttpOp {
    pub method: String,
    pub url: String,
    pub body: Option<String>,
    /// A JSON pointer (RFC 6901) to the value in the response, for reads.
    pub value: Option<String>,
    /// Statuses that mean it happened (default: any 2xx).
    pub ok: Vec<u16>,
    /// Statuses that prove it did not happen (e.g. 409 for a failed compare-and-set).
    pub fail: Vec<u16>,
    /// Statuses of a read that mean the key is absent (its value is `null`).
    pub absent: Vec<u16>,
    pub headers: BTreeMap<String, String>,
}

impl HttpOp {
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> HttpOp {
        HttpOp {
            method: method.into(),
            url: url.into(),
            body: None,
            value: None,
            ok: Vec::new(),
            fail: Vec::new(),
            absent: Vec::new(),
            headers: BTreeMap::new(),
        }
    }
}

pub const MAX_PROCESSES: u32 = 10_000;
pub const MAX_KEYS: u32 = 1_000_000;

fn check_mix(model: Model, mix: &[(String, u32)]) -> Result<(), String> {
    for (f, _) in mix {
        if !model.operations().contains(&f.as_str()) {
            return Err(format!(
                "`{f}` is not an operation of the {model} model (its operations: {})",
                model.operations().join(", ")
            ));
        }
    }
    if mix.iter().map(|(_, w)| u64::from(*w)).sum::<u64>() == 0 {
        return Err("the mix gives every operation a weight of 0".into());
    }
    Ok(())
}

fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!(
            "`{name}` is not a file name (the history goes into the run directory)"
        ));
    }
    Ok(())
}

// --- TOML -----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWorkload {
    model: Option<Spanned<String>>,
    client: Option<Spanned<String>>,
    processes: Option<Spanned<i64>>,
    ops: Option<Spanned<i64>>,
    duration: Option<Spanned<String>>,
    rate: Option<Spanned<toml::Value>>,
    keys: Option<Spanned<i64>>,
    mix: Option<Spanned<BTreeMap<String, Spanned<i64>>>>,
    timeout: Option<Spanned<String>>,
    targets: Option<Spanned<String>>,
    seed: Option<Spanned<i64>>,
    history: Option<Spanned<String>>,
    final_read: Option<Spanned<String>>,
    serializable: Option<Spanned<bool>>,
    prefix: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    http: Option<Spanned<BTreeMap<String, Spanned<RawHttpOp>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpOp {
    method: Option<String>,
    url: Spanned<String>,
    body: Option<String>,
    value: Option<Spanned<String>>,
    #[serde(default)]
    ok: Vec<u16>,
    #[serde(default)]
    fail: Vec<u16>,
    #[serde(default)]
    absent: Vec<u16>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl RawWorkload {
    /// Checks a `[step.workload]` table; errors point at the key that is wrong.
    pub(crate) fn check(
        self,
        v: &mut Validator<'_>,
        span: std::ops::Range<usize>,
    ) -> Option<WorkloadSpec> {
        let before = v.errors.len();
        let model = match &self.model {
            None => {
                v.err(
                    span.clone(),
                    "the workload names no model",
                    "add model = \"register\" (read/write/cas), \"kv\" (get/put/append) or \"set\" (add, then a final read)",
                );
                return None;
            }
            Some(m) => match m.get_ref().parse::<Model>() {
                Ok(m) => m,
                Err(e) => {
                    v.err(
                        m.span(),
                        e.to_string(),
                        "model = \"register\", \"kv\" or \"set\"",
                    );
                    return None;
                }
            },
        };
        let client_options = [
            (
                "serializable",
                self.serializable.as_ref().map(Spanned::span),
                "etcd",
            ),
            ("prefix", self.prefix.as_ref().map(Spanned::span), "etcd"),
            ("command", self.command.as_ref().map(Spanned::span), "stdio"),
            ("http", self.http.as_ref().map(Spanned::span), "http"),
        ];
        let client_name = self.client.as_ref().map(|c| c.get_ref().as_str());
        for (key, at, owner) in client_options {
            if let Some(at) = at
                && client_name != Some(owner)
            {
                v.err(
                    at,
                    format!("`{key}` only applies to client = \"{owner}\""),
                    format!("remove it, or set client = \"{owner}\""),
                );
            }
        }
        let client = match &self.client {
            None => {
                v.err(
                    span.clone(),
                    "the workload names no client",
                    "add client = \"etcd\", \"http\", \"stdio\" (your own program) or \"memory\" (no server: troupe's own ceiling)",
                );
                return None;
            }
            Some(c) => match c.get_ref().as_str() {
                "etcd" => ClientSpec::Etcd {
                    serializable: self.serializable.as_ref().is_some_and(|s| *s.get_ref()),
                    prefix: self
                        .prefix
                        .as_ref()
                        .map_or_else(|| "troupe/".to_string(), |p| p.get_ref().clone()),
                },
                "memory" => ClientSpec::Memory,
                "stdio" => match &self.command {
                    Some(cmd) if !cmd.get_ref().is_empty() => ClientSpec::Stdio {
                        command: cmd.get_ref().clone(),
                    },
                    Some(cmd) => {
                        v.err(cmd.span(), "the command is empty", "e.g. command = [\"python3\", \"client.py\", \"{{ node.urls.client }}\"]");
                        return None;
                    }
                    None => {
                        v.err(c.span(), "a stdio client needs a command", "add command = [\"python3\", \"client.py\", \"{{ node.urls.client }}\"]: troupe starts one per process and speaks JSON Lines with it");
                        return None;
                    }
                },
                "http" => {
                    let Some(http) = &self.http else {
                        v.err(
                            c.span(),
                            "an http client needs a request per operation",
                            format!(
                                "add a [step.workload.http.OP] table for each of: {}",
                                model.operations().join(", ")
                            ),
                        );
                        return None;
                    };
                    let mut ops = BTreeMap::new();
                    for (f, op) in http.get_ref() {
                        if !model.operations().contains(&f.as_str()) {
                            v.err(
                                op.span(),
                                format!("`{f}` is not an operation of the {model} model"),
                                format!("its operations: {}", model.operations().join(", ")),
                            );
                            continue;
                        }
                        let op = op.get_ref();
                        if let Some(p) = &op.value
                            && !(p.get_ref().is_empty() || p.get_ref().starts_with('/'))
                        {
                            v.err(p.span(), format!("`{}` is not a JSON pointer", p.get_ref()), "a JSON pointer starts with `/`, e.g. value = \"/node/value\"; \"\" is the whole body");
                        }
                        ops.insert(
                            f.clone(),
                            HttpOp {
                                method: op
                                    .method
                                    .clone()
                                    .unwrap_or_else(|| "GET".into())
                                    .to_ascii_uppercase(),
                                url: op.url.get_ref().clone(),
                                body: op.body.clone(),
                                value: op.value.as_ref().map(|p| p.get_ref().clone()),
                                ok: op.ok.clone(),
                                fail: op.fail.clone(),
                                absent: op.absent.clone(),
                                headers: op.headers.clone(),
                            },
                        );
                    }
                    ClientSpec::Http(HttpClientSpec { ops })
                }
                other => {
                    let hint = crate::suggest(other, ["etcd", "http", "stdio", "memory"])
                        .map(|s| format!("did you mean `{s}`? "))
                        .unwrap_or_default();
                    v.err(
                        c.span(),
                        format!("unknown client `{other}`"),
                        format!("{hint}clients: etcd, http, stdio, memory"),
                    );
                    return None;
                }
            },
        };
        let mut w = WorkloadSpec::new(model, client);
        let count =
            |v: &mut Validator<'_>, n: &Spanned<i64>, key: &str, max: u64, example: &str| {
                match u64::try_from(*n.get_ref()) {
                    Ok(x) if x >= 1 && x <= max => Some(x),
                    _ => {
                        v.err(
                            n.span(),
                            format!("`{key}` must be from 1 to {max}, not {}", n.get_ref()),
                            format!("e.g. {key} = {example}"),
                        );
                        None
                    }
                }
            };
        if let Some(p) = &self.processes
            && let Some(n) = count(v, p, "processes", u64::from(MAX_PROCESSES), "10")
        {
            w.processes = n as u32;
        }
        if let Some(k) = &self.keys
            && let Some(n) = count(v, k, "keys", u64::from(MAX_KEYS), "5")
        {
            w.keys = n as u32;
        }
        if model == Model::Set {
            w.keys = 1;
        }
        if let Some(o) = &self.ops {
            w.ops = count(v, o, "ops", 1_000_000_000, "10000");
        }
        if let Some(d) = &self.duration {
            w.duration = v.duration(d);
        }
        if let Some(t) = &self.timeout {
            match v.duration(t) {
                Some(d) if d.is_zero() => v.err(
                    t.span(),
                    "an operation's timeout must be more than 0",
                    "e.g. timeout = \"1s\"",
                ),
                Some(d) => w.timeout = d,
                None => {}
            }
        }
        if let Some(t) = &self.final_read {
            w.final_read = v.duration(t).unwrap_or(w.final_read);
        }
        if let Some(r) = &self.rate {
            let rate = match r.get_ref() {
                toml::Value::Integer(i) => Some(*i as f64),
                toml::Value::Float(f) => Some(*f),
                _ => None,
            };
            match rate {
                Some(x) if x.is_finite() && x > 0.0 && x <= 1e9 => w.rate = Some(x),
                _ => v.err(r.span(), "`rate` must be a positive number of operations per second", "e.g. rate = 500 (all processes together); leave it out for as fast as the system answers"),
            }
        }
        if let Some(m) = &self.mix {
            let mut mix = Vec::new();
            for (f, weight) in m.get_ref() {
                if !model.operations().contains(&f.as_str()) {
                    let hint = crate::suggest(f, model.operations().iter().copied())
                        .map(|s| format!("did you mean `{s}`? "))
                        .unwrap_or_default();
                    v.err(
                        weight.span(),
                        format!("`{f}` is not an operation of the {model} model"),
                        format!("{hint}its operations: {}", model.operations().join(", ")),
                    );
                    continue;
                }
                match u32::try_from(*weight.get_ref()) {
                    Ok(x) if x <= 1_000_000 => mix.push((f.clone(), x)),
                    _ => v.err(
                        weight.span(),
                        format!("the weight of `{f}` must be from 0 to 1000000"),
                        "weights are relative, e.g. mix = { read = 45, write = 45, cas = 10 }",
                    ),
                }
            }
            if v.errors.len() == before {
                if mix.iter().all(|(_, x)| *x == 0) {
                    v.err(m.span(), "the mix gives every operation a weight of 0", "give at least one operation a weight, e.g. mix = { read = 45, write = 45, cas = 10 }");
                }
                w.mix = mix;
            }
        }
        if let ClientSpec::Http(h) = &w.client {
            for (f, weight) in &w.mix {
                if *weight > 0 && !h.ops.contains_key(f) {
                    v.err(
                        self.http.as_ref().map_or(span.clone(), Spanned::span),
                        format!("the http client has no request for `{f}`, which the mix uses"),
                        format!("add [step.workload.http.{f}] with method, url (and body)"),
                    );
                }
            }
        }
        if let Some(t) = &self.targets {
            if t.get_ref().trim().is_empty() {
                v.err(t.span(), "`targets` is empty", "name a cluster, a node, or CLUSTER:SELECTOR, e.g. targets = \"main\"; leave it out for every node");
            }
            w.targets = Some(t.get_ref().clone());
        }
        if let Some(s) = &self.seed {
            match u64::try_from(*s.get_ref()) {
                Ok(x) => w.seed = Some(x),
                Err(_) => v.err(s.span(), "`seed` must be 0 or more", "e.g. seed = 42"),
            }
        }
        if let Some(h) = &self.history {
            match check_file_name(h.get_ref()) {
                Ok(()) => w.history = h.get_ref().clone(),
                Err(e) => v.err(h.span(), e, "e.g. history = \"history-reads.jsonl\""),
            }
        }
        (v.errors.len() == before).then_some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_checked_like_toml() {
        let w = WorkloadSpec::new(Model::Kv, ClientSpec::Memory);
        assert_eq!(w.check(), Ok(()));
        assert!(w.clone().processes(0).check().is_err());
        assert!(
            w.clone()
                .mix(&[("read", 1)])
                .check()
                .unwrap_err()
                .contains("not an operation of the kv model")
        );
        assert!(w.clone().history("../x").check().is_err());
        let http = WorkloadSpec::new(Model::Register, ClientSpec::Http(HttpClientSpec::default()));
        assert!(http.check().unwrap_err().contains("no request for `read`"));
        let stdio = WorkloadSpec::new(Model::Set, ClientSpec::Stdio { command: vec![] });
        assert!(stdio.check().unwrap_err().contains("command is empty"));
    }

    #[test]
    fn models_parse_and_print() {
        for m in Model::ALL {
            assert_eq!(m.as_str().parse::<Model>(), Ok(m));
        }
        assert!("regster".parse::<Model>().is_err());
    }
}
