//! The run's descriptor: what `cluster.json`, `troupe status` and the library report about
//! every node and cluster. Built from live state in memory; written atomically to disk on a
//! blocking thread, one write at a time.

use troupe_spec::{Descriptor, NodeDescriptor, NodeState};

use crate::engine::Engine;
use crate::error::Error;
use crate::plan::NodePlan;
use crate::runtime::Status;

impl Engine {
    pub fn descriptor(&self) -> Descriptor {
        let nodes: Vec<NodeDescriptor> = self
            .nodes
            .iter()
            .map(|n| {
                let status = n.status();
                let mut d = node_descriptor(&n.plan, status.as_ref());
                d.events = n.events();
                if let Some(links) = &self.links {
                    d.links = links.addrs_of(&n.plan.name);
                }
                let live = &self.live[&n.plan.cluster];
                if d.pid.is_some() && d.state != NodeState::Paused {
                    d.role = live
                        .role_of(&n.plan.name)
                        .map(|l| if l { "leader" } else { "follower" }.to_string());
                }
                d
            })
            .collect();
        let mut d: Descriptor = serde_json::from_value(serde_json::json!({
            "name": self.plan.name,
            "ca": self.plan.ca,
            "cas": self.plan.cas.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "ca_bundle": self.plan.ca_bundle,
            "state_dir": self.state.path,
            "supervisor_pid": std::process::id(),
            "supervisor_start_time": crate::sys::start_time(std::process::id()),
            "rootless": crate::net::userns::entered(),
            "clusters": [],
            "faults": [],
            "nodes": [],
        }))
        .expect("descriptor skeleton");
        d.clusters = self
            .plan
            .clusters
            .iter()
            .map(|c| self.live[&c.name].status())
            .collect();
        d.faults = self.faults.records();
        d.nodes = nodes;
        d
    }

    /// Writes `cluster.json` as it is now.
    pub async fn persist(&self) -> Result<(), Error> {
        let _one_at_a_time = self.persisting.lock().await;
        let json = serde_json::to_vec_pretty(&self.descriptor()).expect("descriptor serialises");
        let dir = self.state.path.clone();
        tokio::task::spawn_blocking(move || {
            crate::state::write_atomic(&dir, "cluster.json", &json)
        })
        .await
        .map_err(|e| Error::Environment {
            message: format!("failed to write cluster.json: {e}"),
            help: None,
        })??;
        Ok(())
    }

    /// [`Engine::persist`], logging instead of failing: for after an operation that succeeded.
    pub async fn persist_quietly(&self) {
        if let Err(e) = self.persist().await {
            tracing::warn!("cannot write the descriptor: {e}");
        }
    }
}

fn node_descriptor(plan: &NodePlan, status: Option<&Status>) -> NodeDescriptor {
    let ready_ms = status.and_then(|s| {
        s.ready_at
            .map(|r| (r - s.spawned_at).as_secs_f64() * 1000.0)
    });
    serde_json::from_value(serde_json::json!({
        "name": plan.name,
        "cluster": plan.cluster,
        "index": plan.index,
        "pid": status.filter(|s| s.running()).map(|s| s.pid),
        "state": status.map_or(NodeState::Stopped, |s| s.state),
        "host": plan.host,
        "ports": plan.ports,
        "urls": plan.urls,
        "addrs": plan.ports.iter().map(|(k, v)| (k.clone(), format!("{}:{v}", crate::plan::url_host(&plan.host)))).collect::<std::collections::BTreeMap<_, _>>(),
        "data_dir": plan.data_dir,
        "log": plan.log,
        "tls": plan.tls,
        "time_to_ready_ms": ready_ms,
        "exit": status.and_then(|s| s.exit.clone()),
        "start_time": status.filter(|s| s.running()).and_then(|s| crate::sys::start_time(s.pid)),
    }))
    .expect("node descriptor")
}
