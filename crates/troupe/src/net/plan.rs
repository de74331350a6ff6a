//! Fault planning: a fault on resolved nodes becomes packet-level rules, a description for
//! people, and the nodes it cuts off from their cluster's majority (whose claims to lead stop
//! counting at once). Pure: no backend, no system call.

use super::{Degrade, Rule};
use crate::error::Error;

/// A fault whose targets are resolved to node names.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved {
    Partition {
        groups: Vec<Vec<String>>,
        bridge: Vec<String>,
    },
    Isolate {
        nodes: Vec<String>,
        host: bool,
    },
    Cut {
        from: Vec<String>,
        to: Vec<String>,
        one_way: bool,
    },
    Reset {
        from: Vec<String>,
        to: Vec<String>,
    },
    Degrade {
        nodes: Vec<String>,
        params: Degrade,
    },
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    pub rules: Vec<Rule>,
    pub description: String,
    /// Nodes cut off from their majority, with the cause.
    pub sidelined: Vec<(String, &'static str)>,
}

fn refused(message: String, help: &str) -> Error {
    Error::Target {
        message,
        help: Some(help.to_string()),
    }
}

/// Plans a fault. `faultable` lists every node whose traffic a backend controls (an isolated
/// node is cut from each of them).
pub fn plan(fault: &Resolved, faultable: &[String]) -> Result<FaultPlan, Error> {
    let mut sidelined = Vec::new();
    let (rules, description) = match fault {
        Resolved::Partition { groups, bridge } => {
            let groups: Vec<Vec<String>> = groups
                .iter()
                .map(|g| g.iter().filter(|n| !bridge.contains(n)).cloned().collect())
                .collect::<Vec<Vec<String>>>()
                .into_iter()
                .filter(|g| !g.is_empty())
                .collect();
            for (i, a) in groups.iter().enumerate() {
                for b in &groups[i + 1..] {
                    if let Some(n) = a.iter().find(|n| b.contains(n)) {
                        return Err(refused(
                            format!("node `{n}` is on both sides of the partition"),
                            "each node belongs to one group; use `bridge` for a node that sees both sides",
                        ));
                    }
                }
            }
            if groups.len() < 2 {
                return Err(refused(
                    "a partition needs at least two groups of nodes".into(),
                    "separate groups with `|`, e.g. \"main-1 | main-2 main-3\"",
                ));
            }
            let mut rules = Vec::new();
            for (i, a) in groups.iter().enumerate() {
                for (j, b) in groups.iter().enumerate() {
                    if i != j {
                        rules.push(Rule::Drop {
                            from: a.clone(),
                            to: b.clone(),
                        });
                    }
                }
            }
            // Everyone outside the largest group (the first of equals) is in a minority.
            let largest = groups.iter().map(Vec::len).max().unwrap_or(0);
            let keep = groups.iter().position(|g| g.len() == largest);
            for (i, g) in groups.iter().enumerate() {
                if Some(i) != keep {
                    sidelined.extend(g.iter().map(|n| (n.clone(), "partition")));
                }
            }
            let text: Vec<String> = groups.iter().map(|g| g.join(" ")).collect();
            let mut d = format!("partition {}", text.join(" | "));
            if !bridge.is_empty() {
                d.push_str(&format!(" (bridged by {})", bridge.join(" ")));
            }
            (rules, d)
        }
        Resolved::Isolate { nodes, host } => {
            if nodes.is_empty() {
                return Err(refused(
                    "isolate selects no node".into(),
                    "name a node, a cluster, or CLUSTER:SELECTOR",
                ));
            }
            sidelined.extend(nodes.iter().map(|n| (n.clone(), "isolate")));
            let mut rules = Vec::new();
            for n in nodes {
                let others: Vec<String> = faultable.iter().filter(|o| *o != n).cloned().collect();
                rules.push(Rule::Drop {
                    from: vec![n.clone()],
                    to: others.clone(),
                });
                rules.push(Rule::Drop {
                    from: others,
                    to: vec![n.clone()],
                });
            }
            if *host {
                rules.push(Rule::HostDrop {
                    nodes: nodes.clone(),
                });
            }
            let suffix = if *host { " (and from the host)" } else { "" };
            (rules, format!("isolate {}{suffix}", nodes.join(" ")))
        }
        Resolved::Cut { from, to, one_way } => {
            check_link(from, to, "cut")?;
            let mut rules = vec![Rule::Drop {
                from: from.clone(),
                to: to.clone(),
            }];
            if !one_way {
                rules.push(Rule::Drop {
                    from: to.clone(),
                    to: from.clone(),
                });
            }
            let arrow = if *one_way { "->" } else { "<->" };
            (
                rules,
                format!("cut {} {arrow} {}", from.join(" "), to.join(" ")),
            )
        }
        Resolved::Reset { from, to } => {
            check_link(from, to, "reset")?;
            (
                vec![Rule::Reset {
                    from: from.clone(),
                    to: to.clone(),
                }],
                format!("reset {} -> {}", from.join(" "), to.join(" ")),
            )
        }
        Resolved::Degrade { nodes, params } => {
            if nodes.is_empty() {
                return Err(refused(
                    "degrade selects no node".into(),
                    "name a node, a cluster, or CLUSTER:SELECTOR",
                ));
            }
            let mut d = format!(
                "degrade {}: delay {}",
                nodes.join(" "),
                troupe_spec::format_duration(params.delay)
            );
            if !params.jitter.is_zero() {
                d.push_str(&format!(
                    " ±{}",
                    troupe_spec::format_duration(params.jitter)
                ));
            }
            if params.loss > 0.0 {
                d.push_str(&format!(", loss {}%", params.loss * 100.0));
            }
            if let Some(r) = params.rate {
                d.push_str(&format!(", rate {}bit/s", r.saturating_mul(8)));
            }
            (
                vec![Rule::Degrade {
                    nodes: nodes.clone(),
                    params: params.clone(),
                }],
                d,
            )
        }
    };
    Ok(FaultPlan {
        rules,
        description,
        sidelined,
    })
}

