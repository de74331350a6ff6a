//! `cargo bench -p troupe-cli --bench up`: troupe against what a careful person would write by
//! hand, measured side by side. The machine is shared and noisy, so the contenders of each table
//! run interleaved round by round in one process (and the order within a round alternates), and
//! every table shows min / median / max and the ratio of medians. Timings are printed, never
//! asserted.
//!
//! (a) `troupe up examples/etcd/cluster.toml` until `cluster.json` appears, against a bash +
//!     curl script doing the same start (certificates and ports made before its clock starts).
//! (b) a CA plus a server and a client certificate for 3 clusters, files written: troupe's
//!     in-process `write_cluster_certs` against the openssl commands of a `gen_certs.sh`.
//!
//! `TROUPE_BENCH_ROUNDS=N` sets the rounds of both tables (default 10 for (a), 20 for (b)); a
//! positional `a` or `b` (`cargo bench -p troupe-cli --bench up -- b`) runs one table only.
//!
//! Clean-up: every process is started in a process group of its own and stopped by that group;
//! the bench is a child subreaper, so whatever a killed script leaves behind is re-parented to
//! it and reaped here by process group (never `waitpid(-1)`). At the end every group the bench
//! started or learnt about is checked to be gone (`killpg(pgid, 0)` gives `ESRCH`).

use std::collections::hash_map::RandomState;
use std::fs::{self, File};
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tempfile::TempDir;
use troupe::pki::{Ca, write_pair};
use troupe::ports::{PortAllocator, PortLease};
use troupe_spec::KeyType;

/// Member names, as troupe names the nodes of `[clusters.main]`.
const MEMBERS: [&str; 3] = ["main-1", "main-2", "main-3"];

/// How long one start may take before the round counts as failed (the spec's ready timeout).
const START_LIMIT: Duration = Duration::from_secs(30);

/// How long a stopped process group may take to be gone.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// The hand-written start: the etcd flags of `examples/etcd/cluster.toml`, members started one
/// after another (each once the previous member's peer URL answers `GET /version`), then every
/// member's `/health` polled every 5 ms until all are healthy. Prints `ready`, then waits.
///
/// `--http1.1`: curl offers HTTP/2 by ALPN, and etcd 3.4's peer port then ends the stream
/// uncleanly, so curl fails every `/version` request ("HTTP/2 stream 1 was not closed cleanly").
const ETCD_SCRIPT: &str = r#"#!/usr/bin/env bash
# Three etcd members with client and peer mTLS, started one after another.
# Usage: etcd3.sh DIR TOKEN CLIENT1 PEER1 CLIENT2 PEER2 CLIENT3 PEER3
# DIR holds ca.pem and, per member M, M.pem/M.key (server) and M-client.pem/M-client.key.
set -u
dir=$1 token=$2
shift 2
names=(main-1 main-2 main-3)
client=("$1" "$3" "$5")
peer=("$2" "$4" "$6")
ca=$dir/ca.pem
cluster=
for i in 0 1 2; do
  cluster+="${cluster:+,}${names[i]}=https://127.0.0.1:${peer[i]}"
