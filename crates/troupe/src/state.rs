//! The state directory of a run: certificates, every node's data, config files and log, and the
//! descriptor `cluster.json`. Mode 0700. A `lock` file held with `flock` for the life of the run
//! says whether a live troupe owns it; the kernel releases the lock if that troupe dies.
//!
//! troupe only ever clears a directory it made itself (it carries a `.troupe-state` marker), so a
//! mistyped `--state-dir` cannot wipe someone's files.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, io_err};

const MARKER: &str = ".troupe-state";

/// An acquired state directory; the lock is released on drop.
#[derive(Debug)]
pub struct StateDir {
    pub path: PathBuf,
    _lock: File,
}

/// Refuses a state directory path that cannot be one: a file, or a symlink to nowhere.
pub fn check_path(path: &Path) -> Result<(), Error> {
    let why = match fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(m) if m.file_type().is_symlink() => match fs::metadata(path) {
            Ok(t) if t.is_dir() => return Ok(()),
            Ok(_) => "is a symlink to something that is not a directory",
            Err(_) => "is a symlink to nothing (dangling)",
        },
        Ok(_) => "is a file, not a directory",
    };
    Err(Error::StateDirInvalid {
        path: path.to_path_buf(),
        why,
    })
}

impl StateDir {
    /// Creates or reuses `path` for a new run: refuses a directory owned by a live run or not
    /// made by troupe, then clears what a previous run left (nodes, certificates, descriptor).
    pub fn acquire(path: &Path) -> Result<StateDir, Error> {
        check_path(path)?;
        fs::create_dir_all(path).map_err(|e| io_err("create state directory", path, e))?;
        let path = fs::canonicalize(path).map_err(|e| io_err("resolve", path, e))?;
        let marker = path.join(MARKER);
        let empty = fs::read_dir(&path)
            .map_err(|e| io_err("read", &path, e))?
            .next()
            .is_none();
        if !empty && !marker.exists() {
            return Err(Error::StateDirForeign { path });
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_err("set permissions of", &path, e))?;
        fs::write(&marker, "made by troupe: a run's state directory\n")
            .map_err(|e| io_err("write", &marker, e))?;
        let lock_path = path.join("lock");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("open", &lock_path, e))?;
        if lock.try_lock().is_err() {
            let mut pid = String::new();
            let _ = lock.read_to_string(&mut pid);
            return Err(Error::StateDirBusy {
                path,
                pid: pid.trim().to_string(),
            });
        }
        let leftovers = kill_leftovers(&path);
        if leftovers > 0 {
            eprintln!(
                "troupe: {} held a crashed run; killed {leftovers} process group(s) it had left running",
                path.display()
            );
        }
        lock.set_len(0)
            .map_err(|e| io_err("write", &lock_path, e))?;
        lock.rewind().map_err(|e| io_err("write", &lock_path, e))?;
        write!(lock, "{}", std::process::id()).map_err(|e| io_err("write", &lock_path, e))?;
        for old in ["nodes", "tls"] {
            let p = path.join(old);
            if p.exists() {
                fs::remove_dir_all(&p).map_err(|e| io_err("clear", &p, e))?;
            }
        }
        let _ = fs::remove_file(path.join("cluster.json"));
        Ok(StateDir { path, _lock: lock })
    }

    /// Writes `name` atomically: readers see the old or the new file, never half of one.
    pub fn write_atomic(&self, name: &str, contents: &[u8]) -> Result<PathBuf, Error> {
        write_atomic(&self.path, name, contents)
    }
}

/// Writes `dir/name` atomically (a synced temporary file renamed over it).
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, Error> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dest = dir.join(name);
    // A temp file per write: concurrent writers must not rename each other's file away.
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let mut f = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
    f.write_all(contents)
        .map_err(|e| io_err("write", &tmp, e))?;
    f.sync_all().map_err(|e| io_err("sync", &tmp, e))?;
    fs::rename(&tmp, &dest).map_err(|e| io_err("rename", &tmp, e))?;
    Ok(dest)
}

/// Whether a live troupe holds the state directory's lock.
pub fn is_live(path: &Path) -> bool {
    match File::open(path.join("lock")) {
        Ok(f) => f.try_lock_shared().is_err(),
        Err(_) => false,
    }
}

/// Whether `pid` is alive and still the process that started at `start` (a descriptor's
/// `supervisor_pid` and `supervisor_start_time`).
pub fn is_same_supervisor(pid: u32, start: u64) -> bool {
    crate::sys::is_same_process(pid, start)
}

