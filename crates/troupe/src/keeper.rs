//! The keeper: a tiny forked process that outlives troupe only to kill what troupe started.
//!
//! The parent-death signal reaches only troupe's direct children, so when troupe is SIGKILLed
//! a node's own children (a shell's server, a forked helper) would survive. At start troupe
//! forks the keeper, which keeps the read end of a pipe; troupe writes each node's process
//! group id when it spawns the node and again (negated) once the group is gone. When the pipe
//! reaches end-of-file, because troupe exited in any way, the keeper SIGKILLs every group still
//! listed and exits. It never kills a group troupe did not list, so a reused id is safe.
//!
//! After `fork` in a multi-threaded process only async-signal-safe calls are allowed: the
//! child uses raw libc calls and a fixed-size table, and never allocates.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

const MAX_GROUPS: usize = 4096;

pub struct Keeper {
    pid: libc::pid_t,
    pipe: Mutex<Option<std::fs::File>>,
}

impl Keeper {
    /// Forks the keeper. `None` (with a warning) if that fails; troupe then relies on the
    /// parent-death signal alone.
    pub fn start() -> Option<Keeper> {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 writes two fds into the array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            tracing::warn!(
                "cannot create the keeper pipe: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        // SAFETY: both fds were just created and are owned here.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the child only calls async-signal-safe functions (see `keeper_main`).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            tracing::warn!(
                "cannot fork the keeper: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        if pid == 0 {
            keeper_main(read.as_raw_fd());
        }
        drop(read);
        Some(Keeper {
            pid,
            pipe: Mutex::new(Some(std::fs::File::from(write))),
        })
    }

    fn send(&self, value: i32) {
        if let Some(f) = self.pipe.lock().expect("keeper pipe").as_mut() {
            // 4 bytes are below PIPE_BUF: the write is atomic.
            let _ = f.write_all(&value.to_ne_bytes());
        }
    }

    /// Kill this process group if troupe dies.
    pub fn watch(&self, pgid: u32) {
        self.send(pgid as i32);
    }

    /// The group is gone; never touch its id again.
    pub fn forget(&self, pgid: u32) {
        self.send(-(pgid as i32));
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // End-of-file tells the keeper to kill what is still listed (nothing, normally) and exit.
        self.pipe.lock().expect("keeper pipe").take();
        let mut status = 0;
        // SAFETY: waits for our own child by pid; never -1, so no one else's child is taken.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

fn keeper_main(read_fd: i32) -> ! {
    // SAFETY: only async-signal-safe libc calls; no allocation; the stack table is fixed-size.
    unsafe {
        // Own process group and no job-control signals: Ctrl-C to troupe's group or a hangup
        // must not take the keeper down before it has done its one job.
        libc::setpgid(0, 0);
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        // Hold nothing of troupe's: not its files, sockets, port locks or test-harness pipes.
        libc::dup2(read_fd, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);

        let mut groups = [0i32; MAX_GROUPS];
        let mut count = 0usize;
        let mut buf = [0u8; 4096];
        let mut pending = [0u8; 4];
        let mut have = 0usize;
        loop {
            let n = libc::read(0, buf.as_mut_ptr().cast(), buf.len());
            if n == 0 {
                break;
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            for &b in &buf[..n as usize] {
                pending[have] = b;
                have += 1;
                if have < 4 {
                    continue;
                }
                have = 0;
                let v = i32::from_ne_bytes(pending);
                if v > 0 {
                    if count < MAX_GROUPS {
                        groups[count] = v;
                        count += 1;
                    }
                } else if let Some(i) = groups[..count].iter().position(|g| *g == -v) {
                    groups[i] = groups[count - 1];
                    count -= 1;
                }
            }
        }
        for g in &groups[..count] {
            libc::kill(-*g, libc::SIGKILL);
        }
        libc::_exit(0);
    }
}
