//! `--set KEY=VALUE`: one spec, many variants, without copying the file.
//!
//! An override edits the spec's TOML text before validation (with `toml_edit`, which keeps the
//! rest of the file as written), so an overridden value is validated exactly like the file and
//! an error shows it in place. `KEY` is a dotted path (`clusters.main.network`, with quotes for
//! keys that contain dots or slashes: `clusters.main.files."data/myid".template`, and a number
//! to pick one entry of an array of tables: `clusters.main.ready.0.timeout`); missing tables are
//! created. `VALUE` is read as a TOML value when it is one (`5`, `true`, `["a", "b"]`,
//! `{ quorum = "none" }`) and as a string otherwise (`namespaces`, `/opt/bin/server`).

use std::path::Path;

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::diag::{InvalidSpec, SpecSource};

/// One `KEY=VALUE`, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The path's parts, unquoted.
    pub key: Vec<String>,
    /// The value as the user wrote it.
    pub value: String,
}

impl Override {
    /// Parses `KEY=VALUE`; the error says what is wrong and shows the expected form.
    pub fn parse(text: &str) -> Result<Override, String> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(format!(
                "`{text}` is not KEY=VALUE (e.g. clusters.main.network=namespaces)"
            ));
        };
        let key = split_key(key.trim())
            .ok_or_else(|| format!("`{}` is not a dotted key such as clusters.main.binary (quote parts that contain dots: files.\"a.conf\".mode)", key.trim()))?;
        Ok(Override {
            key,
            value: value.to_string(),
        })
    }

    /// Whether this override belongs in a spec with `text`: a key under `clusters.NAME` only
    /// where that cluster exists (a scenario's `--set` meets specs of other clusters too).
    pub fn applies_to(&self, text: &str) -> bool {
        match self.key.as_slice() {
            [root, cluster, _, ..] if root == "clusters" => text
                .parse::<DocumentMut>()
                .ok()
                .and_then(|d| d.get("clusters")?.get(cluster).map(|_| ()))
                .is_some(),
            _ => true,
        }
    }

    /// `KEY=VALUE` again, as the user could have typed it.
    pub fn text(&self) -> String {
        format!("{}={}", self.dotted(), self.value)
    }

    fn dotted(&self) -> String {
        self.key
            .iter()
            .map(|k| {
                if !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    k.clone()
                } else {
                    format!("\"{k}\"")
                }
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn split_key(key: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut rest = key;
    loop {
        let (part, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let part = rest[..end].trim();
            if part.is_empty() {
                return None;
            }
            (part.to_string(), &rest[end..])
        };
        parts.push(part);
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => return Some(parts),
            None => return None,
        }
    }
}

/// A value as TOML when it parses as one, else as a string.
fn value_of(text: &str) -> Value {
    let t = text.trim();
    if let Ok(doc) = format!("v = {t}").parse::<DocumentMut>()
        && let Some(v) = doc.get("v").and_then(Item::as_value)
    {
        let mut v = v.clone();
        v.decor_mut().clear();
        return v;
    }
    Value::from(text)
}

/// Applies `sets` to a spec's text, in order. `path` names the spec in errors.
pub fn apply(path: &Path, text: &str, sets: &[Override]) -> Result<String, InvalidSpec> {
    if sets.is_empty() {
        return Ok(text.to_string());
    }
    // The file's own syntax errors are reported by the loader, with their place.
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return Ok(text.to_string());
    };
    for set in sets {
        if let Err((message, help)) = set_in(doc.as_table_mut(), &set.key, 0, set) {
            return Err(InvalidSpec {
                file: path.to_path_buf(),
                errors: vec![
                    SpecSource::new(path, "")
                        .error(0..0, format!("--set {}: {message}", set.dotted()))
                        .with_help(help),
                ],
            });
        }
    }
    Ok(doc.to_string())
}

