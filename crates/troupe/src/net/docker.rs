//! Faults for containers on a run's own Docker network (`runtime = "docker"` with
//! `network = "namespaces"`).
//!
//! Each node is a container on a bridge network troupe creates per run (labelled
//! `troupe.run=<id>`), with the node's name as hostname and an address pinned from the run's
//! 10.213.X.0/24 (X locked per run like the process runtime's namespaces, see
//! [`super::netns::lock_subnet`]), so the address is known before templates are rendered and
//! stays the same across `stop`/`start`/`restart`. The host reaches every container at its
//! address through the bridge (the gateway, 10.213.X.1, is the host's side).
//!
//! Faults are the namespace backend's rules, applied *inside* each container's network
//! namespace from the host: troupe runs the host's `nft` and `tc` entered into the namespace
//! of the container's first process (`setns` on `/proc/<pid>/ns/net`), so the image needs no
//! tool. Each node gets one `inet troupe` table, replaced atomically, dropping what the node
//! sends to, and receives from, the nodes it is cut from (and the gateway for a host cut).
//! A restarted container has a fresh namespace: the runtime hands its new pid to
//! [`DockerNet::node_started`], which applies the active rules before the node counts as
//! started. It needs real root (`CAP_NET_ADMIN` over the Engine's namespaces); a user
//! namespace of troupe's own does not give it.
//!
//! On a swarm (`runtime = "swarm"` with `network = "namespaces"`, [`DockerNet::swarm`]) the
//! same rules go inside each task container's namespace, keyed by the tasks' addresses on the
//! run's overlay network: those are the swarm's to choose, known once a task runs, and a
//! replaced task may get another, so the runtime hands each task's address along with its pid.
//! Only tasks on the Engine's host can be entered: a fault on a node whose task runs on
//! another host is refused, naming that host. The host reaches a task through its published
//! ports (another interface, `docker_gwbridge`), never an overlay address, so a cut between
//! nodes leaves it alone; a cut from the host (`isolate --host`) is refused there.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use super::netns::{net_err, sbin};
use super::{NetworkBackend, Rule};
use crate::error::Error;

/// A run's Docker network and the faults inside its containers.
#[derive(Debug)]
pub struct DockerNet {
    /// The Engine's name for the network: `troupe-<run id>`.
    pub network: String,
    pub subnet: u8,
    /// Each node's pinned address (empty on a swarm: see `swarm`).
    pub nodes: BTreeMap<String, Ipv4Addr>,
    /// On a swarm: the nodes, each task's current overlay address and the other hosts that
    /// run some of them.
    swarm: Option<SwarmNodes>,
    live: Mutex<Live>,
    /// Whether the kernel has the netem qdisc, probed on first use.
    netem: OnceLock<bool>,
    /// Nodes whose `eth0` was given a netem queue: only those need it removed (a `tc` run
    /// saved per container and start otherwise).
    netem_on: Mutex<std::collections::BTreeSet<String>>,
    /// Created on the Engine (once per run, whichever cluster starts first).
    pub(crate) created: tokio::sync::OnceCell<()>,
    _lock: Option<File>,
}

/// A swarm's nodes: their addresses are the swarm's, known once their tasks run.
#[derive(Debug, Default)]
struct SwarmNodes {
    nodes: std::collections::BTreeSet<String>,
    addrs: Mutex<BTreeMap<String, Ipv4Addr>>,
    /// Nodes whose task runs on another host, with that host.
    remote: Mutex<BTreeMap<String, String>>,
}

#[derive(Debug, Default)]
struct Live {
    /// The first process of each running container.
    pids: BTreeMap<String, u32>,
    /// The active rules on this network's nodes, as last applied.
    rules: Vec<(u32, Rule)>,
}

