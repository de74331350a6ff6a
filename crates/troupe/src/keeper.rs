//! The keeper: a tiny forked process that outlives troupe only to kill what troupe started.
//!
//! The parent-death signal reaches only troupe's direct children, so when troupe is SIGKILLed
//! a node's own children (a shell's server, a forked helper) would survive. At start troupe
//! forks the keeper, which keeps the read end of a pipe; troupe writes each node's process
//! group id when it spawns the node and again (negated) once the group is gone. When the pipe
//! reaches end-of-file, because troupe exited in any way, the keeper SIGKILLs every group still
//! listed and exits. It never kills a group troupe did not list, so a reused id is safe.
//!
//! Containers, networks and volumes of the Docker Engine are not processes: for those troupe
//! registers the Engine API path that removes each (`/containers/NAME?force=true&v=true`,
//! `/networks/NAME`, and for Swarm `/services/NAME`, `/secrets/NAME`, ...) with
//! [`Keeper::docker_delete_on_exit`], and forgets it once it removed the object itself. On
//! end-of-file the keeper first kills the groups, then sends `DELETE PATH` for every path still
//! listed, newest first (a container before the network it is attached to), as raw HTTP/1.1
//! over the Engine's Unix socket: `socket`, `connect`, `write`, `read`, `close`, nothing more.
//!
//! After `fork` in a multi-threaded process only async-signal-safe calls are allowed: the
//! child uses raw libc calls and fixed-size tables, and never allocates.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

const MAX_GROUPS: usize = 4096;
/// How many Engine objects one keeper can remove.
const MAX_DELETES: usize = 1024;
/// Longest API path, in bytes.
const MAX_PATH: usize = 254;
/// A record on the pipe: a 4-byte value; `0` introduces a Docker frame of this many bytes
/// (an op byte, a length byte, the path padded with zeros). 260 bytes in all: below
/// `PIPE_BUF`, so each record arrives whole even when threads write at once.
const FRAME: usize = 2 + MAX_PATH;
const OP_DELETE: u8 = 1;
const OP_FORGET: u8 = 2;
/// How long the keeper waits for the Engine per request before it moves on.
const ENGINE_TIMEOUT_S: libc::time_t = 30;
/// Times an object in use is asked again, 200 ms apart.
const BUSY_TRIES: usize = 50;

pub struct Keeper {
    pid: libc::pid_t,
    pipe: Mutex<Option<std::fs::File>>,
    /// The Engine's Unix socket, as the keeper will reach it; `None` when `DOCKER_HOST` names
    /// something else (a TCP or SSH endpoint), which the keeper cannot speak to.
    docker_socket: Option<String>,
}

/// The Unix socket of the Docker Engine troupe talks to: `DOCKER_HOST=unix://PATH`, or the
/// default `/var/run/docker.sock`; `None` for any other `DOCKER_HOST`.
pub fn docker_socket_path() -> Option<String> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h.strip_prefix("unix://").map(str::to_string),
        _ => Some("/var/run/docker.sock".to_string()),
    }
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
        // Built before the fork: the child must not allocate.
        let docker_socket = docker_socket_path();
        // SAFETY: sockaddr_un is plain data; all zeros is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let fits = docker_socket
            .as_ref()
            .filter(|p| p.len() < addr.sun_path.len());
        if let Some(p) = fits {
            for (d, s) in addr.sun_path.iter_mut().zip(p.bytes()) {
                *d = s as libc::c_char;
            }
        }
        let docker_socket = fits.cloned();
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
            keeper_main(read.as_raw_fd(), &addr);
        }
        drop(read);
        Some(Keeper {
            pid,
            pipe: Mutex::new(Some(std::fs::File::from(write))),
            docker_socket,
        })
    }

    fn send(&self, record: &[u8]) {
        if let Some(f) = self.pipe.lock().expect("keeper pipe").as_mut() {
            // A record is below PIPE_BUF: the write is atomic.
            let _ = f.write_all(record);
        }
    }

    /// Kill this process group if troupe dies.
    pub fn watch(&self, pgid: u32) {
        self.send(&(pgid as i32).to_ne_bytes());
    }

    /// The group is gone; never touch its id again.
    pub fn forget(&self, pgid: u32) {
        self.send(&(-(pgid as i32)).to_ne_bytes());
    }

    /// If troupe dies, send `DELETE api_path` to the Docker Engine (`/containers/NAME?force=true`,
    /// `/networks/NAME`, `/services/NAME`, `/secrets/NAME`, `/configs/NAME`, `/volumes/NAME`).
    /// Register an object right before creating it: paths are deleted newest first, so a
    /// container goes before the network it was attached to. Refused for a path that is not
    /// plain printable ASCII starting with `/` or longer than 254 bytes, and when the Engine
    /// is not reached over a Unix socket.
    pub fn docker_delete_on_exit(&self, api_path: &str) -> Result<(), String> {
        if self.docker_socket.is_none() {
            return Err(format!(
                "the keeper reaches the Docker Engine over a Unix socket only, and DOCKER_HOST is {:?}: {api_path} would be left behind if troupe were killed",
                std::env::var("DOCKER_HOST").unwrap_or_default()
            ));
        }
        self.docker_frame(OP_DELETE, api_path)
    }

    /// troupe removed the object itself: do not delete `api_path` on exit.
    pub fn docker_forget(&self, api_path: &str) {
        let _ = self.docker_frame(OP_FORGET, api_path);
    }

    fn docker_frame(&self, op: u8, api_path: &str) -> Result<(), String> {
        let bytes = api_path.as_bytes();
        if !api_path.starts_with('/')
            || bytes.len() > MAX_PATH
            || !bytes.iter().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "cannot hand {api_path:?} to the keeper: an Engine API path is printable ASCII, starts with `/` and has at most {MAX_PATH} bytes"
            ));
        }
        let mut record = [0u8; 4 + FRAME];
        record[4] = op;
        record[5] = bytes.len() as u8;
        record[6..6 + bytes.len()].copy_from_slice(bytes);
        self.send(&record);
        Ok(())
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

