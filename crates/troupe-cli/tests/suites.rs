//! The example suites against real systems: each scenario passes on a healthy system, and
//! each deliberately broken variant fails with a red verdict at the step its first line names
//! (`# expect-fail: <step>`).

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Runs a scenario; returns the exit code and the JSON report.
fn run(scenario: &Path) -> (i32, serde_json::Value, String) {
    let (code, report, console, _) = run_with_env(scenario, &[]);
    (code, report, console)
}

/// Runs a scenario with variables set in its environment; returns the exit code, the JSON
/// report, the console and the JUnit report.
fn run_with_env(scenario: &Path, env: &[(&str, &str)]) -> (i32, serde_json::Value, String, String) {
    run_with(scenario, env, &[])
}

/// Runs `troupe run SCENARIO ARGS...` with `env`; returns the exit code, the JSON report, the
/// console output and the JUnit XML.
fn run_with(
    scenario: &Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> (i32, serde_json::Value, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let junit = dir.path().join("report.xml");
    let html = dir.path().join("report.html");
    let out = std::process::Command::new(cargo_bin("troupe"))
        .arg("run")
        .arg(scenario)
        .arg("--html")
        .arg(&html)
        .arg("--json")
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = std::fs::read_to_string(&json)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_else(|_| panic!("no JSON report for {}:\n{console}", scenario.display()));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("<testsuite "), "JUnit report written");
    let page =
        std::fs::read_to_string(&html).unwrap_or_else(|_| panic!("no HTML report:\n{console}"));
    assert!(page.starts_with("<!DOCTYPE html>"), "HTML report written");
    let mut report = report;
    if let Some(workloads) = report["workloads"].as_array_mut() {
        // A test may judge the history itself: read it before the run directory goes.
        for w in workloads {
            if let Some(ops) = w["history"]
                .as_str()
                .and_then(|p| std::fs::read_to_string(p).ok())
            {
                w["ops"] = ops
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .collect();
            }
        }
    }
    if let Some(kept) = report["state_dir"].as_str() {
        // A failing run keeps its logs; the test has read what it needs.
        let _ = std::fs::remove_dir_all(kept);
    }
    (out.status.code().unwrap_or(-1), report, console, xml)
}

fn suite(name: &str) -> serde_json::Value {
    let dir = examples().join(name);
    let (code, report, console) = run(&dir.join("scenario.toml"));
    assert_eq!(code, 0, "{name}/scenario.toml should pass:\n{console}");
    assert_eq!(report["verdict"], "passed");
    let passing = report;

    let broken = dir.join("broken.toml");
    let first = std::fs::read_to_string(&broken).unwrap();
    let expected = first
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect-fail:"))
        .map(str::trim)
        .unwrap_or_else(|| {
            panic!(
                "{} must start with `# expect-fail: <step>`",
                broken.display()
            )
        })
        .to_string();
    let (code, report, console) = run(&broken);
    assert_eq!(code, 1, "{name}/broken.toml should fail:\n{console}");
    assert_eq!(report["verdict"], "failed");
    assert_eq!(
        report["failed_step"],
        expected.as_str(),
        "{name}/broken.toml failed elsewhere:\n{console}"
    );
    assert!(
        console.contains("FAILED: ") && console.contains(&expected),
        "{console}"
    );
    passing
}

#[test]
fn etcd_kv_suite_passes_and_its_broken_variant_fails_where_expected() {
    suite("etcd-kv");
}

/// Every bad client certificate troupe issues (and one of another CA) is refused by etcd for
/// its own reason; an etcd that trusts every CA of the run lets the other CA's client in.
/// The same etcd-kv suite with every member in a container of the local Docker Engine (the
/// host's etcd, in a container of host files): it passes, and no container is left.
#[test]
fn etcd_kv_suite_passes_on_the_docker_runtime_and_leaves_no_container() {
    let _one = one_docker_suite();
    let scenario = examples().join("etcd-kv/scenario.toml");
    let (code, report, console, _) =
        run_with(&scenario, &[], &["--set", "clusters.main.runtime=docker"]);
    assert_eq!(code, 0, "etcd-kv on docker should pass:\n{console}");
    assert_eq!(report["verdict"], "passed");
    // The Engine must be reachable: this fails, never skips, without it.
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "--all",
            "--quiet",
            "--filter",
            "label=troupe.cluster=main",
        ])
        .output()
        .expect("the docker client runs");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "no container is left"
    );
}

