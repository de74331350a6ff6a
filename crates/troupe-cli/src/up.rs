//! `troupe up`: start a spec's nodes, in the foreground until Ctrl-C, or detached under a
//! background supervisor. Either way the run serves its control socket, so `troupe status`,
//! `troupe kill` and friends work on it.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use troupe::{Cluster, Interrupt};

use crate::signal::Signals;
use troupe_spec::{Descriptor, Spec, exit, format_duration};

#[derive(Args)]
pub struct UpArgs {
    /// The spec file (TOML).
    spec: PathBuf,
    /// Where certificates, data, logs and cluster.json go [default: .troupe/<spec name>/ next
    /// to the spec]. It must be empty, new, or a previous troupe state directory.
    #[arg(long, env = "TROUPE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Return once every node is ready, leaving a background supervisor that owns the nodes;
    /// `troupe down` stops it. Fails (leaving nothing running) if the cluster does not come up.
    #[arg(long)]
    detach: bool,
    /// Override one spec key for this run, validated like the file (repeatable):
    /// --set clusters.main.nodes=5 --set clusters.main.network=namespaces
    /// --set clusters.main.binary=$PWD/target/release/server. A value is read as TOML when it
    /// is one (5, true, ["a","b"]) and as a string otherwise.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::parse_set)]
    set: Vec<String>,
    /// Internal: run as the detached supervisor and report readiness on this fd.
    #[arg(long, hide = true)]
    ready_fd: Option<i32>,
}