/// Paths the keeper deletes on exit, in registration order: a static table, so the child
/// needs neither the heap nor a large stack.
struct Deletes {
    paths: [[u8; MAX_PATH]; MAX_DELETES],
    lens: [u8; MAX_DELETES],
    count: usize,
}

static mut DELETES: Deletes = Deletes {
    paths: [[0; MAX_PATH]; MAX_DELETES],
    lens: [0; MAX_DELETES],
    count: 0,
};

impl Deletes {
    fn add(&mut self, path: &[u8]) {
        if self.count < MAX_DELETES {
            self.paths[self.count][..path.len()].copy_from_slice(path);
            self.lens[self.count] = path.len() as u8;
            self.count += 1;
        }
    }

    /// Removes the newest entry equal to `path`, keeping the order of the others.
    fn forget(&mut self, path: &[u8]) {
        let found = (0..self.count)
            .rev()
            .find(|&i| &self.paths[i][..self.lens[i] as usize] == path);
        if let Some(i) = found {
            for j in i..self.count - 1 {
                self.paths[j] = self.paths[j + 1];
                self.lens[j] = self.lens[j + 1];
            }
            self.count -= 1;
        }
    }
}

fn keeper_main(read_fd: i32, docker: &libc::sockaddr_un) -> ! {
    // SAFETY: only async-signal-safe libc calls; no allocation; the tables are fixed-size, and
    // this single-threaded child is the only user of `DELETES`.
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

        let deletes = &mut *std::ptr::addr_of_mut!(DELETES);
        let mut groups = [0i32; MAX_GROUPS];
        let mut count = 0usize;
        let mut buf = [0u8; 4096];
        let mut pending = [0u8; 4];
        let mut have = 0usize;
        let mut frame = [0u8; FRAME];
        // Bytes of a Docker frame still to come; 0 outside one.
        let mut in_frame = 0usize;
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
                if in_frame > 0 {
                    frame[FRAME - in_frame] = b;
                    in_frame -= 1;
                    if in_frame == 0 {
                        let len = (frame[1] as usize).min(MAX_PATH);
                        let path = &frame[2..2 + len];
                        match frame[0] {
                            OP_DELETE => deletes.add(path),
                            OP_FORGET => deletes.forget(path),
                            _ => {}
                        }
                    }
                    continue;
                }
                pending[have] = b;
                have += 1;
                if have < 4 {
                    continue;
                }
                have = 0;
                let v = i32::from_ne_bytes(pending);
                if v == 0 {
                    in_frame = FRAME;
                } else if v > 0 {
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
        // An object still in use (409: a volume or network whose containers the Engine is
        // still removing, after their service went) is asked again, for up to 10 s.
        let mut busy = [false; MAX_DELETES];
        for i in (0..deletes.count).rev() {
            busy[i] = engine_delete(docker, &deletes.paths[i][..deletes.lens[i] as usize]);
        }
        for _ in 0..BUSY_TRIES {
            if !busy[..deletes.count].iter().any(|b| *b) {
                break;
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 200_000_000,
            };
            libc::nanosleep(&pause, std::ptr::null_mut());
            for i in (0..deletes.count).rev() {
                if busy[i] {
                    busy[i] = engine_delete(docker, &deletes.paths[i][..deletes.lens[i] as usize]);
                }
            }
        }
        libc::_exit(0);
    }
}

