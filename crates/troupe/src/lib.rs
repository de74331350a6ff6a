//! troupe starts real clusters of real server processes from one TOML spec, waits until they
//! are ready, and stops them without leaving anything behind.
//!
//! ```no_run
//! let cluster = troupe::Cluster::start("examples/etcd/cluster.toml").unwrap();
//! let node = cluster.node("main-1").unwrap();
//! println!("etcd at {} with client cert {}", node.url("client"), node.tls().client_cert.display());
//! cluster.kill("main-2").unwrap();
//! cluster.start_node("main-2").unwrap();
//! // Dropping the cluster stops every node; a failing test keeps its logs.
//! ```
//!
//! The engine is built in two stages: `troupe_spec` parses and validates the spec; [`plan`]
//! resolves it (ports, templates, binaries) into a plan; the engine then issues certificates
//! ([`pki`]), spawns and supervises processes ([`supervisor`]) and waits on probes ([`probe`]).

mod builder;
mod cluster;
pub mod control;
mod engine;
pub mod envvars;
pub mod error;
mod keeper;
pub mod net;
pub mod pki;
pub mod plan;
pub mod ports;
pub mod probe;
pub mod report;
pub mod roles;
pub mod scenario;
pub mod state;
pub mod supervisor;
pub mod sys;
pub mod template;

pub use builder::{ClusterDef, SpecBuilder};
pub use cluster::{Cluster, ClusterBuilder, Node};
pub use engine::Interrupt;
pub use error::{Error, StartFailure, StartReason};
pub use troupe_spec::{Descriptor, NodeDescriptor, NodeState, NodeTls, Spec};
