//! What a workload's process talks through. A client runs one operation at a time and says
//! how it ended, in the history's terms: it happened (`ok`), it certainly did not (`fail`), or
//! nobody knows (`info`: the process is then replaced by a fresh one, with a fresh client).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use rustls::ClientConfig;
use serde_json::Value;
use troupe_spec::workload::{ClientSpec, WorkloadSpec};

use super::generate::Invocation;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How one call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// It happened; for a read, what it read.
    Ok(Value),
    /// It certainly did not happen.
    Fail(String),
    /// It may or may not have happened.
    Info(String),
}

/// One process's connection to the system.
pub trait Client: Send {
    fn call<'a>(&'a mut self, op: &'a Invocation) -> BoxFuture<'a, Completion>;

    /// Whether its connection is no longer usable (a new client is made for the next call).
    fn broken(&self) -> bool {
        false
    }
}

/// The node a process talks to.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    pub urls: BTreeMap<String, String>,
    /// Its descriptor as JSON: the `node` of templates.
    pub json: Value,
    pub tls: Option<Arc<ClientConfig>>,
}

/// Where clients find their nodes and their surroundings.
pub struct Context {
    /// Templates of the stdio and http clients.
    pub templates: crate::template::Templates,
    /// The stdio programs' working directory (a scenario's directory).
    pub dir: Option<PathBuf>,
    /// Environment of stdio programs (`TROUPE_*` of the run).
    pub env: Vec<(String, String)>,
    /// Where the stdio programs' stderr goes.
    pub log: Option<PathBuf>,
    /// The in-process store of the memory client, shared by every process.
    pub memory: super::memory::Store,
    /// Unique to this workload: keeps its keys apart from any earlier workload's on the same
    /// cluster, whose values would otherwise look like reads from nowhere.
    pub id: String,
    /// A program that could not start (stdio): the workload ends with this error.
    pub fatal: Mutex<Option<String>>,
}

/// A new client for `process` on `target`. `Err` means no request was sent: the process tries
/// again (or the workload ends, for a program that cannot start).
pub async fn connect(
    spec: &WorkloadSpec,
    ctx: &Context,
    target: &Target,
    process: u64,
) -> Result<Box<dyn Client>, String> {
    match &spec.client {
        ClientSpec::Memory => Ok(Box::new(ctx.memory.client())),
        ClientSpec::Etcd {
            serializable,
            prefix,
        } => Ok(Box::new(
            super::etcd::Etcd::connect(target, *serializable, &format!("{prefix}{}/", ctx.id))
                .await?,
        )),
        ClientSpec::Http(http) => Ok(Box::new(super::http::HttpClient::new(
            http.clone(),
            target,
            ctx,
        )?)),
        ClientSpec::Stdio { command } => Ok(Box::new(
            super::stdio::Stdio::spawn(command, target, ctx, process).await?,
        )),
        _ => Err(format!(
            "the {} client is not supported",
            spec.client.name()
        )),
    }
}
