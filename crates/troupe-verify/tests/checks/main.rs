//! Black-box tests of the checkers, in one binary: histories generated from a simulated correct
//! store (linearizable by construction) and the same with one anomaly injected, a brute-force
//! oracle on small histories, the shared real histories with known verdicts, the set checker,
//! malformed input and budgets.

mod budget;
mod generated;
mod malformed;
mod oracle;
mod set;
mod shared;
mod sim;

use std::path::PathBuf;

use troupe_spec::history::{Format, Op, read_all};

/// `shared/histories/kv/` beside the workspace, where the real histories live (not copied into
/// the repository).
pub fn shared_kv_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/histories/kv")
}

/// One of the shared kv histories, or `None` (with a note) when they are not on this machine.
pub fn shared_history(name: &str) -> Option<Vec<Op>> {
    let path = shared_kv_dir().join(name);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("skipping: cannot open {}: {e}", path.display());
            return None;
        }
    };
    Some(
        read_all(std::io::BufReader::new(file), Format::Jepsen)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
}
