//! Stage one: TOML text → [`Spec`]. Deserialises into raw types that keep spans, then checks
//! everything that can be checked without touching the system, collecting every problem.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;

use crate::diag::{
    InvalidSpec, SpecError, SpecSource, key_span, key_span_within, quote_key, suggest,
};
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
    #[serde(default)]
    cas: Vec<Spanned<String>>,
    bad: Option<bool>,
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
    #[serde(default)]
    schemes: IndexMap<String, Spanned<String>>,
    #[serde(default)]
    fixed_ports: IndexMap<String, Spanned<toml::Value>>,
    host: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    user: Option<Spanned<String>>,
    network: Option<Spanned<String>>,
    runtime: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
    #[serde(default)]
    placement: Vec<Spanned<String>>,
    start: Option<Spanned<String>>,
    #[serde(default)]
    after: Vec<Spanned<String>>,
    #[serde(default)]
    started: Vec<Spanned<RawProbe>>,
    #[serde(default)]
    ready: Vec<Spanned<RawProbe>>,
    role: Option<Spanned<RawRole>>,
    stop: Option<Spanned<RawStop>>,
    #[serde(default)]
    bootstrap: Vec<Spanned<RawProbe>>,
}

/// The keys of a cluster that say what runs its nodes, for `Validator::runtime`.
struct RuntimeKeys<'a> {
    runtime: &'a Option<Spanned<String>>,
    network: &'a Option<Spanned<String>>,
    image: &'a Option<Spanned<String>>,
    placement: &'a [Spanned<String>],
    user: &'a Option<Spanned<String>>,
    host: Option<Range<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    http: Option<Spanned<String>>,
    post: Option<Spanned<String>>,
    command: Option<Vec<Spanned<String>>>,
    pointer: Option<Spanned<String>>,
    leader: Option<Spanned<String>>,
    equals: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    scope: Option<Spanned<String>>,
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
    post: Option<Spanned<String>>,
    on: Option<Spanned<String>>,
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
        Spec::from_path_with(path, &[])
    }

    /// Reads a spec file, applies `--set` overrides to its text, and validates the result: an
    /// overridden value is checked exactly like the file.
    pub fn from_path_with(
        path: impl AsRef<Path>,
        sets: &[crate::overrides::Override],
    ) -> Result<Spec, InvalidSpec> {
        let path = path.as_ref();
        let text = read_text(
            path,
            "spec",
            "check the path; specs are TOML files such as examples/etcd/cluster.toml",
        )?;
        if sets.is_empty() {
            return Spec::from_str(path, &text);
        }
        let text = crate::overrides::apply(path, &text, sets)?;
        Spec::from_str(path, &text).map_err(|mut e| {
            // The snippet shows the spec as overridden, which is not quite the file on disk.
            let with: Vec<String> = sets.iter().map(|s| format!("--set {}", s.text())).collect();
            for err in &mut e.errors {
                let note = format!("(the spec as read with {})", with.join(" "));
                err.help = Some(match err.help.take() {
                    Some(h) => format!("{h}\n{note}"),
                    None => note,
                });
            }
            e
        })
    }

    /// Validates spec text; `path` names it in messages and anchors relative paths.
    #[allow(
        clippy::should_implement_trait,
        reason = "needs a path as well as the text"
    )]
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
/// A spec or scenario file's text. A byte that is not UTF-8 is located at its line and column.
pub(crate) fn read_text(path: &Path, what: &str, help: &str) -> Result<String, InvalidSpec> {
    let bytes = std::fs::read(path).map_err(|e| {
        SpecSource::new(path, "")
            .error(0..0, format!("cannot read the {what}: {e}"))
            .with_help(help.to_string())
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
        let src = SpecSource::new(path, lossy.as_str());
        let mut err = src
            .error(
                at..at + 1,
                format!("byte {:#04x} is not UTF-8", e.as_bytes()[at]),
            )
            .with_label("not UTF-8")
            .with_help(format!(
                "a {what} is UTF-8 text; retype this character or save the file as UTF-8"
            ));
        err.key = None;
        InvalidSpec {
            file: path.to_path_buf(),
            errors: vec![err],
        }
    })
}

