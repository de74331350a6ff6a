//! Per-node templates (Jinja syntax via minijinja), strict about undefined names.
//!
//! Every template sees the same context: `node`, `cluster`, `clusters`, `tls` and `run` (see
//! the README for the full list). A misspelt name is an error that lists the names available
//! at that level, never an empty string in a command line.
//!
//! Besides Jinja's built-ins there is one filter, `each`, that renders a small template per
//! item, so that etcd's `--initial-cluster` is a one-liner:
//! `{{ cluster.nodes | each("{{ name }}={{ urls.peer }}") | join(",") }}`.

use std::ops::Range;

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};
use serde_json::Value as Json;

use troupe_spec::suggest;

/// A template that did not render, explained.
#[derive(Debug, Clone)]
pub struct TemplateError {
    pub message: String,
    pub help: Option<String>,
    /// The part of the template at fault, if known.
    pub snippet: Option<String>,
    /// Where that part is in the template's text (byte offsets), if known.
    pub range: Option<Range<usize>>,
}

/// The template engine, configured once.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// The environment `each` renders its items with: the same syntax and filters, but no `each`
/// (so nesting cannot be written, however spelt) and a small fuel budget per item.
fn item_env() -> &'static Environment<'static> {
    static ENV: std::sync::OnceLock<Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = base_env();
        env.set_fuel(Some(ITEM_FUEL));
        env
    })
}

/// Instructions one item of `each` may run.
const ITEM_FUEL: u64 = 10_000;

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("valid syntax config"),
    );
    env.add_filter("join", bounded_join);
    env.add_filter("replace", bounded_replace);
    env
}

fn each(items: Vec<Value>, template: String) -> Result<Vec<String>, minijinja::Error> {
    // Each item renders with a fuel budget of its own: keep the per-item template to
    // expressions, and the list to a size a cluster can have.
    if template.contains("each(") {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "`each` inside the template given to `each` is not allowed: one level is enough for a node list",
        ));
    }
    if template.contains("{%") {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "the template given to `each` takes expressions only ({{ ... }}), not statements ({% ... %})",
        ));
    }
    if items.len() > MAX_EACH {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("`each` over {} items (at most {MAX_EACH})", items.len()),
        ));
    }
    items
        .into_iter()
        .map(|item| item_env().render_str(&template, item))
        .collect()
}

/// Instructions one rendering may run.
const FUEL: u64 = 500_000;

/// Largest text `join` builds; Jinja's own would build gigabytes from a few chained joins.
const MAX_JOINED: usize = 4 << 20;

/// Items `each` renders at most.
const MAX_EACH: usize = 10_000;

/// Jinja's `replace`, bounded like `join`.
fn bounded_replace(
    value: String,
    from: String,
    to: String,
    count: Option<usize>,
) -> Result<String, minijinja::Error> {
    let hits = if from.is_empty() {
        value.chars().count() + 1
    } else {
        value.matches(from.as_str()).count()
    };
    let hits = count.map_or(hits, |c| c.min(hits));
    let total = value
        .len()
        .saturating_add(hits.saturating_mul(to.len()))
        .saturating_sub(hits.saturating_mul(from.len()));
    if total > MAX_JOINED {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("replace would build {total} bytes (at most {MAX_JOINED})"),
        ));
    }
    Ok(match count {
        Some(n) => value.replacen(from.as_str(), &to, n),
        None => value.replace(from.as_str(), &to),
    })
}

