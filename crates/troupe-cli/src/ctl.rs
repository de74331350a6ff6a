//! Commands that act on a running troupe through its state directory: status, env, logs,
//! node operations, wait, down.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use troupe::control::{Client, ClientError};
use troupe_spec::control::{Request, Response, WaitFor};
use troupe_spec::scenario::NodeOp as Op;
use troupe_spec::{Descriptor, NodeState, exit, format_duration, parse_duration};

/// How commands find a run.
#[derive(Args, Clone)]
pub struct Where {
    /// The run's state directory [default: the one `up` used for --spec, or the only run under
    /// ./.troupe/].
    #[arg(long, env = "TROUPE_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Find the run `troupe up SPEC` started (in .troupe/<spec name>/ next to it).
    #[arg(long, global = true)]
    pub spec: Option<PathBuf>,
}

impl Where {
    pub fn resolve(&self) -> Result<PathBuf, String> {
        if let Some(d) = &self.state_dir {
            return Ok(d.clone());
        }
        if let Some(spec) = &self.spec {
            let parsed = troupe_spec::Spec::from_path(spec).map_err(|e| format!("{e:?}"))?;
            return Ok(crate::up::default_state_dir(spec, &parsed.name));
        }
        let base = Path::new(".troupe");
        let runs: Vec<PathBuf> = std::fs::read_dir(base)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join(".troupe-state").exists())
                    .collect()
            })
            .unwrap_or_default();
        match runs.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(
                "no run found: pass --state-dir DIR (or set TROUPE_STATE_DIR), or --spec SPEC"
                    .into(),
            ),
            many => Err(format!(
                "several runs under ./.troupe ({}): say which with --state-dir",
                many.iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

fn fail(msg: impl std::fmt::Display) -> i32 {
    eprintln!("error: {msg}");
    exit::FAILURE
}

fn client_error(e: ClientError) -> i32 {
    let code = match e {
        ClientError::NotRunning { .. } | ClientError::NoStateDir { .. } => exit::NOT_RUNNING,
        _ => exit::FAILURE,
    };
    eprintln!("{:?}", miette::Report::new(e));
    code
}

/// One request to the run at `w`, with the error paths every command shares.
fn ask(w: &Where, req: Request, limit: Duration) -> Result<Response, i32> {
    let dir = w.resolve().map_err(|e| {
        eprintln!("error: {e}");
        exit::INVALID_INPUT
    })?;
    let mut client = Client::connect(&dir).map_err(client_error)?;
    let r = client.request(&req, limit).map_err(client_error)?;
    if r.ok {
        Ok(r)
    } else if r.invalid {
        eprintln!(
            "error: {}",
            r.error.unwrap_or_else(|| "invalid request".into())
        );
        Err(exit::INVALID_INPUT)
    } else {
        Err(fail(r.error.unwrap_or_else(|| "failed".into())))
    }
}

fn status_of(w: &Where) -> Result<Descriptor, i32> {
    let r = ask(w, Request::Status, Duration::from_secs(10))?;
    Ok(r.status.expect("status carries a descriptor"))
}

pub fn status(w: &Where, json: bool) -> i32 {
    let d = match status_of(w) {
        Ok(d) => d,
        Err(code) => return code,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&d).expect("json"));
        return exit::OK;
    }
    println!(
        "{}: {} node{}, supervisor pid {}, state {}",
        d.name,
        d.nodes.len(),
        if d.nodes.len() == 1 { "" } else { "s" },
        d.supervisor_pid,
        d.state_dir.display()
    );
    if d.rootless {
        println!("{}", crate::up::rootless_note(&d));
    }
    crate::up::print_nodes(&d);
    for c in &d.clusters {
        let formed = c
            .formation_ms
            .map(|ms| {
                format!(
                    ", formed in {}",
                    format_duration(Duration::from_secs_f64(ms / 1000.0))
                )
            })
            .unwrap_or_default();
        let leader = match (&c.leader, c.has_role_probe) {
            (Some(_), _) if c.leaders.len() > 1 => {
                format!("SPLIT BRAIN: {} all claim to lead", c.leaders.join(", "))
            }
            (Some(l), _) => format!("leader {l}"),
            (None, true) => "no leader".to_string(),
            (None, false) => "no role probe".to_string(),
        };
        println!("cluster {}: {leader}{formed}", c.name);
        for w in &c.split_brains {
            let lasted = match w.to_ms {
                Some(to) => format!(
                    "for {}",
                    format_duration(Duration::from_millis(to.saturating_sub(w.from_ms)))
                ),
                None => "still".to_string(),
            };
            println!(
                "  split brain: {} claimed to lead, {lasted}",
                w.nodes.join(", ")
            );
        }
        for f in &c.failovers {
            match (&f.to, f.ms) {
                (Some(to), Some(ms)) => println!(
                    "  failover: {} ({}) -> {} in {}",
                    f.from,
                    f.cause,
                    to,
                    format_duration(Duration::from_secs_f64(ms / 1000.0))
                ),
                _ => println!("  failover: {} ({}) -> no new leader yet", f.from, f.cause),
            }
        }
    }
    for f in &d.faults {
        let since = format_duration(Duration::from_millis(
            troupe::unix_ms().saturating_sub(f.started_at_ms),
        ));
        match f.healed_at_ms {
            None => println!("fault {}: {} (active for {since})", f.id, f.description),
            Some(h) => println!(
                "fault {}: {} (healed after {})",
                f.id,
                f.description,
                format_duration(Duration::from_millis(h.saturating_sub(f.started_at_ms)))
            ),
        }
    }
    exit::OK
}