pub(crate) fn toml_error(src: &SpecSource, e: &toml::de::Error) -> SpecError {
    let span = e.span().unwrap_or(0..0);
    let msg = e.message().trim().to_string();
    let written = src.text.get(span.clone()).unwrap_or("").trim();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let valid: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        // Point at the key itself, also when the error spans its whole table.
        let span = if written.trim_matches(['"', '\'']) == field {
            span
        } else {
            key_span_within(&src.text, span.clone(), field).unwrap_or(span)
        };
        let help = match suggest(field, valid.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? Valid keys here: {}", valid.join(", ")),
            None => format!("valid keys here: {}", valid.join(", ")),
        };
        return src
            .error(span, format!("unknown key `{field}`"))
            .with_help(help)
            .with_label("not a key troupe knows here");
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        let help = match field {
            "nodes" => "add `nodes = 3`: how many copies of the binary to run".to_string(),
            "binary" => "add the program each node runs, e.g. `binary = \"etcd\"` (a name on PATH \
                         or a path relative to the spec)"
                .to_string(),
            "range" => "add `range = \"20000-30000\"`, or remove the [ports] table to use the \
                        default range"
                .to_string(),
            _ => format!("add `{field}` to this table"),
        };
        // The error spans the table that lacks the key, so that is the key found.
        return src
            .error(span, format!("missing required key `{field}`"))
            .with_help(help)
            .with_label(format!("this table has no `{field}`"));
    }
    if written.starts_with("[[") && msg != "duplicate key" {
        // `[[clusters.main]]`: an array of tables where one table is expected.
        let err = src.error(span.clone(), "");
        let table = err
            .key
            .as_deref()
            .map(|k| k.rsplit_once('[').map_or(k, |(t, _)| t).to_string())
            .unwrap_or_default();
        return err
            .with_key(table.clone())
            .with_message(format!("`{table}` must be a single table, not an array of tables"))
            .with_help(format!(
                "write `[{table}]` with single brackets; `[[...]]` is for lists of tables, such as probes"
            ))
            .with_label("an array of tables");
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        let (found, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        let too_large = found.ends_with(" as i128");
        let found = match found.trim_end_matches(" as i128") {
            number if too_large => number.trim_start_matches("integer ").to_string(),
            "map" => "a table".to_string(),
            "sequence" => "an array".to_string(),
            other => other.replace("floating point", "a decimal number"),
        };
        let expected = match expected {
            "i64" | "u32" | "u16" => "a whole number",
            "a string" => "a string (in quotes)",
            "a sequence" => "an array",
            "a map" => "a table",
            "a boolean" => "true or false",
            other if other.starts_with("struct ") => "a table",
            other => other,
        };
        let err = src.error(span.clone(), "");
        let key = err.key.clone().unwrap_or_default();
        let field = key.rsplit('.').next().unwrap_or(&key);
        let item = field.ends_with(']');
        let scalar = !written.is_empty()
            && !written.starts_with(['[', '{'])
            && !matches!(found.as_str(), "a table" | "an array");
        let help = match expected {
            "a whole number" => match written.trim_matches('"').parse::<i64>() {
                Ok(n) if written.starts_with('"') && !item => {
                    format!("remove the quotes: `{field} = {n}`")
                }
                _ if item => "write a whole number, without quotes".to_string(),
                _ => {
                    let example = match field {
                        "nodes" => "3",
                        "status" => "200",
                        _ => "1",
                    };
                    format!("write a whole number, without quotes, e.g. `{field} = {example}`")
                }
            },
            "a string (in quotes)" if item && scalar => {
                format!("put the value in quotes: \"{written}\"")
            }
            "a string (in quotes)" if scalar => {
                format!("put the value in quotes: `{field} = \"{written}\"`")
            }
            "a string (in quotes)" => format!("write a string in quotes, e.g. `{field} = \"...\"`"),
            "an array" if matches!(field, "ready" | "started") => format!(
                "each probe is a table in an array: write `[[{key}]]` with double brackets, or \
                 `{field} = [{{ ... }}]`"
            ),
            "an array" if scalar => format!("put the values in brackets: `{field} = [{written}]`"),
            "an array" => format!("write an array, e.g. `{field} = [\"a\", \"b\"]`"),
            "a table" if key == "clusters" => {
                "write one table per cluster, e.g. `[clusters.main]` with `nodes` and `binary` \
                 below it"
                    .to_string()
            }
            "a table" if key == "tls" => {
                "TLS is on when the spec has a [tls] table: write `[tls]` on a line of its own \
                 (empty is enough), or leave it out for no TLS"
                    .to_string()
            }
            "a table" => format!(
                "write `[{key}]` on a line of its own with the keys below it, or `{field} = {{ ... }}`"
            ),
            "true or false" => {
                format!("write `{field} = true` or `{field} = false`, without quotes")
            }
            _ => "see examples/etcd/cluster.toml for a complete spec".to_string(),
        };
        let message = if too_large {
            format!("the number {found} is too large")
        } else {
            format!("expected {expected}, found {found}")
        };
        return err
            .with_message(message)
            .with_help(help)
            .with_label(format!("expected {expected}"));
    }
    if msg == "duplicate key" {
        let name = written.trim_matches(['"', '\'']);
        let mut err = src.error(span.clone(), "");
        // The key found is the table the duplicate is in, unless the duplicate is a table.
        let key = match err.key.take() {
            Some(k) if k == name || k.ends_with(&format!(".{}", quote_key(name))) => k,
            Some(k) => format!("{k}.{}", quote_key(name)),
            None => quote_key(name),
        };
        let line_start = src.text[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let is_table = src.text[line_start..span.start]
            .trim_start()
            .starts_with('[');
        let first = key_span(&src.text, &key)
            .filter(|r| r.start < span.start)
            .map_or_else(
                || " above".to_string(),
                |r| format!(" on line {}", src.line_col(r.start).0),
            );
        let (message, help) = if is_table {
            (
                format!("table `{key}` is already defined{first}"),
                format!("a table can be defined only once: merge the two [{key}] sections"),
            )
        } else {
            (
                format!("`{name}` is already set{first}"),
                "a key can be set only once in a table: remove one of the two".to_string(),
            )
        };
        return err
            .with_key(key)
            .with_message(message)
            .with_help(help)
            .with_label("defined again here");
    }
    let help = if msg.contains("string") {
        "close the string on the same line, or use '''...''' for text over several lines; see \
         https://toml.io"
    } else if msg.contains("expected `=`") {
        "write `key = value`; see https://toml.io"
    } else {
        "fix the TOML syntax here; see https://toml.io"
    };
    // A syntax error: the key found is only where the parser gave up, not a reliable place.
    let mut err = src.error(span, msg).with_help(help);
    err.key = None;
    err
}

pub(crate) struct Validator<'a> {
    pub(crate) src: &'a SpecSource,
    pub(crate) errors: Vec<SpecError>,
}

