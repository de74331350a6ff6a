//! The control socket: a running troupe (foreground or detached) serves
//! `<state-dir>/control.sock` so that commands from any shell, or any language, can read its
//! state and act on its nodes. The protocol (one JSON object per line each way) is in
//! [`troupe_spec::control`]. The socket is mode 0600 inside a 0700 directory: only its owner
//! can drive the cluster.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use troupe_spec::control::{Request, Response, SOCKET, WaitFor};
use troupe_spec::scenario::NodeOp as Op;

use crate::engine::{Engine, Interrupt, LEADER_WAIT};
use crate::error::{Error, io_err};

/// Binds the socket; the server runs until the engine is dropped.
pub(crate) fn bind(state_dir: &Path) -> Result<UnixListener, Error> {
    let path = state_dir.join(SOCKET);
    if path.as_os_str().len() > 100 {
        return Err(Error::Environment {
            message: format!(
                "the control socket path {} is too long for a Unix socket",
                path.display()
            ),
            help: Some(
                "choose a shorter --state-dir (Unix socket paths are limited to 107 bytes)".into(),
            ),
        });
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(|e| io_err("listen on", &path, e))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("set permissions of", &path, e))?;
    Ok(listener)
}

/// Longest request line: a request is a few hundred bytes; anything far longer is a mistake
/// or an attack, answered with an error and a closed connection.
pub const MAX_LINE: usize = 1 << 20;

/// How long the server pauses after a failed `accept` (out of file descriptors): a hot loop
/// would starve the runtime.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves requests until the run closes (after `down`, or when the cluster stops). Every
/// connection ends with the run.
pub(crate) async fn serve(
    engine: Arc<Engine>,
    listener: UnixListener,
    interrupt: Interrupt,
    down_tx: Arc<watch::Sender<bool>>,
) {
    let mut closing = engine.run.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (engine, interrupt, down_tx) = (engine.clone(), interrupt.clone(), down_tx.clone());
                    connections.spawn(connection(stream, engine, interrupt, down_tx));
                }
                Err(e) => {
                    tracing::warn!("control socket: accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            // Reap finished connections as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = crate::lifecycle::closed(&mut closing) => break,
        }
    }
    // The run is closing: idle connections end at once, a request under way (the `down`
    // itself) writes its answer first. One that is stuck (a client that never reads) is cut.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
}

/// How long connections may take to finish their last answer once the run closes.
const CLOSE_GRACE: Duration = Duration::from_secs(60);

/// One client: requests in, answers out, one at a time.
async fn connection(
    stream: tokio::net::UnixStream,
    engine: Arc<Engine>,
    interrupt: Interrupt,
    down_tx: Arc<watch::Sender<bool>>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut closing = engine.run.subscribe();
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(MAX_LINE as u64 + 1);
        let next = limited.read_until(b'\n', &mut line);
        let n = tokio::select! {
            r = next => match r {
                Ok(n) => n,
                Err(_) => return,
            },
            // Between requests, a closing run ends the connection.
            _ = crate::lifecycle::closed(&mut closing) => return,
        };
        if n == 0 {
            return;
        }
        let too_long = line.len() > MAX_LINE;
        let response = if too_long {
            Response::error(format!(
                "bad request: longer than {} bytes; send one JSON object per line",
                MAX_LINE
            ))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(req) => match req.validate() {
                    Ok(()) => handle(&engine, req, &interrupt, &down_tx).await,
                    Err(e) => Response::invalid(format!("bad request: {e}")),
                },
                Err(e) => Response::invalid(format!("bad request: {e}")),
            }
        };
        let mut text = serde_json::to_string(&response).expect("response serialises");
        text.push('\n');
        // A client that never reads gets nothing more once its socket buffer is full; it
        // holds only its own connection, which ends with the run.
        if write.write_all(text.as_bytes()).await.is_err() || too_long {
            return;
        }
    }
}