pub fn env(w: &Where, json: bool) -> i32 {
    let d = match status_of(w) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let vars = troupe::envvars::vars(&d);
    if json {
        let map: serde_json::Map<String, serde_json::Value> = vars
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        println!("{}", serde_json::to_string_pretty(&map).expect("json"));
    } else {
        for (k, v) in vars {
            println!("export {k}='{}'", v.replace('\'', r"'\''"));
        }
    }
    exit::OK
}

/// Reads the descriptor from disk: logs stay readable after the run has ended.
fn descriptor_on_disk(w: &Where) -> Result<Descriptor, i32> {
    let dir = w.resolve().map_err(fail)?;
    let path = dir.join("cluster.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        fail(format!(
            "cannot read {}: {e} (did the run ever become ready?)",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| fail(format!("{}: {e}", path.display())))
}

pub fn logs(w: &Where, node: &str, follow: bool, lines: usize) -> i32 {
    let d = match descriptor_on_disk(w) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let Some(n) = d.nodes.iter().find(|n| n.name == node) else {
        let names: Vec<&str> = d.nodes.iter().map(|n| n.name.as_str()).collect();
        return fail(format!(
            "no node named `{node}`; nodes: {}",
            names.join(", ")
        ));
    };
    let mut f = match std::fs::File::open(&n.log) {
        Ok(f) => f,
        Err(e) => return fail(format!("cannot open {}: {e}", n.log.display())),
    };
    let tail = troupe::log_tail(&n.log, lines);
    let mut out = std::io::stdout();
    for l in tail {
        let _ = writeln!(out, "{l}");
    }
    if !follow {
        return exit::OK;
    }
    let mut pos = f.seek(SeekFrom::End(0)).unwrap_or(0);
    let mut buf = Vec::new();
    loop {
        let _ = out.flush();
        std::thread::sleep(Duration::from_millis(100));
        let len = f.metadata().map(|m| m.len()).unwrap_or(pos);
        if len < pos {
            pos = 0; // truncated: start over
        }
        if len > pos {
            let _ = f.seek(SeekFrom::Start(pos));
            buf.clear();
            let _ = (&mut f).take(len - pos).read_to_end(&mut buf);
            pos += buf.len() as u64;
            let _ = out.write_all(&buf);
        }
    }
}

