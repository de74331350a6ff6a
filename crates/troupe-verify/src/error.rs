//! Why a history cannot be checked at all, as opposed to a verdict about it.
//!
//! A malformed history (a completion nobody invoked, a process that runs two operations at
//! once) is a bug in the workload or the file, not an anomaly of the system under test, so it is
//! an error rather than a verdict. Every variant names the operation by its 0-based index in the
//! history.

use crate::Model;

/// A history that cannot be checked. Messages read after "failed to ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    #[error("pair operation {index}: process {process} completes an operation it never invoked")]
    CompletionWithoutInvoke { index: usize, process: u64 },

    #[error(
        "pair operation {index}: process {process} invokes again while its operation {pending} \
         has not completed\n(hint: one process runs one operation at a time)"
    )]
    InvokeWhilePending {
        index: usize,
        process: u64,
        pending: usize,
    },

    #[error(
        "pair operation {index}: process {process} is used again after operation {info} left \
         it in doubt (info)\n(hint: after an info completion, a workload goes on with a fresh \
         process id)"
    )]
    ReusedAfterInfo {
        index: usize,
        process: u64,
        info: usize,
    },

    #[error(
        "pair operation {index}: it completes {found:?} on key {found_key:?}, but process \
         {process} invoked {invoked:?} on key {invoked_key:?} (operation {pending})"
    )]
    MismatchedCompletion {
        index: usize,
        process: u64,
        pending: usize,
        invoked: String,
        invoked_key: Option<String>,
        found: String,
        found_key: Option<String>,
    },

    #[error(
        "pair operation {index}: it completes at {time} ns, before its invocation (operation \
         {pending}) at {invoked} ns"
    )]
    CompletedBeforeInvoked {
        index: usize,
        pending: usize,
        time: u64,
        invoked: u64,
    },

    #[error(
        "check operation {index}: the {model} model has no operation {f:?} (expected {expected})"
    )]
    UnknownOperation {
        index: usize,
        model: Model,
        f: String,
        expected: &'static str,
    },

    #[error("check operation {index}: {f} needs {expected}, found {found}")]
    BadValue {
        index: usize,
        f: String,
        expected: &'static str,
        found: String,
    },

    #[error(
        "check linearizability with the {model} model: it has no sequential specification here\n\
         (hint: check set histories with `set`)"
    )]
    UnsupportedModel { model: Model },
}
