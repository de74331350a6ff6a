//! The memory client: an in-process store that is linearizable by construction (one lock, one
//! map). No server, no network: what it measures is troupe's own ceiling, and a history it
//! records must always pass its checker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::client::{BoxFuture, Client, Completion};
use super::generate::{Fn, Invocation};

#[derive(Default)]
struct Data {
    keys: HashMap<String, Value>,
    set: Vec<Value>,
}

/// The store every process of one workload shares.
#[derive(Clone, Default)]
pub struct Store(Arc<Mutex<Data>>);

impl Store {
    pub fn client(&self) -> MemoryClient {
        MemoryClient(self.clone())
    }

    fn apply(&self, op: &Invocation) -> Completion {
        let mut d = self.0.lock().expect("memory store");
        let key = op.key.clone().unwrap_or_default();
        match op.f {
            Fn::Read | Fn::Get => Completion::Ok(d.keys.get(&key).cloned().unwrap_or(Value::Null)),
            Fn::Write | Fn::Put => {
                d.keys.insert(key, op.value.clone());
                Completion::Ok(Value::Null)
            }
            Fn::Cas => {
                let current = d.keys.get(&key).cloned().unwrap_or(Value::Null);
                if current == op.value[0] {
                    d.keys.insert(key, op.value[1].clone());
                    Completion::Ok(Value::Null)
                } else {
                    Completion::Fail("compare failed".into())
                }
            }
            Fn::Append => {
                let mut s = d
                    .keys
                    .get(&key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                s.push_str(op.value.as_str().unwrap_or_default());
                d.keys.insert(key, json!(s));
                Completion::Ok(Value::Null)
            }
            Fn::Add => {
                d.set.push(op.value.clone());
                Completion::Ok(Value::Null)
            }
            Fn::ReadAll => Completion::Ok(Value::Array(d.set.clone())),
        }
    }
}

pub struct MemoryClient(Store);

impl Client for MemoryClient {
    fn call<'a>(&'a mut self, op: &'a Invocation) -> BoxFuture<'a, Completion> {
        let done = self.0.apply(op);
        // A store that answers at once would let one process run the whole budget before the
        // others start: yield, as a network round trip would.
        Box::pin(async move {
            tokio::task::yield_now().await;
            done
        })
    }
}