impl Validator<'_> {
    pub(crate) fn err(
        &mut self,
        span: Range<usize>,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
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
            let mut cas: Vec<String> = Vec::new();
            for ca in t.cas {
                let n = ca.get_ref();
                if n == TlsSpec::DEFAULT_CA {
                    self.err(
                        ca.span(),
                        "`default` is the CA every run has; `cas` names the others",
                        "remove it from `cas`, or give the extra CA another name, e.g. \"other\"",
                    );
                } else if cas.contains(n) {
                    self.err(
                        ca.span(),
                        format!("CA `{n}` is named twice"),
                        "remove the duplicate",
                    );
                } else if let Some(clash) = cas.iter().find(|c| env_name(c) == env_name(n)) {
                    self.err(
                        ca.span(),
                        format!(
                            "CAs `{clash}` and `{n}` would both be TROUPE_CA_{} in `troupe env`",
                            env_name(n)
                        ),
                        "rename one: names differing only in `-` and `_` (or case) collide",
                    );
                } else if env_name(n) == "BUNDLE" {
                    self.err(
                        ca.span(),
                        format!("CA `{n}` would be TROUPE_CA_BUNDLE, the file of every CA"),
                        "give the CA another name",
                    );
                } else {
                    // CA names become file names (`tls/ca-NAME.pem`) and variables (`TROUPE_CA_NAME`).
                    self.check_name(ca.span(), n, "CA name");
                    cas.push(ca.into_inner());
                }
            }
            Some(TlsSpec {
                key,
                cas,
                bad: t.bad.unwrap_or(false),
            })
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
            Some(cs) => self.no_clusters(cs.span()),
            None => self.no_clusters(0..0),
        }
        self.check_after(&clusters);
        self.check_cas(tls.as_ref(), &clusters);
        Spec {
            name,
            source: self.src.clone(),
            tls,
            port_range,
            clusters,
        }
    }

    /// A cluster's `ca` names a CA of `[tls]`; templates are checked per node once rendered.
    fn check_cas(&mut self, tls: Option<&TlsSpec>, clusters: &IndexMap<String, ClusterSpec>) {
        for ca in clusters.values().filter_map(|c| c.ca.as_ref()) {
            match tls {
                None => self.err(
                    ca.span(),
                    "`ca` chooses the CA that issues the nodes' certificates, but TLS is off",
                    "add a `[tls]` table (with `cas = [\"NAME\"]` for CAs besides `default`), or remove `ca`",
                ),
                Some(tls) if !ca.get_ref().contains("{{") && !ca.get_ref().contains("{%") => {
                    if let Some((msg, help)) = tls.unknown_ca(ca.get_ref()) {
                        self.err(ca.span(), msg, help);
                    }
                }
                Some(_) => {}
            }
        }
    }

    fn no_clusters(&mut self, span: Range<usize>) {
        let e = self
            .src
            .error(
                span,
                "the spec has no clusters, so there is nothing to start",
            )
            .with_key("clusters")
            .with_label("no [clusters.NAME] table here")
            .with_help(
                "add a table such as `[clusters.main]` with `nodes = 3` and `binary = \"etcd\"` \
                 below it",
            );
        self.errors.push(e);
    }

    fn check_name(&mut self, span: Range<usize>, name: &str, what: &str) {
        let ok = !name.is_empty()
            && name.len() <= 40
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
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
        let text = range.get_ref();
        let problem = match parsed {
            Some((lo, hi)) if lo >= 1024 && lo < hi => return Some((lo, hi)),
            Some((lo, _)) if lo < 1024 => {
                format!("the port range `{text}` starts below 1024, where ports need root")
            }
            Some((lo, hi)) if lo == hi => format!("the port range `{text}` holds a single port"),
            Some(_) => format!("the port range `{text}` is backwards: LOW must be below HIGH"),
            None => format!("`{text}` is not a port range"),
        };
        self.err(
            range.span(),
            problem,
            "write \"LOW-HIGH\" with 1024 <= LOW < HIGH <= 65535, below the kernel's \
             ephemeral range (see /proc/sys/net/ipv4/ip_local_port_range), e.g. \"20000-30000\"",
        );
        None
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
                self.err(
                    p.span(),
                    format!("port `{n}` is declared twice"),
                    "remove the duplicate",
                );
            }
            ports.push(n.clone());
        }
        let mut schemes = BTreeMap::new();
        for (port, scheme) in c.schemes {
            if !ports.contains(&port) {
                let hint = match suggest(&port, ports.iter().map(String::as_str)) {
                    Some(p) => format!("did you mean `{p}`? "),
                    None => String::new(),
                };
                self.err(
                    scheme.span(),
                    format!("`schemes` names port `{port}`, which the cluster does not declare"),
                    format!(
                        "{hint}declared ports: [{}]; a scheme is set per declared port, e.g. `schemes = {{ client = \"nats\" }}`",
                        ports.join(", ")
                    ),
                );
                continue;
            }
            let s = scheme.get_ref();
            let valid = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !valid {
                self.err(
                    scheme.span(),
                    format!("`{s}` is not a URL scheme"),
                    "write the scheme alone, without `://`: a letter, then letters, digits, `+`, `-` or `.` (e.g. \"nats\", \"postgresql\", \"redis\")",
                );
                continue;
            }
            schemes.insert(port, scheme.into_inner());
        }
        let mut fixed_ports = BTreeMap::new();
        for (port, number) in c.fixed_ports {
            let span = number.span();
            if !ports.contains(&port) {
                let hint = match suggest(&port, ports.iter().map(String::as_str)) {
                    Some(p) => format!("did you mean `{p}`? "),
                    None => String::new(),
                };
                self.err(
                    span,
                    format!("`fixed_ports` names port `{port}`, which the cluster does not declare"),
                    format!(
                        "{hint}declared ports: [{}]; add it to `ports` too, e.g. `ports = [\"client\", \"{port}\"]`",
                        ports.join(", ")
                    ),
                );
                continue;
            }
            let text = match number.into_inner() {
                toml::Value::Integer(n) if (1..=65535).contains(&n) => n.to_string(),
                toml::Value::String(t) if t.contains("{{") => t,
                toml::Value::String(t) if t.trim().parse::<u16>().is_ok_and(|n| n > 0) => {
                    t.trim().to_string()
                }
                other => {
                    let help = match other.as_str() {
                        Some(t) if t.contains("node.") => format!(
                            "a template goes inside `{{{{ }}}}`: \"{{{{ {} }}}}\"",
                            t.trim()
                        ),
                        _ => "give a number from 1 to 65535 (`admin = 9000`) or a template that renders one per node (`admin = \"{{ 10000 + node.index }}\"`)".to_string(),
                    };
                    self.err(
                        span,
                        format!("fixed port `{port}` is {other}, not a port number"),
                        help,
                    );
                    continue;
                }
            };
            fixed_ports.insert(port, Spanned::new(span, text));
        }
        let host_span = c.host.as_ref().map(Spanned::span);
        let network = match c.network.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("host") => Network::Host,
            Some("proxies") => Network::Proxies,
            Some("namespaces") => {
                if let Some(span) = host_span.clone() {
                    self.err(
                        span,
                        "`host` and `network = \"namespaces\"` both say where nodes live",
                        "remove `host`: in namespaces each node gets its own address on troupe's bridge",
                    );
                }
                Network::Namespaces
            }
            Some(other) => {
                let s = c.network.as_ref().expect("network");
                let hint = match crate::suggest(other, ["host", "namespaces", "proxies"]) {
                    Some(x) => format!("did you mean \"{x}\"? "),
                    None => String::new(),
                };
                self.err(
                    s.span(),
                    format!("unknown network `{other}`"),
                    format!("{hint}use \"host\" (the default: loopback, ports allocated per node), \"namespaces\" (a network namespace per node, so links can be cut; needs root) or \"proxies\" (a TCP proxy per directed link, `node.links.<peer>` in templates)"),
                );
                Network::Host
            }
        };
        let keys = RuntimeKeys {
            runtime: &c.runtime,
            network: &c.network,
            image: &c.image,
            placement: &c.placement,
            user: &c.user,
            host: host_span,
        };
        let runtime = self.runtime(keys, network, name);
        let host = match c.host {
            Some(h) => {
                let ok =
                    h.get_ref().parse::<std::net::IpAddr>().is_ok() || h.get_ref() == "localhost";
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
            Some("manual") => StartMode::Manual,
            Some(other) => {
                let s = c.start.as_ref().unwrap();
                self.err(
                    s.span(),
                    format!("unknown start mode `{other}`"),
                    "use \"parallel\" (all nodes at once), \"sequential\" (each after the previous passes its `started` probes) or \"manual\" (not started by `up`; start it with `troupe start CLUSTER`)",
                );
                StartMode::Parallel
            }
        };
        let mut files: IndexMap<String, FileSpec> = IndexMap::new();
        for (fname, f) in c.files {
            let span = f.span();
            if let Some(file) = self.file(&fname, f) {
                // `conf` and `conf/a.conf` cannot both be written: one is the other's directory.
                let clash = files.keys().find(|k| {
                    fname.starts_with(&format!("{k}/")) || k.starts_with(&format!("{fname}/"))
                });
                if let Some(k) = clash {
                    self.err(
                        span,
                        format!("file `{fname}` and file `{k}` cannot both exist: one would be the other's directory"),
                        "rename one of them",
                    );
                    continue;
                }
                files.insert(fname, file);
            }
        }
        let started = c
            .started
            .into_iter()
            .filter_map(|p| self.probe(p, &ports))
            .collect();
        let ready = c
            .ready
            .into_iter()
            .filter_map(|p| self.probe(p, &ports))
            .collect();
        let bootstrap = c
            .bootstrap
            .into_iter()
            .filter_map(|raw| self.bootstrap_step(raw, name, nodes, &ports))
            .collect();
        let stop = c.stop.map(|s| self.stop(s)).unwrap_or_default();
        let role = c.role.and_then(|r| self.role(r));
        ClusterSpec {
            name: name.to_string(),
            nodes,
            binary: c.binary,
            args: c.args,
            env: c.env,
            files,
            ports,
            schemes,
            fixed_ports,
            host,
            ca: c.ca,
            user: c.user,
            network,
            runtime,
            image: c.image,
            placement: c.placement,
            start,
            after: c.after,
            started,
            ready,
            bootstrap,
            role,
            stop,
            span,
        }
    }

    /// A cluster's `runtime`, checked against what this runtime supports: `docker` runs on
    /// the host's network or a network of the run's own (not link proxies), `image` means nothing to a process, and a swarm service needs
    /// an image (a task may run on any host) and a cluster name that is a DNS label (peers
    /// reach each node by its name on the run's overlay network).
    fn runtime(&mut self, c: RuntimeKeys, network: Network, name: &str) -> Runtime {
        let host_span = c.host;
        let (raw, raw_network, image) = (&c.runtime, &c.network, &c.image);
        let runtime = match raw.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("process") => Runtime::Process,
            Some("docker") => Runtime::Docker,
            Some("swarm") => Runtime::Swarm,
            Some(other) => {
                let s = raw.as_ref().expect("runtime");
                let hint = match crate::suggest(other, ["process", "docker", "swarm"]) {
                    Some(x) => format!("did you mean \"{x}\"? "),
                    None => String::new(),
                };
                self.err(
                    s.span(),
                    format!("unknown runtime `{other}`"),
                    format!("{hint}use \"process\" (the default: each node a local process group), \"docker\" (each node a container of the local Docker Engine) or \"swarm\" (each node a service of a Docker Swarm)"),
                );
                return Runtime::Process;
            }
        };
        let refused = match runtime {
            Runtime::Docker if network == Network::Proxies => Some(
                "containers run on the host's network, or on a network of the run's own with `network = \"namespaces\"` (faults inside each container); use `runtime = \"process\"` for link proxies",
            ),
            Runtime::Swarm if network == Network::Proxies => Some(
                "swarm services run on the run's overlay network: use `network = \"namespaces\"` (faults inside each task's namespace, for tasks on the Engine's host), or remove `network`, or use `runtime = \"process\"` for link proxies",
            ),
            _ => None,
        };
        if let Some(hint) = refused
            && let Some(n) = raw_network
        {
            self.err(
                n.span(),
                format!(
                    "`network = \"{}\"` is not supported with `runtime = \"{}\"`",
                    n.get_ref(),
                    runtime.name()
                ),
                hint,
            );
        }
        if runtime == Runtime::Process
            && let Some(i) = image
        {
            self.err(
                i.span(),
                "`image` needs `runtime = \"docker\"` or `\"swarm\"`",
                "add `runtime = \"docker\"` to run the image, or remove `image` to run `binary` as a local process",
            );
        }
        if runtime != Runtime::Swarm
            && let Some(p) = c.placement.first()
        {
            self.err(
                p.span(),
                "`placement` needs `runtime = \"swarm\"`",
                "placement constraints choose swarm hosts: add `runtime = \"swarm\"`, or remove `placement`",
            );
        }
        if runtime == Runtime::Swarm {
            let at = raw.as_ref().expect("runtime").span();
            if image.is_none() {
                self.err(
                    at.clone(),
                    "`runtime = \"swarm\"` needs `image`",
                    "a task may run on any host of the swarm, so host files cannot be mounted: build an image (e.g. examples/nats-swarm/build-image.sh) and name it, `image = \"nats:local\"`",
                );
            }
            if let Some(u) = &c.user {
                self.err(
                    u.span(),
                    "`user` is not supported with `runtime = \"swarm\"` yet",
                    "a swarm node runs as its image's user; remove `user` (or use `runtime = \"docker\"`)",
                );
            }
            if let Some(h) = host_span {
                self.err(
                    h,
                    "`host` and `runtime = \"swarm\"` both say where nodes live",
                    "remove `host`: on a swarm, peers reach each node by its name on the run's overlay network, and troupe by the ports published on the swarm host",
                );
            }
            let dns = !name.is_empty()
                && name.len() <= 50
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !name.starts_with('-');
            if !dns {
                self.err(
                    at,
                    format!("cluster `{name}` cannot run on a swarm: its nodes' names are not host names"),
                    "on a swarm peers reach each node by its name (`<cluster>-<index>`): name the cluster with lowercase letters, digits and `-` (at most 50)",
                );
            }
            for p in c.placement {
                if p.get_ref().trim().is_empty() {
                    self.err(
                        p.span(),
                        "an empty placement constraint",
                        "write a swarm constraint such as \"node.hostname == db1\" or \"node.labels.zone == a\", or remove it",
                    );
                }
            }
        }
        runtime
    }

    /// A bootstrap step: a probe plus the node it runs on (`on`, default the first node).
    fn bootstrap_step(
        &mut self,
        mut raw: Spanned<RawProbe>,
        cluster: &str,
        nodes: u32,
        ports: &[String],
    ) -> Option<BootstrapStep> {
        let on = match raw.get_mut().on.take() {
            None => BootstrapOn::Node(1),
            Some(on) if on.get_ref() == "each" => BootstrapOn::Each,
            Some(on) => {
                let index = on
                    .get_ref()
                    .strip_prefix(cluster)
                    .and_then(|r| r.strip_prefix('-'))
                    .and_then(|i| i.parse::<u32>().ok())
                    .filter(|i| (1..=nodes).contains(i));
                match index {
                    Some(i) => BootstrapOn::Node(i),
                    None => {
                        self.err(
                            on.span(),
                            format!(
                                "bootstrap step `on = \"{}\"` names no node of cluster `{cluster}`",
                                on.get_ref()
                            ),
                            format!(
                                "use a node name from {cluster}-1 to {cluster}-{nodes}, or \"each\" to run the step on every node in turn"
                            ),
                        );
                        return None;
                    }
                }
            }
        };
        let probe = self.probe(raw, ports)?;
        if let ProbeKind::Log { .. } = probe.kind {
            self.err(
                probe.span.clone(),
                "a bootstrap step does something: `log` only watches",
                "use `http` (with `post` for a body) or `command`; a log line to wait for belongs in `ready`",
            );
            return None;
        }
        Some(BootstrapStep { on, probe })
    }

    fn role(&mut self, raw: Spanned<RawRole>) -> Option<RoleSpec> {
        let span = raw.span();
        let r = raw.into_inner();
        let example = "e.g. http = \"{{ node.urls.client }}/status\" with pointer = \"/leader\" and \
                       leader = '^{{ node.name }}$'";
        let source = match (r.http, r.command) {
            (Some(url), None) => RoleSourceSpec::Http {
                url,
                post: r.post.map(Spanned::into_inner),
            },
            (None, Some(argv)) => {
                if let Some(p) = &r.post {
                    self.err(
                        p.span(),
                        "`post` only applies to an `http` role probe",
                        "remove it",
                    );
                }
                if argv.is_empty() {
                    self.err(span.clone(), "the role command is empty", example);
                    return None;
                }
                RoleSourceSpec::Command { argv }
            }
            (Some(_), Some(c)) => {
                let at = c.first().map(Spanned::span).unwrap_or(span);
                self.err(
                    at,
                    "a role probe has either `http` or `command`, not both",
                    "keep one",
                );
                return None;
            }
            (None, None) => {
                self.err(
                    span,
                    "this role probe asks nothing: it needs `http` or `command`",
                    example,
                );
                return None;
            }
        };
        let pointer = match r.pointer {
            Some(p) if !p.get_ref().is_empty() && !p.get_ref().starts_with('/') => {
                self.err(
                    p.span(),
                    format!("`{}` is not a JSON pointer", p.get_ref()),
                    "a JSON pointer starts with `/`, e.g. \"/leader\" or \"/header/member_id\"",
                );
                None
            }
            other => other.map(Spanned::into_inner),
        };
        let rule = match (r.leader, r.equals) {
            (Some(re), None) => {
                // A template is checked once rendered; plain text now.
                if !re.get_ref().contains("{{") {
                    self.regex(&re)?;
                }
                RoleRuleSpec::Matches(re)
            }
            (None, Some(eq)) => {
                if pointer.is_none() {
                    self.err(
                        eq.span(),
                        "`equals` compares the value at `pointer` with this one, but there is no `pointer`",
                        "add e.g. pointer = \"/leader\"",
                    );
                }
                if !eq.get_ref().starts_with('/') {
                    self.err(
                        eq.span(),
                        format!("`{}` is not a JSON pointer", eq.get_ref()),
                        "a JSON pointer starts with `/`, e.g. \"/header/member_id\"",
                    );
                }
                RoleRuleSpec::Equals(eq.into_inner())
            }
            (Some(_), Some(eq)) => {
                self.err(
                    eq.span(),
                    "a role probe has either `leader` or `equals`, not both",
                    "keep one",
                );
                return None;
            }
            (None, None) => {
                self.err(
                    span,
                    "this role probe never says who leads: it needs `leader` (a regex) or `equals` (a JSON pointer)",
                    "e.g. leader = 'is_leader: true', or pointer = \"/leader\" with equals = \"/id\"",
                );
                return None;
            }
        };
        let scope = match r.scope.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("node") => RoleScope::Node,
            Some("cluster") => {
                if let RoleRuleSpec::Equals(_) = rule {
                    self.err(
                        r.scope.as_ref().expect("scope").span(),
                        "`scope = \"cluster\"` asks once for the whole cluster, so `equals` (two fields of one answer) cannot tell nodes apart",
                        "say how the answer names each node with `leader`, a template rendered per node, e.g. leader = '^{{ node.name }}$' or '^{{ node.addrs.db }}$'",
                    );
                    return None;
                }
                RoleScope::Cluster
            }
            Some(other) => {
                self.err(
                    r.scope.as_ref().expect("scope").span(),
                    format!("unknown role scope `{other}`"),
                    "use \"node\" (the default: every node is asked about itself) or \"cluster\" (one question per interval whose answer names the leader; `leader` is matched per node)",
                );
                return None;
            }
        };
        let interval = match &r.interval {
            Some(i) => self.positive(i)?,
            None => std::time::Duration::from_millis(20),
        };
        let timeout = match &r.timeout {
            Some(t) => self.positive(t)?,
            None => std::time::Duration::from_secs(1),
        };
        Some(RoleSpec {
            source,
            scope,
            pointer,
            rule,
            interval,
            timeout,
            span,
        })
    }

    fn file(&mut self, name: &str, raw: Spanned<RawFile>) -> Option<FileSpec> {
        let span = raw.span();
        let parts: Vec<&str> = name.split('/').collect();
        if name.starts_with('/') {
            self.err(
                span.clone(),
                format!("`{name}` is an absolute path"),
                "files are written inside the node's directory: give a path relative to it, \
                 e.g. \"node.conf\" or \"data/myid\"",
            );
        } else if parts.iter().any(|p| matches!(*p, "" | "." | "..")) {
            self.err(
                span.clone(),
                format!("`{name}` is not a path inside the node's directory"),
                "use names separated by single `/`, without `.`, `..` or empty parts, \
                 e.g. \"data/myid\" or \"conf/server.conf\"",
            );
        } else if matches!(parts[0], "node.log" | "tls") && parts.len() > 1
            || parts[0] == "tls" && parts.len() == 1
        {
            self.err(
                span.clone(),
                format!("`{name}` would write into troupe's own `{}`", parts[0]),
                "troupe writes the node's log to `node.log` and its certificates to `tls/`: \
                 put the file elsewhere, e.g. \"conf/node.conf\"",
            );
        } else if matches!(name, "node.log" | "data") {
            self.err(
                span.clone(),
                format!(
                    "`{name}` would overwrite troupe's own {} in the node's directory",
                    if name == "data" {
                        "data directory"
                    } else {
                        "log of the node"
                    }
                ),
                "give the file another name, e.g. \"node.conf\"",
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
            (Some(_), Some(s)) => {
                self.err(
                    s.span(),
                    format!("file `{name}` has both `template` and `source`"),
                    "keep one of them: `template` is the text itself, `source` names a file \
                     holding it (relative to the spec's directory)",
                );
                return None;
            }
            (None, None) => {
                self.err(
                    span,
                    format!("file `{name}` has neither `template` nor `source`"),
                    "write the template inline with `template = '''...'''`, or point to one with \
                     `source = \"node.conf.j2\"`",
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

    pub(crate) fn duration(&mut self, d: &Spanned<String>) -> Option<Duration> {
        match parse_duration(d.get_ref()) {
            Ok(v) => Some(v),
            Err(e) => {
                let text = d.get_ref().trim();
                let help = if !text.is_empty() && text.parse::<f64>().is_ok() {
                    format!(
                        "add a unit: \"{text}s\" for seconds, \"{text}ms\" for milliseconds (units: ms, s, m, h)"
                    )
                } else {
                    "write a number and a unit: ms, s, m or h, e.g. \"10s\"".to_string()
                };
                self.err(d.span(), e, help);
                None
            }
        }
    }

    /// A duration that must be more than zero: a deadline or an interval of 0 asks for the
    /// impossible (a step that fails at once, a probe that spins).
    pub(crate) fn positive(&mut self, d: &Spanned<String>) -> Option<Duration> {
        let v = self.duration(d)?;
        if v.is_zero() {
            self.err(
                d.span(),
                format!("`{}` is zero: this must be more than 0", d.get_ref()),
                "e.g. \"10s\" for a deadline, \"50ms\" for an interval",
            );
            return None;
        }
        Some(v)
    }

    pub(crate) fn regex(&mut self, r: &Spanned<String>) -> Option<String> {
        match regex::Regex::new(r.get_ref()) {
            Ok(_) => Some(r.get_ref().clone()),
            Err(e) => {
                let detail = e.to_string();
                let last = detail.lines().last().unwrap_or("").trim();
                let problem = last.strip_prefix("error: ").unwrap_or(last).to_string();
                let span = regex_error_span(&self.src.text, r, &detail).unwrap_or(r.span());
                let err = self
                    .src
                    .error(span, format!("invalid regular expression: {problem}"))
                    .with_label(problem)
                    .with_help(
                        "regexes use Rust's `regex` syntax: escape ( ) [ ] { } . * + ? | with `\\` \
                         to match them literally; in TOML, a '...' literal string avoids doubling \
                         each `\\`",
                    );
                self.errors.push(err);
                None
            }
        }
    }

    fn probe(&mut self, raw: Spanned<RawProbe>, ports: &[String]) -> Option<ProbeSpec> {
        let span = raw.span();
        let mut p = raw.into_inner();
        if let Some(on) = p.on.take() {
            self.err(
                on.span(),
                "`on` only applies to `bootstrap` steps: a readiness probe asks every node",
                "remove `on`, or move this into a [[clusters.NAME.bootstrap]] step",
            );
        }
        let kinds = [
            p.tcp.is_some(),
            p.http.is_some(),
            p.log.is_some(),
            p.command.is_some(),
        ];
        let count = kinds.iter().filter(|k| **k).count();
        if count != 1 {
            let names = ["tcp", "http", "log", "command"];
            let found: Vec<&str> = names
                .iter()
                .zip(kinds)
                .filter(|(_, k)| *k)
                .map(|(n, _)| *n)
                .collect();
            let (at, message, help) = if count == 0 {
                (
                    span,
                    "this probe checks nothing: it needs one of `tcp`, `http`, `log` or `command`"
                        .to_string(),
                    "e.g. `tcp = \"client\"`, `http = \"{{ node.urls.client }}/health\"`, \
                     `log = 'ready'` or `command = [\"pg_isready\"]`",
                )
            } else {
                // Point at the second check.
                let second = match found[1] {
                    "http" => p.http.as_ref().map(Spanned::span),
                    "log" => p.log.as_ref().map(Spanned::span),
                    _ => p.command.as_ref().and_then(|c| Some(c.first()?.span())),
                };
                let list = found.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>();
                (
                    second.unwrap_or(span),
                    format!(
                        "this probe has {}, but a probe does one check",
                        list.join(" and ")
                    ),
                    "keep one check here and move each other one into a probe of its own, with \
                     its own `timeout`; every probe in the list must pass",
                )
            };
            self.err(at, message, help);
            return None;
        }
        let timeout = match &p.timeout {
            Some(t) => self.positive(t),
            None => {
                self.err(
                    span.clone(),
                    "this probe has no `timeout`: every probe needs a deadline",
                    "add e.g. `timeout = \"30s\"`: how long to keep trying before the start fails",
                );
                None
            }
        };
        let interval = match &p.interval {
            Some(i) => self.positive(i),
            None => Some(DEFAULT_INTERVAL),
        };
        if p.http.is_none() {
            let kind = found_kind(&kinds);
            let status = p.status.as_ref().map(|s| ("status", s.span()));
            let body = p.body.as_ref().map(|b| ("body", b.span()));
            let post = p.post.as_ref().map(|b| ("post", b.span()));
            for (key, at) in status.into_iter().chain(body).chain(post) {
                self.err(
                    at,
                    format!("`{key}` only applies to `http` probes, and this is a `{kind}` probe"),
                    format!("remove `{key}`, or make this an `http` probe"),
                );
            }
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
                        self.err(
                            s.span(),
                            format!("`{}` is not an HTTP status", s.get_ref()),
                            "use a status code from 100 to 599, e.g. `status = 200`",
                        );
                        200
                    }
                },
            };
            let body = p.body.as_ref().and_then(|b| self.regex(b));
            ProbeKind::Http {
                url,
                status,
                body,
                post: p.post,
            }
        } else if let Some(log) = p.log {
            let pattern = self.regex(&log)?;
            ProbeKind::Log { pattern }
        } else {
            let argv = p.command.unwrap_or_default();
            if argv.is_empty() {
                self.err(
                    span.clone(),
                    "this probe's `command` is empty",
                    "name the program to run first, then its arguments, e.g. \
                     `command = [\"pg_isready\", \"-h\", \"{{ node.host }}\"]`",
                );
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
            let wanted = if wanted.starts_with("SIG") {
                wanted
            } else {
                format!("SIG{wanted}")
            };
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
                        SIGNALS
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
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
    fn check_after<'a>(&mut self, clusters: &'a IndexMap<String, ClusterSpec>) {
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
                            "{hint}`after` lists clusters of this spec that must be ready first: {}",
                            clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                } else if dep.get_ref() == &c.name {
                    self.err(
                        dep.span(),
                        format!("cluster `{}` cannot start after itself", c.name),
                        format!("remove `{}` from its `after`", c.name),
                    );
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
        // Every cluster left waits for another one left: follow those from the first until one
        // repeats, which closes a cycle.
        let waits_for = |c: &'a ClusterSpec| -> Option<&'a Spanned<String>> {
            c.after.iter().find(|d| {
                !done.contains(d.get_ref().as_str())
                    && clusters.contains_key(d.get_ref())
                    && d.get_ref() != &c.name
            })
        };
        if let Some(first) = clusters.values().find(|c| !done.contains(c.name.as_str())) {
            let mut path: Vec<&ClusterSpec> = vec![first];
            let cycle = loop {
                let last = path[path.len() - 1];
                let Some(next) = waits_for(last).and_then(|d| clusters.get(d.get_ref())) else {
                    break path.clone(); // unreachable: every cluster left waits for another
                };
                if let Some(i) = path.iter().position(|c| c.name == next.name) {
                    break path[i..].to_vec();
                }
                path.push(next);
            };
            let mut names: Vec<&str> = cycle.iter().map(|c| c.name.as_str()).collect();
            names.push(names[0]);
            let at = waits_for(cycle[0]).map_or(cycle[0].span.clone(), |d| d.span());
            let e = self
                .src
                .error(
                    at,
                    format!("clusters wait for each other in a cycle: {}", names.join(" → ")),
                )
                .with_label(format!("`{}` waits for `{}`", names[0], names[1]))
                .with_help(
                    "remove one of these `after` entries, so that one of the clusters can start first",
                );
            self.errors.push(e);
        }
    }
}

/// The name of the one check in a probe (`tcp`, `http`, `log` or `command`).
/// How a name appears in a `TROUPE_*` variable.
fn env_name(name: &str) -> String {
    name.to_ascii_uppercase().replace('-', "_")
}

fn found_kind(kinds: &[bool; 4]) -> &'static str {
    let names = ["tcp", "http", "log", "command"];
    names
        .iter()
        .zip(kinds)
        .find(|(_, k)| **k)
        .map_or("command", |(n, _)| *n)
}

/// For a regex written verbatim in the spec, the place its error points at: `regex` shows the
/// pattern with `^` under the fault.
fn regex_error_span(text: &str, r: &Spanned<String>, detail: &str) -> Option<Range<usize>> {
    let mut lines = detail.lines().skip(1);
    let pattern_line = lines.next()?.strip_prefix("    ")?;
    let carets = lines.next()?.strip_prefix("    ")?;
    if pattern_line != r.get_ref() {
        return None;
    }
    let col = carets.find('^')?;
    let width = carets[col..].chars().take_while(|c| *c == '^').count();
    let start_byte = pattern_line.char_indices().nth(col).map(|(i, _)| i)?;
    let end_byte = pattern_line
        .char_indices()
        .nth(col + width)
        .map_or(pattern_line.len(), |(i, _)| i);
    // Only a string without escapes holds the pattern verbatim.
    let written = text.get(r.span())?;
    let at = ["'''", "\"\"\"", "'", "\""].iter().find_map(|d| {
        let inner = written.strip_prefix(d)?.strip_suffix(d)?;
        let (inner, newline) = match inner.strip_prefix('\n') {
            Some(rest) if d.len() == 3 => (rest, 1),
            _ => (inner, 0),
        };
        (inner == r.get_ref()).then_some(r.span().start + d.len() + newline)
    })?;
    Some(at + start_byte..at + end_byte)
}

impl Spec {
    /// Clusters in an order that respects `after`, otherwise file order.
    pub fn start_order(&self) -> Vec<&ClusterSpec> {
        let mut out: Vec<&ClusterSpec> = Vec::new();
        while out.len() < self.clusters.len() {
            let before = out.len();
            for c in self.clusters.values() {
                if !out.iter().any(|o| o.name == c.name)
                    && c.after
                        .iter()
                        .all(|d| out.iter().any(|o| &o.name == d.get_ref()))
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