async fn handle(
    engine: &Arc<Engine>,
    req: Request,
    interrupt: &Interrupt,
    down_tx: &watch::Sender<bool>,
) -> Response {
    let result = match req {
        Request::Status => {
            let mut r = Response::ok();
            r.status = Some(engine.descriptor());
            return r;
        }
        Request::Kill { targets } => each(engine, &targets, Op::Kill).await,
        Request::Stop { targets } => each(engine, &targets, Op::Stop).await,
        Request::Start { targets } => each(engine, &targets, Op::Start).await,
        Request::Restart { targets } => each(engine, &targets, Op::Restart).await,
        Request::Pause { targets } => each(engine, &targets, Op::Pause).await,
        Request::Resume { targets } => each(engine, &targets, Op::Resume).await,
        Request::Wait {
            until,
            cluster,
            timeout_ms,
        } => {
            let limit = Duration::from_millis(timeout_ms);
            match until {
                WaitFor::Ready => engine
                    .wait_ready(cluster.as_deref(), limit)
                    .await
                    .map(|()| Response::ok()),
                WaitFor::Leader | WaitFor::AnyLeader => {
                    let cluster = match cluster.or_else(|| engine.only_cluster_with_roles()) {
                        Some(c) => c,
                        None => {
                            return Response::error(
                                "several clusters (or none) have a role probe: say which with --cluster",
                            );
                        }
                    };
                    if until == WaitFor::AnyLeader {
                        engine.wait_claimants(&cluster, limit).await.map(|all| {
                            let mut r = Response::ok();
                            r.leader = all.first().cloned();
                            r.detail = Some(all.join(" "));
                            r
                        })
                    } else {
                        engine.wait_leader(&cluster, limit).await.map(|l| {
                            let mut r = Response::ok();
                            r.leader = Some(l);
                            r
                        })
                    }
                }
            }
        }
        Request::Fault { fault } => engine.fault(&fault).await.map(|rec| {
            let mut r = Response::ok();
            r.detail = Some(format!("fault {}: {}", rec.id, rec.description));
            r
        }),
        Request::Heal { id } => engine.heal(id).await.map(|n| {
            let mut r = Response::ok();
            r.detail = Some(format!("healed {n} fault{}", if n == 1 { "" } else { "s" }));
            r
        }),
        Request::Down { kill } => {
            if kill {
                engine.kill_all().await;
            } else {
                engine.stop_all(interrupt).await;
            }
            engine.persist_quietly().await;
            down_tx.send_replace(true);
            Ok(Response::ok())
        }
        _ => Ok(Response::error("this troupe does not know that request")),
    };
    result.unwrap_or_else(|e| {
        let mut text = e.to_string();
        if let Some(h) = miette::Diagnostic::help(&e) {
            text.push_str(&format!("\n  (hint: {h})"));
        }
        match e {
            Error::Target { .. } => Response::invalid(text),
            _ => Response::error(text),
        }
    })
}