/// `DELETE path` to the Engine over its Unix socket, waiting for the whole answer (so the
/// object is gone before the next request, which may depend on it). True if the Engine
/// answered 409 (the object is in use: worth asking again); other errors are ignored, the
/// object may be gone already. Async-signal-safe: system calls and stack buffers only.
///
/// # Safety
/// Call only in the keeper child.
unsafe fn engine_delete(addr: &libc::sockaddr_un, path: &[u8]) -> bool {
    // SAFETY: plain system calls on a socket this function owns, with stack buffers.
    unsafe {
        if addr.sun_path[0] == 0 {
            return false;
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let mut busy = false;
        let timeout = libc::timeval {
            tv_sec: ENGINE_TIMEOUT_S,
            tv_usec: 0,
        };
        for opt in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&timeout as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        let connected = libc::connect(
            fd,
            (addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        );
        if connected == 0 {
            let mut req = [0u8; MAX_PATH + 64];
            let mut len = 0;
            for part in [
                b"DELETE ".as_slice(),
                path,
                b" HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".as_slice(),
            ] {
                req[len..len + part.len()].copy_from_slice(part);
                len += part.len();
            }
            let mut sent = 0;
            while sent < len {
                let n = libc::write(fd, req[sent..].as_ptr().cast(), len - sent);
                if n <= 0 {
                    break;
                }
                sent += n as usize;
            }
            // Read until the Engine closes: the deletion is done (or refused) by then.
            // The status line ("HTTP/1.1 409 ...") is in the first 12 bytes.
            let mut answer = [0u8; 512];
            let mut head = [0u8; 12];
            let mut got = 0;
            if sent == len {
                loop {
                    let n = libc::read(fd, answer.as_mut_ptr().cast(), answer.len());
                    if n > 0 {
                        let take = (n as usize).min(head.len() - got);
                        head[got..got + take].copy_from_slice(&answer[..take]);
                        got += take;
                        continue;
                    }
                    if n < 0 && *libc::__errno_location() == libc::EINTR {
                        continue;
                    }
                    break;
                }
            }
            busy = got == head.len() && &head[9..12] == b"409";
        }
        libc::close(fd);
        busy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_path_that_is_not_plain_ascii_or_too_long_is_refused() {
        let keeper = Keeper::start().expect("a keeper");
        for bad in [
            "containers/x",
            "/a b",
            "/x\r\nHost: evil",
            &format!("/{}", "a".repeat(300)),
        ] {
            assert!(keeper.docker_delete_on_exit(bad).is_err(), "{bad:?}");
        }
    }

    /// The keeper's own HTTP: a network registered and then a container on it are removed
    /// when the keeper's pipe closes (dropping the keeper waits for it), container first.
    #[test]
    fn on_exit_the_keeper_deletes_what_was_registered_newest_first_through_the_engine() {
        use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let docker = rt
            .block_on(crate::runtime::docker::connect())
            .expect("the Docker Engine is reachable (this test needs it)");
        let name = format!("troupe-keeper-test-{}", std::process::id());
        let label =
            std::collections::HashMap::from([("troupe.test".to_string(), "keeper".to_string())]);
        rt.block_on(async {
            crate::runtime::docker::base_image(&docker).await.unwrap();
        });
        let keeper = Keeper::start().expect("a keeper");
        keeper
            .docker_delete_on_exit(&crate::runtime::docker::network_delete_path(&name))
            .unwrap();
        // A path troupe removed itself is forgotten; the keeper must not choke on it.
        keeper
            .docker_delete_on_exit("/networks/troupe-keeper-gone")
            .unwrap();
        keeper.docker_forget("/networks/troupe-keeper-gone");
        rt.block_on(async {
            docker
                .create_network(NetworkCreateRequest {
                    name: name.clone(),
                    labels: Some(label.clone()),
                    ..Default::default()
                })
                .await
                .unwrap();
        });
        keeper
            .docker_delete_on_exit(&crate::runtime::docker::container_delete_path(&name))
            .unwrap();
        rt.block_on(async {
            let body = ContainerCreateBody {
                image: Some("troupe-host-files:1".into()),
                entrypoint: Some(vec!["/bin/true".into()]),
                labels: Some(label.clone()),
                host_config: Some(HostConfig {
                    network_mode: Some(name.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let options = bollard::query_parameters::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            docker.create_container(Some(options), body).await.unwrap();
        });
        drop(keeper);
        rt.block_on(async {
            let container = docker.inspect_container(&name, None).await;
            assert!(container.is_err(), "the container is gone: {container:?}");
            let network = docker.inspect_network(&name, None).await;
            assert!(network.is_err(), "the network is gone: {network:?}");
        });
    }
}