impl DockerNet {
    /// Chooses a subnet and each node's address; changes nothing on the system yet.
    pub fn allocate(run_id: &str, nodes: &[String]) -> Result<DockerNet, Error> {
        need_root("docker")?;
        if nodes.len() > 240 {
            return Err(net_err(
                "place the nodes",
                "at most 240 nodes fit on one run's subnet",
            ));
        }
        let (subnet, lock) = super::netns::lock_subnet(run_id)?;
        let nodes = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), Ipv4Addr::new(10, 213, subnet, 10 + i as u8)))
            .collect();
        Ok(DockerNet {
            network: format!("troupe-{run_id}"),
            subnet,
            nodes,
            swarm: None,
            live: Mutex::new(Live::default()),
            netem: OnceLock::new(),
            netem_on: Mutex::default(),
            created: tokio::sync::OnceCell::new(),
            _lock: Some(lock),
        })
    }

    /// Faults inside the task containers of swarm `nodes` on the run's overlay `network`;
    /// changes nothing on the system.
    pub fn swarm(network: &str, nodes: &[String]) -> Result<DockerNet, Error> {
        need_root("swarm")?;
        Ok(DockerNet {
            network: network.to_string(),
            subnet: 0,
            nodes: BTreeMap::new(),
            swarm: Some(SwarmNodes {
                nodes: nodes.iter().cloned().collect(),
                ..Default::default()
            }),
            live: Mutex::new(Live::default()),
            netem: OnceLock::new(),
            netem_on: Mutex::default(),
            created: tokio::sync::OnceCell::new(),
            _lock: None,
        })
    }

    /// Where a swarm node's task runs: `None` on the Engine's host, or the other host.
    pub fn task_host(&self, node: &str, remote: Option<String>) {
        if let Some(s) = &self.swarm {
            let mut r = s.remote.lock().expect("remote");
            match remote {
                Some(h) => r.insert(node.to_string(), h),
                None => r.remove(node),
            };
        }
    }

    /// A swarm node's task runs with this first process at this overlay address: as
    /// [`DockerNet::node_started`], the address first (every node's table names it).
    pub fn task_started(&self, node: &str, pid: u32, addr: Ipv4Addr) -> Result<(), Error> {
        if let Some(s) = &self.swarm {
            s.addrs
                .lock()
                .expect("addrs")
                .insert(node.to_string(), addr);
        }
        self.node_started(node, pid)
    }

    /// Every node's current address.
    fn addrs(&self) -> BTreeMap<String, Ipv4Addr> {
        match &self.swarm {
            Some(s) => s.addrs.lock().expect("addrs").clone(),
            None => self.nodes.clone(),
        }
    }

    /// The host's address on the network (its gateway).
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 1)
    }

    /// `10.213.X.0/24`.
    pub fn cidr(&self) -> String {
        format!("10.213.{}.0/24", self.subnet)
    }

    /// A node's container runs with this first process: apply the active rules in its (new)
    /// namespace, and tell the others it is up. Blocking.
    pub fn node_started(&self, node: &str, pid: u32) -> Result<(), Error> {
        let mut live = self.live.lock().expect("docker net");
        live.pids.insert(node.to_string(), pid);
        let down = self.down(&live);
        self.apply_node(node, pid, &live.rules, &down)?;
        self.apply_others(node, &live, &down);
        Ok(())
    }

    /// A node's container stopped: its namespace is gone, never enter that pid again; the
    /// others now refuse connections to it at once. Blocking.
    pub fn node_exited(&self, node: &str) {
        let mut live = self.live.lock().expect("docker net");
        live.pids.remove(node);
        let down = self.down(&live);
        self.apply_others(node, &live, &down);
    }

    /// The addresses of nodes whose container is not running. A connection to such an address
    /// would wait for ARP (seconds) where a stopped process in a namespace that stays, or a
    /// stopped server on a live host, refuses at once: each container rejects them itself
    /// (TCP reset, ICMP unreachable otherwise), so a sequential start is not held up by
    /// members that do not exist yet.
    fn down(&self, live: &Live) -> Vec<Ipv4Addr> {
        self.addrs()
            .iter()
            .filter(|(n, _)| !live.pids.contains_key(*n))
            .map(|(_, ip)| *ip)
            .collect()
    }

    /// Re-applies every running container's table but `node`'s; a container that is stopping
    /// meanwhile is skipped (it gets its table when it starts again).
    fn apply_others(&self, node: &str, live: &Live, down: &[Ipv4Addr]) {
        for (other, pid) in live.pids.iter().filter(|(n, _)| *n != node) {
            if let Err(e) = self.apply_node(other, *pid, &live.rules, down) {
                tracing::debug!(%other, "cannot update the table of a container: {e}");
            }
        }
    }

    fn ips(&self, nodes: &[String]) -> Vec<Ipv4Addr> {
        let addrs = self.addrs();
        nodes.iter().filter_map(|n| addrs.get(n).copied()).collect()
    }

    /// What `node`'s namespace must hold for `rules` and the nodes that are `down`: an
    /// nftables script (the whole `inet troupe` table, replaced) and the netem parameters of
    /// its `eth0`, if degraded. Without `netem` (the kernel has none), a loss-only degrade is
    /// an nftables random drop instead. Pure.
    fn node_rules(
        &self,
        node: &str,
        rules: &[(u32, Rule)],
        down: &[Ipv4Addr],
        netem_ok: bool,
    ) -> (String, Option<String>) {
        let mut output = Vec::new();
        let mut input = Vec::new();
        let mut netem = None;
        let set = |ips: &[Ipv4Addr]| {
            let ips: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
            format!("{{ {} }}", ips.join(", "))
        };
        let gateway = self.gateway();
        for (id, r) in rules {
            match r {
                Rule::Drop { from, to } => {
                    let (f, t) = (self.ips(from), self.ips(to));
                    if f.is_empty() || t.is_empty() {
                        continue;
                    }
                    if from.iter().any(|n| n == node) {
                        output.push(format!("ip daddr {} drop comment \"fault {id}\"", set(&t)));
                    }
                    if to.iter().any(|n| n == node) {
                        input.push(format!("ip saddr {} drop comment \"fault {id}\"", set(&f)));
                    }
                }
                Rule::HostDrop { nodes } if nodes.iter().any(|n| n == node) => {
                    output.push(format!("ip daddr {gateway} drop comment \"fault {id}\""));
                    input.push(format!("ip saddr {gateway} drop comment \"fault {id}\""));
                }
                Rule::Degrade { nodes, params }
                    if nodes.iter().any(|n| n == node) && !netem_ok && loss_only(params) =>
                {
                    // Per 10,000, so 0.5 % is kept; all of it is a plain drop.
                    let per = (params.loss * 10_000.0).round() as u32;
                    let sample = if per >= 10_000 {
                        String::new()
                    } else {
                        format!("numgen random mod 10000 < {per} ")
                    };
                    output.insert(
                        0,
                        format!("oifname \"eth0\" {sample}drop comment \"fault {id}\""),
                    );
                }
                Rule::Degrade { nodes, params } if nodes.iter().any(|n| n == node) => {
                    let mut n = format!("delay {}us", params.delay.as_micros());
                    if !params.jitter.is_zero() {
                        n.push_str(&format!(" {}us", params.jitter.as_micros()));
                    }
                    if params.loss > 0.0 {
                        n.push_str(&format!(" loss {}%", params.loss * 100.0));
                    }
                    if let Some(r) = params.rate {
                        n.push_str(&format!(" rate {}bit", r.max(1).saturating_mul(8)));
                    }
                    netem = Some(n);
                }
                _ => {}
            }
        }
        // After the faults: a cut to a stopped node still drops.
        if !down.is_empty() {
            output.push(format!(
                "meta l4proto tcp ip daddr {} reject with tcp reset comment \"not running\"",
                set(down)
            ));
            output.push(format!(
                "ip daddr {} reject comment \"not running\"",
                set(down)
            ));
        }
        let mut script = "table inet troupe\ndelete table inet troupe\n".to_string();
        if !output.is_empty() || !input.is_empty() {
            let lines = |v: &[String]| v.iter().map(|l| format!("    {l}\n")).collect::<String>();
            script.push_str(&format!(
                "table inet troupe {{\n  chain output {{\n    type filter hook output priority 0; policy accept;\n{}  }}\n  chain input {{\n    type filter hook input priority 0; policy accept;\n{}  }}\n}}\n",
                lines(&output),
                lines(&input),
            ));
        }
        (script, netem)
    }

    /// Makes `node`'s namespace hold exactly what `rules` say for it.
    fn apply_node(
        &self,
        node: &str,
        pid: u32,
        rules: &[(u32, Rule)],
        down: &[Ipv4Addr],
    ) -> Result<(), Error> {
        let degraded = rules.iter().any(
            |(_, r)| matches!(r, Rule::Degrade { nodes, .. } if nodes.iter().any(|n| n == node)),
        );
        let netem_ok = degraded && self.has_netem();
        let (script, netem) = self.node_rules(node, rules, down, netem_ok);
        let ns = NetnsOf::open(pid, node)?;
        ns.run(&["nft", "-f", "-"], Some(&script))?;
        let mut netem_on = self.netem_on.lock().expect("netem nodes");
        match netem {
            Some(n) => {
                let mut args = vec!["tc", "qdisc", "replace", "dev", "eth0", "root", "netem"];
                args.extend(n.split(' '));
                ns.run(&args, None)?;
                netem_on.insert(node.to_string());
            }
            // Nothing to remove is fine (a restarted container has a fresh namespace).
            None if netem_on.remove(node) => {
                let _ = ns.run(&["tc", "qdisc", "del", "dev", "eth0", "root"], None);
            }
            None => {}
        }
        Ok(())
    }

    /// Whether the kernel has the netem qdisc, probed once in a network namespace made for
    /// the probe.
    fn has_netem(&self) -> bool {
        *self.netem.get_or_init(|| {
            let mut cmd = Command::new(sbin("tc"));
            cmd.args(["qdisc", "add", "dev", "lo", "root", "netem", "delay", "0us"]);
            // SAFETY: unshare is async-signal-safe; the child only then execs.
            unsafe {
                cmd.pre_exec(|| {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(std::io::Error::from)
                });
            }
            cmd.output().is_ok_and(|o| o.status.success())
        })
    }

    /// Refuses a degrade the kernel cannot do: delay, jitter and rate need netem; loss alone
    /// works without it (an nftables random drop).
    fn check_degrade(&self, params: &super::Degrade) -> Result<(), Error> {
        if self.has_netem() || loss_only(params) {
            return Ok(());
        }
        Err(Error::Refused {
            message: "this kernel has no netem queueing discipline (sch_netem), which delay, jitter and rate limits need inside containers".into(),
            help: Some(
                "load it with `modprobe sch_netem` where the kernel has modules; loss alone (`--loss N` with no delay) and cut, isolate and partition work without it".into(),
            ),
        })
    }
}

