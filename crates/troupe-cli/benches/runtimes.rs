//! `cargo bench -p troupe-cli --bench runtimes`: a 3-member etcd with client and peer mTLS, from
//! nothing to every member ready, on each of troupe's runtimes and with Docker Compose, side by
//! side in one run. The machine is shared and noisy, so the contenders run interleaved round by
//! round (the order rotates each round) and the table shows min / median / max and the ratio of
//! each median to the process runtime's. Timings are printed, never asserted.
//!
//! - `process`: `troupe up examples/etcd/cluster.toml`, until `cluster.json` appears (every
//!   member healthy: the spec's `/health` probe).
//! - `docker`: the same with `runtime = "docker"` and the image `troupe-etcd:local`
//!   (`examples/etcd-docker/build-image.sh`, run first and not timed), host network.
//! - `docker+namespaces`: the same on a Docker network of the run's own (`network =
//!   "namespaces"`): a network is created and removed per round.
//! - `compose`: `docker-compose up -d` of an equivalent compose file (same image, same etcd
//!   flags, mTLS, health checks running `etcdctl endpoint health` every 100 ms), then polling
//!   `docker inspect` until every container is `healthy`. Compose v1 (1.29, Debian's) has no
//!   `up --wait`, so the bench polls the health itself, as a user's script would; the
//!   certificates are made before its clock starts (troupe makes its own inside its time).
//!   Compose starts all members at once, as a compose file does without a working
//!   `depends_on: service_healthy` chain (member 1 is not healthy before a quorum exists).
//! - `swarm`: the same as Swarm services of a one-host swarm (`docker swarm init
//!   --advertise-addr 127.0.0.1` first if this Engine is in none, and `docker swarm leave
//!   --force` at the end then), on an overlay network of the run's own.
//!
//! `TROUPE_BENCH_ROUNDS=N` sets the rounds (default 5). Clean-up: each troupe run is stopped by
//! SIGTERM and checked to leave no container or network labelled with its run id; each compose
//! project is taken down with `docker-compose down -v` and checked by its project label.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use troupe::pki::{Ca, write_pair};
use troupe_spec::KeyType;

/// How long one start may take before the round counts as failed.
const START_LIMIT: Duration = Duration::from_secs(60);

/// The image every container contender runs.
const IMAGE: &str = "troupe-etcd:local";

/// A contender: its name in the table and what `troupe up` gets besides the spec (`None`:
/// the compose contender).
struct Contender {
    name: &'static str,
    up_args: Option<&'static [&'static str]>,
}

const DOCKER: &[&str] = &[
    "--set",
    "clusters.main.runtime=docker",
    "--set",
    "clusters.main.image=troupe-etcd:local",
    "--set",
    "clusters.main.binary=/usr/bin/etcd",
];

const DOCKER_NAMESPACES: &[&str] = &[
    "--set",
    "clusters.main.runtime=docker",
    "--set",
    "clusters.main.image=troupe-etcd:local",
    "--set",
    "clusters.main.binary=/usr/bin/etcd",
    "--set",
    "clusters.main.network=namespaces",
];

const SWARM: &[&str] = &[
    "--set",
    "clusters.main.runtime=swarm",
    "--set",
    "clusters.main.image=troupe-etcd:local",
    "--set",
    "clusters.main.binary=/usr/bin/etcd",
];

