//! The history format: what every client of a workload saw, one operation per line.
//!
//! A history is JSON Lines. Each line is one [`Op`]: either the *invocation* of an operation by a
//! client process, or its *completion*. The meaning of a completion follows Jepsen, so that
//! histories and intuitions carry over between the tools:
//!
//! - `ok`: the operation happened, and `value` holds what it returned;
//! - `fail`: the operation certainly did not happen;
//! - `info`: nobody knows (a timeout, a dropped connection). It may have happened at any moment
//!   after its invocation, or never. It has no return: the process that got it is never used
//!   again, and the workload goes on with a fresh process id.
//!
//! ```text
//! {"process":3,"type":"invoke","f":"write","key":"k1","value":17,"time":1200000}
//! {"process":3,"type":"ok","f":"write","key":"k1","value":17,"time":1750000,"node":"n2"}
//! ```
//!
//! The reader is a streaming iterator over any [`BufRead`], so a history of millions of
//! operations never has to be held as text, and every error names the line it came from and what
//! was expected there. It also reads Jepsen's own text form (one EDN map per line, see
//! [`Format::Jepsen`]) so users can check histories they already have. Neither reader judges
//! whether a history makes sense (a completion with no invocation, say): that is the checker's job,
//! which knows the whole history.
//!
//! ```
//! use troupe_spec::history::{Format, Op, OpType, Reader, Writer};
//!
//! let mut out = Vec::new();
//! let mut writer = Writer::new(&mut out);
//! writer.write(&Op::new(0, OpType::Invoke, "read", 10).with_key("k1")).unwrap();
//! writer.write(&Op::new(0, OpType::Ok, "read", 25).with_key("k1").with_value(3)).unwrap();
//!
//! let ops: Vec<Op> = Reader::new(&out[..], Format::JsonLines)
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(ops[1].value, 3);
//!
//! let jepsen = r#"{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}"#;
//! let op = Reader::new(jepsen.as_bytes(), Format::Jepsen).next().unwrap().unwrap();
//! assert_eq!((op.f.as_str(), op.key.as_deref(), op.time), ("append", Some("4"), 0));
//! ```

use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

/// One line of a history: the invocation or the completion of an operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Op {
    /// The client that ran the operation. Never reused after an `info` completion.
    pub process: u64,
    /// Invocation, or which kind of completion.
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The operation's name: `read`, `write`, `cas`, `get`, `put`, `append`, `add`, ...
    pub f: String,
    /// The key it worked on, if the model has keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its argument (on an invocation) or its result (on an `ok`); any JSON. Absent means `null`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub value: Value,
    /// Nanoseconds since the run started, from a monotonic clock.
    pub time: u64,
    /// The node that served it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why it failed or is unknown, in the client's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Whether a line invokes an operation or completes it, and how.
///
/// Deliberately exhaustive: checkers must reason about every case, and these four are the
/// whole of Jepsen's model of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// The client called the operation.
    Invoke,
    /// It returned successfully: it happened.
    Ok,
    /// It returned an error that proves it did not happen.
    Fail,
    /// Unknown outcome: it may have happened, at any time after its call, or never.
    Info,
}

impl OpType {
    /// The name used in both formats: `invoke`, `ok`, `fail`, `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Invoke => "invoke",
            OpType::Ok => "ok",
            OpType::Fail => "fail",
            OpType::Info => "info",
        }
    }

    fn from_name(name: &str) -> Option<OpType> {
        Some(match name {
            "invoke" => OpType::Invoke,
            "ok" => OpType::Ok,
            "fail" => OpType::Fail,
            "info" => OpType::Info,
            _ => return None,
        })
    }
}