/// Refuses faults inside the Engine's namespaces to troupe without real root.
fn need_root(runtime: &str) -> Result<(), Error> {
    if super::userns::needed() || super::userns::entered() {
        return Err(Error::Refused {
            message: format!(
                "`network = \"namespaces\"` with `runtime = \"{runtime}\"` needs root: troupe applies faults inside each container's network namespace, which belongs to the Docker Engine"
            ),
            help: Some(format!(
                "run troupe as root (sudo), or use `runtime = \"{runtime}\"` without `network` (no faults), or `runtime = \"process\"` with `network = \"namespaces\"`, which works without root"
            )),
        });
    }
    Ok(())
}

/// A degrade that only loses packets, which nftables can do without netem.
fn loss_only(params: &super::Degrade) -> bool {
    params.loss > 0.0 && params.delay.is_zero() && params.jitter.is_zero() && params.rate.is_none()
}

/// The network namespace of a container's first process, opened for running tools in it.
struct NetnsOf {
    fd: File,
    node: String,
}

impl NetnsOf {
    fn open(pid: u32, node: &str) -> Result<NetnsOf, Error> {
        let path = format!("/proc/{pid}/ns/net");
        let fd = File::open(&path).map_err(|e| {
            net_err(
                format!("enter the network namespace of `{node}` ({path})"),
                e.to_string(),
            )
        })?;
        // A pid reused by a host process would put the rules on the host: refuse our own.
        let same = |a: &File| {
            std::fs::metadata("/proc/self/ns/net")
                .ok()
                .zip(a.metadata().ok())
                .is_some_and(|(m, n)| m.ino() == n.ino() && m.dev() == n.dev())
        };
        if same(&fd) {
            return Err(net_err(
                format!("enter the network namespace of `{node}`"),
                format!("pid {pid} is in the host's namespace: the container is gone"),
            ));
        }
        Ok(NetnsOf {
            fd,
            node: node.to_string(),
        })
    }

