//! A child process that leads its own process group, watched without being reaped.
//!
//! Signalling a process group by id is only safe while that id cannot name anybody else's
//! group. Linux frees a process id (and so a group id) only once the process is reaped and no
//! process is left in its group. So troupe learns that a group leader exited *without*
//! reaping it (`waitid` with `WNOWAIT`, woken by a pidfd), kills and reaps what is left of the
//! group while the leader's zombie still pins the id, and reaps the leader last. Every signal
//! troupe sends to the group before that moment reaches only processes it started.
//!
//! The child is spawned with `std::process::Command`, not tokio's, because tokio reaps the
//! children it spawns on its own schedule.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::Pid;

use crate::sys;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        }
    }
}

impl std::fmt::Display for Exit {
    /// `exit code 1`, `killed by SIGKILL`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => match Signal::try_from(*s) {
                Ok(sig) => write!(f, "killed by {sig}"),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

/// The leader of a process group that troupe spawned. Dropping it kills the group and reaps
/// the leader.
#[derive(Debug)]
pub struct GroupLeader {
    pid: u32,
    pidfd: Option<OwnedFd>,
    exit: Option<Exit>,
    reaped: bool,
}

impl GroupLeader {
    /// Spawns `cmd`, which must put the child in a process group of its own
    /// (`process_group(0)`). Returns the leader and the child's piped stdio, if any.
    pub fn spawn(
        cmd: &mut std::process::Command,
    ) -> io::Result<(GroupLeader, std::process::Child)> {
        let child = cmd.spawn()?;
        let pid = child.id();
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let pidfd = (fd >= 0).then(|| {
            // SAFETY: the kernel just returned this fd to us.
            unsafe { OwnedFd::from_raw_fd(fd as i32) }
        });
        Ok((
            GroupLeader {
                pid,
                pidfd,
                exit: None,
                reaped: false,
            },
            child,
        ))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` to the whole group. Safe at any time before [`GroupLeader::finish`]:
    /// the unreaped leader keeps the group id ours.
    pub fn signal(&self, signal: Signal) {
        if !self.reaped {
            sys::signal_group(self.pid, signal);
        }
    }

    /// Whether the leader has exited, without reaping it.
    pub fn try_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            self.exit = peek_exit(self.pid, false);
        }
        self.exit
    }

    /// Waits until the leader exits; it stays a zombie, so the group id stays ours.
    pub async fn exited(&mut self) -> Exit {
        if let Some(e) = self.try_exit() {
            return e;
        }
        if let Some(fd) = &self.pidfd
            // SAFETY: the pidfd is owned by `self` and outlives this registration, which ends
            // with this call.
            && let Ok(afd) = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    fd.as_raw_fd(),
                    tokio::io::Interest::READABLE,
                )
            }
        {
            // A pidfd turns readable when its process exits.
            while let Ok(mut guard) = afd.readable().await {
                if let Some(e) = self.try_exit() {
                    return e;
                }
                guard.clear_ready();
            }
        }
        // No pidfd (an old kernel): wait on a blocking thread. Waiting never spawns, so the
        // parent-death signal is unaffected.
        let pid = self.pid;
        let exit = tokio::task::spawn_blocking(move || peek_exit(pid, true))
            .await
            .ok()
            .flatten()
            .unwrap_or(Exit::Signal(libc::SIGKILL));
        self.exit = Some(exit);
        exit
    }

    /// Kills what is left of the group and reaps it, then calls `forget` and reaps the leader.
    /// Blocking (it polls `/proc` until the group is gone, at most `limit`): run it on a
    /// blocking thread. Returns whether the group went away.
    pub fn finish(mut self, limit: Duration, forget: impl FnOnce()) -> bool {
        let gone = kill_and_reap_group(self.pid, limit);
        if gone {
            forget();
        }
        self.reap_leader();
        gone
    }

    fn reap_leader(&mut self) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        let pid = Pid::from_raw(self.pid as i32);
        let _ = waitpid(pid, None);
    }
}

impl Drop for GroupLeader {
    /// The owner went away without finishing (a probe attempt cut off by its timeout): kill
    /// the group, reap what of it became ours, and the leader, which SIGKILL makes quick.
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        kill_and_reap_group(self.pid, Duration::from_millis(200));
        let deadline = Instant::now() + Duration::from_millis(200);
        let pid = Pid::from_raw(self.pid as i32);
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_micros(200));
                }
                _ => break,
            }
        }
        self.reaped = true;
    }
}

/// The leader's exit, leaving it a zombie (`WNOWAIT`); `None` while it runs.
fn peek_exit(pid: u32, block: bool) -> Option<Exit> {
    let mut flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
    if !block {
        flags |= WaitPidFlag::WNOHANG;
    }
    loop {
        return match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
            Ok(WaitStatus::Exited(_, code)) => Some(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Some(Exit::Signal(sig as i32)),
            Ok(WaitStatus::StillAlive) => None,
            Ok(_) => None,
            Err(Errno::EINTR) => continue,
            // ECHILD: not our child any more (someone reaped it): treat as gone.
            Err(_) => Some(Exit::Signal(libc::SIGKILL)),
        };
    }
}

/// Kills the group and reaps the members that are our children (grandchildren adopted as a
/// subreaper), except the leader, until no live member remains or `limit` passes.
fn kill_and_reap_group(pgid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        sys::signal_group(pgid, Signal::SIGKILL);
        let members = sys::group_members(pgid);
        let me = std::process::id();
        for m in members
            .iter()
            .filter(|m| m.pid != pgid && m.ppid == me && m.zombie)
        {
            let _ = waitpid(Pid::from_raw(m.pid as i32), Some(WaitPidFlag::WNOHANG));
        }
        if !members.iter().any(|m| m.pid != pgid && !m.zombie) {
            return true;
        }
        if Instant::now() >= deadline {
            tracing::warn!("process group {pgid} still has live members after SIGKILL");
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A process's state letter from `/proc` (`R`, `S`, `Z`...), `None` once it is reaped.
    pub(crate) fn state_of(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.trim_start().chars().next()
    }

    /// The regression: the group was killed after its leader had been reaped, when the id
    /// could already name someone else's group.
    #[tokio::test]
    async fn the_leader_stays_unreaped_until_its_group_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild");
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "sleep 1000 & echo $! > {}; exit 3",
                pidfile.display()
            ))
            .process_group(0);
        let (mut leader, _child) = GroupLeader::spawn(&mut cmd).unwrap();
        let pid = leader.pid();
        assert_eq!(leader.exited().await, Exit::Code(3));
        assert_eq!(state_of(pid), Some('Z'), "exit seen, leader not reaped");
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            state_of(grandchild).is_some_and(|s| s != 'Z'),
            "the group lives on"
        );
        let mut forgot = false;
        let gone = tokio::task::spawn_blocking(move || {
            leader.finish(Duration::from_secs(5), || forgot = true);
            forgot
        })
        .await
        .unwrap();
        assert!(gone, "forget is called once the group is gone");
        assert!(
            state_of(grandchild).is_none_or(|s| s == 'Z'),
            "the grandchild was killed"
        );
        assert_eq!(state_of(pid), None, "the leader is reaped last");
    }

    #[tokio::test]
    async fn dropping_a_leader_kills_its_group() {
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("1000").process_group(0);
        let (leader, _child) = GroupLeader::spawn(&mut cmd).unwrap();
        let pid = leader.pid();
        drop(leader);
        assert_eq!(state_of(pid), None, "killed and reaped");
    }

    #[test]
    fn exits_read_as_words() {
        assert_eq!(Exit::Code(1).to_string(), "exit code 1");
        assert_eq!(Exit::Signal(9).to_string(), "killed by SIGKILL");
    }
}
