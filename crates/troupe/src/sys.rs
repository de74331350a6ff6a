//! Linux process plumbing: process groups, the parent-death signal, the child subreaper, and
//! reaping a whole group by process group id (never `waitpid(-1)`, which would steal tokio's
//! children).

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Makes this process adopt orphaned descendants, so a killed node's grandchildren can be
/// reaped here rather than lingering as zombies (PID 1 in containers often does not reap).
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(
            "cannot become a child subreaper ({e}); grandchildren of killed nodes may linger as zombies"
        );
    }
}

/// Sends `signal` to a process group; a group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!("failed to send {signal} to process group {pgid}: {e}"),
    }
}

/// One process of a group, as `/proc` shows it.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub pid: u32,
    pub ppid: u32,
    pub zombie: bool,
}

/// Every process whose process group is `pgid`, zombies included.
pub fn group_members(pgid: u32) -> Vec<Member> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid: u32 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        let pgrp: u32 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        if pgrp == pgid {
            out.push(Member {
                pid,
                ppid,
                zombie: state == "Z" || state == "X",
            });
        }
    }
    out
}

/// Runs in the child between fork and exec: its own process group is set by the caller; here
/// the child dies with its parent thread, and starts with no signal blocked.
///
/// Only async-signal-safe calls and no allocation: the parent is multi-threaded, and another
/// thread may have held the allocator's lock at the moment of the fork.
pub fn child_setup(
    parent: u32,
    user: Option<(u32, u32)>,
    netns: Option<i32>,
) -> std::io::Result<()> {
    // The namespace first (it needs root), then credentials (changing them clears the
    // parent-death signal), then the parent-death signal.
    if let Some(fd) = netns {
        // SAFETY: the fd is open in the parent for the duration of the spawn.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
    }
    if let Some((uid, gid)) = user {
        let gid = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setgroups(&[gid]).map_err(std::io::Error::from)?;
        nix::unistd::setgid(gid).map_err(std::io::Error::from)?;
        nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)).map_err(std::io::Error::from)?;
    }
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
    // The parent may have died between fork and prctl: then nobody would kill us later.
    // No allocation here (we are between fork and exec): an OS error code is a plain integer.
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(std::io::Error::from)?;
    Ok(())
}

/// A process's start time in clock ticks after boot (`/proc/<pid>/stat` field 22). Together
/// with the pid it identifies a process for as long as the machine runs: a reused pid has a
/// different start time.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `pid` is alive (not a zombie) and still the process that started at `start`.
pub fn is_same_process(pid: u32, start: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().copied().unwrap_or("Z");
    state != "Z"
        && state != "X"
        && fields.get(19).and_then(|f| f.parse::<u64>().ok()) == Some(start)
}
