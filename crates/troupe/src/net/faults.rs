//! The run's network faults: the active ones with their rules, and a record of every fault
//! with its start and end.
//!
//! Changes are serialised by an async lock, so a second fault request waits without holding a
//! runtime thread; every system call (the journal's fsync, `nft`, `tc`) runs on a blocking
//! thread. Each fault is written to `<state-dir>/network.journal` before it is applied, and
//! marked aborted there if applying it fails, so the journal never shows a fault that never
//! was.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::json;
use troupe_spec::FaultRecord;

use super::plan::FaultPlan;
use super::{NetworkBackend, Rule};
use crate::error::Error;

/// The faults of one run and the backends that apply them.
pub struct Faults {
    backends: Vec<Arc<dyn NetworkBackend>>,
    journal: PathBuf,
    /// Seeds jitter and loss of every degrade that brings no seed of its own (plus its id).
    seed: u64,
    active: tokio::sync::Mutex<Active>,
    records: Mutex<Vec<FaultRecord>>,
}

#[derive(Default)]
struct Active {
    next: u32,
    faults: Vec<(u32, Vec<Rule>)>,
}

impl Active {
    fn flat(&self) -> Vec<(u32, Rule)> {
        self.faults
            .iter()
            .flat_map(|(id, rules)| rules.iter().map(move |r| (*id, r.clone())))
            .collect()
    }
}

/// Runs blocking work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

impl Faults {
    pub fn new(backends: Vec<Arc<dyn NetworkBackend>>, journal: PathBuf, seed: u64) -> Faults {
        Faults {
            backends,
            journal,
            seed,
            active: tokio::sync::Mutex::new(Active::default()),
            records: Mutex::new(Vec::new()),
        }
    }

    /// Whether any backend can fault anything.
    pub fn available(&self) -> bool {
        !self.backends.is_empty()
    }

    /// Whether some backend carries `node`'s traffic.
    pub fn can_fault(&self, node: &str) -> bool {
        self.backends.iter().any(|b| b.has(node))
    }

    /// Every fault so far, active or healed.
    pub fn records(&self) -> Vec<FaultRecord> {
        self.records.lock().expect("fault records").clone()
    }

    /// Checks, journals and applies a planned fault; returns its record.
    pub async fn inject(&self, mut plan: FaultPlan) -> Result<FaultRecord, Error> {
        if let Some(n) = plan
            .rules
            .iter()
            .flat_map(Rule::nodes)
            .find(|n| !self.can_fault(n))
        {
            return Err(Error::Refused {
                message: format!("node `{n}` runs on the host network, where links cannot be cut"),
                help: Some("put its cluster in `network = \"namespaces\"` or `network = \"proxies\"`; faults are never skipped silently".into()),
            });
        }
        let mut active = self.active.lock().await;
        let id = active.next + 1;
        let seed = self.seed.wrapping_add(u64::from(id));
        for r in &mut plan.rules {
            if let Rule::Degrade { params, .. } = r {
                params.seed.get_or_insert(seed);
            }
        }
        let backends = self.backends.clone();
        let rules = plan.rules.clone();
        blocking(move || backends.iter().try_for_each(|b| b.check(&rules))).await?;
        active.next = id;
        let mut record = FaultRecord::new(id, plan.description, crate::roles::unix_ms());
        if plan.rules.iter().any(|r| matches!(r, Rule::Degrade { .. })) {
            record.seed = Some(seed);
        }
        self.journal(json!({"op": "fault", "id": id, "description": record.description, "at_ms": record.started_at_ms}))
            .await?;
        active.faults.push((id, plan.rules));
        if let Err(e) = self.apply(active.flat()).await {
            active.faults.pop();
            // Put back what was there; the journal says the fault never took effect.
            let _ = self.apply(active.flat()).await;
            let _ = self
                .journal(json!({"op": "aborted", "id": id, "at_ms": crate::roles::unix_ms()}))
                .await;
            return Err(e);
        }
        self.records
            .lock()
            .expect("fault records")
            .push(record.clone());
        Ok(record)
    }