/// Builds `troupe-etcd:local` from the host's Debian etcd packages (examples/etcd-docker); the
/// Engine must be reachable: this fails, never skips, without it.
fn etcd_image() {
    let out = std::process::Command::new(examples().join("etcd-docker/build-image.sh"))
        .output()
        .expect("build-image.sh runs");
    assert!(
        out.status.success(),
        "building troupe-etcd:local failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a run of `troupe run` left on the Engine, by the label every docker run carries
/// (`troupe.cluster=main` for containers; networks by the run label's key).
fn left_on_engine() -> String {
    let mut left = String::new();
    for args in [
        &[
            "ps",
            "--all",
            "--quiet",
            "--filter",
            "label=troupe.cluster=main",
        ][..],
        &[
            "network",
            "ls",
            "--quiet",
            "--filter",
            "label=troupe.run",
            "--filter",
            "driver=bridge",
        ][..],
    ] {
        let out = std::process::Command::new("docker")
            .args(args)
            .output()
            .expect("the docker client runs");
        assert!(
            out.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        left += String::from_utf8_lossy(&out.stdout).trim();
    }
    left
}

/// The docker suites check the whole Engine for leftovers, so they run one at a time.
static ONE_DOCKER_SUITE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_docker_suite() -> std::sync::MutexGuard<'static, ()> {
    ONE_DOCKER_SUITE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const ETCD_IMAGE: [&str; 6] = [
    "--set",
    "clusters.main.runtime=docker",
    "--set",
    "clusters.main.image=troupe-etcd:local",
    "--set",
    "clusters.main.binary=/usr/bin/etcd",
];

/// etcd-kv with every member a container of an image built locally from Debian's etcd-server
/// package, on the host's network: it passes, and nothing is left.
#[test]
fn etcd_kv_suite_passes_on_an_image_built_from_debians_etcd() {
    let _one = one_docker_suite();
    etcd_image();
    let scenario = examples().join("etcd-kv/scenario.toml");
    let (code, report, console, _) = run_with(&scenario, &[], &ETCD_IMAGE);
    assert_eq!(
        code, 0,
        "etcd-kv on troupe-etcd:local should pass:\n{console}"
    );
    assert_eq!(report["verdict"], "passed");
    assert_eq!(left_on_engine(), "", "nothing is left on the Engine");
}

/// etcd-partition with every member a container of that image on a Docker network of the
/// run's own (the spec's `network = "namespaces"`): the leader is isolated inside its
/// container's namespace, the majority elects another, and after heal all converge.
#[test]
fn etcd_partition_suite_passes_on_docker_namespaces_with_the_image() {
    let _one = one_docker_suite();
    etcd_image();
    let scenario = examples().join("etcd-partition/scenario.toml");
    let (code, report, console, _) = run_with(&scenario, &[], &ETCD_IMAGE);
    assert_eq!(
        code, 0,
        "etcd-partition on docker namespaces should pass:\n{console}"
    );
    assert_eq!(report["verdict"], "passed");
    let faults = report["faults"].as_array().expect("faults in the report");
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(
        faults[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("isolate ")
    );
    assert_eq!(left_on_engine(), "", "nothing is left on the Engine");
}

#[test]
fn etcd_tls_matrix_suite_passes_and_its_broken_variant_fails_where_expected() {
    suite("etcd-tls-matrix");
}

#[test]
fn etcd_cdc_star_suite_passes_and_its_broken_variant_fails_where_expected() {
    suite("etcd-cdc-star");
}

#[test]
fn postgres_replicas_suite_passes_and_its_broken_variant_fails_where_expected() {
    suite("postgres-replicas");
}

/// A Redis Cluster formed by bootstrap steps on fixed ports loses the master of a key: its
/// replica takes over; formed without replicas (the broken variant), nobody does.
#[test]
fn redis_cluster_suite_passes_and_its_broken_variant_fails_where_expected() {
    let report = suite("redis-cluster");
    assert!(
        report["metrics"]["failover of the master of k"].as_f64() > Some(0.0),
        "{}",
        report["metrics"]
    );
}

#[test]
fn nats_lifecycle_suite_passes_and_its_broken_variant_fails_where_expected() {
    suite("nats-lifecycle");
}

#[test]
fn etcd_partition_suite_passes_and_its_broken_variant_fails_where_expected() {
    let report = suite("etcd-partition");
    let faults = report["faults"].as_array().expect("faults in the report");
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert!(
        faults[0]["description"]
            .as_str()
            .unwrap()
            .starts_with("isolate ")
    );
    assert!(faults[0]["healed_at_ms"].as_u64() >= faults[0]["started_at_ms"].as_u64());
}

#[test]
fn nats_partition_suite_passes_and_its_broken_variant_fails_where_expected() {
    suite("nats-partition");
}

/// The workload suite: ten etcd clients through a leader kill and an isolation are judged
/// linearizable; with serializable reads the checker finds a stale read and names it.
#[test]
fn etcd_linearizable_workload_is_judged_and_stale_reads_are_named() {
    let dir = examples().join("etcd-linearizable");
    let (code, report, console) = run(&dir.join("scenario.toml"));
    assert_eq!(code, 0, "scenario.toml should pass:\n{console}");
    let w = &report["workloads"][0];
    assert_eq!(w["verdict"], "valid", "{w}");
    assert!(w["calls"].as_u64().unwrap() > 1_000, "{w}");

    let (code, report, console) = run(&dir.join("broken.toml"));
    assert_eq!(code, 1, "broken.toml should fail:\n{console}");
    assert_eq!(
        report["failed_step"],
        "what the clients saw is linearizable"
    );
    let w = &report["workloads"][0];
    assert_eq!(w["verdict"], "invalid", "{w}");
    let why = w["explanation"].as_str().unwrap();
    assert!(
        why.starts_with("not linearizable: key ") && why.contains(": read(\"k"),
        "the explanation names the impossible read: {why}"
    );
}

/// The NATS partition as a set workload: values added through every node while the meta leader
/// is cut off (the stream led from the majority), each node's copy read at the end.
///
/// No acknowledged value may be missing from every copy, and the checker's verdict must match
/// what the copies hold, as this test reads them itself. One thing is allowed: copies that
/// disagree. Debian's nats-server 2.9.10 sometimes leaves the node that was cut off holding an
/// unacknowledged add at the sequence where the other two hold an acknowledged one (or the
/// other way round), 3 runs in about 20 on a loaded machine, once in CI; the scenario then
/// fails at its verify step, as it should, and this test says so on stderr
/// (examples/nats-partition/README.md, "The set workload"). set-workload-minority.toml, the
/// stream leader on the minority side, is not run here: it loses data in most runs, not all.
#[test]
fn nats_set_workload_keeps_every_acknowledged_value_through_a_partition() {
    use std::collections::{BTreeMap, BTreeSet};
    let scenario = examples().join("nats-partition/set-workload.toml");
    let (code, report, console, _) = run_with(&scenario, &[], &["--keep"]);
    let w = &report["workloads"][0];
    assert!(w["calls"].as_u64().unwrap() > 1_000, "{w}\n{console}");
    let check = &w["check"];
    assert!(check["acknowledged"].as_u64().unwrap() > 1_000, "{check}");
    for anomaly in ["unexpected", "failed_but_read", "duplicated"] {
        assert_eq!(check[anomaly].as_array().map(Vec::len), Some(0), "{check}");
    }

    let ops = w["ops"].as_array().expect("the history was read");
    let acked: BTreeSet<u64> = ops
        .iter()
        .filter(|o| o["f"] == "add" && o["type"] == "ok")
        .map(|o| o["value"].as_u64().unwrap())
        .collect();
    // The last successful read through each node: that node's copy.
    let mut copies: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for o in ops.iter().filter(|o| o["f"] == "read" && o["type"] == "ok") {
        let values = o["value"].as_array().unwrap().iter();
        copies.insert(
            o["node"].as_str().unwrap().to_string(),
            values.map(|v| v.as_u64().unwrap()).collect(),
        );
    }
    assert_eq!(copies.len(), 3, "a read of each node's copy:\n{console}");
    let on_no_copy: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|v| copies.values().all(|c| !c.contains(v)))
        .collect();
    assert_eq!(
        on_no_copy,
        Vec::<u64>::new(),
        "acknowledged, on no copy:\n{console}"
    );
    let disagree: Vec<(&String, Vec<u64>)> = copies
        .iter()
        .map(|(node, c)| (node, acked.difference(c).copied().collect::<Vec<_>>()))
        .filter(|(_, missing)| !missing.is_empty())
        .collect();
    if disagree.is_empty() {
        assert_eq!(code, 0, "set-workload.toml should pass:\n{console}");
        assert_eq!(w["verdict"], "valid", "{w}");
    } else {
        eprintln!(
            "nats-server's copies disagree (acknowledged values missing per copy: {disagree:?}): \
             the replica divergence examples/nats-partition/README.md describes"
        );
        assert_eq!(code, 1, "the divergence must fail the scenario:\n{console}");
        assert_eq!(w["verdict"], "invalid", "{w}");
        assert_eq!(
            report["failed_step"], "every node's copy holds every acknowledged value",
            "{console}"
        );
    }
}

/// One scenario for both etcd-kv variants: the caller's VARIANT picks the spec, the step for the
/// other variant is skipped (and reported so, never as passed), the shared checks are included
/// twice, and after the leader is killed for_each and converge cover the 2 members running.
#[test]
fn etcd_kv_variant_takes_its_parameter_from_the_environment_and_skips_the_other_variant() {
    let scenario = examples().join("etcd-kv/variant.toml");
    let tls_only = "with TLS, a client without a certificate is refused";
    let plain_only = "without TLS, plain HTTP is served";
    for (variant, ran, skipped) in [
        ("plain", plain_only, tls_only),
        ("tls", tls_only, plain_only),
    ] {
        let (code, report, console, junit) = run_with_env(&scenario, &[("VARIANT", variant)]);
        assert_eq!(code, 0, "VARIANT={variant} should pass:\n{console}");
        let step = |name: &str| {
            report["steps"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name)
                .unwrap_or_else(|| panic!("no step `{name}`:\n{console}"))
                .clone()
        };
        assert_eq!(
            report["steps"][0]["name"],
            format!("bring up 3 members ({variant})")
        );
        assert_eq!(step(ran)["verdict"], "passed", "{console}");
        assert_eq!(step(skipped)["verdict"], "skipped", "{console}");
        assert!(
            step(skipped)["detail"]
                .as_str()
                .unwrap()
                .starts_with("when `env.VARIANT == "),
            "{console}"
        );
        assert_eq!(report["counts"]["skipped"], 1, "{}", report["counts"]);
        assert!(
            junit.contains("<skipped message=\"when `env.VARIANT =="),
            "{junit}"
        );
        // After the kill: the shared checks ran on the 2 members left, and said which was out.
        let after = step("the checks with the 2 members still running");
        let each = after["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "get through every running member")
            .unwrap();
        assert_eq!(each["steps"].as_array().unwrap().len(), 2, "{each}");
        assert!(
            each["detail"]
                .as_str()
                .unwrap()
                .starts_with("not running, left out: main-"),
            "{each}"
        );
    }
}

#[path = "../../troupe/tests/common/swarm.rs"]
mod swarm;

/// The nats-lifecycle suite with every node a service of a (one-host) Docker Swarm, running
/// the nats-server image built from the host's package (examples/nats-swarm): it passes
/// unchanged (SIGKILLs, graceful stops, restarts, a full stop and start with every message
/// kept in the nodes' volumes), and nothing of the run is left afterwards.
#[test]
fn nats_lifecycle_suite_passes_on_a_docker_swarm_and_leaves_nothing_labelled() {
    let _swarm = swarm::Swarm::join();
    let image = swarm::nats_image();
    let scenario = examples().join("nats-lifecycle/scenario.toml");
    let image_set = format!("clusters.nats.image={image}");
    let args = [
        "--set",
        "clusters.nats.runtime=swarm",
        "--set",
        image_set.as_str(),
    ];
    let (code, report, console, _) = run_with(&scenario, &[], &args);
    assert_eq!(code, 0, "nats-lifecycle on swarm should pass:\n{console}");
    assert_eq!(report["verdict"], "passed");
    let left = swarm::labelled("troupe.cluster=nats");
    assert!(left.is_empty(), "left after the suite: {left:?}");
    // The run's overlay network carries only the run's label; no swarm test of this binary
    // runs besides this one.
    let networks = swarm::docker(&[
        "network",
        "ls",
        "--quiet",
        "--filter",
        "label=troupe.run",
        "--filter",
        "driver=overlay",
    ]);
    assert_eq!(networks, "", "no overlay network of a run is left");
}
