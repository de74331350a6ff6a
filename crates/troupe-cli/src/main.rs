//! `troupe`: bring up real clusters from a TOML spec, issue certificates, and (later) drive
//! and check them. Argument parsing and rendering only; the work is in the `troupe` crate.

/// `println!` for commands that must outlive their reader (`up`, `run`): a closed stdout (as in
/// `troupe run s.toml | head`) loses the rest of the output, not the run and its cleanup.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod certs;
mod ctl;
mod rootless;
mod run;
mod shell;
mod signal;
mod up;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use troupe_spec::control::{Fault, Request};
use troupe_spec::exit;
use troupe_spec::scenario::NodeOp;

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
  troupe up examples/etcd/cluster.toml --detach  the same in the background
  troupe status; troupe kill main:leader; troupe wait leader; troupe down
  troupe check examples/etcd/cluster.toml       validate a spec without starting anything
  troupe run examples/etcd-kv/scenario.toml --junit report.xml   a scenario, with a verdict
  troupe run examples/etcd-linearizable/scenario.toml --html report.html   workload, faults, checker
  troupe verify history.jsonl --model register --html report.html
  troupe certs --out certs --cluster a --cluster b

Exit codes: 0 ok, 1 failure, 2 invalid command line or spec (nothing started),
3 the cluster did not come up (everything stopped again), 4 state directory in use,
5 no troupe is running in the state directory, 6 verify could not decide, 130 interrupted.";

