//! Linux process plumbing: process groups, the parent-death signal, the child subreaper, and
//! reaping a whole group by process group id (never `waitpid(-1)`, which would steal tokio's
//! children).

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
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

/// Whether any member of the group is alive (zombies do not count).
pub fn group_alive(pgid: u32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return killpg(Pid::from_raw(pgid as i32), None).is_ok();
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let _ppid = fields.next();
        let pgrp: u32 = fields.next().and_then(|f| f.parse().ok()).unwrap_or(0);
        if pgrp == pgid && state != "Z" && state != "X" {
            return true;
        }
    }
    false
}

/// Kills what is left of a group and reaps the members that became our children, until no
/// live member remains or `limit` passes. Call only after the group leader has been reaped by
/// its owner, so that this never takes another waiter's exit status.
pub fn kill_and_reap_group(pgid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        signal_group(pgid, Signal::SIGKILL);
        reap_group(pgid);
        if !group_alive(pgid) {
            reap_group(pgid);
            return true;
        }
        if Instant::now() >= deadline {
            tracing::warn!("process group {pgid} still has live members after SIGKILL");
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn reap_group(pgid: u32) {
    loop {
        match waitid(
            Id::PGid(Pid::from_raw(pgid as i32)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Runs in the child between fork and exec: its own process group is set by the caller; here
/// the child dies with its parent thread, and starts with no signal blocked.
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
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(std::io::Error::other(
            "troupe exited while starting this node",
        ));
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(std::io::Error::from)?;
    Ok(())
}

/// The exit status in words: `exit code 1`, `killed by SIGKILL`.
pub fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        }
    } else {
        "unknown exit status".into()
    }
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
