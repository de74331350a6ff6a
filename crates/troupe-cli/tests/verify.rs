//! Workloads in scenarios and `troupe verify`, with the memory client and the fixture server:
//! no root, no real system, seconds each.

#[path = "../../troupe/tests/common/mod.rs"]
mod common;

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn troupe() -> Command {
    Command::cargo_bin("troupe").unwrap()
}

/// A scenario in `dir` with a fixture cluster and `steps` after `up`.
fn scenario(dir: &Path, steps: &str) -> std::path::PathBuf {
    let spec = format!(
        r#"
[clusters.fx]
nodes = 3
binary = "{bin}"
ports = ["client"]
args = ["--listen", "{{{{ node.host }}}}:{{{{ node.ports.client }}}}"]
[[clusters.fx.ready]]
tcp = "client"
timeout = "10s"
"#,
        bin = common::fixture_bin().display()
    );
    std::fs::write(dir.join("cluster.toml"), spec).unwrap();
    let text = format!("[[step]]\nname = \"up\"\nup = \"cluster.toml\"\n{steps}");
    let path = dir.join("scenario.toml");
    std::fs::write(&path, text).unwrap();
    path
}

const WORKLOAD: &str = r#"
[[step]]
name = "clients"
[step.workload]
model = "kv"
client = "memory"
processes = 4
ops = 2000
seed = 9
"#;

#[test]
fn a_workload_step_is_verified_and_reported_in_json_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let path = scenario(
        dir.path(),
        &format!("{WORKLOAD}\n[[step]]\nname = \"check\"\nverify = \"clients\"\n"),
    );
    let (json, html) = (dir.path().join("r.json"), dir.path().join("r.html"));
    troupe()
        .arg("run")
        .arg(&path)
        .arg("--json")
        .arg(&json)
        .arg("--html")
        .arg(&html)
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "4 memory clients on the kv model, seed 9, 2000 operations",
        ))
        .stdout(predicate::str::contains(
            "(kv, seed 9, 2000 calls, checked in",
        ))
        .stdout(predicate::str::contains(": linearizable"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let w = &report["workloads"][0];
    assert_eq!(
        (w["step"].as_str(), w["verdict"].as_str()),
        (Some("clients"), Some("valid"))
    );
    assert_eq!(w["calls"], 2000);
    let history = w["history"].as_str().unwrap();
    assert!(history.ends_with("run/history.jsonl"), "{history}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("linearizable"));

    // The history on its own: the same verdict from `troupe verify`, and exit 0.
    troupe()
        .args(["verify", history, "--model", "kv"])
        .assert()
        .success()
        .stdout(predicate::str::contains("2000 calls, kv model"))
        .stdout(predicate::str::contains("linearizable"));
}

#[test]
fn verify_exits_1_on_a_violation_and_names_it_and_6_when_it_cannot_decide() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("stale.jsonl");
    std::fs::write(
        &bad,
        r#"{"process":0,"type":"invoke","f":"write","key":"x","value":1,"time":0}
{"process":0,"type":"ok","f":"write","key":"x","value":1,"time":10}
{"process":1,"type":"invoke","f":"read","key":"x","time":20}
{"process":1,"type":"ok","f":"read","key":"x","value":null,"time":30}
"#,
    )
    .unwrap();
    troupe()
        .args(["verify", bad.to_str().unwrap(), "--model", "register"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "not linearizable: key \"x\" has no valid order of its 2 calls",
        ))
        .stdout(predicate::str::contains(
            "op 2 (process 1: read(\"x\") → null) cannot come next",
        ));

    // Twenty concurrent writes, then a read of one of them: valid, but only a search shows it,
    // and a budget of one state is not enough.
    let mut lines = String::new();
    for p in 0..20 {
        lines.push_str(&format!(
            r#"{{"process":{p},"type":"invoke","f":"write","key":"x","value":{p},"time":{p}}}"#
        ));
        lines.push('\n');
    }
    for p in 0..20 {
        lines.push_str(&format!(
            r#"{{"process":{p},"type":"ok","f":"write","key":"x","value":{p},"time":{}}}"#,
            100 + p
        ));
        lines.push('\n');
    }
    lines.push_str(
        "{\"process\":20,\"type\":\"invoke\",\"f\":\"read\",\"key\":\"x\",\"time\":200}\n",
    );
    lines.push_str(
        "{\"process\":20,\"type\":\"ok\",\"f\":\"read\",\"key\":\"x\",\"value\":7,\"time\":210}\n",
    );
    let hard = dir.path().join("hard.jsonl");
    std::fs::write(&hard, lines).unwrap();
    troupe()
        .args(["verify", hard.to_str().unwrap(), "--model", "register"])
        .assert()
        .success();
    let json = dir.path().join("v.json");
    troupe()
        .args([
            "verify",
            hard.to_str().unwrap(),
            "--model",
            "register",
            "--max-states",
            "1",
        ])
        .arg("--json")
        .arg(&json)
        .assert()
        .code(6)
        .stdout(predicate::str::contains("unknown"))
        .stderr(predicate::str::contains(
            "raise --time-limit or --max-states",
        ));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["verdict"], "unknown");
}