#[derive(Subcommand)]
enum Command {
    /// Start every node of a spec and wait until all are ready; stay in the foreground, or --detach.
    ///
    /// Prints the nodes and their endpoints, and writes <state-dir>/cluster.json once every
    /// node is ready. Ctrl-C (or SIGTERM) stops the nodes gracefully: their stop signal, a grace
    /// period, then SIGKILL; a second Ctrl-C kills them at once. If troupe itself is killed,
    /// its nodes die with it.
    Up(up::UpArgs),
    /// Run a scenario: ordered steps against real clusters, with a verdict.
    ///
    /// Exit 0 when every step passed, 1 when one failed, 2 when the scenario is invalid,
    /// 130 when interrupted. On failure every node's logs and data are kept and the path is
    /// printed. See docs/scenarios.md for the format.
    Run(run::RunArgs),
    /// Check a recorded history: linearizable (register, kv) or no lost elements (set).
    ///
    /// Reads troupe's history.jsonl (or Jepsen's text with --format jepsen), prints the verdict
    /// and, for an anomaly, the key, the calls that cannot be ordered and the longest valid
    /// order found. Exit 0 valid, 1 invalid, 2 unreadable history, 6 unknown (the time or
    /// state budget ran out first).
    Verify(verify::VerifyArgs),
    /// Validate a spec or a scenario without starting anything.
    ///
    /// A spec: syntax, keys, templates, binaries, ports. A scenario: its syntax, every spec it
    /// brings up, and every step against the clusters that will be up when it runs (targets,
    /// selectors, `on`, `cluster`, templates, captured variables). Exit 0 valid, 2 not.
    Check {
        /// The spec or scenario file.
        spec: PathBuf,
        /// Override one spec key, as `troupe up --set` does (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
        set: Vec<String>,
    },
    /// Issue a CA and per-cluster server and client certificates into a directory.
    ///
    /// Writes ca.pem, ca.key, and for each cluster <cluster>-server.pem/.key (server and client
    /// auth; SANs localhost, 127.0.0.1, ::1) and <cluster>-client.pem/.key (client auth). Keys
    /// are mode 0600. No openssl needed.
    Certs(certs::CertsArgs),
    /// Every node's live state, pid, role and endpoints, and each cluster's leader and timings.
    Status {
        #[command(flatten)]
        run: ctl::Where,
        /// The live descriptor as JSON (cluster.json with current states, roles and timings).
        #[arg(long)]
        json: bool,
    },
    /// Shell exports for every endpoint and certificate path: eval "$(troupe env)".
    ///
    /// TROUPE_STATE_DIR, TROUPE_CA, TROUPE_CA_BUNDLE (every CA), TROUPE_CA_<NAME> (per
    /// `[tls] cas`), TROUPE_NODES; per node (MAIN_1 for main-1) TROUPE_MAIN_1_HOST, _PID, _<PORT>
    /// (host:port), _<PORT>_URL, _DATA_DIR, _LOG, _CERT, _KEY, _CLIENT_CERT, _CLIENT_KEY, _CA
    /// (the node's CA), _BAD_<VARIANT>_CERT/_KEY; per cluster TROUPE_MAIN_<PORT>_URLS and
    /// TROUPE_MAIN_<PORT>_ADDRS (comma-separated URLs, and host:port lists for bootstrap) and
    /// TROUPE_MAIN_LEADER.
    Env {
        #[command(flatten)]
        run: ctl::Where,
        /// One JSON object instead of shell exports.
        #[arg(long)]
        json: bool,
    },
    /// Print a node's log (stdout and stderr); works after the run has ended too.
    Logs {
        #[command(flatten)]
        run: ctl::Where,
        /// The node, e.g. main-1.
        node: String,
        /// Keep printing what the node writes, until Ctrl-C.
        #[arg(short, long)]
        follow: bool,
        /// How many lines from the end to start with.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
    },
    /// SIGKILL the targets' process groups (no grace).
    ///
    /// A target is a node (main-1), a cluster (main: all its nodes), or CLUSTER:SELECTOR with
    /// SELECTOR one of leader, followers, random, one, minority, majority, all. leader and
    /// followers need the cluster's role probe.
    Kill(Targets),
    /// Stop the targets gracefully: their stop signal, the grace period, then SIGKILL.
    Stop(Targets),
    /// Start stopped or killed targets again (same ports, data and certificates); waits until ready.
    Start(Targets),
    /// Stop, then start the targets.
    Restart(Targets),
    /// SIGSTOP the targets' process groups.
    Pause(Targets),
    /// SIGCONT the targets' process groups.
    Resume(Targets),
    /// Partition nodes into groups that cannot reach each other: "main-1 | main-2 main-3".
    ///
    /// Each group is a list of targets (nodes, clusters, CLUSTER:SELECTOR); nodes in no group
    /// are unaffected. Needs the clusters in `network = "namespaces"`. `troupe heal` undoes it.
    Partition {
        #[command(flatten)]
        run: ctl::Where,
        /// Groups separated by `|`, e.g. "main:leader | main:followers".
        groups: String,
        /// A node that reaches both sides (a bridge between the groups).
        #[arg(long)]
        bridge: Option<String>,
    },
    /// Cut each target off from every other node (and with --host from the host's clients too).
    Isolate {
        #[command(flatten)]
        run: ctl::Where,
        #[arg(required = true)]
        targets: Vec<String>,
        /// Also cut the targets off from the host (troupe's probes and your clients).
        #[arg(long)]
        host: bool,
    },
    /// Drop packets from FROM to TO, and back unless --one-way.
    Cut {
        #[command(flatten)]
        run: ctl::Where,
        from: String,
        to: String,
        #[arg(long)]
        one_way: bool,
    },
    /// Reset (RST) every connection from FROM to TO, and new ones, until `troupe heal`.
    ///
    /// Link proxies only (`network = "proxies"`); refused for nodes in namespaces.
    Reset {
        #[command(flatten)]
        run: ctl::Where,
        from: String,
        to: String,
    },
    /// Degrade the targets' outgoing traffic: delay, jitter, loss, rate (netem).
    Degrade {
        #[command(flatten)]
        run: ctl::Where,
        #[arg(required = true)]
        targets: Vec<String>,
        /// Added latency, e.g. 50ms.
        #[arg(long, default_value = "0ms")]
        delay: String,
        /// Latency jitter, e.g. 5ms.
        #[arg(long, default_value = "0ms")]
        jitter: String,
        /// Packet loss in percent, e.g. 1.5.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Rate limit in netem's terms, e.g. 1mbit.
        #[arg(long)]
        rate: Option<String>,
    },
    /// Undo every network fault, or one by its id (`troupe status` lists them).
    Heal {
        #[command(flatten)]
        run: ctl::Where,
        /// The fault to undo, e.g. 2; without it, all.
        id: Option<u32>,
    },
    /// Wait until every node is ready, or until a cluster has a leader (printed).
    Wait {
        #[command(flatten)]
        run: ctl::Where,
        /// What to wait for.
        #[arg(value_enum)]
        until: Until,
        /// The cluster (needed for `leader` when several clusters have a role probe).
        #[arg(long)]
        cluster: Option<String>,
        /// How long to wait.
        #[arg(long, default_value = "30s")]
        timeout: String,
    },
    /// Stop every node gracefully (or --kill at once), then the supervisor.
    Down {
        #[command(flatten)]
        run: ctl::Where,
        /// SIGKILL every node at once instead of stopping them gracefully.
        #[arg(long, conflicts_with = "force")]
        kill: bool,
        /// Kill a stuck or crashed run: the supervisor and every node process group it
        /// recorded, each only after proving by pid and start time that it is that process.
        #[arg(long)]
        force: bool,
    },
    /// Run a command where the run's nodes are reachable: `troupe exec -- etcdctl get k`.
    ///
    /// A run started without root lives in a user and network namespace of its own (`troupe
    /// status` says so); CMD enters it, as root there, and reaches every node at its address
    /// (and `ip netns` sees the nodes' namespaces). Under root CMD runs as it is. Exits with
    /// CMD's status. --new runs CMD in a fresh namespace of its own instead.
    Exec(rootless::ExecArgs),
    /// Print a completion script: bash, zsh or fish (also completes the running cluster's targets).
    ///
    /// bash: troupe completions bash > ~/.local/share/bash-completion/completions/troupe
    /// zsh: troupe completions zsh > "${fpath[1]}/_troupe"
    /// fish: troupe completions fish > ~/.config/fish/completions/troupe.fish
    Completions(shell::CompletionsArgs),
    /// Print troupe's man page, or write one per command into --dir.
    ///
    /// troupe man --dir ~/.local/share/man/man1, then `man troupe`, `man troupe-kill`.
    Man(shell::ManArgs),
    /// Internal: names for the completion scripts.
    #[command(name = "__complete", hide = true)]
    Complete(shell::CompleteArgs),
}

