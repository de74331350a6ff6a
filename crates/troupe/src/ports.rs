//! Ports that never collide, even across parallel runs.
//!
//! Each port is chosen below the kernel's ephemeral range (a port inside it can be taken by any
//! outgoing connection between allocation and bind; we saw that happen with etcd), locked with
//! `flock` on `<lock-dir>/<port>.lock` for as long as the run holds it, and checked free with a
//! real bind. Locks are per open file, so two runs in one process exclude each other too, and
//! the kernel drops them when the holder dies, so a crashed run never leaks a port.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, io_err};

/// Lowest port handed out by default.
pub const DEFAULT_LOW: u16 = 20000;

/// A port reserved for this run until dropped.
#[derive(Debug)]
pub struct PortLease {
    pub port: u16,
    _lock: File,
}

/// Hands out free ports from a range, coordinated through lock files.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    pub low: u16,
    pub high: u16,
    lock_dir: PathBuf,
}

/// The kernel's ephemeral port range, from `/proc/sys/net/ipv4/ip_local_port_range`.
pub fn ephemeral_range() -> Option<(u16, u16)> {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

impl PortAllocator {
    /// `range` from the spec, or 20000 up to just below the ephemeral range. The lock directory
    /// is `$TROUPE_PORT_LOCK_DIR` or `/tmp/troupe-ports`, shared by every troupe on the machine.
    pub fn new(range: Option<(u16, u16)>) -> PortAllocator {
        let (low, high) = range.unwrap_or_else(|| {
            let high = match ephemeral_range() {
                Some((eph_low, _)) if eph_low > DEFAULT_LOW + 1000 => eph_low - 1,
                _ => 29999,
            };
            (DEFAULT_LOW, high)
        });
        let lock_dir = std::env::var_os("TROUPE_PORT_LOCK_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/troupe-ports"));
        PortAllocator {
            low,
            high,
            lock_dir,
        }
    }

    pub fn lock_dir(&self) -> &Path {
        &self.lock_dir
    }

    fn ensure_lock_dir(&self) -> Result<(), Error> {
        if !self.lock_dir.is_dir() {
            fs::create_dir_all(&self.lock_dir)
                .map_err(|e| io_err("create the port lock directory", &self.lock_dir, e))?;
            // Shared by every user's runs, like /tmp itself.
            let _ = fs::set_permissions(&self.lock_dir, fs::Permissions::from_mode(0o1777));
        }
        Ok(())
    }

    /// `count` distinct free ports on `host`, each locked until its lease is dropped.
    pub fn allocate(&self, host: IpAddr, count: usize) -> Result<Vec<PortLease>, Error> {
        self.ensure_lock_dir()?;
        let span = u32::from(self.high - self.low) + 1;
        let start = (RandomState::new().hash_one(std::process::id()) % u64::from(span)) as u32;
        let mut leases = Vec::with_capacity(count);
        for step in 0..span {
            if leases.len() == count {
                break;
            }
            let port = self.low + ((start + step) % span) as u16;
            if let Some(lease) = self.try_port(host, port)? {
                leases.push(lease);
            }
        }
        if leases.len() < count {
            return Err(Error::NoPorts {
                host: host.to_string(),
                wanted: count,
                lo: self.low,
                hi: self.high,
            });
        }
        Ok(leases)
    }

    /// Locks one given port (a port the system fixes itself), or says who has it: another
    /// troupe run (its lock) or some other program (a bind fails).
    pub fn claim(&self, host: IpAddr, port: u16, what: &str) -> Result<PortLease, Error> {
        self.ensure_lock_dir()?;
        if let Some(lease) = self.try_port(host, port)? {
            return Ok(lease);
        }
        let locked = File::open(self.lock_dir.join(format!("{port}.lock")))
            .is_ok_and(|f| f.try_lock().is_err());
        let who = if locked {
            format!(
                "another troupe run holds it (its lock is {})",
                self.lock_dir.join(format!("{port}.lock")).display()
            )
        } else {
            "another program listens on it (`ss -ltnp` names it)".to_string()
        };
        Err(Error::Refused {
            message: format!("{what}: port {port} on {host} is taken: {who}"),
            help: Some(
                "a fixed port can serve one run per address at a time: stop the other run, or give the cluster network = \"namespaces\" so that each node has an address of its own"
                    .into(),
            ),
        })
    }

    fn try_port(&self, host: IpAddr, port: u16) -> Result<Option<PortLease>, Error> {
        let path = self.lock_dir.join(format!("{port}.lock"));
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(f) => f,
            // Made by another user: a read-only descriptor can still hold the lock.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                File::open(&path).map_err(|e| io_err("open", &path, e))?
            }
            Err(e) => return Err(io_err("open", &path, e)),
        };
        if file.try_lock().is_err() {
            return Ok(None);
        }
        // Someone outside troupe may be listening; a real bind tells.
        if TcpListener::bind(SocketAddr::new(host, port)).is_err() {
            return Ok(None);
        }
        Ok(Some(PortLease { port, _lock: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator() -> (tempfile::TempDir, PortAllocator) {
        let dir = tempfile::tempdir().unwrap();
        let mut a = PortAllocator::new(Some((20000, 20009)));
        a.lock_dir = dir.path().join("locks");
        (dir, a)
    }

    #[test]
    fn leases_are_distinct_and_exclusive_until_dropped() {
        let (_d, a) = allocator();
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let first = a.allocate(host, 6).unwrap();
        let second = a.allocate(host, 4).unwrap();
        let mut all: Vec<u16> = first.iter().chain(&second).map(|l| l.port).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 10, "ten distinct ports out of a range of ten");
        assert!(matches!(a.allocate(host, 1), Err(Error::NoPorts { .. })));
        drop(second);
        assert_eq!(a.allocate(host, 4).unwrap().len(), 4);
    }

    #[test]
    fn skips_a_port_someone_else_listens_on() {
        let (_d, mut a) = allocator();
        let host: IpAddr = "127.0.0.1".parse().unwrap();
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        a.low = port;
        a.high = port;
        assert!(matches!(a.allocate(host, 1), Err(Error::NoPorts { .. })));
        drop(busy);
        assert_eq!(a.allocate(host, 1).unwrap()[0].port, port);
    }
}
