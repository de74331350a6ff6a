//! Network faults: partitions, one-way cuts, resets and degraded links.
//!
//! A fault goes through three stages, each in its own module:
//! - [`plan`] turns a fault on resolved nodes into packet-level [`Rule`]s, with a description
//!   and the nodes it cuts off from their majority. Pure, unit-tested.
//! - [`faults`] keeps the active faults and their records, journals each before it is applied,
//!   and asks every backend to make the network exactly what the active rules say; one fault
//!   can be healed by its id, or all at once. System calls run on blocking threads, never on
//!   the async runtime and never under a lock a probe or a kill timer needs.
//! - A [`NetworkBackend`] applies rules to its own nodes: [`netns`] (network namespaces, a
//!   bridge, nftables and netem; needs root, or the user namespace [`userns`] enters) or
//!   [`links`] (a userspace [`proxy`] per directed link; any user), or [`docker`] (the same
//!   rules inside each container's namespace on a run's Docker network; needs root). A rule
//!   a backend cannot apply is refused before anything is journaled, never skipped.

pub(crate) mod docker;
pub(crate) mod faults;
pub(crate) mod links;
pub(crate) mod netns;
pub(crate) mod plan;
pub mod proxy;
pub mod userns;

use crate::error::Error;

pub use proxy::Degrade;

/// A packet-level rule, derived from a fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Drop packets from any node of `from` to any node of `to`.
    Drop { from: Vec<String>, to: Vec<String> },
    /// Drop packets between these nodes and the host, both ways.
    HostDrop { nodes: Vec<String> },
    /// Reset connections from `from` to `to` (link proxies only).
    Reset { from: Vec<String>, to: Vec<String> },
    /// Degrade the nodes' outgoing traffic.
    Degrade { nodes: Vec<String>, params: Degrade },
}

impl Rule {
    /// Every node the rule touches.
    pub fn nodes(&self) -> impl Iterator<Item = &String> {
        let (a, b): (&[String], &[String]) = match self {
            Rule::Drop { from, to } | Rule::Reset { from, to } => (from, to),
            Rule::HostDrop { nodes } | Rule::Degrade { nodes, .. } => (nodes, &[]),
        };
        a.iter().chain(b.iter())
    }

    /// The packet-level rules of `rules` (no resets: a packet filter cannot make them), each
    /// narrowed to the nodes `hosted` says a backend hosts.
    pub fn packet_rules(rules: &[(u32, Rule)], hosted: impl Fn(&str) -> bool) -> Vec<(u32, Rule)> {
        let keep =
            |ns: &[String]| -> Vec<String> { ns.iter().filter(|n| hosted(n)).cloned().collect() };
        rules
            .iter()
            .filter_map(|(id, r)| {
                let r = match r {
                    Rule::Drop { from, to } => Rule::Drop {
                        from: keep(from),
                        to: keep(to),
                    },
                    Rule::HostDrop { nodes } => Rule::HostDrop { nodes: keep(nodes) },
                    // Refused by the backends' `check` for the nodes they host.
                    Rule::Reset { .. } => return None,
                    Rule::Degrade { nodes, params } => Rule::Degrade {
                        nodes: keep(nodes),
                        params: params.clone(),
                    },
                };
                Some((*id, r))
            })
            .collect()
    }
}

/// Applies rules to the nodes it hosts. Its calls may block (they run `nft`, `tc`, `ip`): the
/// fault registry calls them from blocking threads.
pub trait NetworkBackend: Send + Sync + 'static {
    /// `namespaces`, `proxies`: for messages.
    fn name(&self) -> &'static str;

    /// Whether `node`'s traffic goes through this backend.
    fn has(&self, node: &str) -> bool;

    /// Refuses, before anything is journaled or applied, a rule on its nodes that it cannot
    /// apply (a reset in namespaces, a host cut through proxies, netem on a kernel without it).
    fn check(&self, rules: &[Rule]) -> Result<(), Error>;

    /// Makes the network of its nodes exactly what `rules` (every active fault's, tagged with
    /// the fault's id) say; rules on nodes it does not host are ignored.
    fn apply(&self, rules: &[(u32, Rule)]) -> Result<(), Error>;

    /// Removes everything it created. Idempotent.
    fn destroy(&self);
}
