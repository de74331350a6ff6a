//! Specs from Rust: [`SpecBuilder`] writes the same TOML a person would and parses it through
//! the same validation, so a mistake is reported exactly as it would be in a file.
//!
//! ```
//! use troupe::SpecBuilder;
//! let spec = SpecBuilder::new("kv")
//!     .tls()
//!     .cluster("main", |c| {
//!         c.nodes(3)
//!             .binary("sleep")
//!             .args(["1000"])
//!             .ports(["client"])
//!             .ready_tcp("client", "5s")
//!     })
//!     .build()
//!     .unwrap();
//! assert_eq!(spec.clusters["main"].nodes, 3);
//! ```

use toml::{Table, Value};
use troupe_spec::{InvalidSpec, KeyType, Spec};

/// Builds a spec in code.
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    root: Table,
}

/// One cluster of a [`SpecBuilder`].
#[derive(Debug, Clone, Default)]
pub struct ClusterDef {
    table: Table,
}

impl SpecBuilder {
    pub fn new(name: &str) -> SpecBuilder {
        let mut root = Table::new();
        root.insert("name".into(), name.into());
        root.insert("clusters".into(), Value::Table(Table::new()));
        SpecBuilder { root }
    }

    /// A fresh CA per run and certificates per node (P-256).
    pub fn tls(self) -> SpecBuilder {
        self.tls_key(KeyType::P256)
    }

    pub fn tls_key(mut self, key: KeyType) -> SpecBuilder {
        let mut t = Table::new();
        t.insert("key".into(), key.name().into());
        self.root.insert("tls".into(), Value::Table(t));
        self
    }

    /// Allocate ports from `low..=high`.
    pub fn port_range(mut self, low: u16, high: u16) -> SpecBuilder {
        let mut t = Table::new();
        t.insert("range".into(), format!("{low}-{high}").into());
        self.root.insert("ports".into(), Value::Table(t));
        self
    }

    pub fn cluster(mut self, name: &str, f: impl FnOnce(ClusterDef) -> ClusterDef) -> SpecBuilder {
        let def = f(ClusterDef::default());
        if let Some(Value::Table(clusters)) = self.root.get_mut("clusters") {
            clusters.insert(name.into(), Value::Table(def.table));
        }
        self
    }

    /// The spec as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.root).expect("a TOML table serialises")
    }

    /// Validates the spec; errors point into the generated TOML, named `<name>.toml`.
    pub fn build(&self) -> Result<Spec, InvalidSpec> {
        let name = self
            .root
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("spec");
        Spec::from_str(format!("{name}.toml"), &self.to_toml())
    }
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
    Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
}

impl ClusterDef {
    fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.table.insert(key.into(), value.into());
        self
    }

    fn push(mut self, key: &str, value: Value) -> Self {
        match self.table.get_mut(key) {
            Some(Value::Array(a)) => a.push(value),
            _ => {
                self.table.insert(key.into(), Value::Array(vec![value]));
            }
        }
        self
    }

    fn probe(
        self,
        list: &str,
        kind: &str,
        value: Value,
        timeout: &str,
        extra: &[(&str, Value)],
    ) -> Self {
        let mut t = Table::new();
        t.insert(kind.into(), value);
        t.insert("timeout".into(), timeout.into());
        for (k, v) in extra {
            t.insert((*k).into(), v.clone());
        }
        self.push(list, Value::Table(t))
    }

    pub fn nodes(self, n: u32) -> Self {
        self.set("nodes", i64::from(n))
    }

    /// A program on PATH, or a path.
    pub fn binary(self, binary: impl Into<String>) -> Self {
        self.set("binary", binary.into())
    }

    /// Argument templates (replaces earlier ones).
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(self, args: I) -> Self {
        self.set("args", strings(args))
    }

    /// One more argument template.
    pub fn arg(self, arg: impl Into<String>) -> Self {
        self.push("args", Value::String(arg.into()))
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        let env = self
            .table
            .entry("env")
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(t) = env {
            t.insert(key.into(), Value::String(value.into()));
        }
        self
    }

    pub fn ports<I: IntoIterator<Item = S>, S: Into<String>>(self, ports: I) -> Self {
        self.set("ports", strings(ports))
    }

    /// The URL scheme of `port` in `node.urls` (e.g. `"nats"`); default `http`, or `https`
    /// with TLS.
    pub fn scheme(mut self, port: &str, scheme: impl Into<String>) -> Self {
        let schemes = self
            .table
            .entry("schemes")
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(t) = schemes {
            t.insert(port.into(), Value::String(scheme.into()));
        }
        self
    }

    pub fn host(self, host: impl Into<String>) -> Self {
        self.set("host", host.into())
    }

    /// Start nodes one by one, each once the previous passes its `started` (or `ready`) probes.
    pub fn sequential(self) -> Self {
        self.set("start", "sequential")
    }

    /// Start this cluster once `cluster` is ready.
    pub fn after(self, cluster: &str) -> Self {
        self.push("after", Value::String(cluster.into()))
    }

    /// A config file rendered per node into its directory.
    pub fn file(mut self, name: &str, template: impl Into<String>) -> Self {
        let files = self
            .table
            .entry("files")
            .or_insert_with(|| Value::Table(Table::new()));
        if let Value::Table(t) = files {
            let mut f = Table::new();
            f.insert("template".into(), Value::String(template.into()));
            t.insert(name.into(), Value::Table(f));
        }
        self
    }

    pub fn ready_tcp(self, port: &str, timeout: &str) -> Self {
        self.probe("ready", "tcp", port.into(), timeout, &[])
    }

    /// An HTTP(S) GET that must answer 200.
    pub fn ready_http(self, url: &str, timeout: &str) -> Self {
        self.probe("ready", "http", url.into(), timeout, &[])
    }

    /// An HTTP(S) GET that must answer 200 with a body matching `body`.
    pub fn ready_http_body(self, url: &str, body: &str, timeout: &str) -> Self {
        self.probe(
            "ready",
            "http",
            url.into(),
            timeout,
            &[("body", body.into())],
        )
    }

    pub fn ready_log(self, regex: &str, timeout: &str) -> Self {
        self.probe("ready", "log", regex.into(), timeout, &[])
    }

    pub fn ready_command<I: IntoIterator<Item = S>, S: Into<String>>(
        self,
        argv: I,
        timeout: &str,
    ) -> Self {
        self.probe("ready", "command", strings(argv), timeout, &[])
    }

    pub fn started_tcp(self, port: &str, timeout: &str) -> Self {
        self.probe("started", "tcp", port.into(), timeout, &[])
    }

    pub fn started_http(self, url: &str, timeout: &str) -> Self {
        self.probe("started", "http", url.into(), timeout, &[])
    }

    /// Stop signal (e.g. "SIGINT") and grace period before SIGKILL.
    pub fn stop(mut self, signal: &str, grace: &str) -> Self {
        let mut t = Table::new();
        t.insert("signal".into(), signal.into());
        t.insert("grace".into(), grace.into());
        self.table.insert("stop".into(), Value::Table(t));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_mistakes_are_reported_like_file_mistakes() {
        let err = SpecBuilder::new("kv")
            .cluster("main", |c| {
                c.nodes(3).binary("sleep").ready_tcp("client", "5s")
            })
            .build()
            .unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("port `client` is not declared"), "{text}");
        assert!(text.contains("kv.toml:"), "{text}");
    }
}