impl fmt::Display for OpType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Op {
    /// An operation with no key, value, node or error; add those with the `with_` methods.
    pub fn new(process: u64, kind: OpType, f: impl Into<String>, time: u64) -> Op {
        Op {
            process,
            kind,
            f: f.into(),
            key: None,
            value: Value::Null,
            time,
            node: None,
            error: None,
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Op {
        self.key = Some(key.into());
        self
    }

    pub fn with_value(mut self, value: impl Into<Value>) -> Op {
        self.value = value.into();
        self
    }

    pub fn with_node(mut self, node: impl Into<String>) -> Op {
        self.node = Some(node.into());
        self
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Op {
        self.error = Some(error.into());
        self
    }
}

/// The text forms a history can be read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// troupe's own: one JSON object per line, as written by [`Writer`].
    JsonLines,
    /// Jepsen's: one EDN map per line, such as
    /// `{:process 0, :type :invoke, :f :append, :key "4", :value "x 0 1 y"}`.
    ///
    /// Understood: keywords, strings (with `\"`, `\\`, `\n`, `\t`, `\r`, `\uXXXX` escapes),
    /// integers, `nil`, `true`, `false`, and vectors or lists of those (as values, nested).
    /// Keywords become strings without the colon. The keys read are `:process`, `:type`, `:f`,
    /// `:key` (a string, keyword or integer, kept as text), `:value`, `:time`, `:node` and
    /// `:error`; `:index` is accepted and ignored. A line without `:time` gets its 0-based line
    /// index as time, which keeps the order, and the order is what a checker needs. Lines whose
    /// `:process` is `:nemesis` record faults, not client operations, and are skipped.
    Jepsen,
}

/// Why a history could not be read. Every variant names the 1-based line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    #[error("read line {line} of the history")]
    Read {
        line: u64,
        #[source]
        source: io::Error,
    },
    #[error("parse line {line}, column {column}: {message}")]
    Syntax {
        line: u64,
        column: u64,
        /// What was wrong, and what was expected there.
        message: String,
    },
}

impl HistoryError {
    /// The 1-based line the error is on.
    pub fn line(&self) -> u64 {
        match self {
            HistoryError::Read { line, .. } | HistoryError::Syntax { line, .. } => *line,
        }
    }
}

/// Writes a history as JSON Lines, one [`Op`] per line.
///
/// Buffering is the caller's choice: wrap a file in a `BufWriter`, and call [`Writer::flush`]
/// (or drop the `BufWriter`) at the end.
#[derive(Debug)]
pub struct Writer<W> {
    out: W,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Writer { out }
    }

    /// Appends one operation and its newline.
    pub fn write(&mut self, op: &Op) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, op)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

/// Reads a history line by line: an iterator of `Result<Op, HistoryError>`.
///
/// Blank lines are skipped. A syntax error is yielded and reading goes on with the next line;
/// an I/O error (or text that is not UTF-8) is yielded and ends the iteration.
#[derive(Debug)]
pub struct Reader<R> {
    input: R,
    format: Format,
    line: u64,
    buf: String,
    done: bool,
}

impl<R: BufRead> Reader<R> {
    pub fn new(input: R, format: Format) -> Self {
        Reader {
            input,
            format,
            line: 0,
            buf: String::new(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for Reader<R> {
    type Item = Result<Op, HistoryError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            self.line = self.line.saturating_add(1);
            match self.input.read_line(&mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    let text = self.buf.trim();
                    if text.is_empty() {
                        continue;
                    }
                    let parsed = match self.format {
                        Format::JsonLines => parse_json_line(text, self.line),
                        Format::Jepsen => parse_jepsen_line(text, self.line),
                    };
                    match parsed {
                        Ok(Some(op)) => return Some(Ok(op)),
                        Ok(None) => continue,
                        Err(e) => return Some(Err(e)),
                    }
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(HistoryError::Read {
                        line: self.line,
                        source,
                    }));
                }
            }
        }
        None
    }
}

fn parse_json_line(text: &str, line: u64) -> Result<Option<Op>, HistoryError> {
    serde_json::from_str(text).map(Some).map_err(|e| {
        // serde_json appends " at line L column C" to its message; the line is always 1 here,
        // so keep the message and report the file's line and the column separately.
        let message = e.to_string();
        let message = match message.rfind(" at line ") {
            Some(at) => message[..at].to_string(),
            None => message,
        };
        HistoryError::Syntax {
            line,
            column: u64::try_from(e.column()).unwrap_or(u64::MAX),
            message,
        }
    })
}

