//! The workload engine on a cluster of fixture nodes, with clients that need no server: the
//! in-process memory store, and stdio programs written for the test.

mod common;

use std::time::Duration;

use troupe::Cluster;
use troupe::history::OpType;
use troupe::verify::{Budget, Verdict};
use troupe::workload::{ClientSpec, Model, WorkloadOptions, WorkloadSpec};

fn fixture_cluster(nodes: u32) -> Cluster {
    let spec = format!(
        r#"
[clusters.fx]
nodes = {nodes}
binary = "{bin}"
ports = ["client"]
args = ["--listen", "{{{{ node.host }}}}:{{{{ node.ports.client }}}}"]
[[clusters.fx.ready]]
tcp = "client"
timeout = "10s"
"#,
        bin = common::fixture_bin().display()
    );
    Cluster::from_toml("fixture.toml", spec)
        .start()
        .expect("fixture cluster")
}

fn budget() -> Budget {
    Budget::new(Duration::from_secs(60), 50_000_000)
}

#[test]
fn a_memory_workload_records_every_call_and_is_linearizable() {
    let cluster = fixture_cluster(3);
    for model in [Model::Register, Model::Kv] {
        let spec = WorkloadSpec::new(model, ClientSpec::Memory)
            .processes(8)
            .ops(4_000)
            .seed(11);
        let history = cluster.workload(spec).unwrap().wait().unwrap();
        assert_eq!(history.calls(), 4_000, "{model}");
        assert_eq!(history.ops.len(), 8_000);
        assert!(history.ops.windows(2).all(|w| w[0].time <= w[1].time));
        // Every process ran on one of the nodes, round robin over the slots.
        let nodes: std::collections::BTreeSet<_> =
            history.ops.iter().filter_map(|o| o.node.clone()).collect();
        assert_eq!(nodes.len(), 3);
        let verdict = history.check(budget()).unwrap();
        assert_eq!(verdict.valid(), Some(true), "{model}: {verdict}");
    }
}

#[test]
fn the_same_seed_asks_each_process_for_the_same_operations() {
    let cluster = fixture_cluster(1);
    let run = |processes: u32, seed| {
        let spec = WorkloadSpec::new(Model::Register, ClientSpec::Memory)
            .processes(processes)
            .ops(400)
            .seed(seed);
        let h = cluster.workload(spec).unwrap().wait().unwrap();
        let mut per: Vec<Vec<(String, String)>> = vec![Vec::new(); processes as usize];
        for o in h.ops.iter().filter(|o| o.kind == OpType::Invoke) {
            per[o.process as usize].push((o.f.clone(), o.value.to_string()));
        }
        per
    };
    // One process: exactly the same 400 operations.
    let (a, b, c) = (run(1, 5), run(1, 5), run(1, 6));
    assert_eq!(a[0].len(), 400);
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Several: processes race for the shared budget of 400, so each asks for a prefix of its
    // own sequence, the same in both runs.
    let (a, b) = (run(4, 5), run(4, 5));
    for p in 0..4 {
        let n = a[p].len().min(b[p].len());
        assert_eq!(a[p][..n], b[p][..n], "process {p}");
    }
}

#[test]
fn a_duration_ends_the_workload_and_end_cuts_it_short() {
    let cluster = fixture_cluster(1);
    let spec = WorkloadSpec::new(Model::Set, ClientSpec::Memory)
        .processes(2)
        .rate(200.0)
        .duration(Duration::from_millis(300));
    let h = cluster.workload(spec).unwrap().wait().unwrap();
    // 200 per second for 0.3 s, and the final read.
    let adds = h
        .ops
        .iter()
        .filter(|o| o.f == "add" && o.kind == OpType::Ok)
        .count();
    assert!((40..=70).contains(&adds), "{adds} adds");
    let report = troupe::verify::set(&h.ops).unwrap();
    assert_eq!(report.acknowledged, adds);
    assert!(report.lost.is_empty());

    let endless = WorkloadSpec::new(Model::Register, ClientSpec::Memory).rate(100.0);
    let w = cluster.workload(endless).unwrap();
    assert!(!w.is_finished());
    let h = w.finish().unwrap();
    assert!(h.elapsed < Duration::from_secs(5));
}

