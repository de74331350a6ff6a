//! Dropping a cluster against stopping it gracefully, side by side in one run: the 3-node
//! etcd mTLS example, started afresh for each measurement.
//!
//! `cargo bench -p troupe --bench drop`. Dropping kills at once (the goal: under 20 ms);
//! `stop()` hands leadership over member by member (about 2 s for etcd).

use std::path::Path;
use std::time::{Duration, Instant};

fn spec() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/etcd/cluster.toml")
}

fn measure(graceful: bool) -> Duration {
    let cluster =
        troupe::Cluster::start(spec()).expect("etcd starts (apt-get install etcd-server)");
    let began = Instant::now();
    if graceful {
        cluster.stop();
    } else {
        drop(cluster);
    }
    began.elapsed()
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!(
        "min {:>8.1} ms  median {:>8.1} ms  max {:>8.1} ms",
        v[0].as_secs_f64() * 1000.0,
        v[v.len() / 2].as_secs_f64() * 1000.0,
        v[v.len() - 1].as_secs_f64() * 1000.0
    )
}

fn main() {
    let runs = 5;
    let (mut dropped, mut stopped) = (Vec::new(), Vec::new());
    // Interleaved, so both see the same machine.
    for _ in 0..runs {
        dropped.push(measure(false));
        stopped.push(measure(true));
    }
    println!("3-node etcd with mTLS, {runs} runs each");
    println!("drop (SIGKILL all)   {}", summary(dropped));
    println!("stop() (graceful)    {}", summary(stopped));
}
