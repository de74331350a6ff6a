//! The workload engine's ceiling next to a real system, in one run: the same register
//! workload (10 processes, 45 % read, 45 % write, 10 % cas) through the in-process memory
//! client, which costs nothing but troupe's own bookkeeping, and through the etcd client
//! against the 3-member mTLS example. The memory figure is what troupe can record at most (the
//! goal: 100k ops/s on 2 cores); the etcd one is what a real cluster gives.
//!
//! `cargo bench -p troupe --bench workload`

use std::path::Path;
use std::time::{Duration, Instant};

use troupe::workload::{ClientSpec, Model, WorkloadSpec};

fn spec() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/etcd/cluster.toml")
}

/// Calls per second, and how long checking the history took.
fn measure(
    cluster: &troupe::Cluster,
    client: ClientSpec,
    ops: Option<u64>,
) -> (f64, usize, Duration) {
    let mut w = WorkloadSpec::new(Model::Register, client)
        .processes(10)
        .seed(1);
    w = match ops {
        Some(n) => w.ops(n),
        None => w.duration(Duration::from_secs(5)),
    };
    let began = Instant::now();
    let history = cluster
        .workload(w)
        .expect("workload starts")
        .wait()
        .expect("workload runs");
    let took = began.elapsed();
    let calls = history.calls();
    let check = Instant::now();
    let verdict = history
        .check(troupe::verify::Budget::new(
            Duration::from_secs(120),
            100_000_000,
        ))
        .expect("well-formed history");
    assert_eq!(verdict.valid(), Some(true), "{verdict}");
    (calls as f64 / took.as_secs_f64(), calls, check.elapsed())
}

fn main() {
    let cluster =
        troupe::Cluster::start(spec()).expect("etcd starts (apt-get install etcd-server)");
    println!("register workload, 10 processes; calls recorded per second, then the check");
    for round in 1..=3 {
        let (rate, calls, check) = measure(&cluster, ClientSpec::Memory, Some(300_000));
        println!(
            "round {round}  memory (troupe's ceiling)  {rate:>9.0} calls/s  ({calls} calls, checked in {:.0} ms)",
            check.as_secs_f64() * 1000.0
        );
        let (rate, calls, check) = measure(&cluster, ClientSpec::etcd(), None);
        println!(
            "round {round}  etcd, 3 members, mTLS     {rate:>9.0} calls/s  ({calls} calls, checked in {:.0} ms)",
            check.as_secs_f64() * 1000.0
        );
    }
}
