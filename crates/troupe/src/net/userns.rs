//! Rootless network namespaces: a user without root gets namespaces, a bridge and nftables by
//! first entering a user namespace of its own, where it is root over a new network and mount
//! namespace and nothing else.
//!
//! [`enter`] is called by the `troupe` CLI at start, before any thread exists (the kernel
//! refuses `unshare(CLONE_NEWUSER)` to a multithreaded process): it maps the caller's uid and
//! gid to 0, mounts a private tmpfs on `/run/netns` (where `ip netns add` pins namespaces; the
//! host's stays untouched) and brings up the new loopback. From there the run takes the same
//! path as under root. The namespaces live as long as the process holding them (the
//! supervisor) and its nodes: when they are gone, so is every namespace, bridge and rule, with
//! nothing to clean up on the host. Clients outside cannot reach the nodes; [`join`] (`troupe
//! exec`) enters a running supervisor's namespaces to run one there.

use std::io::Write as _;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sched::CloneFlags;

use crate::error::Error;

static ENTERED: AtomicBool = AtomicBool::new(false);

/// Whether this process entered a user namespace of its own with [`enter`].
pub fn entered() -> bool {
    ENTERED.load(Ordering::SeqCst)
}

/// Whether network namespaces need [`enter`] first: the process is not root.
pub fn needed() -> bool {
    !nix::unistd::geteuid().is_root()
}

fn env_err(message: String, help: &str) -> Error {
    Error::Environment {
        message,
        help: Some(help.to_string()),
    }
}

/// The number of threads of this process, from `/proc/self/status`.
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn write_proc(file: &str, text: &str) -> Result<(), Error> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| {
            env_err(
                format!("failed to write `{text}` to {file}: {e}"),
                "the kernel refused the user namespace's id map",
            )
        })
}

fn mount_tmpfs(target: &Path) -> Result<(), Error> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let target_c = c(&target.to_string_lossy());
    let (fs, data) = (c("tmpfs"), c("mode=0755"));
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            fs.as_ptr(),
            target_c.as_ptr(),
            fs.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(env_err(
            format!(
                "failed to mount a private tmpfs on {}: {}",
                target.display(),
                std::io::Error::last_os_error()
            ),
            "troupe pins its namespaces there, in a mount namespace of its own",
        ));
    }
    Ok(())
}

/// Enters a new user, network and mount namespace, as root in it (the caller's uid and gid
/// mapped to 0), with a private `/run/netns` and the loopback up. Call only while the process
/// has a single thread: before any runtime, signal thread or thread pool starts.
pub fn enter() -> Result<(), Error> {
    if threads() != 1 {
        return Err(env_err(
            "`network = \"namespaces\"` without root needs a user namespace, and this process has threads already (the kernel lets only a single-threaded process enter one)".into(),
            "run it as root, or under `troupe exec --new -- CMD` (a fresh user and network namespace for CMD, e.g. `cargo test`), or use the troupe CLI (`troupe up`, `troupe run`), which enters one by itself",
        ));
    }
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWNS)
        .map_err(|e| {
            env_err(
                format!("failed to enter a user namespace (unshare: {e}); `network = \"namespaces\"` needs one without root"),
                "unprivileged user namespaces may be off: `sysctl user.max_user_namespaces` must be above 0 (and `kernel.unprivileged_userns_clone` 1 where it exists, `kernel.apparmor_restrict_unprivileged_userns` 0 on Ubuntu); or run troupe as root",
            )
        })?;
    write_proc("/proc/self/setgroups", "deny")?;
    write_proc("/proc/self/uid_map", &format!("0 {uid} 1"))?;
    write_proc("/proc/self/gid_map", &format!("0 {gid} 1"))?;
    // Mounts made here stay here (they could not propagate out anyway: the namespace belongs
    // to an unprivileged user).
    let root = std::ffi::CString::new("/").expect("no NUL");
    // SAFETY: a remount of `/` with only propagation flags; the pointers are valid or null.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(env_err(
            format!(
                "failed to make the new mount namespace private: {}",
                std::io::Error::last_os_error()
            ),
            "troupe needs a mount namespace of its own for /run/netns",
        ));
    }
    let netns_dir = Path::new("/run/netns");
    if netns_dir.is_dir() {
        mount_tmpfs(netns_dir)?;
    } else {
        // The host never had a named namespace: /run/netns does not exist and only the host's
        // root could create it. A tmpfs on /run hides the rest of /run from the nodes.
        mount_tmpfs(Path::new("/run"))?;
        std::fs::create_dir(netns_dir).map_err(|e| crate::error::io_err("create", netns_dir, e))?;
    }
    let lo = std::process::Command::new(super::netns::sbin("ip"))
        .args(["link", "set", "lo", "up"])
        .output()
        .map_err(|e| {
            env_err(
                format!("failed to run `ip link set lo up`: {e}"),
                "network namespaces need iproute2 (`ip`, `tc`) and nftables (`nft`): apt-get install iproute2 nftables",
            )
        })?;
    if !lo.status.success() {
        return Err(env_err(
            format!(
                "failed to bring up the loopback of the new network namespace: {}",
                String::from_utf8_lossy(&lo.stderr).trim()
            ),
            "`ip link set lo up` must work in a user namespace",
        ));
    }
    ENTERED.store(true, Ordering::SeqCst);
    Ok(())
}

/// The identity of a process's namespace of `kind` (`user`, `net`, `mnt`).
fn ns_id(pid: &str, kind: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()
}

/// Enters the user, network and mount namespaces of process `pid` (a rootless run's
/// supervisor), keeping the working directory. Namespaces this process already shares are
/// left alone, so for a run under root this changes nothing. Call only while single-threaded.
pub fn join(pid: u32) -> Result<(), Error> {
    let cwd = std::env::current_dir().ok();
    let p = pid.to_string();
    for (kind, flag) in [
        ("user", CloneFlags::CLONE_NEWUSER),
        ("net", CloneFlags::CLONE_NEWNET),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let theirs = ns_id(&p, kind);
        if theirs.is_none() || theirs == ns_id("self", kind) {
            continue;
        }
        let path = format!("/proc/{p}/ns/{kind}");
        let f = std::fs::File::open(&path)
            .map_err(|e| crate::error::io_err("open", Path::new(&path), e))?;
        nix::sched::setns(f.as_fd(), flag).map_err(|e| {
            env_err(
                format!(
                    "failed to enter the {kind} namespace of the run's supervisor (pid {pid}): {e}"
                ),
                "only the user who started the run (or root) can enter its namespaces",
            )
        })?;
    }
    // Entering a mount namespace moves to its root directory.
    if let Some(d) = cwd {
        let _ = std::env::set_current_dir(d);
    }
    Ok(())
}