/// Kills what a run recorded in `cluster.json` and left alive, and the run's supervisor,
/// proving each pid by its start time: troupe never signals a process it cannot show it
/// started. Returns how many were killed. Call only when no live troupe holds the directory,
/// or to force one down.
pub fn kill_leftovers(path: &Path) -> usize {
    // Namespaces, bridge and fault rules the run recorded in its journal, and its containers.
    let network = || {
        crate::net::netns::cleanup(&path.join("network.journal"))
            + crate::runtime::docker::remove_recorded(path)
            + crate::runtime::swarm::remove_recorded(path)
    };
    let Ok(text) = fs::read_to_string(path.join("cluster.json")) else {
        return network();
    };
    let Ok(d) = serde_json::from_str::<troupe_spec::Descriptor>(&text) else {
        return network();
    };
    let mut killed = 0;
    if let Some(start) = d.supervisor_start_time
        && d.supervisor_pid != std::process::id()
        && crate::sys::is_same_process(d.supervisor_pid, start)
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.supervisor_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        killed += 1;
    }
    for n in &d.nodes {
        if let (Some(pid), Some(start)) = (n.pid, n.start_time)
            && crate::sys::is_same_process(pid, start)
        {
            // The node leads its own process group: take the whole group.
            crate::sys::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            killed += 1;
        }
    }
    // Namespaces, bridge and fault rules the run recorded in its journal.
    killed + network()
}

/// Creates a directory (and parents) with mode 0700.
pub fn private_dir(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    // Every directory made on the way is private too (`conf/deep/` for `conf/deep/a.conf`);
    // the umask can only narrow 0700.
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|e| io_err("create directory", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err("set permissions of", path, e))
}

/// Hands a node's directory to the user it runs as, and checks that the user can reach it:
/// every directory above must let others through (x), or the node fails with EACCES.
pub(crate) fn give_to_user(
    dir: &std::path::Path,
    name: &str,
    uid: u32,
    gid: u32,
) -> Result<(), Error> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fn chown_all(p: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if p.is_dir() {
            for e in std::fs::read_dir(p)? {
                chown_all(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    chown_all(dir, uid, gid).map_err(|e| io_err("give to its user", dir, e))?;
    for up in dir.ancestors().skip(1) {
        let Ok(m) = up.metadata() else { continue };
        if m.uid() == uid {
            continue;
        }
        let mode = m.permissions().mode();
        let others_x = mode & 0o001 != 0 || (m.gid() == gid && mode & 0o010 != 0);
        if !others_x {
            // The state dir itself may open up to traversal; anything above it is the user's choice.
            let is_state_dir = up.join(".troupe-state").exists();
            if is_state_dir || up.ends_with("nodes") {
                std::fs::set_permissions(up, std::fs::Permissions::from_mode(mode | 0o711))
                    .map_err(|e| io_err("open for traversal", up, e))?;
                continue;
            }
            return Err(Error::Environment {
                message: format!(
                    "nodes run as `{name}`, but `{name}` cannot reach {}: {} is mode {:o}",
                    dir.display(),
                    up.display(),
                    mode & 0o777
                ),
                help: Some("put the state directory somewhere every user can traverse, e.g. --state-dir /tmp/NAME".into()),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_run_is_refused_while_the_first_holds_the_dir() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("state");
        let first = StateDir::acquire(&path).unwrap();
        match StateDir::acquire(&path) {
            Err(Error::StateDirBusy { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected StateDirBusy, got {other:?}"),
        }
        drop(first);
        StateDir::acquire(&path).unwrap();
    }

    #[test]
    fn leftovers_of_a_crashed_run_are_killed_only_when_proven_to_be_its_own() {
        use std::os::unix::process::CommandExt;
        let d = tempfile::tempdir().unwrap();
        let spawn = || {
            std::process::Command::new("sleep")
                .arg("1000")
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let (mut ours, mut stranger) = (spawn(), spawn());
        let start = |c: &std::process::Child| crate::sys::start_time(c.id()).unwrap();
        let node = |name: &str, c: &std::process::Child, start: u64| {
            serde_json::json!({
                "name": name, "cluster": "c", "index": 1, "pid": c.id(), "state": "ready",
                "host": "127.0.0.1", "ports": {}, "urls": {}, "data_dir": "/x", "log": "/x",
                "tls": null, "time_to_ready_ms": null, "start_time": start,
            })
        };
        let descriptor = serde_json::json!({
            "name": "x", "ca": null, "state_dir": d.path(), "supervisor_pid": std::process::id(),
            "nodes": [node("c-1", &ours, start(&ours)), node("c-2", &stranger, start(&stranger) + 1)],
        });
        fs::write(d.path().join("cluster.json"), descriptor.to_string()).unwrap();
        assert_eq!(kill_leftovers(d.path()), 1);
        let status = ours.wait().unwrap();
        assert!(status.code().is_none(), "our leftover was killed");
        assert!(
            stranger.try_wait().unwrap().is_none(),
            "a pid whose start time differs is not ours"
        );
        stranger.kill().unwrap();
        stranger.wait().unwrap();
    }

    #[test]
    fn a_foreign_directory_is_never_cleared() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(
            StateDir::acquire(d.path()),
            Err(Error::StateDirForeign { .. })
        ));
        assert!(d.path().join("precious.txt").exists());
    }
}
