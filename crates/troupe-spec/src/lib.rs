//! The stable, serde-facing types of troupe: the cluster spec users write, the run descriptor
//! (`cluster.json`) other tools read, and the exit codes of the `troupe` command.
//!
//! This crate is the first of troupe's two stages from input to action: it parses and validates
//! TOML into plain types that name what the user wrote, and touches nothing on the system.
//! Every error points into the spec: file, line, column, the key, what was expected and how to
//! fix it. The engine (`troupe`) resolves these types into a runnable plan.
//!
//! ```
//! let spec = troupe_spec::Spec::from_str(
//!     "demo.toml",
//!     r#"
//!     [clusters.main]
//!     nodes = 3
//!     binary = "sleep"
//!     args = ["1000"]
//!     "#,
//! )
//! .unwrap();
//! assert_eq!(spec.name, "demo");
//! assert_eq!(spec.clusters["main"].nodes, 3);
//! ```

pub mod control;
mod descriptor;
mod diag;
mod duration;
pub mod exit;
pub mod fault;
pub mod history;
mod load;
mod model;
pub mod overrides;
pub mod scenario;
pub mod workload;

pub use descriptor::{
    CertPair, ClusterStatus, Descriptor, Failover, FaultRecord, LeaderChange, NodeDescriptor,
    NodeEvent, NodeState, NodeTls, SplitBrain,
};
pub use diag::{InvalidSpec, SpecError, SpecSource, suggest};
pub use duration::{MAX_DURATION, checked_deadline, format_duration, parse_duration};
pub use model::{
    BootstrapOn, BootstrapStep, ClusterSpec, FileSpec, KeyType, Network, ProbeKind, ProbeSpec,
    RoleRuleSpec, RoleScope, RoleSourceSpec, RoleSpec, Runtime, Spanned, Spec, StartMode, StopSpec,
    TlsSpec,
};