#[test]
fn verify_refuses_an_unreadable_history_with_its_line_and_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let jepsen = dir.path().join("h.edn");
    std::fs::write(
        &jepsen,
        "{:process 0, :type :invoke, :f :read, :key \"x\", :value nil}\n",
    )
    .unwrap();
    troupe()
        .args(["verify", jepsen.to_str().unwrap(), "--model", "register"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("h.edn:1: parse line 1"))
        .stderr(predicate::str::contains("add --format jepsen"));
    troupe()
        .args(["verify", "/nonexistent/h.jsonl", "--model", "set"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("cannot read /nonexistent/h.jsonl"));
}

#[test]
fn a_verify_step_without_a_workload_or_before_it_ends_fails_and_says_why() {
    // Each run keeps its directory (logs, history) in the test's own: failing runs keep theirs.
    let dir = tempfile::tempdir().unwrap();
    let endless = r#"
[[step]]
name = "clients"
[step.workload]
model = "register"
client = "memory"
rate = 100

[[step]]
name = "check too early"
verify = "clients"
timeout = "300ms"
"#;
    let path = scenario(dir.path(), endless);
    troupe()
        .arg("run")
        .arg(&path)
        .arg("--run-dir")
        .arg(dir.path().join("run1"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "workload `clients` is still running at this step's deadline: end it first with end_workload = \"clients\"",
        ));

    let ended = r#"
[[step]]
name = "clients"
[step.workload]
model = "register"
client = "memory"
rate = 100

[[step]]
name = "stop them"
end_workload = "clients"

[[step]]
name = "check"
verify = true
"#;
    let path = scenario(dir.path(), ended);
    troupe()
        .arg("run")
        .arg(&path)
        .arg("--run-dir")
        .arg(dir.path().join("run2"))
        .assert()
        .success()
        .stdout(predicate::str::contains("ended `clients`: "));

    let path = scenario(dir.path(), "[[step]]\nname = \"check\"\nverify = true\n");
    troupe()
        .arg("run")
        .arg(&path)
        .arg("--run-dir")
        .arg(dir.path().join("run3"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "there is no workload to verify: none has started",
        ));
}

// --- issue 11: a scenario is checked whole before anything starts ---------------------------

fn broken_scenario(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../troupe/tests/broken-scenarios")
        .join(name)
}

#[test]
fn a_broken_scenario_exits_2_at_its_line_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    troupe()
        .arg("run")
        .arg(broken_scenario("kill-misspelt-selector.toml"))
        .arg("--run-dir")
        .arg(&run_dir)
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("kill-misspelt-selector.toml:6:1"))
        .stderr(predicate::str::contains("did you mean `main:leader`?"))
        .stderr(predicate::str::contains("\nError:").not());
    assert!(
        !run_dir.exists(),
        "nothing was started, not even a run directory"
    );
    // The spec a scenario brings up is checked too, and its own error shown in full.
    troupe()
        .arg("check")
        .arg(broken_scenario("up-broken-spec.toml"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("specs/bad.toml:4:1"))
        .stderr(predicate::str::contains("did you mean `binary`?"));
    troupe()
        .arg("check")
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/etcd-linearizable/scenario.toml"),
        )
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ok (scenario `etcd-linearizable`, 12 steps)",
        ));
}

#[test]
fn expect_regexes_are_templates_and_a_failing_step_keeps_its_whole_output() {
    let dir = tempfile::tempdir().unwrap();
    let long = "x".repeat(500);
    let steps = format!(
        r#"
[[step]]
name = "capture"
sh = "echo hello"
capture = "X"
[[step]]
name = "expect a rendered regex"
sh = "echo hello"
expect = {{ stdout = '^{{{{ vars.X }}}}$' }}
[[step]]
name = "fail loudly"
sh = "echo {long} >&2; echo END-OF-IT >&2; exit 3"
"#
    );
    let path = scenario(dir.path(), &steps);
    let run_dir = dir.path().join("run");
    let out = troupe()
        .arg("run")
        .arg(&path)
        .arg("--run-dir")
        .arg(&run_dir)
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("✓ expect a rendered regex"), "{out}");
    let kept = run_dir.join("output/fail-loudly.log");
    assert!(
        out.contains(&format!("full output: {}", kept.display())),
        "{out}"
    );
    let text = std::fs::read_to_string(&kept).unwrap();
    assert!(text.contains(&long) && text.contains("END-OF-IT"), "{text}");
}

#[test]
fn a_state_dir_that_is_a_file_or_a_dangling_link_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("/nonexistent/troupe", &link).unwrap();
    let spec = dir.path().join("s.toml");
    std::fs::write(
        &spec,
        "[clusters.main]\nnodes = 1\nbinary = \"sleep\"\nargs = [\"100\"]\n",
    )
    .unwrap();
    for (path, why) in [(&file, "it is a file"), (&link, "a symlink to")] {
        troupe()
            .arg("up")
            .arg(&spec)
            .arg("--state-dir")
            .arg(path)
            .assert()
            .code(2)
            .stderr(predicate::str::contains("cannot be a state directory"))
            .stderr(predicate::str::contains(why))
            .stderr(predicate::str::contains("starting").not());
    }
}

#[test]
fn a_scenario_is_named_after_its_file_wherever_it_is_run_from() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("x.toml"),
        "[[step]]\nname = \"s\"\nsleep = \"1ms\"\n",
    )
    .unwrap();
    troupe()
        .current_dir(dir.path())
        .args(["run", "x.toml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("running `x` (1 step)"));
}
