//! Exit codes of the `troupe` command. Scripts and CI may depend on these; they only ever grow.

/// Everything asked for was done.
pub const OK: i32 = 0;
/// Something failed at run time that is not covered by a more specific code.
pub const FAILURE: i32 = 1;
/// The command line or the spec is invalid. Nothing was started.
pub const INVALID_INPUT: i32 = 2;
/// The cluster did not come up: a node exited early or a probe hit its deadline.
/// Everything that had been started was stopped again.
pub const START_FAILED: i32 = 3;
/// The state directory is in use by another live run, or holds a run that cannot be driven.
pub const STATE_CONFLICT: i32 = 4;
/// No live troupe runs in the state directory (it ended or crashed).
pub const NOT_RUNNING: i32 = 5;
/// `troupe verify` could not decide within its budget (time, states or memory): the history
/// is neither proven valid nor invalid.
pub const UNKNOWN: i32 = 6;
/// troupe was interrupted (Ctrl-C or SIGTERM) before the cluster was ready.
pub const INTERRUPTED: i32 = 130;
