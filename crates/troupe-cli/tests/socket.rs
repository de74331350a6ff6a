//! The control socket under abuse, with raw sockets: malformed and oversized requests, many
//! clients at once, a client that never reads, and a stress of concurrent node operations,
//! faults and `down` that must end with nothing left behind.

#[path = "../../troupe/tests/common/mod.rs"]
mod common;
use common::{alive, fixture_bin, wait_until};

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use assert_cmd::cargo::cargo_bin;

/// Three fixture nodes behind link proxies, each forking a grandchild.
fn spec(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("fixture.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[clusters.main]
nodes = 3
binary = "{}"
ports = ["http"]
network = "proxies"
args = ["--listen", "{{{{ node.addrs.http }}}}", "--fork-grandchild"]

[[clusters.main.ready]]
tcp = "http"
timeout = "10s"

[clusters.main.stop]
grace = "2s"
"#,
            fixture_bin().display()
        ),
    )
    .unwrap();
    path
}

struct Run {
    dir: tempfile::TempDir,
    state: PathBuf,
}

impl Run {
    fn up() -> Run {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let run = Run { state, dir };
        let out = run
            .troupe()
            .args(["up", "--detach"])
            .arg(spec(run.dir.path()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        run
    }

    fn troupe(&self) -> std::process::Command {
        let mut c = std::process::Command::new(cargo_bin("troupe"));
        c.env("TROUPE_STATE_DIR", &self.state);
        c
    }

    fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(self.state.join("control.sock")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    fn ask(&self, line: &str) -> serde_json::Value {
        ask_on(&mut self.connect(), line)
    }

    fn descriptor(&self) -> troupe_spec::Descriptor {
        let r = self.ask(r#"{"op":"status"}"#);
        serde_json::from_value(r["status"].clone()).unwrap()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.troupe().args(["down", "--force"]).output();
    }
}

fn ask_on(s: &mut UnixStream, line: &str) -> serde_json::Value {
    s.write_all(line.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let mut answer = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut answer)
        .unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("not JSON ({e}): {answer:?}"))
}

fn error_of(v: &serde_json::Value) -> String {
    assert_eq!(v["ok"], false, "expected an error, got {v}");
    v["error"].as_str().unwrap_or("").to_string()
}

#[test]
fn malformed_requests_get_errors_and_the_connection_goes_on() {
    let run = Run::up();
    let mut s = run.connect();
    assert!(error_of(&ask_on(&mut s, "{not json")).contains("bad request"));
    assert!(error_of(&ask_on(&mut s, r#"{"op":"explode"}"#)).contains("bad request"));
    // The regressions: each of these panicked the supervisor.
    let huge = r#"{"op":"wait","until":"ready","timeout_ms":18446744073709551615}"#;
    assert!(error_of(&ask_on(&mut s, huge)).contains("at most"));
    let negative =
        r#"{"op":"fault","fault":{"kind":"degrade","targets":["main-1"],"delay_ms":-5}}"#;
    assert!(!error_of(&ask_on(&mut s, negative)).is_empty());
    let bad_rate = r#"{"op":"fault","fault":{"kind":"degrade","targets":["main-1"],"delay_ms":1,"rate":"fast"}}"#;
    assert!(error_of(&ask_on(&mut s, bad_rate)).contains("fast"));
    let bad_loss = r#"{"op":"fault","fault":{"kind":"degrade","targets":["main-1"],"delay_ms":0,"loss_pct":150}}"#;
    assert!(!error_of(&ask_on(&mut s, bad_loss)).is_empty());
    assert_eq!(
        ask_on(&mut s, r#"{"op":"status"}"#)["ok"],
        true,
        "still serving"
    );
    assert!(run.descriptor().faults.is_empty(), "nothing was applied");
}

#[test]
fn a_ten_megabyte_line_is_refused_and_the_server_keeps_serving() {
    let run = Run::up();
    let mut s = run.connect();
    let line = vec![b'x'; 10 << 20];
    // The server may close before reading it all: a broken pipe here is fine.
    let _ = s.write_all(&line);
    let mut answer = String::new();
    let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut answer);
    assert!(answer.contains("longer than"), "{answer}");
    assert_eq!(run.ask(r#"{"op":"status"}"#)["ok"], true);
}

#[test]
fn fifty_clients_at_once_are_all_answered() {
    let run = Run::up();
    let answers: Vec<serde_json::Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| scope.spawn(|| run.ask(r#"{"op":"status"}"#)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|a| a["ok"] == true));
}

#[test]
fn a_client_that_never_reads_holds_up_nobody() {
    let run = Run::up();
    let mut greedy = run.connect();
    greedy
        .set_write_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // Ask for the descriptor over and over and never read an answer: the server's writes to
    // this client block once the socket buffers are full.
    let request = b"{\"op\":\"status\"}\n".repeat(20_000);
    let _ = greedy.write_all(&request);
    assert_eq!(run.ask(r#"{"op":"status"}"#)["ok"], true);
    // And `down` still ends the run, the greedy connection with it.
    let out = run.troupe().arg("down").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!troupe::state::is_live(&run.state));
}

#[test]
fn connections_end_with_the_run() {
    let run = Run::up();
    let mut idle = run.connect();
    assert_eq!(ask_on(&mut idle, r#"{"op":"status"}"#)["ok"], true);
    assert_eq!(run.ask(r#"{"op":"down","kill":true}"#)["ok"], true);
    let mut rest = Vec::new();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = idle.read_to_end(&mut rest).unwrap();
    assert_eq!(n, 0, "the idle connection was closed by the server");
    wait_until(Duration::from_secs(10), "the supervisor to exit", || {
        !troupe::state::is_live(&run.state)
    });
}

/// Every pid a run had: nodes, their grandchildren (from the fixture's log), the supervisor.
fn pids_of(d: &troupe_spec::Descriptor) -> Vec<u32> {
    let mut pids: Vec<u32> = d.nodes.iter().filter_map(|n| n.pid).collect();
    for n in &d.nodes {
        let log = std::fs::read_to_string(&n.log).unwrap_or_default();
        pids.extend(
            log.lines()
                .filter_map(|l| l.strip_prefix("grandchild pid "))
                .filter_map(|p| p.trim().parse::<u32>().ok()),
        );
    }
    pids
}

/// A tiny deterministic generator, so a failing round can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const REQUESTS: [&str; 9] = [
    r#"{"op":"kill","targets":["main:random"]}"#,
    r#"{"op":"start","targets":["main"]}"#,
    r#"{"op":"stop","targets":["main-2"]}"#,
    r#"{"op":"restart","targets":["main-3"]}"#,
    r#"{"op":"fault","fault":{"kind":"partition","groups":[["main-1"],["main-2","main-3"]]}}"#,
    r#"{"op":"fault","fault":{"kind":"cut","from":["main-1"],"to":["main-3"],"one_way":true}}"#,
    r#"{"op":"heal"}"#,
    r#"{"op":"status"}"#,
    r#"{"op":"pause","targets":["main-1"]}"#,
];

/// 1,000 requests in all: 5 runs, each with 4 clients sending 50 requests at once and a fifth
/// that sends `down` part-way through. Every answer is JSON (no panic), and each run ends with
/// its supervisor gone and every node and grandchild gone, zombies included.
#[test]
fn a_thousand_concurrent_requests_and_down_leave_nothing_behind() {
    for round in 0..5u64 {
        let run = Run::up();
        let before = pids_of(&run.descriptor());
        let supervisor = run.descriptor().supervisor_pid;
        let seen = std::sync::Mutex::new(before);
        std::thread::scope(|scope| {
            for client in 0..4u64 {
                let (run, seen) = (&run, &seen);
                scope.spawn(move || {
                    let mut rng = Rng(0x9e37_79b9 ^ (round << 8) ^ client | 1);
                    let Ok(mut s) = UnixStream::connect(run.state.join("control.sock")) else {
                        return;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                    let mut reader = BufReader::new(s.try_clone().unwrap());
                    for _ in 0..50 {
                        let req = REQUESTS[rng.below(REQUESTS.len() as u64) as usize];
                        if writeln!(s, "{req}").is_err() {
                            return; // the run went down
                        }
                        let mut answer = String::new();
                        match reader.read_line(&mut answer) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let v: serde_json::Value = serde_json::from_str(&answer)
                            .unwrap_or_else(|e| panic!("round {round}: not JSON ({e}): {answer}"));
                        if let Ok(d) =
                            serde_json::from_value::<troupe_spec::Descriptor>(v["status"].clone())
                        {
                            seen.lock().unwrap().extend(pids_of(&d));
                        }
                    }
                });
            }
            scope.spawn(|| {
                let _ = run.ask(r#"{"op":"status"}"#);
                let _ = run.ask(r#"{"op":"resume","targets":["main"]}"#);
                let mut s = run.connect();
                let _ = ask_on(&mut s, r#"{"op":"down"}"#);
            });
        });
        wait_until(Duration::from_secs(30), "the supervisor to exit", || {
            !alive(supervisor)
        });
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        seen.dedup();
        for pid in seen {
            assert!(
                !std::path::Path::new(&format!("/proc/{pid}")).exists(),
                "round {round}: process {pid} is left behind (alive or a zombie)"
            );
        }
        // A leader thread shows as a zombie while the process's other threads still exit and
        // hold its files: the lock goes with the last of them.
        wait_until(
            Duration::from_secs(5),
            "the run's lock to be released",
            || !troupe::state::is_live(&run.state),
        );
    }
}

/// The regression: `troupe status | head -1` panicked with "failed printing to stdout: Broken
/// pipe". A command whose reader went away ends quietly, as `ls | head` does.
#[test]
fn a_reader_that_goes_away_ends_a_command_quietly() {
    let run = Run::up();
    let mut fds = [0i32; 2];
    // SAFETY: pipe fills the array with two new descriptors, owned below.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both are new and owned here; the read end is closed at once.
    let (read, write) = unsafe {
        use std::os::fd::FromRawFd;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    let out = run
        .troupe()
        .arg("status")
        .stdout(std::process::Stdio::from(write))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert!(
        out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
        "{:?}",
        out.status
    );
}