    /// Undoes one fault (`Some(id)`) or every active one; returns how many were undone.
    pub async fn heal(&self, id: Option<u32>) -> Result<usize, Error> {
        let mut active = self.active.lock().await;
        if let Some(id) = id
            && !active.faults.iter().any(|(f, _)| *f == id)
        {
            let known = self.records().iter().any(|r| r.id == id);
            return Err(Error::Target {
                message: if known {
                    format!("fault {id} is already healed")
                } else {
                    format!("there is no fault {id}")
                },
                help: Some("`troupe status` lists every fault with its id".into()),
            });
        }
        let healed: Vec<u32> = active
            .faults
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| id.is_none_or(|id| id == *f))
            .collect();
        if !self.backends.is_empty() {
            self.journal(json!({"op": "heal", "ids": healed, "at_ms": crate::roles::unix_ms()}))
                .await?;
        }
        let rest: Vec<(u32, Vec<Rule>)> = active
            .faults
            .iter()
            .filter(|(f, _)| !healed.contains(f))
            .cloned()
            .collect();
        let keep = Active {
            next: active.next,
            faults: rest,
        };
        self.apply(keep.flat()).await?;
        *active = keep;
        let now = crate::roles::unix_ms();
        for r in self
            .records
            .lock()
            .expect("fault records")
            .iter_mut()
            .filter(|r| healed.contains(&r.id) && r.healed_at_ms.is_none())
        {
            r.healed_at_ms = Some(now);
        }
        Ok(healed.len())
    }

    /// The nodes no active fault touches any more, of `nodes`.
    pub async fn untouched<'a>(&self, nodes: &'a [String]) -> Vec<&'a String> {
        let active = self.active.lock().await;
        nodes
            .iter()
            .filter(|n| {
                !active
                    .faults
                    .iter()
                    .any(|(_, rules)| rules.iter().any(|r| r.nodes().any(|x| x == *n)))
            })
            .collect()
    }

    async fn apply(&self, rules: Vec<(u32, Rule)>) -> Result<(), Error> {
        let backends = self.backends.clone();
        blocking(move || backends.iter().try_for_each(|b| b.apply(&rules))).await
    }

    async fn journal(&self, entry: serde_json::Value) -> Result<(), Error> {
        let path = self.journal.clone();
        blocking(move || super::netns::journal_append(&path, entry)).await
    }

    /// Removes every backend's network. Blocking; call once every node is gone.
    pub fn destroy(&self) {
        for b in &self.backends {
            b.destroy();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::plan::{Resolved, plan};

    /// A backend that records what it was asked to apply.
    #[derive(Default)]
    struct Fake {
        applied: Mutex<Vec<Vec<(u32, Rule)>>>,
        refuse_resets: bool,
        fail_next_apply: Mutex<bool>,
    }

    impl NetworkBackend for Fake {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn has(&self, node: &str) -> bool {
            node != "host-1"
        }
        fn check(&self, rules: &[Rule]) -> Result<(), Error> {
            if self.refuse_resets && rules.iter().any(|r| matches!(r, Rule::Reset { .. })) {
                return Err(Error::Refused {
                    message: "no resets here".into(),
                    help: None,
                });
            }
            Ok(())
        }
        fn apply(&self, rules: &[(u32, Rule)]) -> Result<(), Error> {
            if std::mem::take(&mut *self.fail_next_apply.lock().unwrap()) {
                return Err(Error::Environment {
                    message: "nft failed".into(),
                    help: None,
                });
            }
            self.applied.lock().unwrap().push(rules.to_vec());
            Ok(())
        }
        fn destroy(&self) {}
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn cut(a: &str, b: &str) -> FaultPlan {
        plan(
            &Resolved::Cut {
                from: names(&[a]),
                to: names(&[b]),
                one_way: true,
            },
            &[],
        )
        .unwrap()
    }

    fn setup(fake: Fake) -> (Arc<Fake>, Faults, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(fake);
        let faults = Faults::new(vec![fake.clone()], dir.path().join("network.journal"), 7);
        (fake, faults, dir)
    }

    #[tokio::test]
    async fn each_fault_heals_on_its_own_by_id() {
        let (fake, faults, _dir) = setup(Fake::default());
        let one = faults.inject(cut("a", "b")).await.unwrap();
        let two = faults.inject(cut("b", "c")).await.unwrap();
        assert_eq!((one.id, two.id), (1, 2));
        assert_eq!(fake.applied.lock().unwrap().last().unwrap().len(), 2);
        assert_eq!(faults.heal(Some(1)).await.unwrap(), 1);
        let now: Vec<u32> = fake
            .applied
            .lock()
            .unwrap()
            .last()
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(now, [2], "only fault 2 is still applied");
        let records = faults.records();
        assert!(records[0].healed_at_ms.is_some() && records[1].healed_at_ms.is_none());
        let again = faults.heal(Some(1)).await.unwrap_err().to_string();
        assert!(again.contains("already healed"), "{again}");
        assert!(
            faults
                .heal(Some(9))
                .await
                .unwrap_err()
                .to_string()
                .contains("no fault 9")
        );
        assert_eq!(faults.heal(None).await.unwrap(), 1);
        assert!(fake.applied.lock().unwrap().last().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_refused_fault_is_neither_journaled_nor_applied() {
        let (fake, faults, dir) = setup(Fake {
            refuse_resets: true,
            ..Fake::default()
        });
        let reset = plan(
            &Resolved::Reset {
                from: names(&["a"]),
                to: names(&["b"]),
            },
            &[],
        )
        .unwrap();
        assert!(faults.inject(reset).await.is_err());
        let host = faults
            .inject(cut("a", "host-1"))
            .await
            .unwrap_err()
            .to_string();
        assert!(host.contains("host network"), "{host}");
        assert!(fake.applied.lock().unwrap().is_empty());
        assert!(!dir.path().join("network.journal").exists());
        assert_eq!(
            faults.inject(cut("a", "b")).await.unwrap().id,
            1,
            "ids are not used up"
        );
    }

    /// The regression: a fault that failed while being applied left a journal entry with no
    /// end, and its rules half applied.
    #[tokio::test]
    async fn a_fault_that_fails_to_apply_is_rolled_back_and_journaled_as_aborted() {
        let (fake, faults, dir) = setup(Fake::default());
        faults.inject(cut("a", "b")).await.unwrap();
        *fake.fail_next_apply.lock().unwrap() = true;
        assert!(faults.inject(cut("b", "c")).await.is_err());
        let last = fake.applied.lock().unwrap().last().unwrap().clone();
        assert_eq!(last.len(), 1, "fault 1 alone is applied again");
        let journal = std::fs::read_to_string(dir.path().join("network.journal")).unwrap();
        assert!(journal.contains(r#""op":"aborted""#), "{journal}");
        assert_eq!(faults.records().len(), 1);
    }

    #[tokio::test]
    async fn degrades_get_the_runs_seed_and_it_is_recorded() {
        let (fake, faults, _dir) = setup(Fake::default());
        let p = plan(
            &Resolved::Degrade {
                nodes: names(&["a"]),
                params: crate::net::Degrade {
                    loss: 0.1,
                    ..Default::default()
                },
            },
            &[],
        )
        .unwrap();
        let rec = faults.inject(p).await.unwrap();
        assert_eq!(rec.seed, Some(8), "the run's seed plus the fault's id");
        let applied = fake.applied.lock().unwrap().last().unwrap().clone();
        assert!(matches!(&applied[0].1, Rule::Degrade { params, .. } if params.seed == Some(8)));
    }

    /// The regression: fault and heal held a std mutex while running `nft`, so a slow network
    /// command stalled the runtime thread that kill timers and probes need.
    #[test]
    fn a_slow_backend_does_not_stall_the_runtime() {
        struct Slow(std::sync::mpsc::Receiver<()>);
        impl NetworkBackend for Mutex<Slow> {
            fn name(&self) -> &'static str {
                "slow"
            }
            fn has(&self, _: &str) -> bool {
                true
            }
            fn check(&self, _: &[Rule]) -> Result<(), Error> {
                Ok(())
            }
            fn apply(&self, _: &[(u32, Rule)]) -> Result<(), Error> {
                let _ = self
                    .lock()
                    .unwrap()
                    .0
                    .recv_timeout(std::time::Duration::from_secs(10));
                Ok(())
            }
            fn destroy(&self) {}
        }
        let (release, rx) = std::sync::mpsc::channel();
        let dir = tempfile::tempdir().unwrap();
        let faults = Arc::new(Faults::new(
            vec![Arc::new(Mutex::new(Slow(rx)))],
            dir.path().join("j"),
            0,
        ));
        // One worker thread: anything blocking it stops every other task.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let f = faults.clone();
            let fault = tokio::spawn(async move { f.inject(cut("a", "b")).await });
            let began = std::time::Instant::now();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            // The backend holds out for 10 s: a timer that waited for it would show it.
            assert!(
                began.elapsed() < std::time::Duration::from_secs(5),
                "a timer fired while the backend worked"
            );
            release.send(()).unwrap();
            fault.await.unwrap().unwrap();
        });
    }
}