pub fn op(w: &Where, op: Op, targets: Vec<String>) -> i32 {
    let (req, done) = match op {
        Op::Kill => (Request::Kill { targets }, "killed"),
        Op::Stop => (Request::Stop { targets }, "stopped"),
        Op::Start => (Request::Start { targets }, "started"),
        Op::Restart => (Request::Restart { targets }, "restarted"),
        Op::Pause => (Request::Pause { targets }, "paused"),
        Op::Resume => (Request::Resume { targets }, "resumed"),
    };
    match ask(w, req, Duration::from_secs(600)) {
        Ok(r) => {
            for n in r.nodes {
                println!("{done} {n}");
            }
            exit::OK
        }
        Err(code) => code,
    }
}

/// Sends a fault (or heal) and prints what was done.
pub fn fault(w: &Where, req: Request) -> i32 {
    match ask(w, req, Duration::from_secs(60)) {
        Ok(r) => {
            if let Some(d) = r.detail {
                println!("{d}");
            }
            exit::OK
        }
        Err(code) => code,
    }
}

/// `"a-1 | a-2 a-3"` → groups of targets.
pub fn groups(text: &str) -> Vec<Vec<String>> {
    text.split('|')
        .map(|g| g.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|g| !g.is_empty())
        .collect()
}

pub fn wait(w: &Where, until: WaitFor, cluster: Option<String>, timeout: &str) -> i32 {
    let limit = match parse_duration(timeout) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: --timeout: {e}");
            return exit::INVALID_INPUT;
        }
    };
    let req = Request::Wait {
        until,
        cluster,
        timeout_ms: limit.as_millis() as u64,
    };
    match ask(w, req, limit + Duration::from_secs(5)) {
        Ok(r) => {
            if let Some(l) = r.leader {
                println!("{l}");
            }
            if until == WaitFor::AnyLeader
                && let Some(all) = r.detail.filter(|d| d.contains(' '))
            {
                eprintln!("troupe: several nodes claim to lead (split brain): {all}");
            }
            exit::OK
        }
        Err(code) => code,
    }
}

pub fn down(w: &Where, force: bool, kill: bool) -> i32 {
    let dir = match w.resolve() {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    if !dir.join(".troupe-state").exists() {
        return client_error(ClientError::NoStateDir { state_dir: dir });
    }
    let live = troupe::state::is_live(&dir);
    if force {
        let killed = troupe::state::kill_leftovers(&dir);
        let _ = std::fs::remove_file(dir.join(troupe_spec::control::SOCKET));
        println!(
            "killed {killed} process(es) of the run in {} (supervisor and node groups)",
            dir.display()
        );
        // The lock is released by the kernel when the supervisor dies.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while troupe::state::is_live(&dir) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        return exit::OK;
    }
    if !live {
        let leftovers = descriptor_on_disk(w)
            .map(|d| {
                d.nodes
                    .iter()
                    .filter(|n| n.pid.is_some() && n.state != NodeState::Stopped)
                    .count()
            })
            .unwrap_or(0);
        println!("no troupe is running in {}; nothing to stop", dir.display());
        if leftovers > 0 {
            println!(
                "(its last descriptor lists running nodes: `troupe down --force` kills any that are still alive)"
            );
        }
        return exit::OK;
    }
    let supervisor = status_of(w).map(|d| d.supervisor_pid).ok();
    match ask(w, Request::Down { kill }, Duration::from_secs(600)) {
        Ok(_) => {
            // The supervisor exits right after answering; wait for its lock to go.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while troupe::state::is_live(&dir) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            match supervisor {
                Some(pid) => println!("stopped every node and the supervisor (pid {pid})"),
                None => println!("stopped every node"),
            }
            exit::OK
        }
        Err(code) => code,
    }
}
