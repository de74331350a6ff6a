//! Errors that point into a spec: file, line, column, the dotted key, what was expected and how
//! to fix it. Rendered with a source snippet by miette; `Debug` gives a plain, compact form for
//! test output and logs.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, NamedSource, SourceSpan};
use toml::de::{DeTable, DeValue};

/// The text of a spec and where it came from; every [`SpecError`] keeps one.
#[derive(Clone)]
pub struct SpecSource {
    /// The path as the user gave it (used in messages).
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl fmt::Debug for SpecSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecSource")
            .field("path", &self.path)
            .finish()
    }
}

impl SpecSource {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        SpecSource {
            path: path.into(),
            text: text.into(),
        }
    }

    /// The directory relative paths in the spec are resolved against.
    pub fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// An error at `span`. The dotted key the span lies under is found from the TOML itself,
    /// so callers only say what is wrong.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>) -> SpecError {
        let (line, column) = self.line_col(span.start);
        SpecError {
            message: message.into(),
            file: self.path.clone(),
            line,
            column,
            key: key_at(&self.text, span.clone()),
            label: "here".to_string(),
            help: None,
            src: NamedSource::new(self.path.display().to_string(), self.text.clone()),
            span: span.into(),
        }
    }
}

/// One problem in a spec.
#[derive(thiserror::Error, Diagnostic)]
#[error("{}", self.headline())]
pub struct SpecError {
    /// What is wrong and what was expected.
    pub message: String,
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending key, e.g. `clusters.main.ready[0].timeout`.
    pub key: Option<String>,
    /// How to fix it.
    #[help]
    pub help: Option<String>,
    label: String,
    #[source_code]
    src: NamedSource<Arc<str>>,
    #[label("{label}")]
    span: SourceSpan,
}

impl SpecError {
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Overrides the key found from the span (for errors about a whole table).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    fn headline(&self) -> String {
        match &self.key {
            Some(key) => format!("key `{key}`: {}", self.message),
            None => self.message.clone(),
        }
    }

    /// `file:line:col: key `k`: message` followed by the hint, without a snippet.
    pub fn plain(&self) -> String {
        let mut s = format!(
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.headline()
        );
        if let Some(help) = &self.help {
            s.push_str(&format!("\n  (hint: {help})"));
        }
        s
    }
}

impl fmt::Debug for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.plain())
    }
}

/// A spec (or scenario) that failed validation, with every problem found. Nothing was started.
#[derive(thiserror::Error, Diagnostic)]
#[error("{} has {} problem{}", .file.display(), .errors.len(), if .errors.len() == 1 { "" } else { "s" })]
pub struct InvalidSpec {
    pub file: PathBuf,
    #[related]
    pub errors: Vec<SpecError>,
}

impl fmt::Debug for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{self}")?;
        for e in &self.errors {
            writeln!(f, "{}", e.plain())?;
        }
        Ok(())
    }
}

impl From<SpecError> for InvalidSpec {
    fn from(e: SpecError) -> Self {
        InvalidSpec {
            file: e.file.clone(),
            errors: vec![e],
        }
    }
}