/// Deepest nesting of vectors accepted in a Jepsen value; deeper is an error, not a stack
/// overflow.
const MAX_DEPTH: usize = 32;

fn parse_jepsen_line(text: &str, line: u64) -> Result<Option<Op>, HistoryError> {
    let mut p = Edn { text, pos: 0, line };
    p.op()
}

/// A parser for the small part of EDN that Jepsen histories use, over one line.
struct Edn<'a> {
    text: &'a str,
    pos: usize,
    line: u64,
}

/// One parsed EDN value, before it is given a meaning by the key it sits under.
enum Atom {
    Keyword(String),
    Json(Value),
}

impl Atom {
    fn into_json(self) -> Value {
        match self {
            Atom::Keyword(k) => Value::String(k),
            Atom::Json(v) => v,
        }
    }

    fn describe(&self) -> String {
        match self {
            Atom::Keyword(k) => format!("the keyword :{k}"),
            Atom::Json(Value::Null) => "nil".to_string(),
            Atom::Json(Value::String(s)) => format!("the string {s:?}"),
            Atom::Json(Value::Number(n)) => format!("the integer {n}"),
            Atom::Json(Value::Bool(b)) => format!("{b}"),
            Atom::Json(Value::Array(_)) => "a vector".to_string(),
            Atom::Json(Value::Object(_)) => "a map".to_string(),
        }
    }
}

impl<'a> Edn<'a> {
    fn error_at(&self, pos: usize, message: impl Into<String>) -> HistoryError {
        HistoryError::Syntax {
            line: self.line,
            column: self.column(pos),
            message: message.into(),
        }
    }

    /// The 1-based column, in characters, of a byte offset.
    fn column(&self, pos: usize) -> u64 {
        let before = self.text.get(..pos).unwrap_or(self.text);
        u64::try_from(before.chars().count())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self, c: char) {
        self.pos = self.pos.saturating_add(c.len_utf8());
    }

    /// Skips whitespace, commas (whitespace in EDN) and `;` comments.
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == ';' {
                self.pos = self.text.len();
            } else if c.is_whitespace() || c == ',' {
                self.bump(c);
            } else {
                break;
            }
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the line".to_string(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn op(&mut self) -> Result<Option<Op>, HistoryError> {
        self.skip_ws();
        if self.peek() != Some('{') {
            return Err(self.error_at(
                self.pos,
                format!("expected a map starting with '{{', found {}", self.found()),
            ));
        }
        let open = self.pos;
        self.bump('{');

