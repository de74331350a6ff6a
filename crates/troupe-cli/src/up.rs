//! `troupe up`: start a spec's nodes in the foreground until Ctrl-C.

use std::path::{Path, PathBuf};

use clap::Args;
use tokio::signal::unix::{SignalKind, signal};
use troupe::{Cluster, Interrupt};
use troupe_spec::{Spec, exit, format_duration};

#[derive(Args)]
pub struct UpArgs {
    /// The spec file (TOML).
    spec: PathBuf,
    /// Where certificates, data, logs and cluster.json go [default: .troupe/<spec name>/ next
    /// to the spec]. It must be empty, new, or a previous troupe state directory.
    #[arg(long, env = "TROUPE_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

pub fn run(args: UpArgs) -> i32 {
    let spec = match Spec::from_path(&args.spec) {
        Ok(s) => s,
        Err(e) => return crate::report(troupe::Error::Spec(e)),
    };
    let state_dir = args
        .state_dir
        .unwrap_or_else(|| default_state_dir(&args.spec, &spec.name));
    let nodes: u32 = spec.clusters.values().map(|c| c.nodes).sum();
    eprintln!(
        "troupe: starting {nodes} node{} of `{}` (state: {})",
        if nodes == 1 { "" } else { "s" },
        spec.name,
        state_dir.display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(foreground(spec, state_dir))
}

pub fn default_state_dir(spec_path: &Path, name: &str) -> PathBuf {
    let dir = spec_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.join(".troupe").join(name)
}

async fn foreground(spec: Spec, state_dir: PathBuf) -> i32 {
    let mut sigint = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut sigterm = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut sighup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    let interrupt = Interrupt::new();
    let builder = Cluster::from_spec(spec).state_dir(state_dir).interrupt(interrupt.clone());
    let mut start = tokio::task::spawn_blocking(move || builder.start());
    let started = Instant::now();
    let result = loop {
        tokio::select! {
            r = &mut start => break r.expect("start task"),
            _ = sigint.recv() => on_signal(&interrupt, "interrupted"),
            _ = sigterm.recv() => on_signal(&interrupt, "SIGTERM"),
            _ = sighup.recv() => on_signal(&interrupt, "SIGHUP"),
        }
    };
    let cluster = match result {
        Ok(c) => c,
        Err(e) => return crate::report(e),
    };
    print_table(&cluster, started.elapsed());
    tokio::select! {
        _ = sigint.recv() => {}
        _ = sigterm.recv() => {}
        _ = sighup.recv() => {}
    }
    eprintln!("troupe: stopping (press Ctrl-C again to kill at once)");
    interrupt.trigger();
    let mut stop = tokio::task::spawn_blocking(move || cluster.stop());
    loop {
        tokio::select! {
            r = &mut stop => { r.expect("stop task"); break; }
            _ = sigint.recv() => on_signal(&interrupt, "killing"),
            _ = sigterm.recv() => on_signal(&interrupt, "killing"),
        }
    }
    eprintln!("troupe: all nodes stopped");
    exit::OK
}

use std::time::Instant;

fn on_signal(interrupt: &Interrupt, what: &str) {
    interrupt.trigger();
    if interrupt.level() >= 2 {
        eprintln!("troupe: {what}: killing every node now");
    } else {
        eprintln!("troupe: {what}: stopping (press Ctrl-C again to kill at once)");
    }
}

fn print_table(cluster: &Cluster, took: std::time::Duration) {
    let d = cluster.descriptor();
    let mut rows = vec![[
        "NODE".to_string(),
        "PID".into(),
        "STATE".into(),
        "READY IN".into(),
        "ENDPOINTS".into(),
    ]];
    for n in &d.nodes {
        rows.push([
            n.name.clone(),
            n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            n.state.to_string(),
            n.time_to_ready_ms
                .map(|ms| format_duration(std::time::Duration::from_secs_f64(ms / 1000.0)))
                .unwrap_or_else(|| "-".into()),
            n.urls
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| if i == 4 { c.clone() } else { format!("{c:<w$}", w = widths[i]) })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    println!();
    println!("{} ready in {}", d.name, format_duration(took));
    if let Some(ca) = &d.ca {
        println!("CA:          {}", ca.display());
    }
    println!("descriptor:  {}", d.state_dir.join("cluster.json").display());
    println!("logs:        {}/nodes/<node>/node.log", d.state_dir.display());
    println!("Press Ctrl-C to stop.");
}