#[derive(clap::Args)]
struct Targets {
    #[command(flatten)]
    run: ctl::Where,
    /// Nodes, clusters, or CLUSTER:SELECTOR (leader, followers, random, one, minority, majority, all).
    #[arg(required = true)]
    targets: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Until {
    /// Every node (of --cluster, or all) is ready.
    Ready,
    /// Exactly one node of the cluster claims to lead; prints its name. Several claimants (a
    /// split brain) fail the wait, naming them.
    Leader,
    /// At least one node claims to lead, split brain or not; prints the first and, when there
    /// are several, names them all on stderr.
    AnyLeader,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if !matches!(cli.command, Command::Up(_) | Command::Run(_)) {
        // `troupe status | head` must end quietly when its reader goes away, as `ls | head`
        // does, not panic on a broken pipe. Not for `up` and `run`: they own sockets and
        // nodes, and must never die of a client that hung up.
        // SAFETY: setting a signal's disposition to its default is always sound.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let code = match cli.command {
        Command::Up(args) => up::run(args),
        Command::Check { spec, set } => check(&spec, &set),
        Command::Run(args) => run::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Certs(args) => certs::run(args),
        Command::Completions(args) => shell::completions(args),
        Command::Man(args) => shell::man(args),
        Command::Complete(args) => shell::complete(args),
        Command::Exec(args) => rootless::exec(args),
        Command::Status { run, json } => ctl::status(&run, json),
        Command::Env { run, json } => ctl::env(&run, json),
        Command::Logs {
            run,
            node,
            follow,
            lines,
        } => ctl::logs(&run, &node, follow, lines),
        Command::Kill(t) => ctl::op(&t.run, NodeOp::Kill, t.targets),
        Command::Stop(t) => ctl::op(&t.run, NodeOp::Stop, t.targets),
        Command::Start(t) => ctl::op(&t.run, NodeOp::Start, t.targets),
        Command::Restart(t) => ctl::op(&t.run, NodeOp::Restart, t.targets),
        Command::Pause(t) => ctl::op(&t.run, NodeOp::Pause, t.targets),
        Command::Resume(t) => ctl::op(&t.run, NodeOp::Resume, t.targets),
        Command::Wait {
            run,
            until,
            cluster,
            timeout,
        } => {
            let until = match until {
                Until::Ready => troupe_spec::control::WaitFor::Ready,
                Until::Leader => troupe_spec::control::WaitFor::Leader,
                Until::AnyLeader => troupe_spec::control::WaitFor::AnyLeader,
            };
            ctl::wait(&run, until, cluster, &timeout)
        }
        Command::Down { run, force, kill } => ctl::down(&run, force, kill),
        Command::Partition {
            run,
            groups,
            bridge,
        } => ctl::fault(
            &run,
            Request::Fault {
                fault: Fault::Partition {
                    groups: ctl::groups(&groups),
                    bridge,
                },
            },
        ),
        Command::Isolate { run, targets, host } => ctl::fault(
            &run,
            Request::Fault {
                fault: Fault::Isolate { targets, host },
            },
        ),
        Command::Cut {
            run,
            from,
            to,
            one_way,
        } => ctl::fault(
            &run,
            Request::Fault {
                fault: Fault::Cut {
                    from: vec![from],
                    to: vec![to],
                    one_way,
                },
            },
        ),
        Command::Degrade {
            run,
            targets,
            delay,
            jitter,
            loss,
            rate,
        } => {
            let (Ok(d), Ok(j)) = (
                troupe_spec::parse_duration(&delay),
                troupe_spec::parse_duration(&jitter),
            ) else {
                eprintln!("error: --delay and --jitter take durations such as 50ms");
                return ExitCode::from(exit::INVALID_INPUT as u8);
            };
            let fault = Fault::Degrade {
                targets,
                delay_ms: d.as_secs_f64() * 1000.0,
                jitter_ms: j.as_secs_f64() * 1000.0,
                loss_pct: loss,
                rate,
            };
            ctl::fault(&run, Request::Fault { fault })
        }
        Command::Heal { run, id } => ctl::fault(&run, Request::Heal { id }),
        Command::Reset { run, from, to } => ctl::fault(
            &run,
            Request::Fault {
                fault: Fault::Reset {
                    from: vec![from],
                    to: vec![to],
                },
            },
        ),
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

/// Checks one `--set KEY=VALUE` as clap parses it, so a malformed one is a usage error.
pub(crate) fn parse_set(text: &str) -> Result<String, String> {
    troupe_spec::overrides::Override::parse(text).map(|_| text.to_string())
}

/// The `--set` values, parsed (clap has checked each).
pub(crate) fn overrides(sets: &[String]) -> Vec<troupe_spec::overrides::Override> {
    sets.iter()
        .filter_map(|s| troupe_spec::overrides::Override::parse(s).ok())
        .collect()
}

fn check(spec: &std::path::Path, sets: &[String]) -> i32 {
    if is_scenario(spec) {
        return match troupe::scenario::load_with(spec, overrides(sets)) {
            Ok(s) => {
                let n = s.steps.len();
                println!(
                    "{}: ok (scenario `{}`, {n} step{})",
                    spec.display(),
                    s.name,
                    if n == 1 { "" } else { "s" }
                );
                exit::OK
            }
            Err(problems) => {
                for p in problems {
                    report_invalid(p);
                }
                exit::INVALID_INPUT
            }
        };
    }
    let parsed = match troupe_spec::Spec::from_path_with(spec, &overrides(sets)) {
        Ok(s) => s,
        Err(e) => return report(troupe::Error::Spec(e)),
    };
    if let Err(e) = troupe::plan::check(&parsed) {
        return report(troupe::Error::Spec(e));
    }
    for w in troupe::plan::probe_cost_warnings(&parsed) {
        eprintln!("troupe: warning: {w}");
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

/// Whether a TOML file is a scenario (it has `[[step]]` tables) rather than a spec.
fn is_scenario(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("step") || t.contains_key("finally"))
}

/// The documented exit code of an engine error.
pub fn code_of(e: &troupe::Error) -> i32 {
    match e {
        troupe::Error::Spec(_) | troupe::Error::StateDirInvalid { .. } => exit::INVALID_INPUT,
        troupe::Error::Start(_) => exit::START_FAILED,
        troupe::Error::StateDirBusy { .. } | troupe::Error::StateDirForeign { .. } => {
            exit::STATE_CONFLICT
        }
        troupe::Error::Interrupted => exit::INTERRUPTED,
        _ => exit::FAILURE,
    }
}

/// Prints an error with its snippet and hint, and returns its exit code.
pub fn report(e: troupe::Error) -> i32 {
    let code = code_of(&e);
    match e {
        troupe::Error::Spec(invalid) => report_invalid(invalid),
        other => eprintln!("{:?}", miette::Report::new(other)),
    }
    code
}

/// A file's problems, each rendered with its place in the file (rather than as "related"
/// diagnostics, which miette heads with an empty `Error:` line).
pub fn report_invalid(invalid: troupe_spec::InvalidSpec) {
    eprintln!("error: {invalid}");
    for e in invalid.errors {
        eprintln!("{:?}", miette::Report::new(e));
    }
}

pub fn report_io(what: &str, e: std::io::Error) -> i32 {
    eprintln!("error: failed to {what}: {e}");
    exit::FAILURE
}
