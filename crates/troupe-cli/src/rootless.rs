//! Runs without root: `up` and `run` enter a user namespace of their own at start when a spec
//! needs network namespaces (see `troupe::net::userns`), and `troupe exec` runs a command
//! inside a run's namespaces, where its nodes are reachable.

use std::os::unix::process::CommandExt;
use std::path::Path;

use clap::Args;
use troupe_spec::scenario::{Scenario, Step, StepKind};
use troupe_spec::{Network, Runtime, Spec, exit};

/// Whether a spec puts a cluster of processes in network namespaces (containers on a run's
/// Docker network need real root: a user namespace of troupe's own would not help them).
pub fn spec_needs(spec: &Spec) -> bool {
    spec.clusters
        .values()
        .any(|c| matches!(c.network, Network::Namespaces) && c.runtime == Runtime::Process)
}

/// Whether a scenario brings up a spec that puts a cluster in network namespaces (with the
/// `--set` overrides and each `up` step's own `set`).
pub fn scenario_needs(scenario: &Scenario) -> bool {
    fn walk(steps: &[Step], scenario: &Scenario) -> bool {
        steps.iter().any(|s| match &s.kind {
            StepKind::Up { specs, set } => {
                // A templated `set` is rendered at run time: any that sets a network may ask
                // for namespaces (entering one costs a few milliseconds).
                set.iter().any(|kv| kv.contains("network"))
                    || specs.iter().any(|p| {
                        let base = s.source.path.parent().unwrap_or(Path::new("."));
                        Spec::from_path_with(base.join(p), &scenario.overrides)
                            .is_ok_and(|spec| spec_needs(&spec))
                    })
            }
            other => walk(other.nested(), scenario),
        })
    }
    walk(&scenario.steps, scenario) || walk(&scenario.finally, scenario)
}

/// Enters a user namespace when not root and `needed`; the error is reported and its exit
/// code returned. Call while the process has a single thread.
pub fn enter_if(needed: bool) -> Result<(), i32> {
    if !needed || !troupe::net::userns::needed() {
        return Ok(());
    }
    troupe::net::userns::enter().map_err(crate::report)
}

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    run: crate::ctl::Where,
    /// Run CMD in a fresh user, network and mount namespace of its own (as root there, with a
    /// private /run/netns) rather than in a run's: e.g. `troupe exec --new -- cargo test`
    /// lets tests that use troupe::Cluster with namespaces run without root.
    #[arg(long)]
    new: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// `troupe exec -- CMD`: runs CMD where the run's nodes are reachable. A run without root
/// lives in a user and network namespace of its own; CMD enters it (as the supervisor's
/// namespaces, found through the descriptor). Under root there is nothing to enter.
pub fn exec(args: ExecArgs) -> i32 {
    if args.new {
        if let Err(e) = troupe::net::userns::enter() {
            return crate::report(e);
        }
    } else {
        let dir = match args.run.resolve() {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return exit::INVALID_INPUT;
            }
        };
        let descriptor = dir.join("cluster.json");
        let d: troupe_spec::Descriptor = match std::fs::read_to_string(&descriptor)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            Some(d) => d,
            None => {
                eprintln!(
                    "error: no running troupe in {} (no readable {})",
                    dir.display(),
                    descriptor.display()
                );
                return exit::NOT_RUNNING;
            }
        };
        let alive = d
            .supervisor_start_time
            .is_some_and(|s| troupe::state::is_same_supervisor(d.supervisor_pid, s));
        if !alive || !troupe::state::is_live(&dir) {
            eprintln!(
                "error: the run in {} is not running (supervisor pid {} is gone)",
                dir.display(),
                d.supervisor_pid
            );
            return exit::NOT_RUNNING;
        }
        if let Err(e) = troupe::net::userns::join(d.supervisor_pid) {
            return crate::report(e);
        }
    }
    let err = std::process::Command::new(&args.cmd[0])
        .args(&args.cmd[1..])
        .exec();
    eprintln!("error: cannot run `{}`: {err}", args.cmd[0]);
    if err.kind() == std::io::ErrorKind::NotFound {
        127
    } else {
        126
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(rel)
    }

    #[test]
    fn a_scenario_needs_a_user_namespace_only_when_a_spec_it_brings_up_has_namespaces() {
        let load = |rel: &str, sets: &[&str]| {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            troupe::scenario::load_with(&example(rel), crate::overrides(&sets))
                .unwrap_or_else(|e| panic!("{rel}: {e:?}"))
        };
        assert!(scenario_needs(&load("etcd-partition/scenario.toml", &[])));
        assert!(!scenario_needs(&load("etcd-kv/scenario.toml", &[])));
        assert!(scenario_needs(&load(
            "etcd-kv/scenario.toml",
            &["clusters.main.network=namespaces"]
        )));
    }
}
