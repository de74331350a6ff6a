//! The network-namespace backend: each node of a `network = "namespaces"` cluster runs in a
//! namespace of its own, with its own address on a bridge troupe creates, so all nodes use the
//! same ports, as on separate hosts. The host reaches every node at its address.
//!
//! Faults are packet filters on that bridge (one nftables table per run, replaced atomically
//! on every change) and netem queues on the nodes' interfaces. Every resource carries the run's
//! id in its name and is written to `<state-dir>/network.journal` *before* it is created, so
//! `heal`, `down` and a later cleanup after a crash remove exactly what troupe made.
//!
//! Addresses come from 10.213.X.0/24, X locked per run like ports, so concurrent runs never
//! share a subnet. Only namespaces troupe created are ever given traffic.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::{NetworkBackend, Rule};
use crate::error::Error;

/// One node's place on the run's network.
#[derive(Debug, Clone)]
pub struct NodeNet {
    pub netns: String,
    pub ip: Ipv4Addr,
    veth_host: String,
    veth_node: String,
}

/// A run's bridge, namespaces and fault table.
#[derive(Debug)]
pub struct NetNs {
    pub subnet: u8,
    bridge: String,
    table: String,
    journal: PathBuf,
    pub nodes: BTreeMap<String, NodeNet>,
    created: std::sync::atomic::AtomicBool,
    /// Whether the kernel has the netem qdisc, probed on first use.
    netem: std::sync::OnceLock<bool>,
    _lock: File,
}

const JOURNAL: &str = "network.journal";

pub(crate) fn net_err(what: impl Into<String>, detail: impl Into<String>) -> Error {
    Error::Environment {
        message: format!("failed to {}: {}", what.into(), detail.into()),
        help: None,
    }
}

/// A network command that could not be run at all: most likely not installed.
fn net_missing(args: &[&str], e: &std::io::Error) -> Error {
    Error::Environment {
        message: format!("failed to run `{}`: {e}", args.join(" ")),
        help: Some(
            "network namespaces need iproute2 (`ip`, `tc`) and nftables (`nft`): apt-get install iproute2 nftables".into(),
        ),
    }
}

