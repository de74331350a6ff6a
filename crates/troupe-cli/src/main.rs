//! `troupe`: bring up real clusters from a TOML spec, issue certificates, and (later) drive
//! and check them. Argument parsing and rendering only; the work is in the `troupe` crate.

mod certs;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use troupe_spec::exit;

/// Start real clusters of real server processes from one TOML spec, check they are ready,
/// and tear them down without leaving anything behind.
#[derive(Parser)]
#[command(name = "troupe", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "Examples:
  troupe up examples/etcd/cluster.toml          3-node etcd with mTLS, in the foreground
  troupe check examples/etcd/cluster.toml       validate a spec without starting anything
  troupe certs --out certs --cluster a --cluster b

Exit codes: 0 ok, 1 failure, 2 invalid command line or spec (nothing started),
3 the cluster did not come up (everything stopped again), 4 state directory in use,
130 interrupted.";

#[derive(Subcommand)]
enum Command {
    /// Start every node of a spec, wait until all are ready, and stay in the foreground.
    ///
    /// Prints the nodes and their endpoints, and writes <state-dir>/cluster.json once every
    /// node is ready. Ctrl-C (or SIGTERM) stops the nodes gracefully: their stop signal, a grace
    /// period, then SIGKILL; a second Ctrl-C kills them at once. If troupe itself is killed,
    /// its nodes die with it.
    Up(up::UpArgs),
    /// Validate a spec (syntax, keys, templates, binaries) without starting anything.
    Check {
        /// The spec file.
        spec: PathBuf,
    },
    /// Issue a CA and per-cluster server and client certificates into a directory.
    ///
    /// Writes ca.pem, ca.key, and for each cluster <cluster>-server.pem/.key (server and client
    /// auth; SANs localhost, 127.0.0.1, ::1) and <cluster>-client.pem/.key (client auth). Keys
    /// are mode 0600. No openssl needed.
    Certs(certs::CertsArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let code = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Check { spec } => check(&spec),
        Command::Certs(args) => certs::run(args),
    };
    ExitCode::from(code as u8)
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TROUPE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn check(spec: &std::path::Path) -> i32 {
    let parsed = match troupe_spec::Spec::from_path(spec) {
        Ok(s) => s,
        Err(e) => return report(troupe::Error::Spec(e)),
    };
    if let Err(e) = troupe::plan::check(&parsed) {
        return report(troupe::Error::Spec(e));
    }
    let nodes: u32 = parsed.clusters.values().map(|c| c.nodes).sum();
    println!(
        "{}: ok ({} cluster{}, {nodes} node{})",
        spec.display(),
        parsed.clusters.len(),
        if parsed.clusters.len() == 1 { "" } else { "s" },
        if nodes == 1 { "" } else { "s" }
    );
    exit::OK
}

/// Prints an error with its snippet and hint, and returns its exit code.
pub fn report(e: troupe::Error) -> i32 {
    let code = match &e {
        troupe::Error::Spec(_) => exit::INVALID_INPUT,
        troupe::Error::Start(_) => exit::START_FAILED,
        troupe::Error::StateDirBusy { .. } | troupe::Error::StateDirForeign { .. } => exit::STATE_CONFLICT,
        troupe::Error::Interrupted => exit::INTERRUPTED,
        _ => exit::FAILURE,
    };
    eprintln!("{:?}", miette::Report::new(e));
    code
}
