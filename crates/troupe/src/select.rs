//! Targets: what `main-1`, `main`, `main:leader` or `main:minority` stand for. Pure: parsing a
//! target checks its names against the run's clusters and nodes (with a did-you-mean), and
//! resolving it needs only the cluster's node list and, for `leader` and `followers`, who
//! leads. The engine waits for a leader when a target needs one, then resolves here.
//!
//! Selectors that pick among a cluster's nodes (`random`, `one`, `followers`) pick among the
//! nodes that are up (running and ready): after a kill, `main:random` never names the dead
//! node. `up` and `down` name those sets; a cluster's name and `all`, `minority` and `majority`
//! are structural and always mean the same nodes.

use crate::error::Error;

/// The selectors of `CLUSTER:SELECTOR`.
pub const SELECTORS: [&str; 9] = [
    "leader",
    "followers",
    "random",
    "one",
    "up",
    "down",
    "minority",
    "majority",
    "all",
];

/// What troupe knows of a run's shape, for resolving targets.
#[derive(Debug, Clone, Copy)]
pub struct Topology<'a> {
    pub clusters: &'a [ClusterView],
}

/// One cluster: its nodes in order, and whether it can tell who leads.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub name: String,
    pub nodes: Vec<String>,
    pub has_role_probe: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    Leader,
    Followers,
    Random,
    One,
    /// Running and ready.
    Up,
    /// Not running: stopped, killed or exited (a paused node is neither up nor down).
    Down,
    Minority,
    Majority,
    All,
}

/// Whether a node serves: what `up`, `down` and the picking selectors look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Running and ready.
    Up,
    /// Not running.
    Down,
    /// Starting, paused, or stopping: neither.
    Neither,
}

impl Selector {
    /// As written after `CLUSTER:`.
    pub fn name(self) -> &'static str {
        match self {
            Selector::Leader => "leader",
            Selector::Followers => "followers",
            Selector::Random => "random",
            Selector::One => "one",
            Selector::Up => "up",
            Selector::Down => "down",
            Selector::Minority => "minority",
            Selector::Majority => "majority",
            Selector::All => "all",
        }
    }
}

/// A parsed target whose names exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Node(String),
    Cluster(String),
    Select { cluster: String, selector: Selector },
}

impl Target {
    /// The cluster whose leader must be known before this target resolves.
    pub fn needs_leader(&self) -> Option<&str> {
        match self {
            Target::Select {
                cluster,
                selector: Selector::Leader | Selector::Followers,
            } => Some(cluster),
            _ => None,
        }
    }
}

