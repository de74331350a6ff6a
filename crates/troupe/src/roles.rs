//! Roles: which node of a cluster leads, kept current while the cluster runs, with every leader
//! change and every failover timed.
//!
//! A cluster's role probe is asked of each running node every `interval` (20 ms by default),
//! all nodes at once so that one slow or paused node does not delay the others. A node leads
//! when its answer matches: a regex over the body (or over the value at a JSON pointer), or the
//! value at one JSON pointer equalling the value at another (etcd's
//! `/v3/maintenance/status` has `leader` and `header.member_id`).
//!
//! With `scope = "cluster"` the question is asked once per interval instead (through the first
//! running node's rendering of it, the next node's if that fails), for systems where a separate
//! group decides who leads; every node's own `leader` pattern is matched against the one answer.
//!
//! A failover starts when troupe stops, kills or pauses the node it last saw leading, and ends
//! when the probe first sees a different leader; its resolution is the probe interval.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::ClientConfig;
use tokio::sync::watch;
use troupe_spec::{ClusterStatus, Failover, LeaderChange};

use crate::resolved::{RoleProbe, RoleRule, RoleSource};

/// Whether an answer says "leader".
pub fn is_leader(answer: &str, pointer: Option<&str>, rule: &RoleRule) -> Result<bool, String> {
    // Command output ends in a newline, and Rust's `$` does not match before it.
    let answer = answer.trim_end_matches(['\n', '\r']);
    let json = || {
        serde_json::from_str::<serde_json::Value>(answer)
            .map_err(|e| format!("answer is not JSON: {e}"))
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (pointer, rule) {
        (None, RoleRule::Matches(re)) => Ok(re.is_match(answer)),
        (Some(p), RoleRule::Matches(re)) => {
            let doc = json()?;
            let v = doc
                .pointer(p)
                .ok_or_else(|| format!("no `{p}` in the answer"))?;
            Ok(re.is_match(&text(v)))
        }
        (Some(p), RoleRule::Equals(q)) => {
            let doc = json()?;
            let a = doc
                .pointer(p)
                .ok_or_else(|| format!("no `{p}` in the answer"))?;
            let b = doc
                .pointer(q)
                .ok_or_else(|| format!("no `{q}` in the answer"))?;
            Ok(text(a) == text(b))
        }
        (None, RoleRule::Equals(_)) => Err("`equals` needs a `pointer`".into()),
    }
}

/// Asks one node once.
pub async fn ask(
    p: &RoleProbe,
    tls: Option<&Arc<ClientConfig>>,
    env: &[(String, String)],
    dir: &Path,
) -> Result<bool, String> {
    let answer = answer(p, tls, env, dir).await?;
    is_leader(&answer, p.pointer.as_deref(), &p.rule)
}

/// The probe's answer, as text.
async fn answer(
    p: &RoleProbe,
    tls: Option<&Arc<ClientConfig>>,
    env: &[(String, String)],
    dir: &Path,
) -> Result<String, String> {
    Ok(match &p.source {
        RoleSource::Http { url, post } => {
            let (code, body) = crate::http::request(url, post.as_deref(), tls).await?;
            if !(200..300).contains(&code) {
                return Err(format!("HTTP {code}"));
            }
            body
        }
        RoleSource::Command { program, args } => {
            let cmd = crate::command::Cmd {
                program: program.clone(),
                args: args.clone(),
                env: env.to_vec(),
                dir: dir.to_path_buf(),
            };
            let out = crate::command::run(&cmd, std::future::pending())
                .await
                .map_err(|e| match e {
                    crate::command::CmdError::Spawn(e) => {
                        format!("cannot run {}: {e}", program.display())
                    }
                    crate::command::CmdError::Cut { .. } => "cut off".to_string(),
                })?;
            if !out.exit.success() {
                return Err(out.exit.to_string());
            }
            out.stdout_text()
        }
    })
}

/// One cluster-scope question: asked through the first node that answers, matched with every
/// asked node's own `leader` pattern. Nodes in `nodes` only; no answer at all: empty.
async fn ask_cluster(nodes: &[Arc<crate::node::Node>]) -> BTreeMap<String, bool> {
    for n in nodes {
        let Some(role) = &n.plan.role else { continue };
        let got = tokio::time::timeout(
            role.timeout,
            answer(role, n.tls.as_ref(), &n.plan.env, &n.plan.dir),
        )
        .await;
        let Ok(Ok(text)) = got else { continue };
        return nodes
            .iter()
            .filter_map(|m| {
                let r = m.plan.role.as_ref()?;
                let leads = is_leader(&text, r.pointer.as_deref(), &r.rule).ok()?;
                Some((m.plan.name.clone(), leads))
            })
            .collect();
    }
    BTreeMap::new()
}

/// Asks every running node of a cluster its role every `interval`, all at once so that one
/// slow or paused node does not delay the others, until the run closes.
pub(crate) async fn watch(
    nodes: Vec<Arc<crate::node::Node>>,
    live: Arc<ClusterLive>,
    mut closing: watch::Receiver<bool>,
) {
    let interval = nodes
        .iter()
        .find_map(|n| n.plan.role.as_ref().map(|r| r.interval))
        .unwrap_or(Duration::from_millis(20));
    let cluster_scope = nodes
        .iter()
        .any(|n| n.plan.role.as_ref().is_some_and(|r| r.cluster_scope));
    loop {
        if cluster_scope {
            let asked: Vec<Arc<crate::node::Node>> = nodes
                .iter()
                .filter(|n| {
                    n.status().is_some_and(|st| {
                        st.running() && st.state != troupe_spec::NodeState::Paused
                    })
                })
                .cloned()
                .collect();
            live.observe(ask_cluster(&asked).await);
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = crate::lifecycle::closed(&mut closing) => break,
            }
            continue;
        }
        let mut set = tokio::task::JoinSet::new();
        for n in &nodes {
            let (Some(st), Some(role)) = (n.status(), n.plan.role.clone()) else {
                continue;
            };
            if !st.running() || st.state == troupe_spec::NodeState::Paused {
                continue;
            }
            let n = n.clone();
            set.spawn(async move {
                let answer = tokio::time::timeout(
                    role.timeout,
                    ask(&role, n.tls.as_ref(), &n.plan.env, &n.plan.dir),
                )
                .await;
                (n.plan.name.clone(), answer.ok().and_then(Result::ok))
            });
        }
        let mut answers = BTreeMap::new();
        while let Some(Ok((name, answer))) = set.join_next().await {
            if let Some(leads) = answer {
                answers.insert(name, leads);
            }
        }
        live.observe(answers);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = crate::lifecycle::closed(&mut closing) => break,
        }
    }
}

pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What troupe knows about one cluster's roles and timings.
pub struct ClusterLive {
    pub name: String,
    pub has_role_probe: bool,
    leader: watch::Sender<Option<String>>,
    /// Every node whose latest answer says it leads (more than one: a split brain, or an old
    /// leader that has not heard yet).
    claims: watch::Sender<Vec<String>>,
    inner: Mutex<LiveInner>,
}

#[derive(Default)]
struct LiveInner {
    formation_ms: Option<f64>,
    roles: BTreeMap<String, bool>,
    /// Nodes troupe stopped, killed or paused: their claims no longer count.
    down: std::collections::BTreeSet<String>,
    changes: Vec<LeaderChange>,
    failovers: Vec<(Failover, Instant)>,
    split_brains: Vec<troupe_spec::SplitBrain>,
}

impl ClusterLive {
    pub fn new(name: &str, has_role_probe: bool) -> ClusterLive {
        ClusterLive {
            name: name.to_string(),
            has_role_probe,
            leader: watch::channel(None).0,
            claims: watch::channel(Vec::new()).0,
            inner: Mutex::new(LiveInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveInner> {
        self.inner.lock().expect("cluster live state")
    }

    pub fn leader(&self) -> Option<String> {
        self.leader.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.leader.subscribe()
    }

    /// Every node that claims to lead now, by name.
    pub fn claims(&self) -> Vec<String> {
        self.claims.borrow().clone()
    }

    pub fn subscribe_claims(&self) -> watch::Receiver<Vec<String>> {
        self.claims.subscribe()
    }

    pub fn role_of(&self, node: &str) -> Option<bool> {
        self.lock().roles.get(node).copied()
    }

    pub fn set_formation(&self, d: Duration) {
        self.lock().formation_ms = Some(d.as_secs_f64() * 1000.0);
    }

    /// troupe is about to stop, kill or pause `node`: it no longer counts as leading, and if it
    /// led, a failover starts now.
    pub fn acting_on(&self, node: &str, cause: &str) {
        let mut inner = self.lock();
        inner.down.insert(node.to_string());
        inner.roles.remove(node);
        self.claims.send_if_modified(|c| {
            let before = c.len();
            c.retain(|n| n != node);
            c.len() != before
        });
        if self.leader().as_deref() == Some(node) {
            inner
                .failovers
                .push((Failover::begin(node, cause, unix_ms()), Instant::now()));
            inner.changes.push(LeaderChange::new(unix_ms(), None));
            drop(inner);
            self.leader.send_replace(None);
        }
    }

    /// `node` runs again (started or resumed): its answers count again.
    pub fn back(&self, node: &str) {
        self.lock().down.remove(node);
    }

    /// A round of answers: node → leads (absent: no answer).
    pub fn observe(&self, mut answers: BTreeMap<String, bool>) {
        let down = self.lock().down.clone();
        answers.retain(|n, _| !down.contains(n));
        let claimants: Vec<&String> = answers
            .iter()
            .filter(|(_, l)| **l)
            .map(|(n, _)| n)
            .collect();
        let all: Vec<String> = claimants.iter().map(|n| (*n).clone()).collect();
        self.claims.send_if_modified(|c| {
            let changed = *c != all;
            *c = all;
            changed
        });
        let current = self.leader();
        let next = match claimants.as_slice() {
            [] => None,
            [one] => Some((*one).clone()),
            // Two claim to lead (an old leader that has not heard yet): keep the known one.
            many => match &current {
                Some(c) if many.contains(&c) => Some(c.clone()),
                _ => Some(many[0].clone()),
            },
        };
        let claimants: Vec<String> = claimants.into_iter().cloned().collect();
        let mut inner = self.lock();
        inner.roles = answers;
        // Windows with more than one claimant, with everyone who claimed in them.
        let open = inner.split_brains.last_mut().filter(|w| w.to_ms.is_none());
        match (open, claimants.len() > 1) {
            (Some(w), true) => {
                for n in &claimants {
                    if !w.nodes.contains(n) {
                        w.nodes.push(n.clone());
                    }
                }
            }
            (Some(w), false) => w.to_ms = Some(unix_ms()),
            (None, true) => inner
                .split_brains
                .push(troupe_spec::SplitBrain::new(unix_ms(), claimants.clone())),
            (None, false) => {}
        }
        if next != current {
            inner
                .changes
                .push(LeaderChange::new(unix_ms(), next.clone()));
            if let Some(new) = &next {
                let down = inner.down.clone();
                for (f, started) in inner.failovers.iter_mut() {
                    // Ended by another leader, or by the old one once troupe brought it back
                    // (a restarted single leader, a resumed node that wins again).
                    if f.to.is_none() && (&f.from != new || !down.contains(&f.from)) {
                        f.to = Some(new.clone());
                        f.ms = Some(started.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
            drop(inner);
            self.leader.send_replace(next);
        }
    }

    pub fn status(&self) -> ClusterStatus {
        let inner = self.lock();
        let mut s = ClusterStatus::default();
        s.name = self.name.clone();
        s.has_role_probe = self.has_role_probe;
        s.leader = self.leader();
        s.leaders = self.claims();
        s.split_brains = inner.split_brains.clone();
        s.formation_ms = inner.formation_ms;
        s.leader_changes = inner.changes.clone();
        s.failovers = inner.failovers.iter().map(|(f, _)| f.clone()).collect();
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_status_says_who_leads() {
        let leader = r#"{"header":{"member_id":"7"},"leader":"7"}"#;
        let follower = r#"{"header":{"member_id":"8"},"leader":"7"}"#;
        let rule = RoleRule::Equals("/header/member_id".into());
        assert!(is_leader(leader, Some("/leader"), &rule).unwrap());
        assert!(!is_leader(follower, Some("/leader"), &rule).unwrap());
        assert!(is_leader("x", Some("/leader"), &rule).is_err());
        let re = RoleRule::Matches(regex::Regex::new("^n-2$").unwrap());
        assert!(is_leader(r#"{"meta":{"leader":"n-2"}}"#, Some("/meta/leader"), &re).unwrap());
    }

    #[test]
    fn failover_is_timed_from_acting_on_the_leader_to_a_new_one() {
        let live = ClusterLive::new("main", true);
        live.observe(BTreeMap::from([("a".into(), true), ("b".into(), false)]));
        assert_eq!(live.leader().as_deref(), Some("a"));
        live.acting_on("b", "kill");
        assert!(live.status().failovers.is_empty(), "b does not lead");
        live.acting_on("a", "kill");
        assert_eq!(live.leader(), None, "a killed leader stops leading at once");
        // A round that started before the kill still says `a`: it no longer counts.
        live.observe(BTreeMap::from([("a".into(), true), ("c".into(), false)]));
        assert_eq!(live.leader(), None);
        assert!(live.status().failovers[0].to.is_none());
        live.observe(BTreeMap::from([("c".into(), true)]));
        let s = live.status();
        assert_eq!(s.failovers.len(), 1);
        assert_eq!(s.failovers[0].to.as_deref(), Some("c"));
        assert!(s.failovers[0].ms.is_some());
        let seen: Vec<Option<&str>> = s
            .leader_changes
            .iter()
            .map(|c| c.leader.as_deref())
            .collect();
        assert_eq!(seen, [Some("a"), None, Some("c")]);
        // Started again, `a` may lead again.
        live.back("a");
        live.observe(BTreeMap::from([("a".into(), true), ("c".into(), false)]));
        assert_eq!(live.leader().as_deref(), Some("a"));
    }
}