pub fn run(args: UpArgs) -> i32 {
    let spec = match Spec::from_path_with(&args.spec, &crate::overrides(&args.set)) {
        Ok(s) => s,
        Err(e) => return crate::report(troupe::Error::Spec(e)),
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&args.spec, &spec.name));
    // Everything knowable is checked before a word about starting: templates, binaries, the
    // state directory.
    if let Err(e) = troupe::plan::check(&spec) {
        return crate::report(troupe::Error::Spec(e));
    }
    if args.ready_fd.is_none() {
        for w in troupe::plan::probe_cost_warnings(&spec) {
            eprintln!("troupe: warning: {w}");
        }
    }
    if let Err(e) = troupe::state::check_path(&state_dir) {
        return crate::report(e);
    }
    if args.detach {
        return detach(&args.spec, &state_dir, &args.set);
    }
    // The supervisor (this process, or the detached one) holds the namespaces: entered here,
    // before the runtime and the signal thread exist.
    if crate::rootless::spec_needs(&spec)
        && troupe::net::userns::needed()
        && let Err(e) = troupe::net::userns::enter()
    {
        let code = crate::code_of(&e);
        match args.ready_fd {
            Some(fd) => {
                // SAFETY: the fd was handed to us by `troupe up --detach`; nothing else owns it.
                let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
                let text = format!("{:?}", miette::Report::new(e));
                let _ = writeln!(f, "{}", json!({"ok": false, "code": code, "error": text}));
            }
            None => {
                crate::report(e);
            }
        }
        return code;
    }
    let nodes: u32 = spec.clusters.values().map(|c| c.nodes).sum();
    if args.ready_fd.is_none() {
        eprintln!(
            "troupe: starting {nodes} node{} of `{}` (state: {})",
            if nodes == 1 { "" } else { "s" },
            spec.name,
            state_dir.display()
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // SAFETY: the fd was handed to us by `troupe up --detach` and nothing else owns it.
    let ready = args
        .ready_fd
        .map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    rt.block_on(supervise(spec, state_dir, ready))
}

pub fn default_state_dir(spec_path: &Path, name: &str) -> PathBuf {
    let dir = spec_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(".troupe").join(name)
}

/// Starts the supervisor in its own session and waits for its word on readiness.
fn detach(spec: &Path, state_dir: &Path, sets: &[String]) -> i32 {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the array with two new fds.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return crate::report_io("create a pipe", std::io::Error::last_os_error());
    }
    // SAFETY: both fds are new and owned here.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_raw = fds[1];
    let exe = std::env::current_exe().expect("own executable");
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up")
        .arg(spec)
        .arg("--state-dir")
        .arg(state_dir)
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .args(["--ready-fd", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid and dup2 are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // A session of its own: no terminal, no Ctrl-C from the shell that started it.
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            if libc::dup2(write_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Ctrl-C (or SIGTERM) while waiting: ask the supervisor to give up; it reports
    // "interrupted". Installed before the spawn, so a signal in between is not lost: it is
    // remembered and passed on once the supervisor's pid is known.
    let target: Arc<Mutex<(Option<u32>, bool)>> = Arc::new(Mutex::new((None, false)));
    let term = |pid: u32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    };
    {
        let target = target.clone();
        crate::signal::Signals::install().on_each(move |_| {
            let mut t = target.lock().expect("supervisor pid");
            match t.0 {
                Some(pid) => term(pid),
                None => t.1 = true,
            }
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return crate::report_io("start the supervisor", e),
    };
    drop(write);
    let pid = child.id();
    {
        let mut t = target.lock().expect("supervisor pid");
        t.0 = Some(pid);
        if t.1 {
            term(pid);
        }
    }
    let mut line = String::new();
    let got = BufReader::new(std::fs::File::from(read)).read_line(&mut line);
    let msg: serde_json::Value = match got {
        Ok(n) if n > 0 => {
            serde_json::from_str(&line).unwrap_or(json!({"ok": false, "code": 1, "error": line}))
        }
        _ => {
            json!({"ok": false, "code": 1, "error": format!("the supervisor (pid {pid}) exited before the cluster was ready")})
        }
    };
    if msg["ok"] == json!(true) {
        match troupe::control::Client::connect(state_dir).and_then(|mut c| {
            c.request(
                &troupe_spec::control::Request::Status,
                Duration::from_secs(10),
            )
        }) {
            Ok(r) => {
                if let Some(d) = r.status {
                    print_nodes(&d);
                    out!();
                    print_footer(&d, msg["ms"].as_f64());
                }
                out!(
                    "supervisor: pid {pid}; `troupe down --state-dir {}` stops it",
                    state_dir.display()
                );
                exit::OK
            }
            Err(e) => {
                eprintln!("{:?}", miette::Report::new(e));
                exit::FAILURE
            }
        }
    } else {
        eprint!(
            "{}",
            msg["error"].as_str().unwrap_or("the supervisor failed")
        );
        msg["code"].as_i64().unwrap_or(1) as i32
    }
}

async fn supervise(spec: Spec, state_dir: PathBuf, mut ready: Option<std::fs::File>) -> i32 {
    let mut signals = Signals::install();
    let interrupt = Interrupt::new();
    let builder = Cluster::from_spec(spec)
        .state_dir(state_dir)
        .interrupt(interrupt.clone())
        .subreaper(true);
    let mut start = tokio::task::spawn_blocking(move || builder.start());
    let started = Instant::now();
    let result = loop {
        tokio::select! {
            r = &mut start => break r.unwrap_or(Err(troupe::Error::ShutDown)),
            e = signals.recv() => on_signal(&interrupt, e.name()),
        }
    };
    let took = started.elapsed();
    let cluster = match result {
        Ok(c) => c,
        Err(e) => {
            let code = crate::code_of(&e);
            match ready.as_mut() {
                Some(fd) => {
                    let text = format!("{:?}", miette::Report::new(e));
                    let _ = writeln!(fd, "{}", json!({"ok": false, "code": code, "error": text}));
                }
                None => {
                    crate::report(e);
                }
            }
            return code;
        }
    };
    let mut down = match cluster.serve_control() {
        Ok(rx) => rx,
        Err(e) => {
            cluster.stop();
            let code = crate::code_of(&e);
            match ready.as_mut() {
                Some(fd) => {
                    let _ = writeln!(
                        fd,
                        "{}",
                        json!({"ok": false, "code": code, "error": e.to_string()})
                    );
                }
                None => {
                    crate::report(e);
                }
            }
            return code;
        }
    };
    match ready.take() {
        Some(mut fd) => {
            let _ = writeln!(
                fd,
                "{}",
                json!({"ok": true, "ms": took.as_secs_f64() * 1000.0})
            );
            drop(fd);
            redirect_output(&cluster.state_dir().join("supervisor.log"));
        }
        None => {
            let d = cluster.descriptor();
            print_nodes(&d);
            out!();
            print_footer(&d, Some(took.as_secs_f64() * 1000.0));
            out!("Press Ctrl-C to stop.");
        }
    }
    // A signal that came while the start was finishing has been seen already: stop now.
    let by_request = if interrupt.level() >= 1 {
        false
    } else {
        tokio::select! {
            _ = signals.recv() => false,
            _ = down.wait_for(|d| *d) => true,
        }
    };
    if !by_request {
        eprintln!("troupe: stopping (press Ctrl-C again to kill at once)");
    }
    if interrupt.level() == 0 {
        interrupt.trigger();
    }
    let mut stop = tokio::task::spawn_blocking(move || cluster.stop());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = signals.recv() => on_signal(&interrupt, "killing"),
        }
    }
    eprintln!("troupe: all nodes stopped");
    exit::OK
}

/// The detached supervisor's own messages go to `<state-dir>/supervisor.log`.
fn redirect_output(path: &Path) {
    if let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto our own stdout and stderr.
        unsafe {
            libc::dup2(f.as_raw_fd(), 1);
            libc::dup2(f.as_raw_fd(), 2);
        }
    }
}

fn on_signal(interrupt: &Interrupt, what: &str) {
    interrupt.trigger();
    if interrupt.level() >= 2 {
        eprintln!("troupe: {what}: killing every node now");
    } else {
        eprintln!("troupe: {what}: stopping (press Ctrl-C again to kill at once)");
    }
}

fn ms(v: f64) -> String {
    format_duration(Duration::from_secs_f64(v / 1000.0))
}

/// The node table: name, state, pid, role, time to ready, endpoints.
pub fn print_nodes(d: &Descriptor) {
    let mut rows = vec![[
        "NODE".to_string(),
        "STATE".into(),
        "PID".into(),
        "ROLE".into(),
        "READY IN".into(),
        "ENDPOINTS".into(),
    ]];
    for n in &d.nodes {
        let state = match (&n.state, &n.exit) {
            (troupe_spec::NodeState::Exited, Some(e)) => format!("exited ({e})"),
            (s, _) => s.to_string(),
        };
        rows.push([
            n.name.clone(),
            state,
            n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            n.role.clone().unwrap_or_else(|| "-".into()),
            n.time_to_ready_ms.map(ms).unwrap_or_else(|| "-".into()),
            n.urls
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    let last = rows[0].len() - 1;
    let widths: Vec<usize> = (0..last)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out!("{}", line.join("  ").trim_end());
    }
}

fn print_footer(d: &Descriptor, took_ms: Option<f64>) {
    match took_ms {
        Some(t) => out!("{} ready in {}", d.name, ms(t)),
        None => out!("{} ready", d.name),
    }
    if let Some(ca) = &d.ca {
        out!("CA:          {}", ca.display());
    }
    out!(
        "descriptor:  {}",
        d.state_dir.join("cluster.json").display()
    );
    out!(
        "logs:        {}/nodes/<node>/node.log",
        d.state_dir.display()
    );
    if d.rootless {
        out!("{}", rootless_note(d));
    }
}

/// How to reach the nodes of a run without root.
pub fn rootless_note(d: &Descriptor) -> String {
    format!(
        "rootless:    the nodes are in troupe's own user and network namespace; reach them with `troupe exec --state-dir {} -- CMD`",
        d.state_dir.display()
    )
}