/// Where a network tool is: on `PATH`, or else in `/usr/sbin` or `/sbin`, which a user's
/// `PATH` often lacks (Debian's does) though `ip`, `tc`, `nft` and `iptables` live there and
/// work for that user inside troupe's own user namespace.
pub(crate) fn sbin(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

pub(crate) fn run(args: &[&str]) -> Result<(), Error> {
    let out = Command::new(sbin(args[0]))
        .args(&args[1..])
        .output()
        .map_err(|e| net_missing(args, &e))?;
    if !out.status.success() {
        return Err(net_err(
            format!("run `{}`", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

fn run_with_input(args: &[&str], input: &str) -> Result<(), Error> {
    use std::process::Stdio;
    let mut child = Command::new(sbin(args[0]))
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| net_missing(args, &e))?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .map_err(|e| net_err("feed nft", e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| net_err("wait for nft", e.to_string()))?;
    if !out.status.success() {
        return Err(net_err(
            "apply the fault rules",
            format!("{}\n{input}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(())
}

/// Appends one entry to a journal, synced before returning.
pub fn journal_append(path: &Path, entry: serde_json::Value) -> Result<(), Error> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| crate::error::io_err("open", path, e))?;
    writeln!(f, "{entry}").map_err(|e| crate::error::io_err("write", path, e))?;
    f.sync_data()
        .map_err(|e| crate::error::io_err("sync", path, e))
}

impl NetNs {
    /// Chooses a subnet and names for `nodes`; changes nothing on the system yet.
    pub fn allocate(state_dir: &Path, run_id: &str, nodes: &[String]) -> Result<NetNs, Error> {
        if super::userns::needed() {
            return Err(Error::Environment {
                message: "`network = \"namespaces\"` needs root or a user namespace of its own (network namespaces, a bridge and nftables)".into(),
                help: Some("the troupe CLI (`troupe up`, `troupe run`) enters a user namespace by itself when not root; a test process using troupe::Cluster can run under `troupe exec --new -- cargo test ...`; or run as root, or use the default host network".into()),
            });
        }
        if nodes.len() > 240 {
            return Err(net_err(
                "place the nodes",
                "at most 240 nodes fit on one run's subnet",
            ));
        }
        let id: String = run_id.chars().take(6).collect();
        let (subnet, file) = lock_subnet(run_id)?;
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.clone(),
                    NodeNet {
                        netns: format!("troupe-{id}-{n}"),
                        ip: Ipv4Addr::new(10, 213, subnet, 10 + i as u8),
                        veth_host: format!("tr{id}{i:02x}h"),
                        veth_node: format!("tr{id}{i:02x}n"),
                    },
                )
            })
            .collect();
        Ok(NetNs {
            bridge: format!("trb{id}"),
            table: format!("troupe_{id}"),
            subnet,
            journal: state_dir.join(JOURNAL),
            nodes,
            created: false.into(),
            netem: std::sync::OnceLock::new(),
            _lock: file,
        })
    }

    /// The host's address on the bridge.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    pub fn netns_path(&self, node: &str) -> Option<PathBuf> {
        self.nodes
            .get(node)
            .map(|n| PathBuf::from("/run/netns").join(&n.netns))
    }

    /// Creates the bridge, then each node's namespace and veth pair, journaling each first.
    pub fn create(&self) -> Result<(), Error> {
        self.created
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let host = format!("{}/24", self.host_ip());
        journal_append(
            &self.journal,
            json!({"op": "create", "kind": "bridge", "name": self.bridge, "table": self.table, "userns": super::userns::entered(), "at_ms": crate::roles::unix_ms()}),
        )?;
        run(&["ip", "link", "add", &self.bridge, "type", "bridge"])?;
        run(&["ip", "addr", "add", &host, "dev", &self.bridge])?;
        run(&["ip", "link", "set", &self.bridge, "up"])?;
        self.allow_forwarding()?;
        for n in self.nodes.values() {
            journal_append(
                &self.journal,
                json!({"op": "create", "kind": "netns", "name": n.netns, "veth": n.veth_host, "at_ms": crate::roles::unix_ms()}),
            )?;
            run(&["ip", "netns", "add", &n.netns])?;
            run(&[
                "ip",
                "link",
                "add",
                &n.veth_host,
                "type",
                "veth",
                "peer",
                "name",
                &n.veth_node,
            ])?;
            run(&["ip", "link", "set", &n.veth_node, "netns", &n.netns])?;
            run(&[
                "ip",
                "link",
                "set",
                &n.veth_host,
                "master",
                &self.bridge,
                "up",
            ])?;
            run(&[
                "ip",
                "-n",
                &n.netns,
                "link",
                "set",
                &n.veth_node,
                "name",
                "eth0",
            ])?;
            run(&[
                "ip",
                "-n",
                &n.netns,
                "addr",
                "add",
                &format!("{}/24", n.ip),
                "dev",
                "eth0",
            ])?;
            run(&["ip", "-n", &n.netns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &n.netns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Lets traffic between nodes cross the bridge where the host's firewall would drop it.
    /// With `br_netfilter` loaded, bridged packets also pass iptables' FORWARD chain, whose
    /// policy Docker sets to DROP: nodes could not reach each other at all. troupe inserts
    /// one ACCEPT rule for its own bridge (journaled first, removed with the network) in every
    /// iptables that drops by default; its fault rules live in its own nftables table, which
    /// sees packets before this chain.
    fn allow_forwarding(&self) -> Result<(), Error> {
        let hooked = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .is_ok_and(|v| v.trim() == "1");
        if !hooked {
            return Ok(());
        }
        for tool in ["iptables-nft", "iptables-legacy"] {
            let drops = Command::new(sbin(tool))
                .args(["-S", "FORWARD"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("-P FORWARD DROP"));
            if !drops {
                continue;
            }
            journal_append(
                &self.journal,
                json!({"op": "create", "kind": "forward", "tool": tool, "bridge": self.bridge, "at_ms": crate::roles::unix_ms()}),
            )?;
            run(&forward_rule(tool, "-I", &self.bridge))?;
        }
        Ok(())
    }

    fn ips(&self, nodes: &[String]) -> String {
        let ips: Vec<String> = nodes
            .iter()
            .filter_map(|n| self.nodes.get(n).map(|x| x.ip.to_string()))
            .collect();
        format!("{{ {} }}", ips.join(", "))
    }

    /// Makes the active rules exactly `rules`: one atomic nftables transaction for filters,
    /// and netem queues set or removed per node.
    fn apply_own(&self, rules: &[(u32, Rule)]) -> Result<(), Error> {
        let mut links = Vec::new();
        let mut to_host = Vec::new();
        let mut from_host = Vec::new();
        let mut degraded: BTreeMap<String, String> = BTreeMap::new();
        let host = self.host_ip();
        for (id, r) in rules {
            match r {
                Rule::Drop { from, to } if !from.is_empty() && !to.is_empty() => {
                    links.push(format!(
                        "ip saddr {} ip daddr {} drop comment \"fault {id}\"",
                        self.ips(from),
                        self.ips(to)
                    ))
                }
                Rule::HostDrop { nodes } if !nodes.is_empty() => {
                    to_host.push(format!(
                        "ip saddr {} ip daddr {host} drop comment \"fault {id}\"",
                        self.ips(nodes)
                    ));
                    from_host.push(format!(
                        "ip saddr {host} ip daddr {} drop comment \"fault {id}\"",
                        self.ips(nodes)
                    ));
                }
                Rule::Reset { .. } => {}
                Rule::Degrade { nodes, params } => {
                    let mut netem = format!("delay {}us", params.delay.as_micros());
                    if !params.jitter.is_zero() {
                        netem.push_str(&format!(" {}us", params.jitter.as_micros()));
                    }
                    if params.loss > 0.0 {
                        netem.push_str(&format!(" loss {}%", params.loss * 100.0));
                    }
                    if let Some(r) = params.rate {
                        netem.push_str(&format!(" rate {}bit", r.max(1).saturating_mul(8)));
                    }
                    for n in nodes {
                        degraded.insert(n.clone(), netem.clone());
                    }
                }
                _ => {}
            }
        }
        let t = &self.table;
        let mut script = format!("table bridge {t}\ndelete table bridge {t}\n");
        if !links.is_empty() || !to_host.is_empty() {
            script.push_str(&format!(
                "table bridge {t} {{\n  chain links {{\n    type filter hook forward priority 0; policy accept;\n{}  }}\n  chain to_host {{\n    type filter hook input priority 0; policy accept;\n{}  }}\n  chain from_host {{\n    type filter hook output priority 0; policy accept;\n{}  }}\n}}\n",
                links.iter().map(|l| format!("    {l}\n")).collect::<String>(),
                to_host.iter().map(|l| format!("    {l}\n")).collect::<String>(),
                from_host.iter().map(|l| format!("    {l}\n")).collect::<String>(),
            ));
        }
        run_with_input(&["nft", "-f", "-"], &script)?;
        for (name, n) in &self.nodes {
            match degraded.get(name) {
                Some(netem) => {
                    let mut args = vec![
                        "tc", "-n", &n.netns, "qdisc", "replace", "dev", "eth0", "root", "netem",
                    ];
                    args.extend(netem.split(' '));
                    run(&args)?;
                }
                None => {
                    // Nothing to remove is fine.
                    let _ = Command::new(sbin("tc"))
                        .args(["-n", &n.netns, "qdisc", "del", "dev", "eth0", "root"])
                        .output();
                }
            }
        }
        Ok(())
    }

    /// Refuses a degrade the kernel cannot do: delay, jitter, loss and rate need the netem
    /// qdisc, which some kernels are built without (Firecracker's, for one). Probed once, on
    /// the loopback of a node's namespace, which nothing else uses.
    pub fn check_degrade(&self) -> Result<(), Error> {
        let ok = *self.netem.get_or_init(|| {
            let Some(n) = self.nodes.values().next() else {
                return false;
            };
            let tc = |args: &[&str]| {
                Command::new(sbin("tc"))
                    .args(["-n", &n.netns])
                    .args(args)
                    .output()
                    .is_ok_and(|o| o.status.success())
            };
            let ok = tc(&[
                "qdisc", "replace", "dev", "lo", "root", "netem", "delay", "0us",
            ]);
            if ok {
                tc(&["qdisc", "del", "dev", "lo", "root"]);
            }
            ok
        });
        if ok {
            return Ok(());
        }
        Err(Error::Refused {
            message: "this kernel has no netem queueing discipline (sch_netem), which delay, jitter, loss and rate limits need in network namespaces".into(),
            help: Some(
                "load it with `modprobe sch_netem` where the kernel has modules, or put the cluster in `network = \"proxies\"`, whose link proxies degrade links in user space on any kernel".into(),
            ),
        })
    }

    /// Removes everything this run created. Idempotent.
    pub fn destroy(&self) {
        if self
            .created
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            cleanup(&self.journal);
        }
    }
}

impl NetworkBackend for NetNs {
    fn name(&self) -> &'static str {
        "namespaces"
    }

    fn has(&self, node: &str) -> bool {
        self.nodes.contains_key(node)
    }

    fn check(&self, rules: &[Rule]) -> Result<(), Error> {
        for r in rules {
            let mine = r.nodes().find(|n| self.has(n));
            match (r, mine) {
                (Rule::Reset { .. }, Some(n)) => {
                    return Err(Error::Refused {
                        message: format!(
                            "node `{n}` is in a network namespace, where troupe does not reset connections"
                        ),
                        help: Some(
                            "use `network = \"proxies\"` to reset links, or cut/isolate here"
                                .into(),
                        ),
                    });
                }
                (Rule::Degrade { .. }, Some(_)) => self.check_degrade()?,
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(&self, rules: &[(u32, Rule)]) -> Result<(), Error> {
        let own = Rule::packet_rules(rules, |n| self.has(n));
        self.apply_own(&own)
    }

    fn destroy(&self) {
        NetNs::destroy(self);
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// The iptables command that inserts (`-I`) or deletes (`-D`) troupe's ACCEPT rule for a bridge.
fn forward_rule<'a>(tool: &'a str, action: &'a str, bridge: &'a str) -> Vec<&'a str> {
    vec![
        tool,
        action,
        "FORWARD",
        "-i",
        bridge,
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
        "troupe",
        "-j",
        "ACCEPT",
    ]
}

/// Takes a free 10.213.X.0/24 for a run: X locked like a port (a file lock, held while the
/// returned file is open) and not on any interface of the host, starting from the run id so
/// concurrent runs rarely try the same one first.
pub(crate) fn lock_subnet(run_id: &str) -> Result<(u8, File), Error> {
    let lock_dir = crate::ports::PortAllocator::new(None)
        .lock_dir()
        .to_path_buf();
    std::fs::create_dir_all(&lock_dir).map_err(|e| crate::error::io_err("create", &lock_dir, e))?;
    let id: String = run_id.chars().take(6).collect();
    let start = u8::from_str_radix(&id[..2.min(id.len())], 16).unwrap_or(0);
    for step in 0..=255u8 {
        let subnet = start.wrapping_add(step);
        let path = lock_dir.join(format!("net-10.213.{subnet}.lock"));
        let Ok(file) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        // Someone else's bridge on this subnet (not troupe's lock): skip it.
        if address_in_use(Ipv4Addr::new(10, 213, subnet, 1)) {
            continue;
        }
        return Ok((subnet, file));
    }
    Err(net_err(
        "find a free subnet",
        "every 10.213.X.0/24 is in use",
    ))
}

fn address_in_use(ip: Ipv4Addr) -> bool {
    Command::new(sbin("ip"))
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {ip}/")))
        .unwrap_or(false)
}

/// Removes what a journal says was created and not yet destroyed: the fault table, the
/// namespaces (their veths go with them) and the bridge. Returns how many were removed.
pub fn cleanup(journal: &Path) -> usize {
    let Ok(text) = std::fs::read_to_string(journal) else {
        return 0;
    };
    let mut netns = Vec::new();
    let mut veths = Vec::new();
    let mut bridges = Vec::new();
    let mut tables = Vec::new();
    let mut forwards: Vec<(String, String)> = Vec::new();
    let mut apart = false;
    for line in text.lines() {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match (e["op"].as_str(), e["kind"].as_str()) {
            (Some("create"), Some("netns")) => {
                netns.extend(e["name"].as_str().map(str::to_string));
                veths.extend(e["veth"].as_str().map(str::to_string));
            }
            (Some("create"), Some("bridge")) => {
                apart |= e["userns"] == json!(true);
                bridges.extend(e["name"].as_str().map(str::to_string));
                tables.extend(e["table"].as_str().map(str::to_string));
            }
            (Some("create"), Some("forward")) => {
                if let (Some(t), Some(b)) = (e["tool"].as_str(), e["bridge"].as_str()) {
                    forwards.push((t.to_string(), b.to_string()));
                }
            }
            (Some("destroyed"), _) => {
                apart = false;
                forwards.clear();
                netns.clear();
                veths.clear();
                bridges.clear();
                tables.clear();
            }
            _ => {}
        }
    }
    // A rootless run's network lived in its own user namespace, gone with its last process:
    // from outside it there is nothing to remove, and the names mean nothing on the host.
    if apart && !super::userns::entered() {
        forwards.clear();
        netns.clear();
        veths.clear();
        bridges.clear();
        tables.clear();
        let _ = journal_append(
            journal,
            json!({"op": "destroyed", "at_ms": crate::roles::unix_ms()}),
        );
        return 0;
    }
    let mut removed = 0;
    for (tool, bridge) in &forwards {
        let args = forward_rule(tool, "-D", bridge);
        if Command::new(sbin(args[0]))
            .args(&args[1..])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            removed += 1;
        }
    }
    for t in &tables {
        if Command::new(sbin("nft"))
            .args(["delete", "table", "bridge", t])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            removed += 1;
        }
    }
    // A namespace lives on in the kernel while its sockets linger (TIME_WAIT: a minute), and
    // its veth pair with it; deleting the host end removes the pair at once.
    for v in &veths {
        let _ = Command::new(sbin("ip")).args(["link", "del", v]).output();
    }
    for n in &netns {
        if Command::new(sbin("ip"))
            .args(["netns", "del", n])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            removed += 1;
        }
    }
    for b in &bridges {
        if Command::new(sbin("ip"))
            .args(["link", "del", b])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            removed += 1;
        }
    }
    if !netns.is_empty() || !bridges.is_empty() || !forwards.is_empty() {
        let _ = journal_append(
            journal,
            json!({"op": "destroyed", "at_ms": crate::roles::unix_ms()}),
        );
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rootless run's namespaces die with its supervisor: cleanup from outside must not run
    /// `ip`/`nft` on the host for names that were never the host's, only close the journal.
    #[test]
    fn cleanup_of_a_rootless_runs_journal_touches_nothing_on_the_host_and_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join(JOURNAL);
        journal_append(
            &journal,
            json!({"op": "create", "kind": "bridge", "name": "trbzz0000", "table": "troupe_zz0000", "userns": true}),
        )
        .unwrap();
        journal_append(
            &journal,
            json!({"op": "create", "kind": "netns", "name": "troupe-zz0000-a-1", "veth": "trzz000000h"}),
        )
        .unwrap();
        assert_eq!(cleanup(&journal), 0);
        let text = std::fs::read_to_string(&journal).unwrap();
        assert!(
            text.lines()
                .last()
                .unwrap()
                .contains("\"op\":\"destroyed\""),
            "{text}"
        );
    }
}