fn check_link(from: &[String], to: &[String], what: &str) -> Result<(), Error> {
    if from.is_empty() || to.is_empty() {
        return Err(refused(
            format!("{what} needs nodes on both ends"),
            "e.g. \"main-1 main-2\": from main-1 to main-2",
        ));
    }
    if let Some(n) = from.iter().find(|n| to.contains(n)) {
        return Err(refused(
            format!("`{n}` is on both ends of the {what}: a node has no link to itself"),
            "name different nodes on each side",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_partition_drops_every_direction_between_groups_and_sidelines_the_minority() {
        let p = plan(
            &Resolved::Partition {
                groups: vec![names(&["a"]), names(&["b", "c"])],
                bridge: vec![],
            },
            &names(&["a", "b", "c"]),
        )
        .unwrap();
        assert_eq!(
            p.rules,
            [
                Rule::Drop {
                    from: names(&["a"]),
                    to: names(&["b", "c"])
                },
                Rule::Drop {
                    from: names(&["b", "c"]),
                    to: names(&["a"])
                },
            ]
        );
        assert_eq!(p.sidelined, [("a".to_string(), "partition")]);
        assert_eq!(p.description, "partition a | b c");
    }

    #[test]
    fn a_bridge_node_is_left_out_of_every_group() {
        let p = plan(
            &Resolved::Partition {
                groups: vec![names(&["a", "c"]), names(&["b", "c"])],
                bridge: names(&["c"]),
            },
            &names(&["a", "b", "c"]),
        )
        .unwrap();
        assert!(p.rules.iter().all(|r| r.nodes().all(|n| n != "c")));
        assert_eq!(p.description, "partition a | b (bridged by c)");
    }

    #[test]
    fn contradictions_are_refused() {
        let both_sides = plan(
            &Resolved::Partition {
                groups: vec![names(&["a", "b"]), names(&["b"])],
                bridge: vec![],
            },
            &[],
        );
        assert!(both_sides.unwrap_err().to_string().contains("both sides"));
        let one_group = plan(
            &Resolved::Partition {
                groups: vec![names(&["a"]), names(&["a"])],
                bridge: names(&["a"]),
            },
            &[],
        );
        assert!(one_group.unwrap_err().to_string().contains("two groups"));
        let to_itself = plan(
            &Resolved::Cut {
                from: names(&["a"]),
                to: names(&["a"]),
                one_way: false,
            },
            &[],
        );
        assert!(
            to_itself
                .unwrap_err()
                .to_string()
                .contains("no link to itself")
        );
    }

    #[test]
    fn isolate_cuts_a_node_from_every_other_both_ways() {
        let p = plan(
            &Resolved::Isolate {
                nodes: names(&["b"]),
                host: true,
            },
            &names(&["a", "b", "c"]),
        )
        .unwrap();
        assert_eq!(p.rules.len(), 3);
        assert!(p.rules.contains(&Rule::Drop {
            from: names(&["a", "c"]),
            to: names(&["b"])
        }));
        assert!(p.rules.contains(&Rule::HostDrop {
            nodes: names(&["b"])
        }));
        assert_eq!(p.description, "isolate b (and from the host)");
    }

    #[test]
    fn a_one_way_cut_drops_one_direction() {
        let p = plan(
            &Resolved::Cut {
                from: names(&["a"]),
                to: names(&["b"]),
                one_way: true,
            },
            &[],
        )
        .unwrap();
        assert_eq!(p.rules.len(), 1);
        assert_eq!(p.description, "cut a -> b");
    }
}
