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

impl StateDir {
    /// Creates or reuses `path` for a new run: refuses a directory owned by a live run or not
    /// made by troupe, then clears what a previous run left (nodes, certificates, descriptor).
    pub fn acquire(path: &Path) -> Result<StateDir, Error> {
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
        lock.set_len(0).map_err(|e| io_err("write", &lock_path, e))?;
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
        let dest = self.path.join(name);
        let tmp = self.path.join(format!(".{name}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| io_err("create", &tmp, e))?;
        f.write_all(contents).map_err(|e| io_err("write", &tmp, e))?;
        f.sync_all().map_err(|e| io_err("sync", &tmp, e))?;
        fs::rename(&tmp, &dest).map_err(|e| io_err("rename", &tmp, e))?;
        Ok(dest)
    }
}

/// Creates a directory (and parents) with mode 0700.
pub fn private_dir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|e| io_err("create directory", path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err("set permissions of", path, e))
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
    fn a_foreign_directory_is_never_cleared() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(StateDir::acquire(d.path()), Err(Error::StateDirForeign { .. })));
        assert!(d.path().join("precious.txt").exists());
    }
}