done
get() { # MEMBER-INDEX URL: prints the body; fails unless HTTP 2xx
  curl -sf --http1.1 --max-time 1 --cacert "$ca" \
    --cert "$dir/${names[$1]}-client.pem" --key "$dir/${names[$1]}-client.key" "$2"
}
pids=()
for i in 0 1 2; do
  n=${names[i]}
  etcd --name="$n" --data-dir="$dir/$n.etcd" \
    --listen-client-urls="https://127.0.0.1:${client[i]}" \
    --advertise-client-urls="https://127.0.0.1:${client[i]}" \
    --listen-peer-urls="https://127.0.0.1:${peer[i]}" \
    --initial-advertise-peer-urls="https://127.0.0.1:${peer[i]}" \
    --initial-cluster="$cluster" --initial-cluster-state=new --initial-cluster-token="$token" \
    --client-cert-auth --trusted-ca-file="$ca" --cert-file="$dir/$n.pem" --key-file="$dir/$n.key" \
    --peer-client-cert-auth --peer-trusted-ca-file="$ca" \
    --peer-cert-file="$dir/$n.pem" --peer-key-file="$dir/$n.key" \
    --heartbeat-interval=10 --election-timeout=100 --logger=zap --log-outputs=stderr \
    </dev/null >"$dir/$n.log" 2>&1 &
  pids+=($!)
  # Gate for the next member: this one's peer port serves HTTPS.
  until get "$i" "https://127.0.0.1:${peer[i]}/version" >/dev/null; do
    kill -0 "${pids[i]}" 2>/dev/null || { echo "$n exited; see $dir/$n.log" >&2; exit 1; }
    (( SECONDS < 30 )) || { echo "$n: peer port not serving after 30 s" >&2; exit 1; }
    sleep 0.005
  done
