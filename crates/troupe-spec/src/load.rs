//! Stage one: TOML text → [`Spec`]. Deserialises into raw types that keep spans, then checks
//! everything that can be checked without touching the system, collecting every problem.

use std::collections::HashSet;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::diag::{InvalidSpec, SpecError, SpecSource, suggest};
use crate::duration::parse_duration;
use crate::model::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Option<Spanned<String>>,
    tls: Option<Spanned<RawTls>>,
    ports: Option<Spanned<RawPorts>>,
    clusters: Option<Spanned<IndexMap<String, Spanned<RawCluster>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    enabled: Option<bool>,
    key: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPorts {
    range: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    nodes: Spanned<i64>,
    binary: Spanned<String>,
    #[serde(default)]
    args: Vec<Spanned<String>>,
    #[serde(default)]
    env: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    files: IndexMap<String, Spanned<RawFile>>,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    host: Option<Spanned<String>>,
    start: Option<Spanned<String>>,
    #[serde(default)]
    after: Vec<Spanned<String>>,
    #[serde(default)]
    started: Vec<Spanned<RawProbe>>,
    #[serde(default)]
    ready: Vec<Spanned<RawProbe>>,
    stop: Option<Spanned<RawStop>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    template: Option<Spanned<String>>,
    source: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    tcp: Option<Spanned<String>>,
    http: Option<Spanned<String>>,
    status: Option<Spanned<i64>>,
    body: Option<Spanned<String>>,
    log: Option<Spanned<String>>,
    command: Option<Vec<Spanned<String>>>,
    timeout: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStop {
    signal: Option<Spanned<String>>,
    grace: Option<Spanned<String>>,
}

const SIGNALS: [(&str, i32); 7] = [
    ("SIGTERM", 15),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGHUP", 1),
    ("SIGUSR1", 10),
    ("SIGUSR2", 12),
    ("SIGKILL", 9),
];

const DEFAULT_INTERVAL: Duration = Duration::from_millis(5);

impl Spec {
    /// Reads and validates a spec file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Spec, InvalidSpec> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            let src = SpecSource::new(path, "");
            src.error(0..0, format!("cannot read the spec: {e}"))
                .with_help("check the path; specs are TOML files such as examples/etcd/cluster.toml")
        })?;
        Spec::from_str(path, &text)
    }

    /// Validates spec text; `path` names it in messages and anchors relative paths.
    #[expect(clippy::should_implement_trait, reason = "needs a path as well as the text")]
    pub fn from_str(path: impl AsRef<Path>, text: &str) -> Result<Spec, InvalidSpec> {
        let src = SpecSource::new(path.as_ref(), text);
        let raw: RawSpec = toml::from_str(text).map_err(|e| toml_error(&src, &e))?;
        let mut v = Validator {
            src: &src,
            errors: Vec::new(),
        };
        let spec = v.spec(raw);
        if v.errors.is_empty() {
            Ok(spec)
        } else {
            Err(InvalidSpec {
                file: src.path.clone(),
                errors: v.errors,
            })
        }
    }
}

/// Turns serde's messages into ours: the key, what was expected, a suggestion.
fn toml_error(src: &SpecSource, e: &toml::de::Error) -> SpecError {
    let span = e.span().unwrap_or(0..0);
    let msg = e.message().trim().to_string();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let valid: Vec<&str> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        let mut err = src.error(span, format!("unknown key `{field}`"));
        // The span covers the key itself, so the found path ends with the bad key.
        let help = match suggest(field, valid.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? Valid keys here: {}", valid.join(", ")),
            None => format!("valid keys here: {}", valid.join(", ")),
        };
        err = err.with_help(help).with_label("not a key troupe knows here");
        return err;
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let table = src.error(span.clone(), "").key;
        let mut err = src.error(span, format!("missing required key `{field}`"));
        err.key = table.clone();
        let example = match field {
            "nodes" => "nodes = 3",
            "binary" => "binary = \"etcd\"",
            "range" => "range = \"20000-30000\"",
            _ => "",
        };
        let help = if example.is_empty() {
            format!("add `{field}` to this table")
        } else {
            format!("add `{example}` to this table")
        };
        return err.with_help(help).with_label("in this table");
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (found, expected) = rest.split_once(", expected ").unwrap_or((rest, "another type"));
        let expected = match expected {
            "i64" | "u32" | "u16" => "a whole number",
            "a string" => "a string (in quotes)",
            "a sequence" => "an array such as [\"a\", \"b\"]",
            other => other,
        };
        return src
            .error(span, format!("expected {expected}, found {found}"))
            .with_label(format!("expected {expected}"));
    }
    src.error(span, msg).with_help("see the TOML syntax at https://toml.io")
}