/// A stdio client in Python, with a bug switch: it serves reads from a stale copy.
const PY_CLIENT: &str = r#"
import json, sys, os, fcntl
path = os.environ["STORE"]
stale = os.environ.get("STALE") == "1"
cache = {}
for line in sys.stdin:
    req = json.loads(line)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        text = f.read()
        data = json.loads(text) if text else {}
        k = req.get("key")
        if req["f"] == "read":
            if stale and k in cache:
                out = {"type": "ok", "value": cache[k]}
            else:
                out = {"type": "ok", "value": data.get(k)}
                cache[k] = data.get(k)
        elif req["f"] == "write":
            data[k] = req["value"]
            out = {"type": "ok"}
        elif req["f"] == "cas":
            if data.get(k) == req["value"][0]:
                data[k] = req["value"][1]
                out = {"type": "ok"}
            else:
                out = {"type": "fail", "error": "compare failed"}
        f.seek(0); f.truncate(); f.write(json.dumps(data))
    print(json.dumps(out), flush=True)
"#;

fn stdio_workload(
    cluster: &Cluster,
    dir: &std::path::Path,
    stale: bool,
) -> troupe::workload::History {
    std::fs::write(dir.join("client.py"), PY_CLIENT).unwrap();
    let spec = WorkloadSpec::new(
        Model::Register,
        ClientSpec::Stdio {
            command: vec![
                "python3".into(),
                "client.py".into(),
                "{{ node.urls.client }}".into(),
            ],
        },
    )
    .processes(4)
    .keys(1)
    .ops(300)
    .seed(3);
    let store = dir.join(if stale { "stale.json" } else { "store.json" });
    let opts = WorkloadOptions::default().dir(dir).run_dir(dir).env(vec![
        ("STORE".into(), store.display().to_string()),
        ("STALE".into(), if stale { "1" } else { "0" }.into()),
    ]);
    cluster.workload_with(spec, opts).unwrap().wait().unwrap()
}

#[test]
fn a_stdio_client_in_python_is_checked_and_its_stale_reads_are_caught() {
    let cluster = fixture_cluster(2);
    let dir = tempfile::tempdir().unwrap();
    let good = stdio_workload(&cluster, dir.path(), false);
    assert_eq!(good.calls(), 300);
    assert!(good.path.as_ref().unwrap().exists());
    assert_eq!(good.check(budget()).unwrap().valid(), Some(true));

    let bad = stdio_workload(&cluster, dir.path(), true);
    match bad.check(budget()).unwrap() {
        troupe::workload::Judgement::Linearizable(Verdict::NotLinearizable(v)) => {
            assert_eq!(v.key.as_deref(), Some("k0"));
        }
        other => panic!("stale reads passed: {other}"),
    }
}

#[test]
fn a_client_program_that_cannot_start_fails_the_workload_clearly() {
    let cluster = fixture_cluster(1);
    let spec = WorkloadSpec::new(
        Model::Register,
        ClientSpec::Stdio {
            command: vec!["/nonexistent/client".into()],
        },
    )
    .ops(10);
    let err = cluster.workload(spec).unwrap().wait().unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot start `/nonexistent/client`"),
        "{err}"
    );
}