        let mut fields = Fields::default();
        loop {
            self.skip_ws();
            match self.peek() {
                Some('}') => {
                    self.bump('}');
                    break;
                }
                None => {
                    return Err(self.error_at(
                        self.pos,
                        format!(
                            "expected a key or '}}', found the end of the line (the map opened \
                             at column {} is not closed)",
                            self.column(open)
                        ),
                    ));
                }
                Some(_) => {}
            }
            let key_pos = self.pos;
            let key = match self.atom(0)? {
                Atom::Keyword(k) => k,
                other => {
                    return Err(self.error_at(
                        key_pos,
                        format!("expected a keyword as key, found {}", other.describe()),
                    ));
                }
            };
            self.skip_ws();
            if matches!(self.peek(), Some('}') | None) {
                return Err(self.error_at(self.pos, format!("expected a value for :{key}")));
            }
            let value_pos = self.pos;
            let value = self.atom(0)?;
            fields.set(self, &key, key_pos, value, value_pos)?;
        }
        self.skip_ws();
        if self.peek().is_some() {
            return Err(self.error_at(
                self.pos,
                format!(
                    "expected the end of the line after the map, found {}",
                    self.found()
                ),
            ));
        }
        fields.finish(self, open)
    }

    fn atom(&mut self, depth: usize) -> Result<Atom, HistoryError> {
        let start = self.pos;
        match self.peek() {
            Some(':') => {
                self.bump(':');
                let name = self.symbol();
                if name.is_empty() {
                    return Err(self.error_at(start, "expected a keyword name after ':'"));
                }
                Ok(Atom::Keyword(name.to_string()))
            }
            Some('"') => self.string().map(|s| Atom::Json(Value::String(s))),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => self.number(),
            Some(open @ ('[' | '(')) => {
                if depth >= MAX_DEPTH {
                    return Err(self.error_at(
                        start,
                        format!("vectors nest deeper than {MAX_DEPTH} levels"),
                    ));
                }
                let close = if open == '[' { ']' } else { ')' };
                self.bump(open);
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.peek() {
                        Some(c) if c == close => {
                            self.bump(c);
                            return Ok(Atom::Json(Value::Array(items)));
                        }
                        None | Some(')' | ']' | '}') => {
                            return Err(self.error_at(
                                self.pos,
                                format!(
                                    "expected {close:?} to close the {} opened at column {}, \
                                     found {}",
                                    if open == '[' { "vector" } else { "list" },
                                    self.column(start),
                                    self.found()
                                ),
                            ));
                        }
                        Some(_) => items.push(self.atom(depth.saturating_add(1))?.into_json()),
                    }
                }
            }
            Some('{') => Err(self.error_at(start, "maps are not supported as values")),
            Some('#') => {
                Err(self.error_at(start, "tagged literals and sets (#...) are not supported"))
            }
            Some(c) if c.is_alphabetic() => {
                let word = self.symbol();
                match word {
                    "nil" => Ok(Atom::Json(Value::Null)),
                    "true" => Ok(Atom::Json(Value::Bool(true))),
                    "false" => Ok(Atom::Json(Value::Bool(false))),
                    _ => Err(self.error_at(
                        start,
                        format!(
                            "symbols such as {word:?} are not supported (expected a keyword, \
                             string, integer, nil, true, false or vector)"
                        ),
                    )),
                }
            }
            _ => Err(self.error_at(
                start,
                format!(
                    "expected a keyword, string, integer, nil, true, false or vector, found {}",
                    self.found()
                ),
            )),
        }
    }

    /// The characters of a keyword or symbol name.
    fn symbol(&mut self) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || "*+!-_?<>=/.'&%$".contains(c) {
                self.bump(c);
            } else {
                break;
            }
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    fn string(&mut self) -> Result<String, HistoryError> {
        let start = self.pos;
        self.bump('"');
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error_at(
                    self.pos,
                    format!(
                        "expected '\"' to close the string opened at column {}",
                        self.column(start)
                    ),
                ));
            };
            let at = self.pos;
            self.bump(c);
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.error_at(at, "expected an escape after '\\'"));
                    };
                    self.bump(e);
                    match e {
                        '"' => out.push('"'),
                        '\\' => out.push('\\'),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => {
                            let hex = self.rest().get(..4).unwrap_or("");
                            let code = (hex.len() == 4
                                && hex.chars().all(|h| h.is_ascii_hexdigit()))
                            .then(|| u32::from_str_radix(hex, 16).ok())
                            .flatten()
                            .and_then(char::from_u32);
                            match code {
                                Some(ch) => {
                                    out.push(ch);
                                    self.pos = self.pos.saturating_add(4);
                                }
                                None => {
                                    return Err(self.error_at(
                                        at,
                                        "expected four hex digits of a character after '\\u'",
                                    ));
                                }
                            }
                        }
                        other => {
                            return Err(self.error_at(
                                at,
                                format!(
                                    "unknown escape '\\{other}' (expected one of \\\" \\\\ \\n \
                                     \\t \\r \\b \\f \\uXXXX)"
                                ),
                            ));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn number(&mut self) -> Result<Atom, HistoryError> {
        let start = self.pos;
        if let Some(sign @ ('-' | '+')) = self.peek() {
            self.bump(sign);
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '.' {
                self.bump(c);
            } else {
                break;
            }
        }
        let text = self.text.get(start..self.pos).unwrap_or("");
        let digits = text.strip_prefix('+').unwrap_or(text);
        if let Ok(n) = digits.parse::<i64>() {
            return Ok(Atom::Json(Value::Number(Number::from(n))));
        }
        if let Ok(n) = digits.parse::<u64>() {
            return Ok(Atom::Json(Value::Number(Number::from(n))));
        }
        Err(self.error_at(
            start,
            format!("expected an integer that fits in 64 bits, found {text:?}"),
        ))
    }
}

/// The fields of one Jepsen map as they are found.
#[derive(Default)]
struct Fields {
    process: Option<Process>,
    kind: Option<OpType>,
    f: Option<String>,
    key: Option<String>,
    value: Option<Value>,
    time: Option<u64>,
    node: Option<String>,
    error: Option<String>,
    index: bool,
}

enum Process {
    Client(u64),
    Nemesis,
}

impl Fields {
    fn set(
        &mut self,
        p: &Edn<'_>,
        key: &str,
        key_pos: usize,
        value: Atom,
        value_pos: usize,
    ) -> Result<(), HistoryError> {
        let duplicate = match key {
            "process" => self.process.is_some(),
            "type" => self.kind.is_some(),
            "f" => self.f.is_some(),
            "key" => self.key.is_some(),
            "value" => self.value.is_some(),
            "time" => self.time.is_some(),
            "node" => self.node.is_some(),
            "error" => self.error.is_some(),
            "index" => self.index,
            other => {
                return Err(p.error_at(
                    key_pos,
                    format!(
                        "unknown key :{other} (expected :process, :type, :f, :key, :value, \
                         :time, :node, :error or :index)"
                    ),
                ));
            }
        };
        if duplicate {
            return Err(p.error_at(key_pos, format!(":{key} appears twice")));
        }
        let wrong = |expected: &str, value: &Atom| {
            p.error_at(
                value_pos,
                format!("expected {expected} for :{key}, found {}", value.describe()),
            )
        };
        match key {
            "process" => {
                self.process = Some(match &value {
                    Atom::Keyword(k) if k == "nemesis" => Process::Nemesis,
                    Atom::Json(Value::Number(n)) => Process::Client(
                        n.as_u64()
                            .ok_or_else(|| wrong("a non-negative integer or :nemesis", &value))?,
                    ),
                    _ => return Err(wrong("a non-negative integer or :nemesis", &value)),
                });
            }
            "type" => {
                self.kind = Some(match &value {
                    Atom::Keyword(k) => OpType::from_name(k)
                        .ok_or_else(|| wrong(":invoke, :ok, :fail or :info", &value))?,
                    _ => return Err(wrong(":invoke, :ok, :fail or :info", &value)),
                });
            }
            "f" => {
                self.f = Some(match value {
                    Atom::Keyword(k) => k,
                    Atom::Json(Value::String(s)) => s,
                    other => return Err(wrong("a keyword or string", &other)),
                });
            }
            "key" | "node" => {
                let text = match value {
                    Atom::Keyword(k) => k,
                    Atom::Json(Value::String(s)) => s,
                    Atom::Json(Value::Number(n)) => n.to_string(),
                    other => return Err(wrong("a string, keyword or integer", &other)),
                };
                if key == "key" {
                    self.key = Some(text);
                } else {
                    self.node = Some(text);
                }
            }
            "value" => self.value = Some(value.into_json()),
            "time" => {
                self.time = Some(match &value {
                    Atom::Json(Value::Number(n)) => n
                        .as_u64()
                        .ok_or_else(|| wrong("a non-negative integer (nanoseconds)", &value))?,
                    _ => return Err(wrong("a non-negative integer (nanoseconds)", &value)),
                });
            }
            "error" => {
                self.error = Some(match value {
                    Atom::Keyword(k) => k,
                    Atom::Json(Value::String(s)) => s,
                    other => other.into_json().to_string(),
                });
            }
            _ => self.index = true,
        }
        Ok(())
    }

    fn finish(self, p: &Edn<'_>, open: usize) -> Result<Option<Op>, HistoryError> {
        let missing = |key: &str| p.error_at(open, format!("the map has no :{key}"));
        let process = match self.process.ok_or_else(|| missing("process"))? {
            Process::Nemesis => return Ok(None),
            Process::Client(n) => n,
        };
        let kind = self.kind.ok_or_else(|| missing("type"))?;
        let f = self.f.ok_or_else(|| missing("f"))?;
        Ok(Some(Op {
            process,
            kind,
            f,
            key: self.key,
            value: self.value.unwrap_or(Value::Null),
            time: self.time.unwrap_or(p.line.saturating_sub(1)),
            node: self.node,
            error: self.error,
        }))
    }
}

/// Reads a whole history into memory, stopping at the first error.
pub fn read_all(input: impl BufRead, format: Format) -> Result<Vec<Op>, HistoryError> {
    Reader::new(input, format).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jepsen(text: &str) -> Result<Option<Op>, HistoryError> {
        parse_jepsen_line(text, 7)
    }

    fn jepsen_err(text: &str) -> String {
        match jepsen(text) {
            Err(e) => e.to_string(),
            Ok(op) => panic!("expected an error for {text}, got {op:?}"),
        }
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let op = Op::new(3, OpType::Ok, "cas", 1_750_000)
            .with_key("k1")
            .with_value(serde_json::json!([1, 2]))
            .with_node("n2")
            .with_error("none");
        let mut w = Writer::new(Vec::new());
        w.write(&op).unwrap();
        w.write(&Op::new(4, OpType::Invoke, "read", 2)).unwrap();
        let text = String::from_utf8(w.into_inner()).unwrap();
        assert_eq!(
            text.lines().nth(1),
            Some(r#"{"process":4,"type":"invoke","f":"read","time":2}"#)
        );
        let back = read_all(text.as_bytes(), Format::JsonLines).unwrap();
        assert_eq!(back[0], op);
        assert_eq!(back[1].value, Value::Null);
    }

    #[test]
    fn json_errors_name_the_line_and_what_was_expected() {
        let text = "\n{\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"time\":1}\n\
                    {\"process\":1,\"type\":\"done\",\"f\":\"read\",\"time\":2}\n\
                    {\"process\":1,\"type\":\"ok\",\"f\":\"read\"}\n\
                    {\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"time\":3,\"colour\":1}\n";
        let results: Vec<_> = Reader::new(text.as_bytes(), Format::JsonLines).collect();
        assert!(results[0].is_ok());
        let errors: Vec<String> = results[1..]
            .iter()
            .map(|r| r.as_ref().unwrap_err().to_string())
            .collect();
        assert!(
            errors[0].starts_with("parse line 3, column ")
                && errors[0].contains("unknown variant `done`, expected one of `invoke`"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("parse line 4") && errors[1].contains("missing field `time`"),
            "{}",
            errors[1]
        );
        assert!(
            errors[2].contains("unknown field `colour`"),
            "{}",
            errors[2]
        );
        assert!(!errors[2].contains("at line 1"), "{}", errors[2]);
    }

    #[test]
    fn invalid_utf8_is_a_read_error_on_its_line() {
        let bytes = b"{\"process\":1,\"type\":\"invoke\",\"f\":\"r\",\"time\":1}\n\xff\xfe\n";
        let results: Vec<_> = Reader::new(&bytes[..], Format::JsonLines).collect();
        assert_eq!(results.len(), 2);
        let err = results[1].as_ref().unwrap_err();
        assert!(matches!(err, HistoryError::Read { line: 2, .. }), "{err}");
    }

    #[test]
    fn jepsen_line_with_every_supported_form() {
        let op = jepsen(
            r#"{:process 12, :type :ok, :f :txn, :key 5, :value [[:append 1 -2] [:r 3 nil] ("a\"b\\n\u0041" true)], :time 99, :node "n1", :error [:timeout], :index 4}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(op.process, 12);
        assert_eq!(op.kind, OpType::Ok);
        assert_eq!(op.f, "txn");
        assert_eq!(op.key.as_deref(), Some("5"));
        assert_eq!(
            op.value,
            serde_json::json!([["append", 1, -2], ["r", 3, null], ["a\"b\\nA", true]])
        );
        assert_eq!(op.time, 99);
        assert_eq!(op.node.as_deref(), Some("n1"));
        assert_eq!(op.error.as_deref(), Some(r#"["timeout"]"#));
    }

    #[test]
    fn jepsen_time_defaults_to_the_line_index_and_nemesis_is_skipped() {
        let text = "{:process 0, :type :invoke, :f :get, :key \"1\", :value nil}\n\
                    {:process :nemesis, :type :info, :f :start, :value nil}\n\
                    \n\
                    {:process 0, :type :ok, :f :get, :key \"1\", :value \"x\"}\n";
        let ops = read_all(text.as_bytes(), Format::Jepsen).unwrap();
        assert_eq!(ops.len(), 2);
        assert_eq!((ops[0].time, ops[1].time), (0, 3));
        assert_eq!(ops[1].value, "x");
    }

    #[test]
    fn jepsen_errors_are_located_and_say_what_was_expected() {
        let cases = [
            ("", "expected a map"),
            ("{:process 0 :type :invoke", "expected a key or '}'"),
            (
                "{:process 0, :type :done, :f :get}",
                "expected :invoke, :ok, :fail or :info",
            ),
            (
                "{:process -1, :type :ok, :f :get}",
                "a non-negative integer or :nemesis",
            ),
            ("{:process 0, :type :ok}", "the map has no :f"),
            (
                "{:process 0, :type :ok, :f :get, :value {:a 1}}",
                "maps are not supported",
            ),
            (
                "{:process 0, :type :ok, :f :get, :value 1.5}",
                "expected an integer",
            ),
            (
                "{:process 0, :type :ok, :f :get, :value \"abc}",
                "to close the string",
            ),
            (
                "{:process 0, :type :ok, :f :get, :value \"a\\qb\"}",
                "unknown escape",
            ),
            (
                "{:process 0, :type :ok, :f :get, :value \"\\u12\"}",
                "four hex digits",
            ),
            (
                "{:process 0, :type :ok, :f :get, :value [1 2}",
                "to close the vector",
            ),
            (
                "{:process 0, :type :ok, :f :get, :value foo}",
                "symbols such as \"foo\"",
            ),
            (
                "{:process 0, :type :ok, :f :get, :colour 1}",
                "unknown key :colour",
            ),
            (
                "{:process 0, :process 1, :type :ok, :f :get}",
                ":process appears twice",
            ),
            (
                "{:process 0, :type :ok, :f :get} extra",
                "expected the end of the line",
            ),
            (
                "{:process 0, :type :ok, :f :get, :value 99999999999999999999}",
                "64 bits",
            ),
            (
                "{:process 0, :type :ok, :f :get, :value #{1}}",
                "not supported",
            ),
            ("{\"process\" 0}", "expected a keyword as key"),
            (
                "{:process 0, :type :ok, :f :get, :value}",
                "expected a value for :value",
            ),
            ("{:process 0, :type :ok, :f :get, :time -5}", "nanoseconds"),
            ("{: 0}", "keyword name"),
        ];
        for (text, expected) in cases {
            let err = jepsen_err(text);
            assert!(err.starts_with("parse line 7, column "), "{text}: {err}");
            assert!(err.contains(expected), "{text}: {err}");
        }
        let deep = format!(
            "{{:process 0, :type :ok, :f :get, :value {}}}",
            "[".repeat(10_000)
        );
        assert!(jepsen_err(&deep).contains("nest deeper"));
    }

    #[test]
    fn jepsen_error_columns_count_characters() {
        let err = jepsen_err("{:process 0, :type :ok, :f :é, :value ?}");
        assert!(err.starts_with("parse line 7, column 39:"), "{err}");
    }

    #[test]
    fn jepsen_reader_never_panics_on_truncated_lines() {
        let line =
            r#"{:process 0, :type :invoke, :f :append, :key "4", :value ["x \"0\" 1 y" 5 nil :k]}"#;
        for cut in 0..=line.len() {
            if let Some(prefix) = line.get(..cut) {
                let _ = jepsen(prefix);
            }
        }
        assert!(jepsen(line).unwrap().is_some());
    }
}