/// Words longer than this get no did-you-mean.
const MAX_SUGGEST_LEN: usize = 64;

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    // Nobody misspells a 100-character name: and the distance costs length squared.
    if len > MAX_SUGGEST_LEN {
        return None;
    }
    let limit = (len / 3).max(1);
    candidates
        .into_iter()
        // The distance is at least the difference in length.
        .filter(|c| c.chars().count().abs_diff(len) <= limit)
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbouring letters (`nmae` for `name`) is one edit, like
/// inserting, deleting or changing one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j - 1] + cost)
                .min(d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The dotted path of the most specific key whose entry contains `span`, e.g.
/// `clusters.main.ready[0].timeout`. Table headers only span the header line, so a span inside a
/// table's body that no entry contains is attributed to the nearest header before it.
fn key_at(text: &str, span: Range<usize>) -> Option<String> {
    // Recovering from errors (a duplicate key) still gives the keys around them.
    let (table, _) = DeTable::parse_recoverable(text);
    let mut entries = Vec::new();
    collect_table(table.get_ref(), "", &mut entries);
    let at = span.start;
    let inside = |r: &Range<usize>| r.start <= at && at < r.end.max(r.start + 1);
    entries
        .iter()
        .filter(|e| inside(&e.key) || inside(&e.value))
        .min_by_key(|e| {
            let len = |r: &Range<usize>| if inside(r) { r.len() } else { usize::MAX };
            (
                len(&e.key).min(len(&e.value)),
                std::cmp::Reverse(e.path.len()),
            )
        })
        .or_else(|| {
            entries
                .iter()
                .filter(|e| e.header && e.key.start <= at)
                .max_by_key(|e| (e.key.start, e.path.len()))
        })
        .map(|e| e.path.clone())
}

/// Where the key at the dotted `path` is first written, e.g. the `nodes` of `nodes = 3`.
pub(crate) fn key_span(text: &str, path: &str) -> Option<Range<usize>> {
    let (table, _) = DeTable::parse_recoverable(text);
    let mut entries = Vec::new();
    collect_table(table.get_ref(), "", &mut entries);
    entries.into_iter().find(|e| e.path == path).map(|e| e.key)
}

/// Where a key named `name` is written inside `within`, e.g. the bad key in a table that an
/// error spans as a whole.
pub(crate) fn key_span_within(
    text: &str,
    within: Range<usize>,
    name: &str,
) -> Option<Range<usize>> {
    let (table, _) = DeTable::parse_recoverable(text);
    let mut entries = Vec::new();
    collect_table(table.get_ref(), "", &mut entries);
    let last = quote_key(name);
    entries
        .into_iter()
        .filter(|e| e.path == last || e.path.ends_with(&format!(".{last}")))
        .map(|e| e.key)
        .find(|k| within.start <= k.start && k.end <= within.end)
}

struct Entry {
    path: String,
    key: Range<usize>,
    value: Range<usize>,
    /// A table or array of tables, whose span is only its header.
    header: bool,
}

fn collect_table(table: &DeTable<'_>, prefix: &str, out: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        let key_text = quote_key(key.get_ref());
        let path = if prefix.is_empty() {
            key_text
        } else {
            format!("{prefix}.{key_text}")
        };
        let header = matches!(value.get_ref(), DeValue::Table(_) | DeValue::Array(_));
        out.push(Entry {
            path: path.clone(),
            key: key.span(),
            value: value.span(),
            header,
        });
        collect_value(value.get_ref(), &path, out);
    }
}

/// A key as TOML needs it written: bare when it can be, else quoted (`files."node.conf"`).
pub(crate) fn quote_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn collect_value(value: &DeValue<'_>, path: &str, out: &mut Vec<Entry>) {
    match value {
        DeValue::Table(t) => collect_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.push(Entry {
                    path: item_path.clone(),
                    key: item.span(),
                    value: item.span(),
                    header: matches!(item.get_ref(), DeValue::Table(_)),
                });
                collect_value(item.get_ref(), &item_path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_name_gets_no_suggestion_and_costs_nothing() {
        // Found by fuzzing: a 30 kB cluster name made the distance table gigabytes.
        let huge = "a".repeat(30_000);
        assert_eq!(suggest(&huge, [huge.as_str(), "binary"]), None);
    }

    #[test]
    fn suggests_close_names_only() {
        let keys = ["binary", "nodes", "args"];
        assert_eq!(suggest("bianry", keys), Some("binary"));
        assert_eq!(suggest("node", keys), Some("nodes"));
        assert_eq!(suggest("zzz", keys), None);
        // A swap of two letters counts as one edit.
        assert_eq!(suggest("nmae", ["name", "tls"]), Some("name"));
        assert_eq!(suggest("bd", ["db", "app"]), Some("db"));
    }

    #[test]
    fn finds_the_key_under_a_span() {
        let text = "[clusters.main]\nnodes = 3\n[[clusters.main.ready]]\ntimeout = \"x\"\n";
        let at = text.find("\"x\"").unwrap();
        assert_eq!(
            key_at(text, at..at + 3).as_deref(),
            Some("clusters.main.ready[0].timeout")
        );
        let at = text.find('3').unwrap();
        assert_eq!(
            key_at(text, at..at + 1).as_deref(),
            Some("clusters.main.nodes")
        );
    }

    #[test]
    fn keys_that_are_not_bare_are_quoted() {
        let text = "[clusters.main.files.\"node.conf\"]\nmode = \"x\"\n";
        let at = text.find("\"x\"").unwrap();
        assert_eq!(
            key_at(text, at..at + 3).as_deref(),
            Some("clusters.main.files.\"node.conf\".mode")
        );
    }

    #[test]
    fn line_and_column_are_one_based() {
        let src = SpecSource::new("a.toml", "x = 1\ny = 2\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        assert_eq!(src.line_col(10), (2, 5));
    }
}