#[test]
fn a_client_program_that_hangs_or_dies_is_recorded_as_info_and_replaced() {
    let cluster = fixture_cluster(1);
    let dir = tempfile::tempdir().unwrap();
    // Answers one call, then hangs on the second, then (as a fresh process) dies.
    std::fs::write(
        dir.path().join("flaky.sh"),
        "read l; echo '{\"type\":\"ok\"}'; read l; if [ -e hung ]; then exit 3; fi; touch hung; exec sleep 1000\n",
    )
    .unwrap();
    let spec = WorkloadSpec::new(
        Model::Register,
        ClientSpec::Stdio {
            command: vec!["sh".into(), "flaky.sh".into()],
        },
    )
    .processes(1)
    .ops(4)
    .mix(&[("write", 1)])
    .timeout(Duration::from_millis(300));
    let h = cluster
        .workload_with(spec, WorkloadOptions::default().dir(dir.path()))
        .unwrap()
        .wait()
        .unwrap();
    let done: Vec<(u64, OpType)> = h
        .ops
        .iter()
        .filter(|o| o.kind != OpType::Invoke)
        .map(|o| (o.process, o.kind))
        .collect();
    assert_eq!(
        done,
        [
            (0, OpType::Ok),
            (0, OpType::Info),
            (1, OpType::Ok),
            (1, OpType::Info)
        ],
        "{:?}",
        h.ops
    );
    assert!(h.ops[3].error.as_deref().unwrap().contains("timed out"));
    assert!(h.ops[7].error.as_deref().unwrap().contains("exited"));
}

/// A JSON-over-HTTP key-value store in Python, run as the cluster's nodes: each node is its own
/// store, and the HTTP template client talks to one of them (every process to the same node,
/// so the history is of one store).
const HTTP_STORE: &str = r#"
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
data, lock = {}, threading.Lock()
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, status, body=None):
        text = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)
    def do_GET(self):
        key = self.path.rsplit("/", 1)[1]
        with lock:
            if key in data: self.reply(200, {"node": {"value": data[key]}})
            else: self.reply(404, {"error": "no such key"})
    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with lock: data[self.path.rsplit("/", 1)[1]] = body["value"]
        self.reply(204)
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = self.path.rsplit("/", 1)[1]
        with lock:
            if data.get(key) != body["expect"]: return self.reply(409, {"error": "compare failed"})
            data[key] = body["value"]
        self.reply(200, {})
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

#[test]
fn the_http_template_client_drives_a_json_store_and_its_history_is_linearizable() {
    use troupe::workload::{HttpClientSpec, HttpOp};
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("store.py");
    std::fs::write(&script, HTTP_STORE).unwrap();
    let spec = format!(
        r#"
[clusters.kv]
nodes = 2
binary = "python3"
ports = ["api"]
args = ["{script}", "{{{{ node.ports.api }}}}"]
[[clusters.kv.ready]]
http = "{{{{ node.urls.api }}}}/kv/probe"
status = 404
timeout = "10s"
"#,
        script = script.display()
    );
    let cluster = Cluster::from_toml("http.toml", spec)
        .start()
        .expect("python stores start");
    let mut read = HttpOp::new("GET", "{{ node.urls.api }}/kv/{{ op.key }}");
    read.value = Some("/node/value".into());
    read.absent = vec![404];
    let mut write = HttpOp::new("PUT", "{{ node.urls.api }}/kv/{{ op.key }}");
    write.body = Some(r#"{"value": {{ op.value }}}"#.into());
    let mut cas = HttpOp::new("POST", "{{ node.urls.api }}/cas/{{ op.key }}");
    cas.body = Some(r#"{"expect": {{ op.expected }}, "value": {{ op.new }}}"#.into());
    cas.fail = vec![409];
    let mut http = HttpClientSpec::default();
    http.ops.insert("read".into(), read);
    http.ops.insert("write".into(), write);
    http.ops.insert("cas".into(), cas);
    let spec = WorkloadSpec::new(Model::Register, ClientSpec::Http(http))
        .processes(4)
        .keys(2)
        .ops(600)
        .targets("kv-1");
    let h = cluster.workload(spec).unwrap().wait().unwrap();
    let count = |kind: OpType| h.ops.iter().filter(|o| o.kind == kind).count();
    assert_eq!(
        (count(OpType::Ok) + count(OpType::Fail), count(OpType::Info)),
        (600, 0)
    );
    // Some compare-and-sets found another value: definite failures, from status 409.
    assert!(h.ops.iter().any(|o| o.kind == OpType::Fail && o.f == "cas"));
    assert!(h.ops.iter().all(|o| o.node.as_deref() == Some("kv-1")));
    let verdict = h.check(budget()).unwrap();
    assert_eq!(verdict.valid(), Some(true), "{verdict}");
}