struct Validator<'a> {
    src: &'a SpecSource,
    errors: Vec<SpecError>,
}

impl Validator<'_> {
    fn err(&mut self, span: Range<usize>, msg: impl Into<String>, help: impl Into<String>) {
        let e = self.src.error(span, msg).with_help(help);
        self.errors.push(e);
    }

    fn spec(&mut self, raw: RawSpec) -> Spec {
        let name = match raw.name {
            Some(n) => {
                self.check_name(n.span(), n.get_ref(), "spec name");
                n.into_inner()
            }
            None => self
                .src
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "troupe".into()),
        };
        let tls = raw.tls.and_then(|t| {
            let t = t.into_inner();
            if t.enabled == Some(false) {
                return None;
            }
            let key = match t.key {
                None => KeyType::P256,
                Some(k) => KeyType::from_name(k.get_ref()).unwrap_or_else(|| {
                    let hint = match suggest(k.get_ref(), KeyType::NAMES) {
                        Some(s) => format!("did you mean `{s}`? "),
                        None => String::new(),
                    };
                    self.err(
                        k.span(),
                        format!("unknown key type `{}`", k.get_ref()),
                        format!("{hint}use one of {}", KeyType::NAMES.join(", ")),
                    );
                    KeyType::P256
                }),
            };
            Some(TlsSpec { key })
        });
        let port_range = raw.ports.and_then(|p| self.port_range(&p.get_ref().range));

        let mut clusters = IndexMap::new();
        match raw.clusters {
            Some(cs) if !cs.get_ref().is_empty() => {
                for (name, c) in cs.into_inner() {
                    let cluster = self.cluster(&name, c);
                    clusters.insert(name, cluster);
                }
            }
            Some(cs) => self.err(
                cs.span(),
                "the spec has no clusters",
                "add a table such as [clusters.main] with `nodes` and `binary`",
            ),
            None => self.err(
                0..0,
                "the spec has no clusters",
                "add a table such as [clusters.main] with `nodes` and `binary`",
            ),
        }
        self.check_after(&clusters);
        Spec {
            name,
            source: self.src.clone(),
            tls,
            port_range,
            clusters,
        }
    }

    fn check_name(&mut self, span: Range<usize>, name: &str, what: &str) {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if !ok {
            self.err(
                span,
                format!("`{name}` is not a valid {what}"),
                "use letters, digits, `-` and `_`, starting with a letter, at most 40 characters",
            );
        }
    }

    fn port_range(&mut self, range: &Spanned<String>) -> Option<(u16, u16)> {
        let parsed = range.get_ref().split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?))
        });
        match parsed {
            Some((lo, hi)) if lo >= 1024 && lo < hi => Some((lo, hi)),
            _ => {
                self.err(
                    range.span(),
                    format!("`{}` is not a port range", range.get_ref()),
                    "write \"LOW-HIGH\" with 1024 <= LOW < HIGH <= 65535, below the kernel's \
                     ephemeral range (see /proc/sys/net/ipv4/ip_local_port_range), e.g. \"20000-30000\"",
                );
                None
            }
        }
    }

    fn cluster(&mut self, name: &str, raw: Spanned<RawCluster>) -> ClusterSpec {
        let span = raw.span();
        self.check_name(span.clone(), name, "cluster name");
        let c = raw.into_inner();
        let nodes = match *c.nodes.get_ref() {
            n @ 1..=1000 => n as u32,
            n => {
                self.err(
                    c.nodes.span(),
                    format!("a cluster needs 1 to 1000 nodes, found {n}"),
                    "set `nodes` to how many copies of the binary to run, e.g. `nodes = 3`",
                );
                1
            }
        };
        if c.binary.get_ref().trim().is_empty() {
            self.err(
                c.binary.span(),
                "the binary is empty",
                "name a program on PATH (\"etcd\") or a path to one (\"./bin/server\")",
            );
        }
        let mut seen = HashSet::new();
        let mut ports = Vec::new();
        for p in &c.ports {
            let n = p.get_ref();
            let ident = !n.is_empty()
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            if !ident {
                self.err(
                    p.span(),
                    format!("`{n}` is not a valid port name"),
                    "port names are used in templates as `node.ports.NAME`: use letters, digits and `_`",
                );
            } else if !seen.insert(n.clone()) {
                self.err(p.span(), format!("port `{n}` is declared twice"), "remove the duplicate");
            }
            ports.push(n.clone());
        }
        let host = match c.host {
            Some(h) => {
                let ok = h.get_ref().parse::<std::net::IpAddr>().is_ok()
                    || h.get_ref() == "localhost";
                if !ok {
                    self.err(
                        h.span(),
                        format!("`{}` is not an address troupe can run a node on", h.get_ref()),
                        "use a loopback address such as \"127.0.0.1\" (the default), \"127.0.0.2\" or \"::1\"",
                    );
                }
                h.into_inner()
            }
            None => "127.0.0.1".to_string(),
        };
        let start = match c.start.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("parallel") => StartMode::Parallel,
            Some("sequential") => StartMode::Sequential,
            Some(other) => {
                let s = c.start.as_ref().unwrap();
                self.err(
                    s.span(),
                    format!("unknown start mode `{other}`"),
                    "use \"parallel\" (all nodes at once) or \"sequential\" (each after the previous passes its `started` probes)",
                );
                StartMode::Parallel
            }
        };
        let mut files = IndexMap::new();
        for (fname, f) in c.files {
            if let Some(file) = self.file(&fname, f) {
                files.insert(fname, file);
            }
        }
        let started = c.started.into_iter().filter_map(|p| self.probe(p, &ports)).collect();
        let ready = c.ready.into_iter().filter_map(|p| self.probe(p, &ports)).collect();
        let stop = c.stop.map(|s| self.stop(s)).unwrap_or_default();
        ClusterSpec {
            name: name.to_string(),
            nodes,
            binary: c.binary,
            args: c.args,
            env: c.env,
            files,
            ports,
            host,
            start,
            after: c.after,
            started,
            ready,
            stop,
            span,
        }
    }

    fn file(&mut self, name: &str, raw: Spanned<RawFile>) -> Option<FileSpec> {
        let span = raw.span();
        if name.contains('/') || name == "." || name == ".." || name.is_empty() {
            self.err(
                span.clone(),
                format!("`{name}` is not a plain file name"),
                "files are written into the node's directory: use a name such as \"node.conf\"",
            );
        }
        let f = raw.into_inner();
        let mode = match &f.mode {
            None => 0o600,
            Some(m) => match u32::from_str_radix(m.get_ref().trim_start_matches("0o"), 8) {
                Ok(v) if v <= 0o777 => v,
                _ => {
                    self.err(
                        m.span(),
                        format!("`{}` is not a file mode", m.get_ref()),
                        "write octal permission bits as a string, e.g. mode = \"0644\"",
                    );
                    0o600
                }
            },
        };
        let template = match (f.template, f.source) {
            (Some(t), None) => t,
            (None, Some(s)) => {
                let path = self.src.dir().join(s.get_ref());
                match std::fs::read_to_string(&path) {
                    Ok(text) => Spanned::new(s.span(), text),
                    Err(e) => {
                        self.err(
                            s.span(),
                            format!("cannot read template {}: {e}", path.display()),
                            "`source` is a path relative to the spec's directory",
                        );
                        return None;
                    }
                }
            }
            _ => {
                self.err(
                    span,
                    format!("file `{name}` needs exactly one of `template` or `source`"),
                    "write the template inline with `template = '''...'''`, or point to one with `source = \"node.conf.j2\"`",
                );
                return None;
            }
        };
        Some(FileSpec {
            name: name.to_string(),
            template,
            mode,
        })
    }

    fn duration(&mut self, d: &Spanned<String>) -> Option<Duration> {
        match parse_duration(d.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(d.span(), e, "write a number and a unit: ms, s, m or h");
                None
            }
        }
    }

    fn regex(&mut self, r: &Spanned<String>) -> Option<String> {
        match regex::Regex::new(r.get_ref()) {
            Ok(_) => Some(r.get_ref().clone()),
            Err(e) => {
                let detail = e.to_string();
                let last = detail.lines().last().unwrap_or("").trim().to_string();
                self.err(
                    r.span(),
                    format!("invalid regular expression: {last}"),
                    "regexes use Rust's `regex` syntax; in TOML, a '...' literal string avoids double escaping",
                );
                None
            }
        }
    }

    fn probe(&mut self, raw: Spanned<RawProbe>, ports: &[String]) -> Option<ProbeSpec> {
        let span = raw.span();
        let p = raw.into_inner();
        let kinds = [
            p.tcp.is_some(),
            p.http.is_some(),
            p.log.is_some(),
            p.command.is_some(),
        ];
        let count = kinds.iter().filter(|k| **k).count();
        if count != 1 {
            self.err(
                span,
                format!(
                    "a probe needs exactly one of `tcp`, `http`, `log` or `command`, found {count}"
                ),
                "e.g. `tcp = \"client\"`, `http = \"{{ node.urls.client }}/health\"`, `log = 'ready'` or `command = [\"pg_isready\"]`; use several probes for several checks",
            );
            return None;
        }
        let timeout = match &p.timeout {
            Some(t) => self.duration(t),
            None => {
                self.err(
                    span.clone(),
                    "this probe has no deadline",
                    "add `timeout = \"30s\"` (how long to keep trying before the start fails)",
                );
                None
            }
        };
        let interval = match &p.interval {
            Some(i) => self.duration(i),
            None => Some(DEFAULT_INTERVAL),
        };
        if p.http.is_none() && (p.status.is_some() || p.body.is_some()) {
            self.err(
                span.clone(),
                "`status` and `body` only apply to `http` probes",
                "remove them, or make this an `http` probe",
            );
        }
        let kind = if let Some(port) = p.tcp {
            if !ports.contains(port.get_ref()) {
                let hint = match suggest(port.get_ref(), ports.iter().map(String::as_str)) {
                    Some(s) => format!("did you mean `{s}`? "),
                    None => String::new(),
                };
                self.err(
                    port.span(),
                    format!("port `{}` is not declared by this cluster", port.get_ref()),
                    format!(
                        "{hint}declared ports: [{}]; add it to the cluster's `ports`",
                        ports.join(", ")
                    ),
                );
            }
            ProbeKind::Tcp { port }
        } else if let Some(url) = p.http {
            let status = match p.status {
                None => 200,
                Some(s) => match u16::try_from(*s.get_ref()) {
                    Ok(v @ 100..=599) => v,
                    _ => {
                        self.err(s.span(), "not an HTTP status", "use a status code from 100 to 599");
                        200
                    }
                },
            };
            let body = p.body.as_ref().and_then(|b| self.regex(b));
            ProbeKind::Http { url, status, body }
        } else if let Some(log) = p.log {
            let pattern = self.regex(&log)?;
            ProbeKind::Log { pattern }
        } else {
            let argv = p.command.unwrap_or_default();
            if argv.is_empty() {
                self.err(span.clone(), "the command is empty", "e.g. `command = [\"pg_isready\", \"-h\", \"{{ node.host }}\"]`");
            }
            ProbeKind::Command { argv }
        };
        Some(ProbeSpec {
            kind,
            timeout: timeout?,
            interval: interval?,
            span,
        })
    }

    fn stop(&mut self, raw: Spanned<RawStop>) -> StopSpec {
        let s = raw.into_inner();
        let mut stop = StopSpec::default();
        if let Some(sig) = s.signal {
            let wanted = sig.get_ref().to_ascii_uppercase();
            let wanted = if wanted.starts_with("SIG") { wanted } else { format!("SIG{wanted}") };
            match SIGNALS.iter().find(|(n, _)| *n == wanted) {
                Some((n, v)) => {
                    stop.signal = *v;
                    stop.signal_name = n.to_string();
                }
                None => self.err(
                    sig.span(),
                    format!("unknown stop signal `{}`", sig.get_ref()),
                    format!(
                        "use one of {}",
                        SIGNALS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ),
                ),
            }
        }
        if let Some(g) = s.grace
            && let Some(d) = self.duration(&g)
        {
            stop.grace = d;
        }
        stop
    }

    /// `after` names known clusters and has no cycle.
    fn check_after(&mut self, clusters: &IndexMap<String, ClusterSpec>) {
        for c in clusters.values() {
            for dep in &c.after {
                if !clusters.contains_key(dep.get_ref()) {
                    let hint = match suggest(dep.get_ref(), clusters.keys().map(String::as_str)) {
                        Some(s) => format!("did you mean `{s}`? "),
                        None => String::new(),
                    };
                    self.err(
                        dep.span(),
                        format!("`after` names an unknown cluster `{}`", dep.get_ref()),
                        format!(
                            "{hint}clusters in this spec: {}",
                            clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                } else if dep.get_ref() == &c.name {
                    self.err(dep.span(), "a cluster cannot start after itself", "remove it from `after`");
                }
            }
        }
        // Cycle check: repeatedly peel clusters whose dependencies are all peeled.
        let mut done: HashSet<&str> = HashSet::new();
        loop {
            let before = done.len();
            for c in clusters.values() {
                if !done.contains(c.name.as_str())
                    && c.after.iter().all(|d| {
                        done.contains(d.get_ref().as_str())
                            || !clusters.contains_key(d.get_ref())
                            || d.get_ref() == &c.name
                    })
                {
                    done.insert(&c.name);
                }
            }
            if done.len() == before {
                break;
            }
        }
        if let Some(c) = clusters.values().find(|c| !done.contains(c.name.as_str())) {
            let cycle: Vec<&str> = clusters
                .values()
                .filter(|c| !done.contains(c.name.as_str()))
                .map(|c| c.name.as_str())
                .collect();
            self.err(
                c.after[0].span(),
                format!("clusters wait for each other in a cycle: {}", cycle.join(", ")),
                "remove one of the `after` entries so that some cluster can start first",
            );
        }
    }
}

impl Spec {
    /// Clusters in an order that respects `after`, otherwise file order.
    pub fn start_order(&self) -> Vec<&ClusterSpec> {
        let mut out: Vec<&ClusterSpec> = Vec::new();
        while out.len() < self.clusters.len() {
            let before = out.len();
            for c in self.clusters.values() {
                if !out.iter().any(|o| o.name == c.name)
                    && c.after.iter().all(|d| out.iter().any(|o| &o.name == d.get_ref()))
                {
                    out.push(c);
                }
            }
            if out.len() == before {
                break; // unreachable for a validated spec
            }
        }
        out
    }
}
