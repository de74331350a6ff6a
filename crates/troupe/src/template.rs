//! Per-node templates (Jinja syntax via minijinja), strict about undefined names.
//!
//! Every template sees the same context: `node`, `cluster`, `clusters`, `tls` and `run` (see
//! the README for the full list). A misspelt name is an error that lists the names available
//! at that level, never an empty string in a command line.
//!
//! Besides Jinja's built-ins there is one filter, `each`, that renders a small template per
//! item, so that etcd's `--initial-cluster` is a one-liner:
//! `{{ cluster.nodes | each("{{ name }}={{ urls.peer }}") | join(",") }}`.

use minijinja::{Environment, ErrorKind, State, UndefinedBehavior, Value};
use serde_json::Value as Json;

use troupe_spec::suggest;

/// A template that did not render, explained.
#[derive(Debug, Clone)]
pub struct TemplateError {
    pub message: String,
    pub help: Option<String>,
    /// The part of the template at fault, if known.
    pub snippet: Option<String>,
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

fn each(state: &State, items: Vec<Value>, template: String) -> Result<Vec<String>, minijinja::Error> {
    items
        .into_iter()
        .map(|item| state.env().render_str(&template, item))
        .collect()
}

impl Templates {
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .keep_trailing_newline(true)
                .build()
                .expect("valid syntax config"),
        );
        env.add_filter("each", each);
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
    let snippet = e
        .range()
        .and_then(|r| text.get(r))
        .map(|s| s.trim().to_string());
    if e.kind() == ErrorKind::UndefinedError
        && let Some(found) = snippet.as_deref().and_then(|s| missing_name(s, ctx))
    {
        return found;
    }
    let detail = e.detail().unwrap_or("").to_string();
    let kind = e.kind().to_string();
    TemplateError {
        message: if detail.is_empty() {
            format!("template error: {kind}")
        } else {
            format!("template error: {kind}: {detail}")
        },
        help: Some(
            "templates use Jinja syntax: {{ node.name }}, {% for n in cluster.nodes %}...{% endfor %}".into(),
        ),
        snippet,
    }
}

/// For an expression such as `node.ports.clinet`, the first name that does not exist, with the
/// names that do.
fn missing_name(expr: &str, ctx: &Json) -> Option<TemplateError> {
    let path: String = expr
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.')
        .collect();
    let mut here = ctx;
    let mut walked: Vec<&str> = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let Json::Object(map) = here else { return None };
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
                let owner = if walked.is_empty() {
                    "templates can use".to_string()
                } else {
                    format!("`{}` has", walked.join("."))
                };
                let mut help = match suggest(part, keys.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? "),
                    None => String::new(),
                };
                help.push_str(&format!("{owner}: {}", keys.join(", ")));
                if walked == ["node"] && part == "tls" {
                    help.push_str("; TLS is off: add a [tls] table to the spec to get certificates");
                }
                if walked == ["node", "ports"] {
                    help.push_str("; ports are declared with the cluster's `ports = [...]`");
                }
                return Some(TemplateError {
                    message: format!("unknown template variable `{name}`"),
                    help: Some(help),
                    snippet: Some(expr.to_string()),
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

    #[test]
    fn each_builds_peer_lists_in_one_line() {
        let t = Templates::new();
        let out = t
            .render(
                r#"{{ cluster.nodes | each("{{ name }}={{ urls.peer }}") | join(",") }}"#,
                &ctx(),
            )
            .unwrap();
        assert_eq!(out, "main-1=https://127.0.0.1:2380,main-2=https://127.0.0.1:2480");
    }

    #[test]
    fn undefined_names_are_errors_that_list_what_exists() {
        let t = Templates::new();
        let e = t.render("--port={{ node.ports.clinet }}", &ctx()).unwrap_err();
        assert_eq!(e.message, "unknown template variable `node.ports.clinet`");
        let help = e.help.unwrap();
        assert!(help.contains("did you mean `client`?"), "{help}");
        assert!(help.contains("client, peer"), "{help}");
        let e = t.render("{{ nod.name }}", &ctx()).unwrap_err();
        assert_eq!(e.message, "unknown template variable `nod`");
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(Templates::new().render("--x=1", &ctx()).unwrap(), "--x=1");
    }
}
