//! The HTTP template client: any JSON-over-HTTP store, one request template per operation.
//!
//! Templates see `node` (the node's descriptor, as in specs: `node.urls.api`) and `op`:
//! `op.f`, `op.key`, and as JSON text `op.value`, `op.expected` and `op.new` (the last two for
//! `cas`), so `body = '{"value": {{ op.value }}}'` is valid JSON whatever the value.
//!
//! The answer's status decides: one of `ok` (default: any 2xx) means it happened, and a read
//! takes its value at the JSON pointer `value`; one of `absent` means a read found nothing
//! (`null`); one of `fail` means it certainly did not happen. Anything else, and any error
//! after the request may have been sent, is `info` for a write and `fail` for a read.

use serde_json::{Value, json};
use troupe_spec::workload::{HttpClientSpec, HttpOp};

use super::client::{BoxFuture, Client, Completion, Context, Target};
use super::generate::{Fn, Invocation};
use crate::http::{Connection, Url};
use crate::template::Templates;

pub struct HttpClient {
    spec: HttpClientSpec,
    node: Value,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    templates: Templates,
    conn: Option<(String, Connection)>,
}

impl HttpClient {
    pub fn new(
        spec: HttpClientSpec,
        target: &Target,
        _ctx: &Context,
    ) -> Result<HttpClient, String> {
        Ok(HttpClient {
            spec,
            node: target.json.clone(),
            tls: target.tls.clone(),
            templates: Templates::new(),
            conn: None,
        })
    }

    fn render(&self, text: &str, ctx: &Value) -> Result<String, String> {
        self.templates
            .render(text, ctx)
            .map_err(|e| format!("template error in `{text}`: {}", e.message))
    }

    async fn run(&mut self, op: &Invocation) -> Completion {
        let f = op.f.name();
        let Some(req) = self.spec.ops.get(f).cloned() else {
            return Completion::Fail(format!("no request is defined for `{f}`"));
        };
        let (expected, new) = match op.f {
            Fn::Cas => (op.value[0].to_string(), op.value[1].to_string()),
            _ => ("null".into(), "null".into()),
        };
        let ctx = json!({
            "node": self.node,
            "op": {
                "f": f,
                "key": op.key,
                "value": op.value.to_string(),
                "expected": expected,
                "new": new,
            },
        });
        // A template or URL that does not work never sent anything.
        let url = match self.render(&req.url, &ctx).and_then(|u| Url::parse(&u)) {
            Ok(u) => u,
            Err(e) => return Completion::Fail(e),
        };
        let body = match req
            .body
            .as_deref()
            .map(|b| self.render(b, &ctx))
            .transpose()
        {
            Ok(b) => b,
            Err(e) => return Completion::Fail(e),
        };
        let mut headers = Vec::new();
        for (k, v) in &req.headers {
            match self.render(v, &ctx) {
                Ok(v) => headers.push((k.clone(), v)),
                Err(e) => return Completion::Fail(e),
            }
        }
        let authority = format!("{}://{}:{}", url.https, url.host, url.port);
        if self.conn.as_ref().is_none_or(|(a, _)| *a != authority) {
            match Connection::open(&url, self.tls.as_ref()).await {
                Ok(c) => self.conn = Some((authority, c)),
                Err(e) => return Completion::Fail(e),
            }
        }
        let (_, conn) = self.conn.as_mut().expect("connection just opened");
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let answer = conn
            .send(&req.method, &url.path, body.as_deref(), &headers)
            .await;
        judge(&req, op.f, answer)
    }
}

fn judge(req: &HttpOp, f: Fn, answer: Result<(u16, String), String>) -> Completion {
    let unknown = |e: String| {
        if f.is_read() {
            Completion::Fail(e)
        } else {
            Completion::Info(e)
        }
    };
    let (status, body) = match answer {
        Ok(a) => a,
        Err(e) => return unknown(e),
    };
    let ok = if req.ok.is_empty() {
        (200..300).contains(&status)
    } else {
        req.ok.contains(&status)
    };
    if ok {
        if !f.is_read() {
            return Completion::Ok(Value::Null);
        }
        let parsed: Value = match serde_json::from_str(&body) {
            Ok(v) => v,
            Err(_) if req.value.as_deref().unwrap_or("").is_empty() => Value::String(body),
            Err(e) => {
                return Completion::Fail(format!("the answer is not JSON ({e}): {body:.200}"));
            }
        };
        let value = match req.value.as_deref() {
            None | Some("") => parsed,
            Some(p) => parsed.pointer(p).cloned().unwrap_or(Value::Null),
        };
        return Completion::Ok(value);
    }
    if f.is_read() && req.absent.contains(&status) {
        return Completion::Ok(Value::Null);
    }
    let text = format!(
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    );
    if req.fail.contains(&status) {
        Completion::Fail(text)
    } else {
        unknown(text)
    }
}

impl Client for HttpClient {
    fn call<'a>(&'a mut self, op: &'a Invocation) -> BoxFuture<'a, Completion> {
        Box::pin(self.run(op))
    }

    fn broken(&self) -> bool {
        self.conn.as_ref().is_some_and(|(_, c)| c.is_broken())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_decide_the_outcome() {
        let mut req = HttpOp::new("GET", "http://x/");
        req.value = Some("/node/value".into());
        req.absent = vec![404];
        req.fail = vec![409];
        let ok = judge(&req, Fn::Read, Ok((200, r#"{"node":{"value":5}}"#.into())));
        assert_eq!(ok, Completion::Ok(json!(5)));
        assert_eq!(
            judge(&req, Fn::Read, Ok((404, String::new()))),
            Completion::Ok(Value::Null)
        );
        assert!(matches!(
            judge(&req, Fn::Cas, Ok((409, "no".into()))),
            Completion::Fail(_)
        ));
        assert!(matches!(
            judge(&req, Fn::Write, Ok((503, "busy".into()))),
            Completion::Info(_)
        ));
        assert!(matches!(
            judge(&req, Fn::Read, Ok((503, "busy".into()))),
            Completion::Fail(_)
        ));
        assert!(matches!(
            judge(&req, Fn::Write, Err("reset".into())),
            Completion::Info(_)
        ));
    }
}