/// Jinja's `join`, bounded: items (or a string's characters) joined by `sep`.
fn bounded_join(value: Value, sep: Option<String>) -> Result<String, minijinja::Error> {
    let sep = sep.unwrap_or_default();
    let items: Vec<String> = match value.as_str() {
        Some(s) => s.chars().map(String::from).collect(),
        None => value
            .try_iter()?
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .collect(),
    };
    let total = items
        .iter()
        .map(String::len)
        .sum::<usize>()
        .saturating_add(sep.len().saturating_mul(items.len().saturating_sub(1)));
    if total > MAX_JOINED {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("join would build {total} bytes (at most {MAX_JOINED})"),
        ));
    }
    Ok(items.join(&sep))
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = base_env();
        env.add_filter("each", each);
        // A template is a command line or a config file: a loop of billions of steps is a
        // mistake (or hostile), and ends with an error instead of a hang.
        env.set_fuel(Some(FUEL));
        Templates { env }
    }

    /// Renders `text` with `ctx`; `ctx` is JSON so that errors can list what exists.
    pub fn render(&self, text: &str, ctx: &Json) -> Result<String, TemplateError> {
        if !text.contains("{{") && !text.contains("{%") && !text.contains("{#") {
            return Ok(text.to_string());
        }
        self.env
            .render_str(text, Value::from(minijinja::value::Serde(ctx)))
            .map_err(|e| explain(text, ctx, &e))
    }
}

fn explain(text: &str, ctx: &Json, e: &minijinja::Error) -> TemplateError {
    let range = e
        .range()
        .filter(|r| text.get(r.clone()).is_some())
        .map(|r| trimmed(text, r));
    let snippet = range.clone().map(|r| text[r].to_string());
    if e.kind() == ErrorKind::UndefinedError {
        // What minijinja found undefined, e.g. "`node.portz` is undefined".
        let undefined = e
            .detail()
            .and_then(|d| d.strip_suffix(" is undefined"))
            .map(|d| d.trim_matches('`'));
        let head = |s: &str| s.split(['.', '[']).next().unwrap_or("").trim().to_string();
        if let Some(r) = range.clone() {
            // For `node.ports.clinet` minijinja's range starts at the failing attribute
            // (`.ports.clinet`): extend it back over the names before it.
            let start = text[..r.start]
                .trim_end_matches(|c: char| {
                    c.is_alphanumeric() || matches!(c, '_' | '.' | '[' | ']' | '"' | '\'' | '-')
                })
                .len();
            let expr = &text[start..r.end];
            if undefined.is_none_or(|u| head(u) == head(expr))
                && let Some(mut found) = missing_name(expr, ctx, false)
            {
                found.range = Some(start..r.end);
                return found;
            }
        }
        // An undefined name that is not in this text is in a template given to `each`, which
        // sees one item at a time: a node, for the lists templates have.
        if let Some(u) = undefined
            && text.contains("each(")
            && let Some(item) = ctx.get("node")
            && let Some(found) = missing_name(u, item, true)
        {
            return found;
        }
    }
    if e.kind() == ErrorKind::UnknownFilter
        && let Some(name) = snippet.as_deref()
    {
        let name: String = name
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        return TemplateError {
            message: format!("unknown template filter `{name}`"),
            help: Some(
                "filters are Jinja's built-ins (upper, lower, join, default, replace, ...) and troupe's \
                 `each`, e.g. {{ cluster.nodes | each(\"{{ name }}\") | join(\",\") }}"
                    .into(),
            ),
            snippet,
            range,
        };
    }
    let detail = e.detail().unwrap_or("").to_string();
    let kind = e.kind().to_string();
    TemplateError {
        message: match (e.kind(), detail.is_empty()) {
            (_, true) => format!("template error: {kind}"),
            (ErrorKind::SyntaxError, false) => format!("template syntax error: {detail}"),
            (_, false) => format!("template error: {kind}: {detail}"),
        },
        help: Some(
            "templates use Jinja syntax: `{{ node.name }}` for a value, \
             `{% for n in cluster.nodes %}...{% endfor %}` for a loop"
                .into(),
        ),
        snippet,
        range,
    }
}

/// `r` without the whitespace at either end of `text[r]`.
fn trimmed(text: &str, r: Range<usize>) -> Range<usize> {
    let part = &text[r.clone()];
    let start = r.start + (part.len() - part.trim_start().len());
    let end = r.end - (part.len() - part.trim_end().len());
    start..end.max(start)
}