/// Sets `set.key[at..]` inside `table`, creating missing tables.
fn set_in(
    table: &mut Table,
    key: &[String],
    at: usize,
    set: &Override,
) -> Result<(), (String, String)> {
    let part = &key[at];
    if at + 1 == key.len() {
        table.insert(part, Item::Value(value_of(&set.value)));
        return Ok(());
    }
    let here = key[..=at].join(".");
    if !table.contains_key(part) {
        let mut t = Table::new();
        t.set_implicit(true);
        table.insert(part, Item::Table(t));
    }
    let item = table.get_mut(part).expect("present");
    if let Some(inline) = item.as_inline_table() {
        *item = Item::Table(inline.clone().into_table());
    }
    match item {
        Item::Table(t) => set_in(t, key, at + 1, set),
        Item::ArrayOfTables(list) => {
            let len = list.len();
            let picked = key[at + 1].parse::<usize>().ok();
            match picked.and_then(|n| list.get_mut(n)) {
                Some(t) if at + 2 < key.len() => set_in(t, key, at + 2, set),
                _ => Err((
                    format!(
                        "`{here}` is a list of {len} table(s): pick one by number (0 to {}), then name its key",
                        len.saturating_sub(1)
                    ),
                    format!("e.g. --set {here}.0.timeout=30s"),
                )),
            }
        }
        _ => Err((
            format!(
                "`{here}` is a value, not a table, so it has no `{}`",
                key[at + 1]
            ),
            format!("set the value itself: --set {here}=..."),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply_all(text: &str, sets: &[&str]) -> Result<String, String> {
        let sets: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
        apply(Path::new("s.toml"), text, &sets).map_err(|e| e.errors[0].message.clone())
    }

    const SPEC: &str = r#"# a comment that stays
[clusters.main]
nodes = 3
binary = "etcd"
schemes = { quorum = "none" }

[[clusters.main.ready]]
tcp = "client"
"#;

    #[test]
    fn values_are_toml_when_they_parse_and_strings_otherwise() {
        let out = apply_all(
            SPEC,
            &[
                "clusters.main.nodes=5",
                "clusters.main.network=namespaces",
                "clusters.main.binary=/opt/etcd v3/bin/etcd",
                r#"clusters.main.args=["--x", "y"]"#,
                r#"clusters.main.files."data/myid".template={{ node.index }}"#,
                "clusters.main.schemes.peer=none",
                "clusters.main.ready.0.timeout=30s",
            ],
        )
        .unwrap();
        assert!(out.starts_with("# a comment that stays\n"), "{out}");
        let v: toml::Table = toml::from_str(&out).unwrap();
        let main = &v["clusters"]["main"];
        assert_eq!(main["nodes"].as_integer(), Some(5));
        assert_eq!(main["network"].as_str(), Some("namespaces"));
        assert_eq!(main["binary"].as_str(), Some("/opt/etcd v3/bin/etcd"));
        assert_eq!(main["args"].as_array().unwrap().len(), 2);
        assert_eq!(
            main["files"]["data/myid"]["template"].as_str(),
            Some("{{ node.index }}")
        );
        assert_eq!(main["schemes"]["quorum"].as_str(), Some("none"));
        assert_eq!(main["schemes"]["peer"].as_str(), Some("none"));
        assert_eq!(main["ready"][0]["timeout"].as_str(), Some("30s"));
    }

    #[test]
    fn a_bad_override_says_what_is_wrong_with_it() {
        assert!(
            Override::parse("clusters.main.nodes")
                .unwrap_err()
                .contains("KEY=VALUE")
        );
        assert!(Override::parse("clusters..nodes=3").is_err());
        let e = apply_all(SPEC, &["clusters.main.nodes.count=3"]).unwrap_err();
        assert!(
            e.contains("`clusters.main.nodes` is a value, not a table"),
            "{e}"
        );
        let e = apply_all(SPEC, &["clusters.main.ready.timeout=3s"]).unwrap_err();
        assert!(e.contains("is a list of 1 table(s)"), "{e}");
        let e = apply_all(SPEC, &["clusters.main.ready.4.timeout=3s"]).unwrap_err();
        assert!(e.contains("pick one by number (0 to 0)"), "{e}");
    }
}
