//! The etcd client: etcd's v3 API through its JSON gateway (`/v3/kv/range`, `/v3/kv/put`,
//! `/v3/kv/txn`), over one kept-alive connection, with the run's mutual TLS when the node
//! serves https.
//!
//! - `read`/`get`: a range of one key, linearizable unless `serializable` (then the member
//!   answers from its own copy, possibly stale).
//! - `write`/`put`: a put.
//! - `cas`: a transaction comparing the value (or, for an expected `null`, that the key does
//!   not exist) and putting the new one; not `succeeded` is a definite `fail`.
//! - `append`: a read, then a transaction that puts the longer string if the key's
//!   `mod_revision` has not moved; if it moved, a definite `fail`.
//! - `add`: a put of `PREFIX/set/VALUE`; the final read lists that range.
//!
//! Outcomes: a read that does not answer changed nothing, so it is a `fail`. A write whose
//! request may have reached the server and got no clear answer (a timeout, a dropped
//! connection, an error status) is `info`: etcd may still apply it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::client::{BoxFuture, Client, Completion, Target};
use super::generate::{Fn, Invocation};
use crate::http::{Connection, Url};

pub struct Etcd {
    conn: Connection,
    serializable: bool,
    prefix: String,
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

fn unb64(v: &Value) -> Option<String> {
    let bytes = B64.decode(v.as_str()?).ok()?;
    String::from_utf8(bytes).ok()
}

/// The node's client URL: the one named `client`, else its only one.
pub fn client_url(target: &Target) -> Result<Url, String> {
    let url = match target.urls.get("client") {
        Some(u) => u,
        None if target.urls.len() == 1 => target.urls.values().next().expect("one url"),
        None => {
            return Err(format!(
                "node {} has no port named `client` (its ports: {}); the etcd client talks to `client`",
                target.name,
                target.urls.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    };
    Url::parse(url)
}

impl Etcd {
    pub async fn connect(
        target: &Target,
        serializable: bool,
        prefix: &str,
    ) -> Result<Etcd, String> {
        let url = client_url(target)?;
        let conn = Connection::open(&url, target.tls.as_ref()).await?;
        Ok(Etcd {
            conn,
            serializable,
            prefix: prefix.to_string(),
        })
    }

    async fn post(&mut self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let (status, text) = self
            .conn
            .send("POST", path, Some(&body.to_string()), &[])
            .await?;
        let parsed = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, parsed))
    }

    /// The key's value and mod_revision, or `None` if it does not exist.
    async fn range(&mut self, key: &str) -> Result<Option<(String, String)>, String> {
        let body = json!({"key": b64(key), "serializable": self.serializable});
        let (status, v) = self.post("/v3/kv/range", &body).await?;
        if status != 200 {
            return Err(error_text(status, &v));
        }
        let Some(kv) = v["kvs"].get(0) else {
            return Ok(None);
        };
        let value = unb64(&kv["value"]).unwrap_or_default();
        let rev = kv["mod_revision"].as_str().unwrap_or("0").to_string();
        Ok(Some((value, rev)))
    }

    async fn txn(&mut self, compare: Value, key: &str, value: &str) -> Result<bool, String> {
        let body = json!({
            "compare": [compare],
            "success": [{"request_put": {"key": b64(key), "value": b64(value)}}],
        });
        let (status, v) = self.post("/v3/kv/txn", &body).await?;
        if status != 200 {
            return Err(error_text(status, &v));
        }
        Ok(v["succeeded"] == json!(true))
    }

    async fn run(&mut self, op: &Invocation) -> Completion {
        let key = format!("{}{}", self.prefix, op.key.as_deref().unwrap_or_default());
        // How an error ends the call: a read changed nothing.
        let unknown = |e: String| {
            if op.f.is_read() {
                Completion::Fail(e)
            } else {
                Completion::Info(e)
            }
        };
        match op.f {
            Fn::Read => match self.range(&key).await {
                Ok(None) => Completion::Ok(Value::Null),
                Ok(Some((text, _))) => match serde_json::from_str(&text) {
                    Ok(v) => Completion::Ok(v),
                    Err(_) => Completion::Fail(format!("{key} holds {text:?}, not JSON")),
                },
                Err(e) => unknown(e),
            },
            Fn::Get => match self.range(&key).await {
                Ok(found) => Completion::Ok(json!(found.map(|(v, _)| v).unwrap_or_default())),
                Err(e) => unknown(e),
            },
            Fn::Write | Fn::Put => {
                let value = match &op.value {
                    Value::String(s) if op.f == Fn::Put => s.clone(),
                    other => other.to_string(),
                };
                let body = json!({"key": b64(&key), "value": b64(&value)});
                match self.post("/v3/kv/put", &body).await {
                    Ok((200, _)) => Completion::Ok(Value::Null),
                    Ok((status, v)) => unknown(error_text(status, &v)),
                    Err(e) => unknown(e),
                }
            }
            Fn::Cas => {
                let compare = match &op.value[0] {
                    Value::Null => {
                        json!({"key": b64(&key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
                    }
                    expected => {
                        json!({"key": b64(&key), "target": "VALUE", "result": "EQUAL", "value": b64(&expected.to_string())})
                    }
                };
                match self.txn(compare, &key, &op.value[1].to_string()).await {
                    Ok(true) => Completion::Ok(Value::Null),
                    Ok(false) => Completion::Fail("compare failed".into()),
                    Err(e) => unknown(e),
                }
            }
            Fn::Append => {
                let (current, compare) = match self.range(&key).await {
                    Ok(None) => (
                        String::new(),
                        json!({"key": b64(&key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}),
                    ),
                    Ok(Some((v, rev))) => (
                        v,
                        json!({"key": b64(&key), "target": "MOD", "result": "EQUAL", "mod_revision": rev}),
                    ),
                    // Nothing was written yet.
                    Err(e) => return Completion::Fail(e),
                };
                let longer = format!("{current}{}", op.value.as_str().unwrap_or_default());
                match self.txn(compare, &key, &longer).await {
                    Ok(true) => Completion::Ok(Value::Null),
                    Ok(false) => Completion::Fail("the key changed between read and append".into()),
                    Err(e) => unknown(e),
                }
            }
            Fn::Add => {
                let member = format!("{}set/{}", self.prefix, op.value);
                let body = json!({"key": b64(&member), "value": b64("1")});
                match self.post("/v3/kv/put", &body).await {
                    Ok((200, _)) => Completion::Ok(Value::Null),
                    Ok((status, v)) => unknown(error_text(status, &v)),
                    Err(e) => unknown(e),
                }
            }
            Fn::ReadAll => {
                let start = format!("{}set/", self.prefix);
                let end = format!("{}set0", self.prefix);
                let body = json!({"key": b64(&start), "range_end": b64(&end), "keys_only": true, "serializable": self.serializable});
                match self.post("/v3/kv/range", &body).await {
                    Ok((200, v)) => {
                        let empty = Vec::new();
                        let members = v["kvs"].as_array().unwrap_or(&empty);
                        let values = members
                            .iter()
                            .filter_map(|kv| unb64(&kv["key"]))
                            .filter_map(|k| {
                                serde_json::from_str::<Value>(k.strip_prefix(&start)?).ok()
                            })
                            .collect();
                        Completion::Ok(Value::Array(values))
                    }
                    Ok((status, v)) => Completion::Fail(error_text(status, &v)),
                    Err(e) => Completion::Fail(e),
                }
            }
        }
    }
}

/// An error answer in a line: etcd's message if it gave one.
fn error_text(status: u16, body: &Value) -> String {
    match body.get("error").or_else(|| body.get("message")) {
        Some(Value::String(m)) => format!("HTTP {status}: {m}"),
        _ => format!(
            "HTTP {status}: {}",
            body.to_string().chars().take(200).collect::<String>()
        ),
    }
}

impl Client for Etcd {
    fn call<'a>(&'a mut self, op: &'a Invocation) -> BoxFuture<'a, Completion> {
        Box::pin(self.run(op))
    }

    fn broken(&self) -> bool {
        self.conn.is_broken()
    }
}
