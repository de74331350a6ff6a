//! Judges what the clients of a troupe run saw: was the history they recorded possible for a
//! correct system?
//!
//! A history ([`troupe_spec::history`]) lists each client's invocations and completions. This
//! crate first pairs them into calls ([`pair`]), which is also where a malformed history is
//! refused, then offers three checkers:
//!
//! - [`linearizable`]: could every operation have taken effect at one instant between its call
//!   and its return, in an order the model ([`Model::Register`] or [`Model::Kv`]) accepts? The
//!   history is split by key, since keys are independent, and each key is searched with the
//!   algorithm of Wing and Gong as improved by Lowe (and used by porcupine): depth-first over the
//!   operations that may come next, remembering every (set of linearized operations, model
//!   state) pair already explored. The search is bounded by a [`Budget`], whose end is the
//!   verdict [`Verdict::Unknown`], never a hang.
//! - [`set()`]: adds and a final read; which acknowledged adds were lost, which values came from
//!   nowhere, which were read twice, and which uncertain adds landed anyway.
//! - [`stats()`]: throughput, latency percentiles and availability inside and outside fault
//!   windows, overall and over time.
//!
//! [`html::render`] draws a history, its verdict and the run around it (nodes, faults, leaders,
//! steps) as one self-contained HTML page, with the operations of an anomaly highlighted.
//!
//! Verdicts are data (`serde::Serialize`) for reports, and their `Display` reads as a sentence.
//!
//! ```
//! use std::time::Duration;
//! use troupe_spec::history::{Op, OpType};
//! use troupe_verify::{Budget, Model, Verdict, linearizable};
//!
//! // Process 1 writes 1; process 2 then reads 0 (the initial value, "absent"): a stale read.
//! let history = [
//!     Op::new(1, OpType::Invoke, "write", 0).with_key("x").with_value(1),
//!     Op::new(1, OpType::Ok, "write", 10).with_key("x").with_value(1),
//!     Op::new(2, OpType::Invoke, "read", 20).with_key("x"),
//!     Op::new(2, OpType::Ok, "read", 30).with_key("x"),
//! ];
//! let verdict = linearizable(&history, Model::Register, Budget::new(Duration::from_secs(5), 1_000_000))
//!     .unwrap();
//! let Verdict::NotLinearizable(violation) = &verdict else { panic!("{verdict}") };
//! assert_eq!(violation.key.as_deref(), Some("x"));
//! assert_eq!(violation.stuck[0].invoke, 2);
//! println!("{verdict}");
//! ```

mod error;
mod hash;
pub mod html;
mod linearizable;
mod model;
mod pair;
mod set;
mod stats;
mod wgl;

pub use error::CheckError;
pub use linearizable::{Budget, OpRef, Verdict, Violation, linearizable};
pub use model::{Model, UnknownModel};
pub use pair::{Call, Outcome, pair};
pub use set::{Duplicate, ReadLoss, SetReport, SetVerdict, set};
pub use stats::{Availability, Bucket, FaultWindow, Group, Latency, MAX_BUCKETS, Stats, stats};