/// Resolves targets, then acts on every node at once (a group stop goes leader first).
async fn each(engine: &Arc<Engine>, targets: &[String], op: Op) -> Result<Response, Error> {
    if targets.is_empty() {
        return Err(Error::Target {
            message: "no target given".into(),
            help: Some("name a node, a cluster, or CLUSTER:SELECTOR".into()),
        });
    }
    let nodes = engine.select(targets, LEADER_WAIT).await?;
    if op == Op::Stop {
        engine.stop_nodes(&nodes, &Interrupt::new()).await?;
    } else {
        let mut set = JoinSet::new();
        for n in nodes.clone() {
            let e = engine.clone();
            set.spawn(async move {
                match op {
                    Op::Kill => e.kill_node(&n).await,
                    Op::Stop => e.stop_node(&n).await,
                    Op::Start => e.start_node(&n).await,
                    Op::Restart => e.restart_node(&n).await,
                    Op::Pause => e.pause_node(&n, true).await,
                    Op::Resume => e.pause_node(&n, false).await,
                }
            });
        }
        let mut first_error = None;
        while let Some(r) = set.join_next().await {
            if let Ok(Err(e)) = r {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let mut r = Response::ok();
    r.nodes = nodes;
    Ok(r)
}

/// Why a command could not reach a running troupe.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ClientError {
    #[error("no troupe is running in {}", state_dir.display())]
    #[diagnostic(help(
        "start one with `troupe up SPEC --detach`; if a run crashed, `troupe down --force` cleans up what it left"
    ))]
    NotRunning { state_dir: PathBuf },
    #[error("{} is not a troupe state directory", state_dir.display())]
    #[diagnostic(help(
        "pass the directory `troupe up` used with --state-dir (or TROUPE_STATE_DIR)"
    ))]
    NoStateDir { state_dir: PathBuf },
    #[error("troupe in {} did not answer within {}", state_dir.display(), troupe_spec::format_duration(*waited))]
    #[diagnostic(help("it may be stuck; `troupe down --force` kills it and its nodes"))]
    Timeout {
        state_dir: PathBuf,
        waited: Duration,
    },
    #[error("lost the connection to troupe in {}: {source}", state_dir.display())]
    Io {
        state_dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A connection to a running troupe.
pub struct Client {
    state_dir: PathBuf,
    stream: BufReader<UnixStream>,
}

impl Client {
    pub fn connect(state_dir: &Path) -> Result<Client, ClientError> {
        if !state_dir.join(".troupe-state").exists() {
            return Err(ClientError::NoStateDir {
                state_dir: state_dir.to_path_buf(),
            });
        }
        match UnixStream::connect(state_dir.join(SOCKET)) {
            Ok(s) => Ok(Client {
                state_dir: state_dir.to_path_buf(),
                stream: BufReader::new(s),
            }),
            Err(_) => Err(ClientError::NotRunning {
                state_dir: state_dir.to_path_buf(),
            }),
        }
    }

    /// Sends one request and waits up to `limit` for its answer.
    pub fn request(&mut self, req: &Request, limit: Duration) -> Result<Response, ClientError> {
        let mut line = serde_json::to_string(req).expect("request serialises");
        line.push('\n');
        let s = self.stream.get_mut();
        if let Err(e) = s
            .set_read_timeout(Some(limit))
            .and_then(|()| s.write_all(line.as_bytes()))
        {
            return Err(self.lost(e));
        }
        let mut answer = String::new();
        match self.stream.read_line(&mut answer) {
            Ok(0) => Err(self.lost(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "troupe closed the connection",
            ))),
            Ok(_) => serde_json::from_str(&answer).map_err(|e| ClientError::Io {
                state_dir: self.state_dir.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(ClientError::Timeout {
                    state_dir: self.state_dir.clone(),
                    waited: limit,
                })
            }
            Err(e) => Err(self.lost(e)),
        }
    }

    /// The connection broke before an answer. A supervisor that died (killed, crashed)
    /// tears down its socket and its lock in the same exit, so a client can catch it half
    /// way: the socket accepted, then reset. Waiting briefly for the lock tells a dead run
    /// (reported like any run that is not there) from a live one that dropped us.
    fn lost(&self, source: std::io::Error) -> ClientError {
        let deadline = crate::deadline::std_after(LOST_GRACE);
        loop {
            if !crate::state::is_live(&self.state_dir) {
                return ClientError::NotRunning {
                    state_dir: self.state_dir.clone(),
                };
            }
            if std::time::Instant::now() >= deadline {
                return ClientError::Io {
                    state_dir: self.state_dir.clone(),
                    source,
                };
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// How long a client whose connection broke waits to see whether the supervisor died.
const LOST_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A state directory whose socket accepts one connection and drops it unanswered,
    /// the way a supervisor killed mid-exit does.
    fn dropping_socket(dir: &Path) -> std::thread::JoinHandle<()> {
        std::fs::write(dir.join(".troupe-state"), "").unwrap();
        let listener = UnixListener::bind(dir.join(SOCKET)).unwrap();
        std::thread::spawn(move || drop(listener.accept().unwrap()))
    }

    #[test]
    fn a_connection_reset_by_a_dead_supervisor_reads_as_no_troupe_running() {
        let dir = tempfile::tempdir().unwrap();
        let server = dropping_socket(dir.path());
        let mut client = Client::connect(dir.path()).unwrap();
        let err = client
            .request(&Request::Status, Duration::from_secs(5))
            .unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
    }

    #[test]
    fn a_live_supervisor_that_drops_the_connection_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let lock = std::fs::File::create(dir.path().join("lock")).unwrap();
        lock.lock().unwrap();
        let server = dropping_socket(dir.path());
        let mut client = Client::connect(dir.path()).unwrap();
        let err = client
            .request(&Request::Status, Duration::from_secs(5))
            .unwrap_err();
        server.join().unwrap();
        assert!(matches!(err, ClientError::Io { .. }), "{err:?}");
    }
}
