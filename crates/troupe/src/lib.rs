//! troupe starts real clusters of real server processes from one TOML spec, waits until they
//! are ready, injects faults, and stops them without leaving anything behind.
//!
//! ```no_run
//! let cluster = troupe::Cluster::start("examples/etcd/cluster.toml").unwrap();
//! let node = cluster.node("main-1").unwrap();
//! println!("etcd at {} with client cert {}", node.url("client"), node.tls().client_cert.display());
//! cluster.kill("main-2").unwrap();
//! cluster.start_node("main-2").unwrap();
//! // Dropping the cluster kills every node; a failing test keeps its logs.
//! ```
//!
//! From async code, [`AsyncCluster`] has the same methods as futures
//! (`Cluster::builder(spec).start_async().await`).
//!
//! `docs/architecture.md` shows how a spec flows through the modules: `troupe_spec` parses and
//! validates it; [`plan`] resolves it (ports, templates, binaries); the engine provisions the
//! run and hands each node to a node runtime, targets to `select`, faults to [`net`], and
//! reports through the descriptor and [`report`].

mod builder;
mod cluster;
mod command;
pub mod control;
mod deadline;
mod descriptor;
mod engine;
pub mod envvars;
pub mod error;
mod group;
mod http;
mod keeper;
mod lifecycle;
pub mod net;
mod node;
pub mod pki;
pub mod plan;
pub mod ports;
mod probe;
pub mod report;
mod resolved;
mod roles;
mod runtime;
pub mod scenario;
mod select;
pub mod state;
mod sys;
pub mod template;
pub mod workload;

pub use builder::{ClusterDef, SpecBuilder};
pub use cluster::{AsyncCluster, Cluster, ClusterBuilder, Node};
pub use engine::Interrupt;
pub use error::{Error, StartFailure, StartReason};
pub use probe::{client_config, log_tail};
pub use roles::unix_ms;
pub use select::SELECTORS;
pub use troupe_spec::history;
pub use troupe_spec::{Descriptor, NodeDescriptor, NodeState, NodeTls, Spec};
/// The checkers: [`verify::linearizable`], [`verify::set`], [`verify::stats`] (the
/// `troupe-verify` crate).
pub use troupe_verify as verify;