const CONTENDERS: &[Contender] = &[
    Contender {
        name: "process",
        up_args: Some(&[]),
    },
    Contender {
        name: "docker",
        up_args: Some(DOCKER),
    },
    Contender {
        name: "docker+namespaces",
        up_args: Some(DOCKER_NAMESPACES),
    },
    Contender {
        name: "swarm",
        up_args: Some(SWARM),
    },
    Contender {
        name: "compose (polled health)",
        up_args: None,
    },
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn troupe_bin() -> PathBuf {
    // Benches are built next to the binaries of their package.
    let mut p = std::env::current_exe().expect("the bench's path");
    p.pop();
    if p.ends_with("deps") {
        p.pop();
    }
    p.join("troupe")
}

fn main() {
    let rounds: usize = std::env::var("TROUPE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let troupe = troupe_bin();
    assert!(
        troupe.is_file(),
        "{} is missing: `cargo build -p troupe-cli` first",
        troupe.display()
    );
    let build = Command::new(repo().join("examples/etcd-docker/build-image.sh"))
        .arg(IMAGE)
        .status()
        .expect("examples/etcd-docker/build-image.sh runs");
    assert!(build.success(), "building {IMAGE} failed");
    let compose = compose_version();
    println!(
        "3-member etcd with mTLS, start to all ready; {rounds} rounds, interleaved; {compose}"
    );
    let joined = docker_lines(&["info", "--format", "{{.Swarm.LocalNodeState}}"]).trim()
        == "inactive"
        && Command::new("docker")
            .args(["swarm", "init", "--advertise-addr", "127.0.0.1"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); CONTENDERS.len()];
    let mut failures: Vec<String> = Vec::new();
    for round in 0..rounds {
        for k in 0..CONTENDERS.len() {
            let i = (k + round) % CONTENDERS.len();
            let c = &CONTENDERS[i];
            let result = match c.up_args {
                Some(args) => troupe_round(&troupe, args),
                None => compose_round(round),
            };
            match result {
                Ok(d) => samples[i].push(d),
                Err(e) => failures.push(format!("{} (round {round}): {e}", c.name)),
            }
        }
    }
    println!();
    let base = median(&samples[0]);
    println!(
        "{:<26}{:<8}{:<11}{:<11}{:<11}vs process",
        "contender", "rounds", "min", "median", "max"
    );
    for (c, s) in CONTENDERS.iter().zip(&samples) {
        let mut v = s.clone();
        v.sort();
        match (v.first(), v.last()) {
            (Some(min), Some(max)) => println!(
                "{:<26}{:<8}{:<11}{:<11}{:<11}{:.2}x",
                c.name,
                v.len(),
                fmt(*min),
                fmt(median(s)),
                fmt(*max),
                median(s).as_secs_f64() / base.as_secs_f64().max(1e-9)
            ),
            _ => println!("{:<26}0       -", c.name),
        }
    }
    for f in &failures {
        println!("FAILED: {f}");
    }
    if joined {
        let _ = Command::new("docker")
            .args(["swarm", "leave", "--force"])
            .stdout(Stdio::null())
            .status();
    }
}

fn median(s: &[Duration]) -> Duration {
    let mut v = s.to_vec();
    v.sort();
    match v.len() {
        0 => Duration::ZERO,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2,
    }
}

fn fmt(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn compose_version() -> String {
    Command::new("docker-compose")
        .arg("version")
        .arg("--short")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            format!(
                "docker-compose {}",
                String::from_utf8_lossy(&o.stdout).trim()
            )
        })
        .unwrap_or_else(|| "docker-compose not found: its row will fail".to_string())
}

/// Polls `ready` every 10 ms until it says yes, up to `limit`.
fn wait_for(limit: Duration, what: &str, mut ready: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            return Err(format!("{what}: not after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10)); // a poll interval under a deadline
    }
    Ok(())
}

/// `troupe up examples/etcd/cluster.toml ARGS...`: the time until `cluster.json` appears. Then
/// SIGTERM (not timed), and a check that nothing labelled with the run is left.
fn troupe_round(troupe: &Path, args: &[&str]) -> Result<Duration, String> {
    let dir = TempDir::new().map_err(|e| e.to_string())?;
    let state = dir.path().join("state");
    let log = std::fs::File::create(dir.path().join("up.log")).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut child: Child = Command::new(troupe)
        .arg("up")
        .arg(repo().join("examples/etcd/cluster.toml"))
        .arg("--state-dir")
        .arg(&state)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| e.to_string())?;
    let descriptor = state.join("cluster.json");
    let mut exited = None;
    let ready = wait_for(START_LIMIT, "cluster.json", || {
        if descriptor.exists() {
            return true;
        }
        exited = child.try_wait().ok().flatten();
        exited.is_some()
    });
    let took = started.elapsed();
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("up.log")).unwrap_or_default();
    if let Some(status) = exited.filter(|_| !descriptor.exists()) {
        return Err(format!("troupe up exited with {status}:\n{log}"));
    }
    ready.map_err(|e| format!("{e}\n{log}"))?;
    if let Ok(run) = std::fs::read_to_string(state.join("swarm.run")) {
        let label = format!("label=troupe.run={}", run.trim());
        let left = docker_lines(&["service", "ls", "-q", "--filter", &label])
            + &docker_lines(&["network", "ls", "-q", "--filter", &label]);
        if !left.trim().is_empty() {
            return Err(format!(
                "run {} left services or networks: {left}",
                run.trim()
            ));
        }
    }
    if let Ok(run) = std::fs::read_to_string(state.join("docker.run")) {
        let label = format!("label=troupe.run={}", run.trim());
        let left = docker_lines(&["ps", "-aq", "--filter", &label])
            + &docker_lines(&["network", "ls", "-q", "--filter", &label]);
        if !left.trim().is_empty() {
            return Err(format!(
                "run {} left containers or networks: {left}",
                run.trim()
            ));
        }
    }
    Ok(took)
}

