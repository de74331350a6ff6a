//! The link-proxy backend: a [`LinkProxy`] on 127.0.0.1 for every directed link (and port)
//! between the nodes of a `network = "proxies"` cluster. Node A reaches peer B through the
//! proxy for A→B, so every link is cut, reset or degraded on its own, per direction, in user
//! space, for any user.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use super::proxy::{LinkFault, LinkProxy};
use super::{NetworkBackend, Rule};
use crate::error::{Error, io_err};

/// Link proxies: from node → to node → port name → the proxy's port on 127.0.0.1.
pub type LinkMap = BTreeMap<String, BTreeMap<String, BTreeMap<String, u16>>>;

/// The running proxies of a run.
pub struct Links {
    pub map: LinkMap,
    proxies: Mutex<BTreeMap<(String, String), Vec<LinkProxy>>>,
}

impl Links {
    pub fn new(map: LinkMap) -> Links {
        Links {
            map,
            proxies: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts every proxy (before any node, so peers find them). `target` gives a node's host
    /// and the number of one of its ports.
    pub async fn start(
        &self,
        target: impl Fn(&str, &str) -> Option<(String, u16)>,
    ) -> Result<(), Error> {
        let mut started = BTreeMap::new();
        for (from, peers) in &self.map {
            for (to, ports) in peers {
                let mut list = Vec::new();
                for (port, listen) in ports {
                    let Some((host, number)) = target(to, port) else {
                        continue;
                    };
                    let host: IpAddr = host.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
                    let to_addr = SocketAddr::new(host, number);
                    let listen_addr = SocketAddr::from(([127, 0, 0, 1], *listen));
                    let where_ = std::path::PathBuf::from(listen_addr.to_string());
                    let l = tokio::net::TcpListener::bind(listen_addr)
                        .await
                        .map_err(|e| io_err("listen for the link proxy on", &where_, e))?;
                    let p = LinkProxy::from_listener(l, to_addr)
                        .map_err(|e| io_err("start the link proxy", &where_, e))?;
                    list.push(p);
                }
                started.insert((from.clone(), to.clone()), list);
            }
        }
        *self.proxies.lock().expect("link proxies") = started;
        Ok(())
    }

    /// The `host:port` addresses node `from` reaches each peer's ports at.
    pub fn addrs_of(&self, from: &str) -> BTreeMap<String, BTreeMap<String, String>> {
        self.map
            .get(from)
            .map(|peers| {
                peers
                    .iter()
                    .map(|(peer, ports)| {
                        let addrs = ports
                            .iter()
                            .map(|(p, v)| (p.clone(), format!("127.0.0.1:{v}")))
                            .collect();
                        (peer.clone(), addrs)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Per directed link: the fault of its forward direction (bytes from A to B) and of its
/// backward one (B's answers on A's connections).
pub fn link_states(
    links: impl Iterator<Item = (String, String)>,
    rules: &[(u32, Rule)],
) -> BTreeMap<(String, String), (LinkFault, LinkFault)> {
    let mut state: BTreeMap<(String, String), (LinkFault, LinkFault)> = links
        .map(|k| (k, (LinkFault::Pass, LinkFault::Pass)))
        .collect();
    for (_, r) in rules {
        match r {
            Rule::Drop { from, to } => {
                for a in from {
                    for b in to {
                        // Bytes from a to b: forward on a's link to b, backward on b's to a.
                        if let Some(s) = state.get_mut(&(a.clone(), b.clone())) {
                            s.0 = LinkFault::Cut;
                        }
                        if let Some(s) = state.get_mut(&(b.clone(), a.clone())) {
                            s.1 = LinkFault::Cut;
                        }
                    }
                }
            }
            Rule::Degrade { nodes, params } => {
                for ((a, b), s) in state.iter_mut() {
                    if nodes.contains(a) && s.0 != LinkFault::Cut {
                        s.0 = LinkFault::Degrade(params.clone());
                    }
                    if nodes.contains(b) && s.1 != LinkFault::Cut {
                        s.1 = LinkFault::Degrade(params.clone());
                    }
                }
            }
            Rule::HostDrop { .. } => {}
            Rule::Reset { from, to } => {
                for a in from {
                    for b in to {
                        if let Some(s) = state.get_mut(&(a.clone(), b.clone())) {
                            *s = (LinkFault::Reset, LinkFault::Reset);
                        }
                    }
                }
            }
        }
    }
    state
}

impl NetworkBackend for Links {
    fn name(&self) -> &'static str {
        "proxies"
    }

    fn has(&self, node: &str) -> bool {
        self.map.contains_key(node)
    }

    fn check(&self, rules: &[Rule]) -> Result<(), Error> {
        for r in rules {
            if let Rule::HostDrop { nodes } = r
                && nodes.iter().any(|n| self.has(n))
            {
                return Err(Error::Refused {
                    message: format!(
                        "the link-proxy backend cannot cut {} off from the host's clients: they reach it directly",
                        nodes.join(" ")
                    ),
                    help: Some(
                        "use `network = \"namespaces\"` for faults between a node and the host"
                            .into(),
                    ),
                });
            }
        }
        Ok(())
    }

    fn apply(&self, rules: &[(u32, Rule)]) -> Result<(), Error> {
        let proxies = self.proxies.lock().expect("link proxies");
        for (k, (fwd, back)) in link_states(proxies.keys().cloned(), rules) {
            for p in &proxies[&k] {
                p.set_directions(fwd.clone(), back.clone());
            }
        }
        Ok(())
    }

    fn destroy(&self) {
        self.proxies.lock().expect("link proxies").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn a_one_way_cut_holds_one_direction_of_both_links() {
        let links = [pair("a", "b"), pair("b", "a"), pair("a", "c")];
        let rules = [(
            1,
            Rule::Drop {
                from: vec!["a".into()],
                to: vec!["b".into()],
            },
        )];
        let s = link_states(links.into_iter(), &rules);
        assert_eq!(s[&pair("a", "b")], (LinkFault::Cut, LinkFault::Pass));
        assert_eq!(s[&pair("b", "a")], (LinkFault::Pass, LinkFault::Cut));
        assert_eq!(s[&pair("a", "c")], (LinkFault::Pass, LinkFault::Pass));
    }

    #[test]
    fn a_cut_wins_over_a_degrade_whatever_the_order() {
        let links = [pair("a", "b")];
        let degrade = Rule::Degrade {
            nodes: vec!["a".into()],
            params: super::super::Degrade::default(),
        };
        let cut = Rule::Drop {
            from: vec!["a".into()],
            to: vec!["b".into()],
        };
        for rules in [
            [(1, degrade.clone()), (2, cut.clone())],
            [(2, cut), (1, degrade)],
        ] {
            let s = link_states(links.clone().into_iter(), &rules);
            assert_eq!(s[&pair("a", "b")].0, LinkFault::Cut);
        }
    }
}