done
# Ready: every member reports itself healthy (it has a leader and can serve).
healthy=(0 0 0)
while :; do
  all=1
  for i in 0 1 2; do
    (( healthy[i] )) && continue
    body=$(get "$i" "https://127.0.0.1:${client[i]}/health") || body=
    if [[ $body =~ \"health\":[[:space:]]*\"true\" ]]; then healthy[i]=1; else all=0; fi
  done
  (( all )) && break
  (( SECONDS < 30 )) || { echo "not all members healthy after 30 s" >&2; exit 1; }
  sleep 0.005
done
echo ready
wait
"#;

/// The seed's `gen_certs.sh`: a CA and, per cluster, a server and a client certificate, with
/// openssl. `ec` swaps every `genrsa` for a P-256 `ecparam -genkey`, the rest unchanged.
fn openssl_script(ec: bool) -> String {
    let key = |file: &str, bits: u32| {
        if ec {
            format!("openssl ecparam -genkey -name prime256v1 -noout -out {file}")
        } else {
            format!("openssl genrsa -out {file} {bits}")
        }
    };
    let mut s = String::from("#!/usr/bin/env bash\nset -eu\ncd \"$1\"\n");
    s += &key("ca.key", 4096);
    s += "\nopenssl req -new -x509 -key ca.key -out ca.pem -days 365 -subj \"/CN=TestCA\"\n";
    for c in CERT_CLUSTERS {
        for role in ["server", "client"] {
            let stem = format!("{c}-{role}");
            s += &key(&format!("{stem}.key"), 2048);
            s += &format!(
                "\nopenssl req -new -key {stem}.key -out {stem}.csr -subj \"/CN={stem}\"\n"
            );
            s += &format!(
                "openssl x509 -req -in {stem}.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                 -out {stem}.pem -days 365"
            );
            if role == "server" {
                s += " -extfile <(printf \"subjectAltName=DNS:localhost,IP:127.0.0.1\")";
            }
            s += "\n";
        }
    }
    s
}

const CERT_CLUSTERS: [&str; 3] = ["cluster-a", "cluster-b", "cluster-c"];

// ---------------------------------------------------------------------------------------------
// Processes

/// Every process group (or, for helpers troupe forks, process) the bench started or learnt
/// about, checked at the end: (id, is a group, what).
static STARTED: Mutex<Vec<(i32, bool, String)>> = Mutex::new(Vec::new());

fn remember_group(pgid: i32, what: &str) {
    STARTED.lock().unwrap().push((pgid, true, what.to_string()));
}

fn remember_process(pid: i32, what: &str) {
    STARTED.lock().unwrap().push((pid, false, what.to_string()));
}

/// Whether process group (or process) `id` still exists; zombies count until reaped.
fn exists(id: i32, group: bool) -> bool {
    let r = if group {
        killpg(Pid::from_raw(id), None)
    } else {
        kill(Pid::from_raw(id), None)
    };
    !matches!(r, Err(Errno::ESRCH))
}

/// Reaps what of group (or process) `id` is our child (re-parented orphans included).
fn reap(id: i32, group: bool) {
    let which = || {
        if group {
            Id::PGid(Pid::from_raw(id))
        } else {
            Id::Pid(Pid::from_raw(id))
        }
    };
    while let Ok(st) = waitid(which(), WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Waits until group (or process) `id` is gone, reaping what we may; after `limit`, SIGKILLs
/// what is left. Returns whether it went away by itself in time.
fn await_gone(id: i32, group: bool, limit: Duration) -> bool {
    let mut deadline = Instant::now() + limit;
    let mut in_time = true;
    loop {
        reap(id, group);
        if !exists(id, group) {
            return in_time;
        }
        if Instant::now() >= deadline {
            if !in_time {
                eprintln!(
                    "warning: {} {id} survives SIGKILL",
                    if group { "process group" } else { "process" }
                );
                return false;
            }
            in_time = false;
            deadline = Instant::now() + Duration::from_secs(2);
            let _ = if group {
                killpg(Pid::from_raw(id), Signal::SIGKILL)
            } else {
                kill(Pid::from_raw(id), Signal::SIGKILL)
            };
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn await_group_gone(pgid: i32, limit: Duration) -> bool {
    await_gone(pgid, true, limit)
}

/// A child in a process group of its own; dropping it kills and reaps the whole group.
struct Group {
    child: Child,
    pgid: i32,
    what: String,
    done: bool,
}

impl Group {
    fn spawn(cmd: &mut Command, what: &str) -> Result<Group, String> {
        let child = cmd
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {what}: {e}"))?;
        let pgid = child.id() as i32;
        remember_group(pgid, what);
        Ok(Group {
            child,
            pgid,
            what: what.to_string(),
            done: false,
        })
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.pgid)
    }

    /// Waits up to `limit` for the leader (then SIGKILLs the group: an error), then for the
    /// rest of its group to be gone.
    fn wait(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + limit;
        let mut overdue = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if overdue || Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(None) => {
                    overdue = true;
                    let _ = killpg(self.pid(), Signal::SIGKILL);
                }
                Err(e) => return Err(format!("waiting for {}: {e}", self.what)),
            }
        };
        self.done = true;
        if !await_group_gone(self.pgid, STOP_LIMIT) {
            return Err(format!(
                "process group {} ({}) outlived its leader",
                self.pgid, self.what
            ));
        }
        if overdue {
            return Err(format!(
                "{} did not exit within {limit:?}; killed",
                self.what
            ));
        }
        Ok(status)
    }

    /// SIGKILLs the whole group and reaps it.
    fn kill(&mut self) -> Result<(), String> {
        let _ = killpg(self.pid(), Signal::SIGKILL);
        self.wait(STOP_LIMIT).map(drop)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.kill();
        }
    }
}

fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// Every descendant of `pid`, from `/proc/<pid>/task/<tid>/children`.
fn descendants(pid: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children
                .split_whitespace()
                .filter_map(|c| c.parse::<i32>().ok())
            {
                if !found.contains(&c) {
                    found.push(c);
                    queue.push(c);
                }
            }
        }
    }
    found
}

fn tempdir(prefix: &str) -> Result<TempDir, String> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))
}