impl<'a> Topology<'a> {
    fn cluster(&self, name: &str) -> Option<&'a ClusterView> {
        self.clusters.iter().find(|c| c.name == name)
    }

    fn nodes(&self) -> impl Iterator<Item = &'a str> {
        self.clusters
            .iter()
            .flat_map(|c| c.nodes.iter().map(String::as_str))
    }

    /// Parses a target and checks every name in it.
    pub fn parse(&self, target: &str) -> Result<Target, Error> {
        if self.nodes().any(|n| n == target) {
            return Ok(Target::Node(target.to_string()));
        }
        if self.cluster(target).is_some() {
            return Ok(Target::Cluster(target.to_string()));
        }
        let Some((cluster, selector)) = target.split_once(':') else {
            return Err(self.unknown(target));
        };
        let Some(view) = self.cluster(cluster) else {
            return Err(self.unknown(target));
        };
        let selector = match selector {
            "leader" => Selector::Leader,
            "followers" => Selector::Followers,
            "random" => Selector::Random,
            "one" => Selector::One,
            "up" => Selector::Up,
            "down" => Selector::Down,
            "minority" => Selector::Minority,
            "majority" => Selector::Majority,
            "all" => Selector::All,
            other => {
                let hint = match troupe_spec::suggest(other, SELECTORS) {
                    Some(s) => format!("did you mean `{cluster}:{s}`? "),
                    None => String::new(),
                };
                return Err(Error::Target {
                    message: format!("unknown selector `{other}` in `{target}`"),
                    help: Some(format!("{hint}selectors: {}", SELECTORS.join(", "))),
                });
            }
        };
        let parsed = Target::Select {
            cluster: cluster.to_string(),
            selector,
        };
        if parsed.needs_leader().is_some() && !view.has_role_probe {
            return Err(Error::Target {
                message: format!(
                    "`{target}` needs to know who leads, but cluster `{cluster}` has no role probe"
                ),
                help: Some(format!(
                    "add a [clusters.{cluster}.role] table to the spec, or name nodes instead (e.g. {})",
                    view.nodes.first().map_or("", String::as_str)
                )),
            });
        }
        Ok(parsed)
    }

    /// The nodes a parsed target stands for. `leader` is the cluster's leader when the target
    /// needs one; `state` says whether a node is up (running and ready), down (not running) or
    /// neither (paused, starting); `pick` chooses for `random` (any number; it is reduced
    /// modulo the count).
    pub fn resolve(
        &self,
        target: &Target,
        leader: Option<&str>,
        state: &dyn Fn(&str) -> Liveness,
        pick: u64,
    ) -> Vec<String> {
        match target {
            Target::Node(n) => vec![n.clone()],
            Target::Cluster(c) => self.cluster(c).map(|v| v.nodes.clone()).unwrap_or_default(),
            Target::Select { cluster, selector } => {
                let nodes = self
                    .cluster(cluster)
                    .map(|v| v.nodes.clone())
                    .unwrap_or_default();
                let n = nodes.len();
                let up = || {
                    nodes
                        .iter()
                        .filter(|x| state(x) == Liveness::Up)
                        .cloned()
                        .collect::<Vec<_>>()
                };
                match selector {
                    Selector::Leader => leader.map(str::to_string).into_iter().collect(),
                    Selector::Followers => up()
                        .into_iter()
                        .filter(|x| Some(x.as_str()) != leader)
                        .collect(),
                    Selector::All => nodes,
                    Selector::Up => up(),
                    Selector::Down => nodes
                        .iter()
                        .filter(|x| state(x) == Liveness::Down)
                        .cloned()
                        .collect(),
                    Selector::One => up().into_iter().take(1).collect(),
                    Selector::Random => {
                        let up = up();
                        let i = usize::try_from(pick % (up.len().max(1) as u64)).unwrap_or(0);
                        up.into_iter().skip(i).take(1).collect()
                    }
                    Selector::Majority => nodes.into_iter().take(n / 2 + 1).collect(),
                    Selector::Minority => {
                        let k = n.saturating_sub(1) / 2;
                        nodes.into_iter().skip(n - k).collect()
                    }
                }
            }
        }
    }

    fn unknown(&self, target: &str) -> Error {
        let names: Vec<&str> = self
            .nodes()
            .chain(self.clusters.iter().map(|c| c.name.as_str()))
            .collect();
        let hint = match troupe_spec::suggest(target, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? "),
            None => String::new(),
        };
        Error::Target {
            message: format!("no node or cluster named `{target}`"),
            help: Some(format!(
                "{hint}targets are a node ({}), a cluster ({}), or CLUSTER:SELECTOR with {}",
                self.nodes().collect::<Vec<_>>().join(", "),
                self.clusters
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                SELECTORS.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views() -> Vec<ClusterView> {
        let nodes = |c: &str, k: u32| (1..=k).map(|i| format!("{c}-{i}")).collect();
        vec![
            ClusterView {
                name: "main".into(),
                nodes: nodes("main", 5),
                has_role_probe: true,
            },
            ClusterView {
                name: "side".into(),
                nodes: nodes("side", 2),
                has_role_probe: false,
            },
        ]
    }

    fn resolve(target: &str, leader: Option<&str>) -> Result<Vec<String>, Error> {
        let v = views();
        let topo = Topology { clusters: &v };
        let t = topo.parse(target)?;
        Ok(topo.resolve(&t, leader, &|_| Liveness::Up, 7))
    }

    #[test]
    fn nodes_clusters_and_selectors_resolve_in_node_order() {
        assert_eq!(resolve("main-2", None).unwrap(), ["main-2"]);
        assert_eq!(resolve("side", None).unwrap(), ["side-1", "side-2"]);
        assert_eq!(resolve("main:one", None).unwrap(), ["main-1"]);
        assert_eq!(
            resolve("main:majority", None).unwrap(),
            ["main-1", "main-2", "main-3"]
        );
        assert_eq!(
            resolve("main:minority", None).unwrap(),
            ["main-4", "main-5"]
        );
        assert_eq!(
            resolve("side:minority", None).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(resolve("main:all", None).unwrap().len(), 5);
        assert_eq!(resolve("main:random", None).unwrap(), ["main-3"], "7 % 5");
    }

    #[test]
    fn leader_and_followers_use_the_leader_they_are_given() {
        assert_eq!(resolve("main:leader", Some("main-4")).unwrap(), ["main-4"]);
        let f = resolve("main:followers", Some("main-4")).unwrap();
        assert_eq!(f, ["main-1", "main-2", "main-3", "main-5"]);
        let v = views();
        let topo = Topology { clusters: &v };
        assert_eq!(
            topo.parse("main:leader").unwrap().needs_leader(),
            Some("main")
        );
        assert_eq!(topo.parse("main:one").unwrap().needs_leader(), None);
    }

    #[test]
    fn picking_selectors_choose_among_the_nodes_that_are_up() {
        let v = views();
        let topo = Topology { clusters: &v };
        // main-1 killed, main-2 paused, main-3..5 up.
        let state = |n: &str| match n {
            "main-1" => Liveness::Down,
            "main-2" => Liveness::Neither,
            _ => Liveness::Up,
        };
        let r = |t: &str, leader: Option<&str>, pick| {
            topo.resolve(&topo.parse(t).unwrap(), leader, &state, pick)
        };
        assert_eq!(r("main:up", None, 0), ["main-3", "main-4", "main-5"]);
        assert_eq!(r("main:down", None, 0), ["main-1"]);
        assert_eq!(r("main:one", None, 0), ["main-3"]);
        for pick in 0..20 {
            let [n] = r("main:random", None, pick).try_into().unwrap();
            assert!(["main-3", "main-4", "main-5"].contains(&n.as_str()), "{n}");
        }
        assert_eq!(r("main:followers", Some("main-4"), 0), ["main-3", "main-5"]);
        // Structural targets keep every node.
        assert_eq!(r("main", None, 0).len(), 5);
        assert_eq!(r("main:all", None, 0).len(), 5);
        assert_eq!(r("main:majority", None, 0), ["main-1", "main-2", "main-3"]);
        // Nothing up: picking selectors name nothing (the engine says why).
        let none = topo.resolve(
            &topo.parse("main:random").unwrap(),
            None,
            &|_| Liveness::Down,
            3,
        );
        assert!(none.is_empty());
    }

    #[test]
    fn a_majority_and_a_minority_never_overlap_and_cover_the_cluster() {
        for n in 1..=9u32 {
            let v = vec![ClusterView {
                name: "c".into(),
                nodes: (1..=n).map(|i| format!("c-{i}")).collect(),
                has_role_probe: false,
            }];
            let topo = Topology { clusters: &v };
            let maj = topo.resolve(
                &topo.parse("c:majority").unwrap(),
                None,
                &|_| Liveness::Up,
                0,
            );
            let min = topo.resolve(
                &topo.parse("c:minority").unwrap(),
                None,
                &|_| Liveness::Up,
                0,
            );
            assert!(maj.len() > n as usize / 2, "n={n}");
            assert!(min.iter().all(|m| !maj.contains(m)), "n={n}");
            assert!(maj.len() + min.len() <= n as usize);
        }
    }

    #[test]
    fn mistakes_name_what_exists_with_a_did_you_mean() {
        let e = resolve("main:leadr", None).unwrap_err().to_string();
        assert!(e.contains("unknown selector `leadr`"), "{e}");
        let e = resolve("mian-1", None).unwrap_err();
        let help = miette::Diagnostic::help(&e).unwrap().to_string();
        assert!(help.contains("did you mean `main-1`?"), "{help}");
        let e = resolve("side:leader", None).unwrap_err().to_string();
        assert!(e.contains("has no role probe"), "{e}");
        assert!(resolve("nope:one", None).is_err());
    }
}
