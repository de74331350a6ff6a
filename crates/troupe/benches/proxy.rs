//! The link proxy side by side with direct loopback and socat, in one run:
//! `cargo bench -p troupe --bench proxy`.
//!
//! 1. Throughput of one stream (`PROXY_BENCH_GIB`, default 2 GiB, median of 3 interleaved runs),
//!    on every core.
//! 2. Round trip of 64-byte messages (`PROXY_BENCH_RTTS`, default 20000, p50 and p99): first
//!    on every core, then with the whole process and socat pinned to one core. Across cores the
//!    figure swings with scheduling, so compare proxies on the pinned rows.
//! 3. Injected latency: `LinkFault::delay(d)` applies per direction, so a round trip adds
//!    2 × d; the error is (round trip − the proxy's own round trip) / 2 − d, pinned.
//!
//! Endpoints are plain blocking threads; the proxy runs on a 2-worker tokio runtime, as in
//! `troupe::Cluster`. All traffic is to 127.0.0.1. Targets are reported, never enforced.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use troupe::net::proxy::{Degrade, LinkFault, LinkProxy};

const TARGET_GBPS: f64 = 6.5;
const TARGET_ADDED_US: f64 = 6.0;
const TARGET_DELAY_ERROR_MS: f64 = 0.1;

fn main() {
    let gib: u64 = env_or("PROXY_BENCH_GIB", 2);
    let rtts: usize = env_or("PROXY_BENCH_RTTS", 20_000);
    let bytes = gib << 30;
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    let mut socat_note = None;

    // 1. Throughput, every core.
    let rt = runtime();
    let (sink, reports) = sink_server();
    let proxy = rt
        .block_on(LinkProxy::start(localhost(0), sink))
        .expect("start the proxy");
    let socat = Socat::start(sink).map_err(|e| socat_note = Some(e)).ok();
    let mut gbps: [Vec<f64>; 3] = Default::default();
    for _ in 0..3 {
        gbps[0].push(throughput(sink, bytes, &reports));
        gbps[1].push(throughput(proxy.local_addr(), bytes, &reports));
        if let Some(socat) = &socat {
            gbps[2].push(throughput(socat.addr, bytes, &reports));
        }
    }
    drop((socat, proxy));

    // 2a. Round trips, every core.
    let echo = echo_server();
    let proxy = rt
        .block_on(LinkProxy::start(localhost(0), echo))
        .expect("start the proxy");
    let socat = Socat::start(echo).ok();
    let free = [
        Some(round_trips(echo, rtts)),
        Some(round_trips(proxy.local_addr(), rtts)),
        socat.as_ref().map(|s| round_trips(s.addr, rtts)),
    ];
    drop((socat, proxy));
    drop(rt);

    // 2b. Round trips, one core: threads, the runtime and socat made from here on inherit it.
    let cpu = pin_to_one_cpu();
    let rt = runtime();
    let echo = echo_server();
    let proxy = rt
        .block_on(LinkProxy::start(localhost(0), echo))
        .expect("start the proxy");
    let socat = Socat::start(echo).ok();
    let pinned = [
        Some(round_trips(echo, rtts)),
        Some(round_trips(proxy.local_addr(), rtts)),
        socat.as_ref().map(|s| round_trips(s.addr, rtts)),
    ];
    drop(socat);

    // 3. Injected latency, one core.
    let base = pinned[1].as_ref().map_or(0.0, |r| pct(r, 50.0));
    let mut delays = Vec::new();
    for (ms, count) in [(0.0, 2000), (1.0, 500), (5.0, 200)] {
        let delay = Duration::from_secs_f64(ms / 1e3);
        proxy.set(LinkFault::Degrade(Degrade {
            delay,
            ..Degrade::default()
        }));
        let rtt = round_trips(proxy.local_addr(), count);
        let added = |p| (pct(&rtt, p) - base) / 2.0 / 1e3; // ms per direction
        delays.push((ms, added(50.0), added(99.0)));
    }
    proxy.heal();
    drop(proxy);
    drop(rt);

    // The report.
    println!();
    println!(
        "link proxy on 127.0.0.1: {gib} GiB per stream (median of 3), {rtts} round trips of 64 B; {} cpus{}",
        cpus,
        cpu.map_or(String::from(", pinning failed"), |c| format!(
            ", pinned rows on cpu {c}"
        )),
    );
    println!();
    println!(
        "{:<34}{:>10}{:>12}{:>10}",
        "", "direct", "LinkProxy", "socat"
    );
    let cell = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    let tp: Vec<Option<f64>> = gbps.iter().map(|runs| median(runs)).collect();
    row(
        "throughput, 1 stream (GB/s)",
        [0, 1, 2].map(|i| cell(tp[i], 2)),
    );
    for (name, rows) in [("every core", &free), ("1 core", &pinned)] {
        for p in [50.0, 99.0] {
            let label = format!("round trip p{p:.0}, {name} (µs)");
            row(
                &label,
                [0, 1, 2].map(|i| cell(rows[i].as_ref().map(|r| pct(r, p)), 1)),
            );
        }
    }
    if let Some(note) = &socat_note {
        println!("(socat: {note})");
    }
    println!();
    println!("injected latency, 1 core: added per direction = (round trip - {base:.1} µs) / 2");
    println!(
        "{:<12}{:>16}{:>14}{:>16}",
        "delay", "added p50 (ms)", "error (ms)", "added p99 (ms)"
    );
    for (ms, p50, p99) in &delays {
        println!(
            "{:<12}{:>16.3}{:>+14.3}{:>16.3}",
            format!("{ms} ms"),
            p50,
            p50 - ms,
            p99
        );
    }

    println!();
    println!("targets");
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    let proxy_gbps = tp[1].unwrap_or(0.0);
    let direct_gbps = tp[0].unwrap_or(f64::NAN);
    println!(
        "  throughput >= {TARGET_GBPS} GB/s with Pass: {} ({proxy_gbps:.2} GB/s, {:.0}% of direct; the target is 54% of direct where direct did 12 GB/s)",
        verdict(proxy_gbps >= TARGET_GBPS),
        100.0 * proxy_gbps / direct_gbps,
    );
    let added = |rows: &[Option<Vec<f64>>; 3]| {
        rows[1]
            .as_ref()
            .zip(rows[0].as_ref())
            .map_or(f64::NAN, |(p, d)| pct(p, 50.0) - pct(d, 50.0))
    };
    let (added_pinned, added_free) = (added(&pinned), added(&free));
    let direct_rtt = pinned[0].as_ref().map_or(f64::NAN, |r| pct(r, 50.0));
    println!(
        "  added p50 round trip <= {TARGET_ADDED_US} µs with Pass: {} (+{added_pinned:.1} µs on 1 core = {:.1}x the direct round trip; the target is 1.5x where direct took 3.9 µs; +{added_free:.1} µs on every core)",
        verdict(added_pinned <= TARGET_ADDED_US),
        added_pinned / direct_rtt,
    );
    let worst = delays
        .iter()
        .map(|(ms, p50, _)| (p50 - ms).abs())
        .fold(0.0, f64::max);
    println!(
        "  injected latency within {TARGET_DELAY_ERROR_MS} ms: {} (worst p50 error {worst:.3} ms)",
        verdict(worst <= TARGET_DELAY_ERROR_MS)
    );
}