/// The names an expression walks: `nodes["main-2"].ports.client` → nodes, main-2, ports,
/// client. Stops at the first thing that is not a name or a quoted index.
fn path_parts(expr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = expr.trim_start();
    loop {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            rest = &rest[name.len()..];
            parts.push(name);
        } else if let Some(r) = rest.strip_prefix('[') {
            let r = r.trim_start();
            let Some(q) = r.chars().next().filter(|q| matches!(q, '"' | '\'')) else {
                break;
            };
            let Some(end) = r[1..].find(q) else { break };
            parts.push(r[1..1 + end].to_string());
            let Some(after) = r[1 + end + 1..].trim_start().strip_prefix(']') else {
                break;
            };
            rest = after;
            continue;
        } else {
            break;
        }
        match rest.strip_prefix('.') {
            Some(r) => rest = r,
            None if rest.starts_with('[') => {}
            None => break,
        }
    }
    parts
}

/// For an expression such as `node.ports.clinet`, the first name that does not exist, with the
/// names that do. `in_each`: the expression is in a template given to `each` and `ctx` is one
/// of its items.
fn missing_name(expr: &str, ctx: &Json, in_each: bool) -> Option<TemplateError> {
    let path = path_parts(expr);
    let whose = if in_each {
        " in the template given to `each`"
    } else {
        ""
    };
    let mut here = ctx;
    let mut walked: Vec<&str> = Vec::new();
    for part in path.iter().map(String::as_str) {
        let Json::Object(map) = here else {
            // `node.name.first`: a plain value has no names below it.
            let owner = walked.join(".");
            let help = match here {
                Json::Array(_) => format!(
                    "`{owner}` is a list and has nothing named `{part}`: loop over it with \
                     {{% for n in {owner} %}}...{{% endfor %}} or use the `each` filter"
                ),
                other => {
                    let kind = match other {
                        Json::String(_) => "a string",
                        Json::Number(_) => "a number",
                        Json::Bool(_) => "true or false",
                        _ => "empty",
                    };
                    format!(
                        "`{owner}` is {kind} and has nothing named `{part}`: use `{owner}` itself"
                    )
                }
            };
            return Some(TemplateError {
                message: format!("unknown template variable `{owner}.{part}`{whose}"),
                help: Some(help),
                snippet: Some(expr.to_string()),
                range: None,
            });
        };
        match map.get(part) {
            Some(next) => {
                here = next;
                walked.push(part);
            }
            None => {
                let name = if walked.is_empty() {
                    part.to_string()
                } else {
                    format!("{}.{part}", walked.join("."))
                };
                let keys: Vec<&str> = map.keys().map(String::as_str).collect();
                let owner = match (walked.is_empty(), in_each) {
                    (true, false) => "templates can use".to_string(),
                    (true, true) => "in `each`, each item (a node) has".to_string(),
                    (false, _) => format!("`{}` has", walked.join(".")),
                };
                let mut help = match suggest(part, keys.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? "),
                    None => String::new(),
                };
                help.push_str(&format!("{owner}: {}", keys.join(", ")));
                if (walked == ["node"] && part == "tls") || walked == ["tls"] {
                    help.push_str(
                        "; TLS is off: add a [tls] table to the spec to get certificates",
                    );
                }
                if matches!(
                    walked.as_slice(),
                    ["node", "ports" | "urls" | "addrs" | "listen"]
                ) {
                    help.push_str("; ports are declared with the cluster's `ports = [...]`");
                }
                return Some(TemplateError {
                    message: format!("unknown template variable `{name}`{whose}"),
                    help: Some(help),
                    snippet: Some(expr.to_string()),
                    range: None,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Json {
        json!({
            "node": {"name": "main-1", "ports": {"client": 2379, "peer": 2380}},
            "cluster": {"nodes": [
                {"name": "main-1", "urls": {"peer": "https://127.0.0.1:2380"}},
                {"name": "main-2", "urls": {"peer": "https://127.0.0.1:2480"}},
            ]},
        })
    }

    /// The regression: an error inside `each(...)` carried a position in the inner template,
    /// which was applied to the outer text and blamed the wrong name (`initi`).
    #[test]
    fn an_error_inside_each_names_the_inner_template_not_a_slice_of_the_outer_one() {
        let t = Templates::new();
        let text = r#"--initial-cluster={{ cluster.nodes | each('{{ nmae }}={{ urls.peer }}') | join(',') }}"#;
        let e = t.render(text, &ctx()).unwrap_err();
        let all = format!("{} {:?} {:?}", e.message, e.help, e.snippet);
        assert!(all.contains("nmae"), "{all}");
        assert!(!all.contains("initi"), "{all}");
        assert!(
            all.contains("name"),
            "the help offers the item's names: {all}"
        );
        if let Some(r) = &e.range {
            assert!(text[r.clone()].contains("each"), "{:?}", &text[r.clone()]);
        }
    }

    /// Found by fuzzing: chained joins built gigabytes, nested loops ran for ever.
    #[test]
    fn runaway_templates_end_with_an_error() {
        let t = Templates::new();
        let big = r#"{% set s = "x" * 1000 %}{{ "xxxx"|join(s)|join(s)|join(s) }}"#;
        assert!(
            t.render(big, &ctx())
                .unwrap_err()
                .message
                .contains("join would build")
        );
        let long = "{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}";
        assert!(t.render(long, &ctx()).is_err());
        let each = r#"{{ range(99999)|each("{% for i in range(99999) %}{% endfor %}")|join }}"#;
        assert!(
            t.render(each, &ctx())
                .unwrap_err()
                .message
                .contains("expressions only")
        );
        let grow =
            r#"{{ ("x" * 9999999)|replace("x", "xxxxxxxxxx")|replace("x", "xxxxxxxxxx")|length }}"#;
        assert!(
            t.render(grow, &ctx())
                .unwrap_err()
                .message
                .contains("replace would build")
        );
        assert_eq!(
            t.render(r#"{{ "a-b-c" | replace("-", "_") }}"#, &ctx())
                .unwrap(),
            "a_b_c"
        );
        assert_eq!(
            t.render(
                r#"{{ ["a", "b"] | join(",") }}{{ "ab" | join("-") }}"#,
                &ctx()
            )
            .unwrap(),
            "a,ba-b"
        );
    }

    #[test]
    fn each_builds_peer_lists_in_one_line() {
        let t = Templates::new();
        let out = t
            .render(
                r#"{{ cluster.nodes | each("{{ name }}={{ urls.peer }}") | join(",") }}"#,
                &ctx(),
            )
            .unwrap();
        assert_eq!(
            out,
            "main-1=https://127.0.0.1:2380,main-2=https://127.0.0.1:2480"
        );
    }

    #[test]
    fn undefined_names_are_errors_that_list_what_exists() {
        let t = Templates::new();
        let e = t
            .render("--port={{ node.ports.clinet }}", &ctx())
            .unwrap_err();
        assert_eq!(e.message, "unknown template variable `node.ports.clinet`");
        let help = e.help.unwrap();
        assert!(help.contains("did you mean `client`?"), "{help}");
        assert!(help.contains("client, peer"), "{help}");
        let e = t.render("{{ nod.name }}", &ctx()).unwrap_err();
        assert_eq!(e.message, "unknown template variable `nod`");
    }

    #[test]
    fn names_in_each_templates_are_checked_against_an_item() {
        let t = Templates::new();
        let mut ctx = ctx();
        ctx["node"]["urls"] = json!({"peer": "https://127.0.0.1:2380"});
        let e = t
            .render(
                r#"--x={{ cluster.nodes | each("{{ nmae }}") | join(",") }}"#,
                &ctx,
            )
            .unwrap_err();
        assert_eq!(
            e.message,
            "unknown template variable `nmae` in the template given to `each`"
        );
        assert!(e.help.unwrap().contains("did you mean `name`?"));
        assert_eq!(e.snippet.as_deref(), Some("nmae"));
    }

    #[test]
    fn errors_say_where_in_the_template() {
        let t = Templates::new();
        let text = "--port={{ node.ports.clinet }}";
        let e = t.render(text, &ctx()).unwrap_err();
        assert_eq!(&text[e.range.unwrap()], "node.ports.clinet");
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(Templates::new().render("--x=1", &ctx()).unwrap(), "--x=1");
    }
}
