//! The one way troupe runs a short-lived command: readiness and role probes, and every
//! scenario step that runs a program.
//!
//! Each command leads a process group of its own. When it ends, times out, or its future is
//! dropped (a probe attempt cut off by its timeout), the whole group is killed and reaped, so
//! a command that backgrounded a helper leaves nothing behind, not even a zombie. Its output is
//! read as it comes, so a chatty command never blocks on a full pipe.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use crate::group::{Exit, GroupLeader};

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
}

/// What a finished command said.
#[derive(Debug, Clone)]
pub struct Output {
    pub exit: Exit,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a command gave no [`Output`].
#[derive(Debug)]
pub enum CmdError {
    /// It could not be started.
    Spawn(std::io::Error),
    /// It was still running at its deadline (or was cancelled); it has been killed. What it
    /// had written so far is kept.
    Cut { stdout: Vec<u8>, stderr: Vec<u8> },
}

/// Largest amount of each stream kept in memory; the rest is read and dropped.
const MAX_CAPTURE: usize = 16 << 20;

/// Reader tasks that end with the command; aborted if the command's future is dropped.
struct Readers(Vec<JoinHandle<Vec<u8>>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

fn reader(fd: Option<std::os::fd::OwnedFd>) -> JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut out = Vec::new();
        let Some(fd) = fd else { return out };
        let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
            return out;
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => {
                    let room = MAX_CAPTURE.saturating_sub(out.len());
                    out.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
    })
}

/// Runs `cmd` until it exits or `cancel` completes (a deadline, an interrupt). The command's
/// whole process group is gone when this returns, and also when this future is dropped.
pub async fn run(
    cmd: &Cmd,
    cancel: impl std::future::Future<Output = ()>,
) -> Result<Output, CmdError> {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new(&cmd.program);
    c.args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cmd.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let parent = std::process::id();
    // SAFETY: child_setup only makes async-signal-safe calls and does not allocate.
    unsafe {
        c.pre_exec(move || crate::sys::child_setup(parent, None, None));
    }
    let (mut leader, mut child) = GroupLeader::spawn(&mut c).map_err(CmdError::Spawn)?;
    let mut readers = Readers(vec![
        reader(child.stdout.take().map(Into::into)),
        reader(child.stderr.take().map(Into::into)),
    ]);
    drop(child);
    let exit = tokio::select! {
        e = leader.exited() => Some(e),
        _ = cancel => None,
    };
    // Whatever the command left in its group goes with it; its pipes close with it.
    leader.signal(nix::sys::signal::Signal::SIGKILL);
    let finish = tokio::task::spawn_blocking(move || leader.finish(Duration::from_secs(5), || {}));
    let _ = finish.await;
    let mut outputs = Vec::new();
    for h in readers.0.iter_mut() {
        // A process that left the group (setsid) may still hold a pipe: do not wait for it.
        let got = tokio::time::timeout(Duration::from_secs(1), h).await;
        outputs.push(got.ok().and_then(Result::ok).unwrap_or_default());
    }
    let stderr = outputs.pop().unwrap_or_default();
    let stdout = outputs.pop().unwrap_or_default();
    match exit {
        Some(exit) => Ok(Output {
            exit,
            stdout,
            stderr,
        }),
        None => Err(CmdError::Cut { stdout, stderr }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Cmd {
        Cmd {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello".into())],
            dir: std::env::temp_dir(),
        }
    }

    fn alive(pid: u32) -> bool {
        crate::group::tests::state_of(pid).is_some_and(|s| s != 'Z' && s != 'X')
    }

    #[tokio::test]
    async fn output_exit_and_environment_come_back() {
        let out = run(
            &sh("echo $GREETING; echo oops >&2; exit 4"),
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(out.exit, Exit::Code(4));
        assert_eq!(out.stdout_text(), "hello\n");
        assert_eq!(out.stderr_text(), "oops\n");
    }

    /// The regression: probe commands were spawned without a process group of their own and
    /// killed with `kill_on_drop`, which reaches only the direct child.
    #[tokio::test]
    async fn a_command_cut_off_takes_its_background_helpers_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!("sleep 1000 & echo $! > {}; sleep 1000", pids.display());
        let cmd = sh(&script);
        let attempt = run(&cmd, std::future::pending());
        let timed_out = tokio::time::timeout(Duration::from_millis(300), attempt).await;
        assert!(timed_out.is_err(), "the command runs until cut off");
        let helper: u32 = std::fs::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            !alive(helper),
            "the backgrounded helper {helper} died with the attempt"
        );
    }

    #[tokio::test]
    async fn a_cancelled_command_keeps_what_it_wrote() {
        let cancel = tokio::time::sleep(Duration::from_millis(200));
        match run(&sh("echo started; sleep 1000"), cancel).await {
            Err(CmdError::Cut { stdout, .. }) => assert_eq!(stdout, b"started\n"),
            other => panic!("expected a cut-off command, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_helper_that_keeps_the_pipe_open_does_not_hold_up_the_result() {
        let out = run(&sh("sleep 1000 & echo done"), std::future::pending())
            .await
            .unwrap();
        assert_eq!(
            (out.exit, out.stdout_text().as_str()),
            (Exit::Code(0), "done\n")
        );
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let cmd = Cmd {
            program: "/nonexistent/troupe-test".into(),
            args: vec![],
            env: vec![],
            dir: std::env::temp_dir(),
        };
        assert!(matches!(
            run(&cmd, std::future::pending()).await,
            Err(CmdError::Spawn(_))
        ));
    }
}