fn docker_lines(args: &[&str]) -> String {
    Command::new("docker")
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// One compose round: the file and certificates are made first (not timed); the clock runs from
/// `docker-compose up -d` until every container's health check has passed.
fn compose_round(round: usize) -> Result<Duration, String> {
    let dir = TempDir::new().map_err(|e| e.to_string())?;
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs).map_err(|e| e.to_string())?;
    let ca = Ca::new("bench compose CA", KeyType::P256).map_err(|e| e.to_string())?;
    std::fs::write(certs.join("ca.pem"), &ca.cert().cert_pem).map_err(|e| e.to_string())?;
    let names = ["main-1", "main-2", "main-3"];
    for n in names {
        let server = ca
            .issue_server(n, &[n.to_string()])
            .map_err(|e| e.to_string())?;
        write_pair(&certs, n, &server).map_err(|e| e.to_string())?;
        let client = ca.issue_client(n).map_err(|e| e.to_string())?;
        write_pair(&certs, &format!("{n}-client"), &client).map_err(|e| e.to_string())?;
    }
    // The keys are read by etcd as root inside the container; the bench may run as anyone.
    for e in std::fs::read_dir(&certs)
        .map_err(|e| e.to_string())?
        .flatten()
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o644));
    }
    let project = format!("troupebench{}r{round}", std::process::id());
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, compose_file(&certs, &project)).map_err(|e| e.to_string())?;
    let compose = |args: &[&str]| {
        Command::new("docker-compose")
            .arg("--file")
            .arg(&file)
            .arg("--project-name")
            .arg(&project)
            .args(args)
            .output()
    };
    let started = Instant::now();
    let up = compose(&["up", "--detach", "--no-color"]).map_err(|e| e.to_string());
    let mut result = up.and_then(|o| {
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "docker-compose up: {}",
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    });
    if result.is_ok() {
        let label = format!("label=com.docker.compose.project={project}");
        let ids: Vec<String> = docker_lines(&["ps", "-q", "--filter", &label])
            .lines()
            .map(str::to_string)
            .collect();
        let mut inspect = vec!["inspect", "--format", "{{.State.Health.Status}}"];
        inspect.extend(ids.iter().map(String::as_str));
        result = wait_for(START_LIMIT, "every compose service healthy", || {
            let out = docker_lines(&inspect);
            out.lines().count() == 3 && out.lines().all(|l| l == "healthy")
        });
    }
    let took = started.elapsed();
    if let Err(e) = &mut result {
        // What the members said last, for the table's FAILED line.
        if let Ok(o) = compose(&["logs", "--no-color", "--tail", "3"]) {
            e.push_str(&format!("\n{}", String::from_utf8_lossy(&o.stdout)));
        }
    }
    let _ = compose(&["down", "--volumes", "--timeout", "5"]);
    let label = format!("label=com.docker.compose.project={project}");
    let left = docker_lines(&["ps", "-aq", "--filter", &label])
        + &docker_lines(&["network", "ls", "-q", "--filter", &label]);
    if !left.trim().is_empty() {
        return Err(format!("compose project {project} left: {left}"));
    }
    result.map(|_| took)
}

/// The compose file of the same cluster: the etcd flags of `examples/etcd/cluster.toml` with
/// service names for addresses, the same image, certificates mounted read-only, and a health
/// check per member.
fn compose_file(certs: &Path, token: &str) -> String {
    let names = ["main-1", "main-2", "main-3"];
    let cluster: Vec<String> = names
        .iter()
        .map(|n| format!("{n}=https://{n}:2380"))
        .collect();
    let mut f = String::from("version: \"2.4\"\nservices:\n");
    for n in names {
        let flags = [
            format!("--name={n}"),
            "--data-dir=/data".to_string(),
            "--listen-client-urls=https://0.0.0.0:2379".to_string(),
            format!("--advertise-client-urls=https://{n}:2379"),
            "--listen-peer-urls=https://0.0.0.0:2380".to_string(),
            format!("--initial-advertise-peer-urls=https://{n}:2380"),
            format!("--initial-cluster={}", cluster.join(",")),
            "--initial-cluster-state=new".to_string(),
            format!("--initial-cluster-token={token}"),
            "--client-cert-auth".to_string(),
            "--trusted-ca-file=/certs/ca.pem".to_string(),
            format!("--cert-file=/certs/{n}.pem"),
            format!("--key-file=/certs/{n}.key"),
            "--peer-client-cert-auth".to_string(),
            "--peer-trusted-ca-file=/certs/ca.pem".to_string(),
            format!("--peer-cert-file=/certs/{n}.pem"),
            format!("--peer-key-file=/certs/{n}.key"),
            "--heartbeat-interval=10".to_string(),
            "--election-timeout=100".to_string(),
            "--logger=zap".to_string(),
            "--log-outputs=stderr".to_string(),
        ];
        let health = [
            "CMD".to_string(),
            "/usr/bin/etcdctl".to_string(),
            "--endpoints=https://127.0.0.1:2379".to_string(),
            "--cacert=/certs/ca.pem".to_string(),
            format!("--cert=/certs/{n}-client.pem"),
            format!("--key=/certs/{n}-client.key"),
            "--dial-timeout=1s".to_string(),
            "--command-timeout=1s".to_string(),
            "endpoint".to_string(),
            "health".to_string(),
        ];
        let list = |v: &[String]| {
            v.iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        f += &format!(
            "  {n}:\n    image: {IMAGE}\n    hostname: {n}\n    command: [{}]\n    volumes: [\"{}:/certs:ro\"]\n    healthcheck:\n      test: [{}]\n      interval: 100ms\n      timeout: 2s\n      retries: 600\n",
            list(&flags),
            certs.display(),
            list(&health),
        );
    }
    f
}