fn row(label: &str, cells: [String; 3]) {
    println!(
        "{label:<34}{:>10}{:>12}{:>10}",
        cells[0], cells[1], cells[2]
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a runtime")
}

/// Pins the calling thread (and so every thread and process it makes later) to its first
/// allowed cpu.
fn pin_to_one_cpu() -> Option<usize> {
    let allowed = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let cpu = (0..CpuSet::count()).find(|&c| allowed.is_set(c).unwrap_or(false))?;
    let mut one = CpuSet::new();
    one.set(cpu).ok()?;
    sched_setaffinity(Pid::from_raw(0), &one).ok()?;
    Some(cpu)
}

/// Reads every connection to its end; reports (bytes, when the last arrived) for those that
/// carried any (readiness probes carry none).
fn sink_server() -> (SocketAddr, mpsc::Receiver<(u64, Instant)>) {
    let listener = TcpListener::bind(localhost(0)).expect("bind the sink");
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let tx = tx.clone();
            thread::spawn(move || {
                let mut buf = vec![0u8; 256 << 10];
                let mut total = 0u64;
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    total += n as u64;
                }
                if total > 0 {
                    let _ = tx.send((total, Instant::now()));
                }
            });
        }
    });
    (addr, rx)
}

fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(localhost(0)).expect("bind the echo server");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = stream.read(&mut buf) {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// GB/s of one stream of `bytes` to the sink behind `addr`, until the sink has read it all.
fn throughput(addr: SocketAddr, bytes: u64, reports: &mpsc::Receiver<(u64, Instant)>) -> f64 {
    let buf = vec![0x5au8; 256 << 10];
    let mut stream = TcpStream::connect(addr).expect("connect for throughput");
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.write_all(&buf[..n]).expect("write");
        left -= n as u64;
    }
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let (got, end) = reports
        .recv_timeout(Duration::from_secs(120))
        .expect("the sink reports");
    assert_eq!(got, bytes, "the sink got everything");
    bytes as f64 / (end - start).as_secs_f64() / 1e9
}

/// Sorted round trips (µs) of 64-byte messages to the echo server behind `addr`.
fn round_trips(addr: SocketAddr, count: usize) -> Vec<f64> {
    let mut stream = TcpStream::connect(addr).expect("connect for round trips");
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let warmup = (count / 10).max(5);
    let mut rtts = Vec::with_capacity(count);
    for i in 0..warmup + count {
        let start = Instant::now();
        stream.write_all(&msg).expect("write");
        stream.read_exact(&mut back).expect("echo");
        if i >= warmup {
            rtts.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);
    rtts
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize]
}

fn median(runs: &[f64]) -> Option<f64> {
    let mut runs = runs.to_vec();
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied()
}

/// `socat TCP-LISTEN:port,fork TCP:target` in its own process group, killed by that group's id.
struct Socat {
    child: Child,
    addr: SocketAddr,
}

impl Socat {
    fn start(target: SocketAddr) -> Result<Socat, String> {
        // A port the kernel just handed out and we let go (a race with other binds is possible
        // but harmless for a benchmark: socat then fails to start and we say so).
        let port = TcpListener::bind(localhost(0))
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = Command::new("socat")
            .arg(format!(
                "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay"
            ))
            .arg(format!("TCP:{target},nodelay"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("not run: {e}"))?;
        let socat = Socat {
            child,
            addr: localhost(port),
        };
        // Ready when it accepts; the probe connection reaches the target and carries nothing.
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(socat.addr).is_err() {
            if Instant::now() > deadline {
                return Err("did not listen within 5 s".into());
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(socat)
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        // socat and the children it forked per connection share its process group.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