    /// Runs a host tool (`nft`, `tc`) inside the namespace, with `input` on its stdin.
    fn run(&self, args: &[&str], input: Option<&str>) -> Result<(), Error> {
        let mut cmd = Command::new(sbin(args[0]));
        cmd.args(&args[1..])
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let fd = self
            .fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| net_err("duplicate a namespace descriptor", e.to_string()))?;
        // SAFETY: setns is async-signal-safe; the fd was opened before the fork.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(|e| Error::Environment {
            message: format!("failed to run `{}`: {e}", args.join(" ")),
            help: Some(
                "faults inside containers use the host's iproute2 (`tc`) and nftables (`nft`): apt-get install iproute2 nftables".into(),
            ),
        })?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| net_err("feed nft", e.to_string()))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| net_err(format!("wait for `{}`", args[0]), e.to_string()))?;
        if !out.status.success() {
            return Err(net_err(
                format!(
                    "run `{}` in the namespace of `{}`",
                    args.join(" "),
                    self.node
                ),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stderr).trim(),
                    input.map(|i| format!("\n{i}")).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }
}

impl NetworkBackend for DockerNet {
    fn name(&self) -> &'static str {
        "docker namespaces"
    }

    fn has(&self, node: &str) -> bool {
        match &self.swarm {
            Some(s) => s.nodes.contains(node),
            None => self.nodes.contains_key(node),
        }
    }

    fn check(&self, rules: &[Rule]) -> Result<(), Error> {
        if let Some(s) = &self.swarm {
            let remote = s.remote.lock().expect("remote").clone();
            for r in rules {
                if let Some((n, host)) = r.nodes().find_map(|n| remote.get(n).map(|h| (n, h))) {
                    return Err(Error::Refused {
                        message: format!(
                            "cannot fault node `{n}`: its task runs on swarm host {host}, where troupe cannot enter its network namespace (troupe applies faults only inside tasks on the host it runs on, whose Engine it talks to)"
                        ),
                        help: Some(
                            "run troupe on the host whose Engine it talks to and pin the cluster there (`placement = [\"node.hostname == <host>\"]`); a global helper service with NET_ADMIN on every host would lift this, and does not exist yet".into(),
                        ),
                    });
                }
                if let Rule::HostDrop { nodes } = r
                    && let Some(n) = nodes.iter().find(|n| s.nodes.contains(*n))
                {
                    return Err(Error::Refused {
                        message: format!(
                            "node `{n}` is a swarm task, which the host reaches through its published ports: troupe does not cut it from the host"
                        ),
                        help: Some(
                            "isolate it from the other nodes (without `--host`), or stop it".into(),
                        ),
                    });
                }
            }
        }
        for r in rules {
            let mine = r.nodes().find(|n| self.has(n));
            match (r, mine) {
                (Rule::Reset { .. }, Some(n)) => {
                    return Err(Error::Refused {
                        message: format!(
                            "node `{n}` is a container on the run's Docker network, where troupe does not reset connections"
                        ),
                        help: Some("cut, isolate or partition it instead".into()),
                    });
                }
                (Rule::Degrade { params, .. }, Some(_)) => self.check_degrade(params)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn apply(&self, rules: &[(u32, Rule)]) -> Result<(), Error> {
        let own = Rule::packet_rules(rules, |n| self.has(n));
        let mut live = self.live.lock().expect("docker net");
        live.rules = own;
        let down = self.down(&live);
        // A stopped container has no namespace: its rules are applied when it starts. One
        // that is exiting right now is skipped for the same reason.
        for (node, pid) in &live.pids {
            if let Err(e) = self.apply_node(node, *pid, &live.rules, &down)
                && std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists()
            {
                return Err(e);
            }
        }
        Ok(())
    }

    fn destroy(&self) {
        // The network goes with the run's containers, by label (runtime::docker::remove_run).
        let mut live = self.live.lock().expect("docker net");
        live.rules.clear();
        live.pids.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> DockerNet {
        let file = tempfile::tempfile().unwrap();
        DockerNet {
            network: "troupe-abc".into(),
            subnet: 7,
            nodes: ["a-1", "a-2", "a-3"]
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), Ipv4Addr::new(10, 213, 7, 10 + i as u8)))
                .collect(),
            swarm: None,
            live: Mutex::new(Live::default()),
            netem: OnceLock::new(),
            netem_on: Mutex::default(),
            created: tokio::sync::OnceCell::new(),
            _lock: Some(file),
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_one_way_cut_drops_at_the_sender_and_the_receiver_only() {
        let n = net();
        let rules = [(
            3,
            Rule::Drop {
                from: names(&["a-1"]),
                to: names(&["a-2", "a-3"]),
            },
        )];
        let (a1, _) = n.node_rules("a-1", &rules, &[], false);
        assert!(
            a1.contains("ip daddr { 10.213.7.11, 10.213.7.12 } drop comment \"fault 3\""),
            "{a1}"
        );
        assert!(!a1.contains("saddr"), "{a1}");
        let (a2, _) = n.node_rules("a-2", &rules, &[], false);
        assert!(
            a2.contains("ip saddr { 10.213.7.10 } drop comment \"fault 3\""),
            "{a2}"
        );
        assert!(!a2.contains("daddr"), "{a2}");
    }

    #[test]
    fn no_rules_empties_the_table_and_a_host_cut_drops_the_gateway_both_ways() {
        let n = net();
        let (empty, netem) = n.node_rules("a-1", &[], &[], false);
        assert_eq!(empty, "table inet troupe\ndelete table inet troupe\n");
        assert!(netem.is_none());
        let rules = [(
            1,
            Rule::HostDrop {
                nodes: names(&["a-2"]),
            },
        )];
        let (a2, _) = n.node_rules("a-2", &rules, &[], false);
        assert!(a2.contains("ip daddr 10.213.7.1 drop"), "{a2}");
        assert!(a2.contains("ip saddr 10.213.7.1 drop"), "{a2}");
        let (a1, _) = n.node_rules("a-1", &rules, &[], false);
        assert!(!a1.contains("drop"), "{a1}");
    }

    #[test]
    fn connections_to_a_node_that_is_not_running_are_refused_after_the_faults() {
        let n = net();
        let rules = [(
            2,
            Rule::Drop {
                from: names(&["a-1"]),
                to: names(&["a-3"]),
            },
        )];
        let (a1, _) = n.node_rules("a-1", &rules, &[Ipv4Addr::new(10, 213, 7, 12)], false);
        let drop = a1.find("drop comment \"fault 2\"").expect("the cut");
        let reset = a1
            .find("meta l4proto tcp ip daddr { 10.213.7.12 } reject with tcp reset")
            .expect("a reset for the stopped node");
        assert!(drop < reset, "{a1}");
        assert!(
            a1.contains("ip daddr { 10.213.7.12 } reject comment"),
            "{a1}"
        );
    }

    #[test]
    fn without_netem_a_loss_is_a_random_drop_and_with_it_a_netem_queue() {
        let n = net();
        let params = super::super::Degrade {
            loss: 0.05,
            ..Default::default()
        };
        let rules = [(
            4,
            Rule::Degrade {
                nodes: names(&["a-1"]),
                params,
            },
        )];
        let (script, netem) = n.node_rules("a-1", &rules, &[], false);
        assert!(
            script.contains("oifname \"eth0\" numgen random mod 10000 < 500 drop"),
            "{script}"
        );
        assert!(netem.is_none());
        let (script, netem) = n.node_rules("a-1", &rules, &[], true);
        assert!(!script.contains("numgen"), "{script}");
        assert_eq!(netem.as_deref(), Some("delay 0us loss 5%"));
    }

    #[test]
    fn a_reset_on_a_container_is_refused() {
        let n = net();
        let err = n
            .check(&[Rule::Reset {
                from: names(&["a-1"]),
                to: names(&["a-2"]),
            }])
            .unwrap_err();
        assert!(err.to_string().contains("does not reset"), "{err}");
    }

    #[test]
    fn on_a_swarm_rules_follow_the_tasks_addresses_and_faults_on_other_hosts_are_refused() {
        let file = tempfile::tempfile().unwrap();
        let n = DockerNet {
            network: "troupe-abc".into(),
            subnet: 0,
            nodes: BTreeMap::new(),
            swarm: Some(SwarmNodes {
                nodes: names(&["s-1", "s-2", "s-3"]).into_iter().collect(),
                ..Default::default()
            }),
            live: Mutex::new(Live::default()),
            netem: OnceLock::new(),
            netem_on: Mutex::default(),
            created: tokio::sync::OnceCell::new(),
            _lock: Some(file),
        };
        assert!(n.has("s-2") && !n.has("a-1"));
        let swarm = n.swarm.as_ref().unwrap();
        swarm.addrs.lock().unwrap().extend([
            ("s-1".to_string(), Ipv4Addr::new(10, 0, 1, 5)),
            ("s-2".to_string(), Ipv4Addr::new(10, 0, 1, 9)),
        ]);
        let cut = [(
            1,
            Rule::Drop {
                from: names(&["s-1"]),
                to: names(&["s-2"]),
            },
        )];
        let (s1, _) = n.node_rules("s-1", &cut, &[], false);
        assert!(s1.contains("ip daddr { 10.0.1.9 } drop"), "{s1}");
        // A replaced task's new address is the one its peers drop.
        swarm
            .addrs
            .lock()
            .unwrap()
            .insert("s-2".into(), Ipv4Addr::new(10, 0, 1, 23));
        let (s1, _) = n.node_rules("s-1", &cut, &[], false);
        assert!(s1.contains("ip daddr { 10.0.1.23 } drop"), "{s1}");

        n.task_host("s-3", Some("10.1.2.3".into()));
        let err = n
            .check(&[Rule::Drop {
                from: names(&["s-1"]),
                to: names(&["s-3"]),
            }])
            .unwrap_err();
        assert!(err.to_string().contains("swarm host 10.1.2.3"), "{err}");
        n.task_host("s-3", None);
        n.check(&[Rule::Drop {
            from: names(&["s-1"]),
            to: names(&["s-3"]),
        }])
        .unwrap();
        let err = n
            .check(&[Rule::HostDrop {
                nodes: names(&["s-1"]),
            }])
            .unwrap_err();
        assert!(err.to_string().contains("published ports"), "{err}");
    }
}