fn remove(dir: TempDir) -> Result<(), String> {
    let path = dir.path().to_path_buf();
    dir.close()
        .map_err(|e| format!("removing {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// (a) up to all-ready

struct Up {
    took: Duration,
    /// Not part of `took`: how long stopping everything took afterwards.
    teardown: Duration,
}

/// `troupe up <spec> --state-dir <fresh dir>`, clocked from spawn until `cluster.json` appears;
/// then SIGTERM to troupe, and every node's process group checked gone.
fn troupe_round(bin: &Path, spec: &Path, scratch: &Path, round: usize) -> Result<Up, String> {
    let state = tempdir("troupe-bench-state-")?;
    let log = scratch.join(format!("troupe-{round}.stderr"));
    let stderr = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let descriptor = state.path().join("cluster.json");
    let mut cmd = Command::new(bin);
    cmd.arg("up")
        .arg(spec)
        .arg("--state-dir")
        .arg(state.path())
        .env_remove("TROUPE_LOG")
        .env_remove("TROUPE_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);

    let started = Instant::now();
    let mut troupe = Group::spawn(&mut cmd, "troupe up")?;
    // troupe prints its table, then "Press Ctrl-C to stop." once it waits for a signal.
    let stdout = troupe.child.stdout.take().expect("piped stdout");
    let (waiting_tx, waiting) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("Press Ctrl-C") {
                let _ = waiting_tx.send(());
            }
        }
    });
    loop {
        if descriptor.exists() {
            break;
        }
        if let Ok(Some(st)) = troupe.child.try_wait() {
            troupe.done = true;
            return Err(format!(
                "troupe up exited ({st}) before ready:\n{}",
                tail(&log, 4000)
            ));
        }
        if started.elapsed() > START_LIMIT {
            return Err(format!(
                "troupe up not ready after {START_LIMIT:?}:\n{}",
                tail(&log, 4000)
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();

    // Every node runs in a process group of its own, led by the node's pid.
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(&descriptor).map_err(|e| e.to_string())?)
            .map_err(|e| format!("cluster.json: {e}"))?;
    let node_groups: Vec<i32> = json["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| n["pid"].as_i64())
                .map(|p| p as i32)
                .collect()
        })
        .unwrap_or_default();
    for pgid in &node_groups {
        remember_group(*pgid, "etcd started by troupe");
    }
    if node_groups.len() != MEMBERS.len() {
        return Err(format!(
            "cluster.json lists {} running nodes, not 3",
            node_groups.len()
        ));
    }

    // Not before troupe says it waits for a signal: a SIGTERM that lands between cluster.json
    // and the end of troupe's start loop is taken as "interrupt the start", which is over by
    // then, and troupe keeps running until a second signal (seen in this bench; reported).
    waiting.recv_timeout(Duration::from_secs(10)).map_err(|_| {
        format!(
            "troupe up never printed `Press Ctrl-C to stop.`:\n{}",
            tail(&log, 4000)
        )
    })?;
    // troupe's other descendants (its keeper process), to check they go too.
    let helpers: Vec<i32> = descendants(troupe.pgid)
        .into_iter()
        .filter(|p| !node_groups.contains(p))
        .collect();
    for pid in &helpers {
        remember_process(*pid, "process forked by troupe");
    }

    let stopping = Instant::now();
    kill(troupe.pid(), Signal::SIGTERM).map_err(|e| format!("SIGTERM to troupe: {e}"))?;
    let status = troupe.wait(STOP_LIMIT)?;
    let teardown = stopping.elapsed();
    if !status.success() {
        return Err(format!(
            "troupe up exited with {status} after SIGTERM:\n{}",
            tail(&log, 4000)
        ));
    }
    let left: Vec<i32> = node_groups
        .iter()
        .filter(|g| !await_group_gone(**g, Duration::ZERO))
        .copied()
        .collect();
    if !left.is_empty() {
        return Err(format!(
            "troupe exited but left node process groups {left:?} (killed now)"
        ));
    }
    for pid in helpers {
        if !await_gone(pid, false, Duration::from_secs(2)) {
            return Err(format!(
                "troupe exited but left its helper process {pid} (killed now)"
            ));
        }
    }
    remove(state)?;
    let _ = fs::remove_file(&log);
    Ok(Up { took, teardown })
}

/// The hand-written script: certificates and ports made before the clock; clocked from spawning
/// the script until it prints `ready`; then its process group (bash, curl, etcd) SIGKILLed.
fn script_round(script: &Path, scratch: &Path, round: usize) -> Result<Up, String> {
    let dir = tempdir("troupe-bench-script-")?;
    let err = |e: troupe::Error| e.to_string();
    let ca = Ca::new("bench CA", KeyType::P256).map_err(err)?;
    write_pair(dir.path(), "ca", ca.cert()).map_err(err)?;
    for m in MEMBERS {
        write_pair(dir.path(), m, &ca.issue_server(m, &[]).map_err(err)?).map_err(err)?;
        write_pair(
            dir.path(),
            &format!("{m}-client"),
            &ca.issue_client(m).map_err(err)?,
        )
        .map_err(err)?;
    }
    // Client and peer port per member, like troupe: locked until the round ends. A lease is a
    // lock file only (the allocator's bind check closes its socket at once), so etcd can bind
    // a leased port; holding the lease keeps other troupe runs off it meanwhile.
    let allocator = PortAllocator::new(None);
    let localhost = IpAddr::from([127, 0, 0, 1]);
    let mut leases: Vec<PortLease> = Vec::new();
    for _ in MEMBERS {
        leases.extend(allocator.allocate(localhost, 2).map_err(err)?);
    }
    let token = format!(
        "bench-{:012x}",
        RandomState::new().hash_one(round) & 0xffff_ffff_ffff
    );
    let log = scratch.join(format!("script-{round}.stderr"));
    let stderr = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg(dir.path())
        .arg(&token)
        .args(leases.iter().map(|l| l.port.to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);

    let started = Instant::now();
    let mut group = Group::spawn(&mut cmd, "etcd script")?;
    let mut out = BufReader::new(group.child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    let took = started.elapsed();
    if line.trim() != "ready" {
        let logs: String = MEMBERS
            .iter()
            .map(|m| {
                format!(
                    "--- {m}.log\n{}",
                    tail(&dir.path().join(format!("{m}.log")), 1500)
                )
            })
            .collect();
        return Err(format!(
            "the script did not print `ready`:\n{}{logs}",
            tail(&log, 4000)
        ));
    }

    let stopping = Instant::now();
    group.kill()?;
    let teardown = stopping.elapsed();
    drop(out);
    drop(leases);
    remove(dir)?;
    let _ = fs::remove_file(&log);
    Ok(Up { took, teardown })
}

fn bench_up(rounds: usize, scratch: &Path) -> Result<(), String> {
    let bin = Path::new(env!("CARGO_BIN_EXE_troupe"));
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/etcd/cluster.toml");
    let spec = fs::canonicalize(&spec).map_err(|e| format!("{}: {e}", spec.display()))?;
    let script = scratch.join("etcd3.sh");
    fs::write(&script, ETCD_SCRIPT).map_err(|e| e.to_string())?;

    let mut troupe = Samples::default();
    let mut hand = Samples::default();
    let (mut troupe_down, mut hand_down) = (Samples::default(), Samples::default());
    // Round 0 is a warm-up (page cache, first-run effects), not counted.
    for round in 0..=rounds {
        let troupe_first = round % 2 == 0;
        for pass in 0..2 {
            if (pass == 0) == troupe_first {
                let r = troupe_round(bin, &spec, scratch, round)?;
                if round > 0 {
                    troupe.push(r.took);
                    troupe_down.push(r.teardown);
                }
            } else {
                let r = script_round(&script, scratch, round)?;
                if round > 0 {
                    hand.push(r.took);
                    hand_down.push(r.teardown);
                }
            }
        }
    }
    println!(
        "(a) up to all-ready: 3-node etcd, client+peer mTLS, {rounds} rounds \
         (interleaved, alternating order, after 1 warm-up round)"
    );
    let rows = [
        ("troupe up (CLI)", &troupe),
        ("hand-written bash+curl", &hand),
    ];
    print_table(&rows, false);
    let ratio = troupe.median() / hand.median();
    println!(
        "ratio troupe/script (median): {ratio:.2}x  (target <= 1.10x: {})",
        if ratio <= 1.10 { "met" } else { "NOT met" }
    );
    println!(
        "troupe's figure includes reading the spec, allocating ports and issuing certificates; \
         the script's were made before its clock"
    );
    println!(
        "teardown (median, not timed above): troupe SIGTERM -> exit {}; script SIGKILL -> reaped {}",
        fmt_dur(troupe_down.median_duration()),
        fmt_dur(hand_down.median_duration()),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (b) certificates

fn troupe_certs_round() -> Result<Duration, String> {
    let dir = tempdir("troupe-bench-certs-")?;
    let clusters: Vec<String> = CERT_CLUSTERS.iter().map(|c| c.to_string()).collect();
    let started = Instant::now();
    let files = troupe::pki::write_cluster_certs(dir.path(), &clusters, KeyType::P256)
        .map_err(|e| e.to_string())?;
    let took = started.elapsed();
    if files.len() != 2 + 4 * CERT_CLUSTERS.len() || !files.iter().all(|f| f.is_file()) {
        return Err(format!("write_cluster_certs wrote {files:?}"));
    }
    remove(dir)?;
    Ok(took)
}

fn openssl_round(script: &Path, scratch: &Path) -> Result<Duration, String> {
    let dir = tempdir("troupe-bench-openssl-")?;
    let log = scratch.join("openssl.stderr");
    let stderr = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let started = Instant::now();
    let mut group = Group::spawn(&mut cmd, "openssl script")?;
    let status = group.child.wait().map_err(|e| e.to_string())?;
    let took = started.elapsed();
    group.wait(STOP_LIMIT)?;
    if !status.success() {
        return Err(format!(
            "{} failed ({status}):\n{}",
            script.display(),
            tail(&log, 4000)
        ));
    }
    let mut wanted = vec!["ca.pem".to_string(), "ca.key".into()];
    for c in CERT_CLUSTERS {
        for f in ["server.pem", "server.key", "client.pem", "client.key"] {
            wanted.push(format!("{c}-{f}"));
        }
    }
    if let Some(missing) = wanted.iter().find(|f| !dir.path().join(f).is_file()) {
        return Err(format!("{} did not write {missing}", script.display()));
    }
    remove(dir)?;
    Ok(took)
}

fn bench_certs(rounds: usize, scratch: &Path) -> Result<(), String> {
    let rsa_script = scratch.join("gen_certs_rsa.sh");
    let ec_script = scratch.join("gen_certs_ec.sh");
    fs::write(&rsa_script, openssl_script(false)).map_err(|e| e.to_string())?;
    fs::write(&ec_script, openssl_script(true)).map_err(|e| e.to_string())?;
    // RSA takes seconds a round: about 3 rounds in 20, spread evenly over the run.
    let rsa_rounds = (rounds * 3).div_ceil(20).max(1);
    let rsa_in = |i: usize| (i + 1) * rsa_rounds / rounds > i * rsa_rounds / rounds;

    let (mut troupe, mut rsa, mut ec) =
        (Samples::default(), Samples::default(), Samples::default());
    // Warm-up (not counted): troupe's crypto and the openssl binary. RSA needs none: its time
    // is prime search, and the EC warm-up already loaded the same binary.
    troupe_certs_round()?;
    openssl_round(&ec_script, scratch)?;
    for round in 0..rounds {
        let mut order: Vec<u8> = vec![0, 1];
        if rsa_in(round) {
            order.push(2);
        }
        let shift = round % order.len();
        order.rotate_left(shift);
        for which in order {
            match which {
                0 => troupe.push(troupe_certs_round()?),
                1 => ec.push(openssl_round(&ec_script, scratch)?),
                _ => rsa.push(openssl_round(&rsa_script, scratch)?),
            }
        }
    }
    let _ = fs::remove_file(scratch.join("openssl.stderr"));
    println!(
        "(b) certificates for 3 clusters (CA + server + client per cluster), files written \
         (interleaved, after 1 warm-up round)"
    );
    let rows = [
        ("troupe write_cluster_certs (P-256)", &troupe),
        ("openssl RSA 4096/2048 (gen_certs.sh)", &rsa),
        ("openssl EC P-256 (same commands)", &ec),
    ];
    print_table(&rows, true);
    println!(
        "ratio openssl RSA / troupe (median): {:.0}x;  openssl EC / troupe: {:.0}x",
        rsa.median() / troupe.median(),
        ec.median() / troupe.median()
    );
    let t = troupe.median_duration();
    println!(
        "troupe median {}  (target < 5 ms with files written: {})",
        fmt_dur(t),
        if t < Duration::from_millis(5) {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figures

#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.0.clone();
        v.sort();
        v
    }

    fn median_duration(&self) -> Duration {
        let v = self.sorted();
        match v.len() {
            0 => Duration::ZERO,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2,
        }
    }

    /// In seconds, for ratios.
    fn median(&self) -> f64 {
        self.median_duration().as_secs_f64()
    }
}

fn fmt_dur(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn print_table(rows: &[(&str, &Samples)], with_rounds: bool) {
    let name_w = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max("contender".len())
        + 2;
    let mut header = format!("{:<name_w$}", "contender");
    if with_rounds {
        header += &format!("{:<8}", "rounds");
    }
    header += &format!("{:<11}{:<11}{}", "min", "median", "max");
    println!("{header}");
    for (name, s) in rows {
        let v = s.sorted();
        let mut line = format!("{name:<name_w$}");
        if with_rounds {
            line += &format!("{:<8}", v.len());
        }
        match (v.first(), v.last()) {
            (Some(min), Some(max)) => {
                line += &format!(
                    "{:<11}{:<11}{}",
                    fmt_dur(*min),
                    fmt_dur(s.median_duration()),
                    fmt_dur(*max)
                );
            }
            _ => line += "-",
        }
        println!("{}", line.trim_end());
    }
}

// ---------------------------------------------------------------------------------------------

fn rounds(default: usize) -> usize {
    match std::env::var("TROUPE_BENCH_ROUNDS") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("TROUPE_BENCH_ROUNDS={v:?} is not a positive number; using {default}");
                default
            }
        },
        Err(_) => default,
    }
}

/// Checks that every process group (and helper process) the bench started or learnt about is
/// gone.
fn check_nothing_left() -> bool {
    let started = STARTED.lock().unwrap().clone();
    let left: Vec<String> = started
        .iter()
        .filter(|(id, group, _)| {
            reap(*id, *group);
            exists(*id, *group)
        })
        .map(|(id, _, what)| format!("{id} ({what})"))
        .collect();
    if left.is_empty() {
        println!(
            "clean-up: all {} process groups and processes started are gone (ESRCH); temp dirs removed",
            started.len()
        );
        true
    } else {
        println!("clean-up: still present: {}", left.join(", "));
        false
    }
}

fn main() {
    // Orphans of a killed script (its etcd members) are re-parented to us, and reaped by group.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        eprintln!("warning: cannot become a child subreaper ({e}); orphans may linger as zombies");
    }
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |t: &str| only.is_empty() || only.iter().any(|o| o == t);
    let scratch = match tempdir("troupe-bench-") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let mut result = Ok(());
    if wants("a") {
        result = bench_up(rounds(10), scratch.path());
        println!();
    }
    if result.is_ok() && wants("b") {
        result = bench_certs(rounds(20), scratch.path());
        println!();
    }
    let scratch_path: PathBuf = scratch.path().to_path_buf();
    let removed = remove(scratch);
    let clean = check_nothing_left();
    if let Err(e) = &removed {
        eprintln!("error: {e}");
    }
    if let Err(e) = &result {
        eprintln!("error: {e}");
        eprintln!("(scratch dir was {})", scratch_path.display());
    }
    if result.is_err() || removed.is_err() || !clean {
        std::process::exit(1);
    }
}
