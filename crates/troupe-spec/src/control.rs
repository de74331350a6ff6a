//! The control protocol: how `troupe` commands (and any other program) talk to a detached
//! supervisor over `<state-dir>/control.sock`, a Unix socket only its owner can open.
//!
//! One JSON object per line in each direction: a request, then its response. A connection may
//! carry several requests in turn. From Python:
//!
//! ```text
//! s = socket.socket(socket.AF_UNIX); s.connect(".troupe/etcd/control.sock")
//! s.sendall(b'{"op":"kill","targets":["main:leader"]}\n'); print(s.makefile().readline())
//! ```
//!
//! Requests are plain serde types, so anything that parses is not yet known to be sensible:
//! the supervisor calls [`Request::validate`] before it acts, which bounds every duration and
//! checks every fault parameter (see [`crate::fault`]), so no request can make it panic.

use serde::{Deserialize, Serialize};

use crate::Descriptor;
use crate::duration::MAX_DURATION;
use crate::fault::Degrade;

/// The socket's file name inside the state directory.
pub const SOCKET: &str = "control.sock";

/// The longest `timeout_ms` of a [`Request::Wait`]: 7 days, as [`crate::MAX_DURATION`].
pub const MAX_WAIT_MS: u64 = MAX_DURATION.as_secs() * 1000;

/// A request to the supervisor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Request {
    /// The live descriptor.
    Status,
    /// SIGKILL the targets' process groups.
    Kill { targets: Vec<String> },
    /// Stop the targets gracefully (stop signal, grace, SIGKILL).
    Stop { targets: Vec<String> },
    /// Start stopped or killed targets again and wait until ready.
    Start { targets: Vec<String> },
    /// Stop, then start.
    Restart { targets: Vec<String> },
    /// SIGSTOP the targets' process groups.
    Pause { targets: Vec<String> },
    /// SIGCONT the targets' process groups.
    Resume { targets: Vec<String> },
    /// Wait until every node (of `cluster`, or all) is ready, or until `cluster` has a leader.
    /// `timeout_ms` is at most [`MAX_WAIT_MS`].
    Wait {
        until: WaitFor,
        cluster: Option<String>,
        timeout_ms: u64,
    },
    /// Inject a network fault.
    Fault { fault: Fault },
    /// Undo one network fault, by the id its [`crate::FaultRecord`] has, or every fault when
    /// `id` is absent (`{"op":"heal"}`, as older clients send).
    Heal {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u32>,
    },
    /// Stop every node (gracefully, or with `kill` at once), then the supervisor.
    /// `{"op":"down"}` stops gracefully, as older clients expect.
    Down {
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        kill: bool,
    },
}

/// A network fault, in terms of targets (nodes, clusters, CLUSTER:SELECTOR).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Fault {
    /// Nodes in different groups cannot reach each other; nodes in no group are unaffected.
    /// A `bridge` node reaches both sides.
    Partition {
        groups: Vec<Vec<String>>,
        #[serde(default)]
        bridge: Option<String>,
    },
    /// Each target is cut from every other node (and from the host's clients with `host`).
    Isolate {
        targets: Vec<String>,
        #[serde(default)]
        host: bool,
    },
    /// Packets from `from` to `to` are dropped (and back, unless `one_way`).
    Cut {
        from: Vec<String>,
        to: Vec<String>,
        #[serde(default)]
        one_way: bool,
    },
    /// Connections from `from` to `to` are reset (RST), and new ones too, until healed.
    /// Link proxies only.
    Reset { from: Vec<String>, to: Vec<String> },
    /// The targets' outgoing traffic is delayed, jittered, lost or rate-limited (netem).
    ///
    /// The fields are the wire form, kept for compatibility; [`Fault::degrade_params`] checks
    /// them and gives the typed [`Degrade`] backends apply, and [`Fault::degrade`] builds this
    /// variant from one.
    Degrade {
        targets: Vec<String>,
        delay_ms: f64,
        #[serde(default)]
        jitter_ms: f64,
        #[serde(default)]
        loss_pct: f64,
        /// A netem rate, e.g. `1mbit`.
        #[serde(default)]
        rate: Option<String>,
    },
}

impl Request {
    /// Checks what serde cannot: a wait's timeout is at most [`MAX_WAIT_MS`], node operations
    /// name targets, a heal's id is a fault id (from 1), and a fault is one that can be
    /// applied ([`Fault::validate`]). The supervisor calls it before acting on a request.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Request::Status | Request::Down { .. } | Request::Heal { id: None } => Ok(()),
            Request::Kill { targets }
            | Request::Stop { targets }
            | Request::Start { targets }
            | Request::Restart { targets }
            | Request::Pause { targets }
            | Request::Resume { targets } => check_targets(self.op(), "targets", targets),
            Request::Wait { timeout_ms, .. } => {
                if *timeout_ms > MAX_WAIT_MS {
                    Err(format!(
                        "`timeout_ms` is at most {MAX_WAIT_MS} (7 days), found {timeout_ms}"
                    ))
                } else {
                    Ok(())
                }
            }
            Request::Heal { id: Some(0) } => {
                Err("fault ids start at 1; send {\"op\":\"heal\"} to heal every fault".into())
            }
            Request::Heal { id: Some(_) } => Ok(()),
            Request::Fault { fault } => fault.validate(),
        }
    }

    /// The request's `op`, as on the wire: `kill`, `wait`, `heal`, ...
    pub fn op(&self) -> &'static str {
        match self {
            Request::Status => "status",
            Request::Kill { .. } => "kill",
            Request::Stop { .. } => "stop",
            Request::Start { .. } => "start",
            Request::Restart { .. } => "restart",
            Request::Pause { .. } => "pause",
            Request::Resume { .. } => "resume",
            Request::Wait { .. } => "wait",
            Request::Fault { .. } => "fault",
            Request::Heal { .. } => "heal",
            Request::Down { .. } => "down",
        }
    }
}

impl Fault {
    /// Checks that the fault can be applied as written: every target list is non-empty and
    /// names no empty target, a partition has at least two groups, and a degrade's parameters
    /// are in range (see [`Fault::degrade_params`]). Targets themselves are resolved later,
    /// against the running clusters.
    pub fn validate(&self) -> Result<(), String> {
        let kind = self.kind();
        match self {
            Fault::Partition { groups, bridge } => {
                if groups.len() < 2 {
                    return Err(format!(
                        "a partition needs at least two groups, found {}",
                        groups.len()
                    ));
                }
                for (i, g) in groups.iter().enumerate() {
                    check_targets(kind, &format!("group {}", i + 1), g)?;
                }
                if bridge.as_deref().is_some_and(|b| b.trim().is_empty()) {
                    return Err(
                        "the partition's `bridge` is empty; name a node or leave it out".into(),
                    );
                }
                Ok(())
            }
            Fault::Isolate { targets, .. } => check_targets(kind, "targets", targets),
            Fault::Cut { from, to, .. } | Fault::Reset { from, to } => {
                check_targets(kind, "from", from)?;
                check_targets(kind, "to", to)
            }
            Fault::Degrade {
                targets,
                delay_ms,
                jitter_ms,
                loss_pct,
                rate,
            } => {
                check_targets(kind, "targets", targets)?;
                Degrade::from_wire(*delay_ms, *jitter_ms, *loss_pct, rate.as_deref()).map(drop)
            }
        }
    }

    /// For [`Fault::Degrade`], its parameters checked and typed: `Some(Err(..))` when one is out
    /// of range (a negative, NaN or overlong delay, a loss outside 0..=100, a rate that is not
    /// one); `None` for every other kind of fault.
    pub fn degrade_params(&self) -> Option<Result<Degrade, String>> {
        match self {
            Fault::Degrade {
                delay_ms,
                jitter_ms,
                loss_pct,
                rate,
                ..
            } => Some(Degrade::from_wire(
                *delay_ms,
                *jitter_ms,
                *loss_pct,
                rate.as_deref(),
            )),
            _ => None,
        }
    }

    /// A [`Fault::Degrade`] of `targets` with checked parameters, in the wire form.
    pub fn degrade(targets: Vec<String>, params: &Degrade) -> Fault {
        Fault::Degrade {
            targets,
            // At most 60 s in nanoseconds, well within f64's exact integers.
            delay_ms: params.delay().as_nanos() as f64 / 1e6,
            jitter_ms: params.jitter().as_nanos() as f64 / 1e6,
            loss_pct: params.loss().get(),
            rate: params.rate().map(|r| r.to_string()),
        }
    }

    /// The fault's `kind`, as on the wire: `partition`, `isolate`, `cut`, `reset`, `degrade`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Partition { .. } => "partition",
            Fault::Isolate { .. } => "isolate",
            Fault::Cut { .. } => "cut",
            Fault::Reset { .. } => "reset",
            Fault::Degrade { .. } => "degrade",
        }
    }
}

/// A list of targets is not empty and has no empty target.
fn check_targets(op: &str, field: &str, targets: &[String]) -> Result<(), String> {
    if targets.is_empty() {
        return Err(format!(
            "`{op}` needs at least one target in `{field}`: a node, a cluster or CLUSTER:SELECTOR"
        ));
    }
    if targets.iter().any(|t| t.trim().is_empty()) {
        return Err(format!(
            "`{op}` has an empty target in `{field}`: name a node, a cluster or CLUSTER:SELECTOR"
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WaitFor {
    Ready,
    /// Exactly one node claims to lead (several: a split brain, which fails the wait).
    Leader,
    /// At least one node claims to lead, split brain or not: for a test that looks at the
    /// claimants itself. The answer's `leader` is the first, `detail` lists every claimant.
    AnyLeader,
}

/// The supervisor's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[non_exhaustive]
pub struct Response {
    pub ok: bool,
    /// What went wrong, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The request itself was wrong (a target that names nothing, a malformed request), as
    /// opposed to an operation that failed: `troupe` exits 2 for these.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invalid: bool,
    /// The nodes an operation acted on, after resolving targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// What was done, for people (e.g. the fault's description).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The leader, for `wait leader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// The live descriptor, for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Descriptor>,
}

impl Response {
    pub fn ok() -> Response {
        Response {
            ok: true,
            ..Response::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(message.into()),
            ..Response::default()
        }
    }

    /// An error in the request itself (see [`Response::invalid`]).
    pub fn invalid(message: impl Into<String>) -> Response {
        Response {
            invalid: true,
            ..Response::error(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Request {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn round_trip(r: &Request) {
        let json = serde_json::to_string(r).unwrap();
        assert_eq!(&parse(&json), r, "{json}");
    }

    #[test]
    fn every_request_round_trips_through_json() {
        let targets = vec!["main:leader".to_string()];
        for r in [
            Request::Status,
            Request::Kill {
                targets: targets.clone(),
            },
            Request::Restart {
                targets: targets.clone(),
            },
            Request::Wait {
                until: WaitFor::Leader,
                cluster: Some("main".into()),
                timeout_ms: 5000,
            },
            Request::Heal { id: None },
            Request::Heal { id: Some(2) },
            Request::Down { kill: false },
            Request::Fault {
                fault: Fault::Partition {
                    groups: vec![targets.clone(), vec!["main:followers".into()]],
                    bridge: None,
                },
            },
            Request::Fault {
                fault: Fault::degrade(
                    targets.clone(),
                    &Degrade::from_wire(50.0, 5.0, 1.5, Some("1mbit")).unwrap(),
                ),
            },
        ] {
            round_trip(&r);
        }
    }

    #[test]
    fn a_heal_without_an_id_still_heals_everything() {
        // What clients before fault ids sent, and still send to heal all.
        assert_eq!(parse(r#"{"op":"heal"}"#), Request::Heal { id: None });
        assert_eq!(
            parse(r#"{"op":"heal","id":2}"#),
            Request::Heal { id: Some(2) }
        );
        assert_eq!(
            serde_json::to_string(&Request::Heal { id: None }).unwrap(),
            r#"{"op":"heal"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"heal","id":-1}"#).is_err());
        assert!(Request::Heal { id: Some(0) }.validate().is_err());
        assert!(Request::Heal { id: Some(1) }.validate().is_ok());
    }

    #[test]
    fn a_wait_longer_than_seven_days_is_refused() {
        // Overflowed `Instant + timeout` in the supervisor before waits were bounded.
        let r = parse(r#"{"op":"wait","until":"ready","timeout_ms":18446744073709551615}"#);
        insta::assert_snapshot!(
            r.validate().unwrap_err(),
            @"`timeout_ms` is at most 604800000 (7 days), found 18446744073709551615"
        );
        let wait = |timeout_ms| Request::Wait {
            until: WaitFor::Ready,
            cluster: None,
            timeout_ms,
        };
        assert!(wait(MAX_WAIT_MS).validate().is_ok());
        assert!(wait(0).validate().is_ok());
        assert!(wait(MAX_WAIT_MS + 1).validate().is_err());
    }

    #[test]
    fn degrade_parameters_that_cannot_be_applied_are_refused() {
        let degrade = |delay_ms: f64, loss_pct: f64, rate: Option<&str>| Fault::Degrade {
            targets: vec!["main-1".into()],
            delay_ms,
            jitter_ms: 0.0,
            loss_pct,
            rate: rate.map(str::to_string),
        };
        // From JSON: a negative delay parses, and only validation stops it.
        let r = parse(
            r#"{"op":"fault","fault":{"kind":"degrade","targets":["main-1"],"delay_ms":-5}}"#,
        );
        assert!(r.validate().unwrap_err().contains("`delay_ms`"));
        // From a Rust caller: NaN and huge values.
        for bad in [
            degrade(f64::NAN, 0.0, None),
            degrade(1e308, 0.0, None),
            degrade(-1.0, 0.0, None),
            degrade(10.0, 150.0, None),
            degrade(10.0, f64::NAN, None),
            degrade(10.0, 0.0, Some("fast")),
            degrade(10.0, 0.0, Some("0bit")),
            degrade(0.0, 0.0, None),
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
            assert!(matches!(bad.degrade_params(), Some(Err(_))), "{bad:?}");
            assert!(Request::Fault { fault: bad }.validate().is_err());
        }
        let ok = degrade(50.0, 1.5, Some("10mbps"));
        assert!(ok.validate().is_ok());
        let params = ok.degrade_params().unwrap().unwrap();
        assert_eq!(params.rate().unwrap().bytes_per_second(), 10_000_000);
        // Typed → wire → typed keeps the values.
        assert_eq!(
            Fault::degrade(vec!["main-1".into()], &params).degrade_params(),
            Some(Ok(params))
        );
        assert_eq!(
            Fault::Isolate {
                targets: vec!["a".into()],
                host: false
            }
            .degrade_params(),
            None
        );
    }

    #[test]
    fn faults_and_operations_without_targets_are_refused() {
        let s = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let errors: Vec<String> = [
            Request::Kill { targets: vec![] },
            Request::Start { targets: s(&[""]) },
            Request::Fault {
                fault: Fault::Partition {
                    groups: vec![s(&["a"])],
                    bridge: None,
                },
            },
            Request::Fault {
                fault: Fault::Partition {
                    groups: vec![s(&["a"]), vec![]],
                    bridge: None,
                },
            },
            Request::Fault {
                fault: Fault::Partition {
                    groups: vec![s(&["a"]), s(&["b"])],
                    bridge: Some(" ".into()),
                },
            },
            Request::Fault {
                fault: Fault::Isolate {
                    targets: vec![],
                    host: true,
                },
            },
            Request::Fault {
                fault: Fault::Cut {
                    from: s(&["a"]),
                    to: vec![],
                    one_way: false,
                },
            },
            Request::Fault {
                fault: Fault::Reset {
                    from: vec![],
                    to: s(&["b"]),
                },
            },
            Request::Fault {
                fault: Fault::Degrade {
                    targets: vec![],
                    delay_ms: 10.0,
                    jitter_ms: 0.0,
                    loss_pct: 0.0,
                    rate: None,
                },
            },
        ]
        .iter()
        .map(|r| r.validate().unwrap_err())
        .collect();
        insta::assert_snapshot!(errors.join("\n"));
        assert!(Request::Status.validate().is_ok());
        assert!(Request::Down { kill: true }.validate().is_ok());
        assert!(
            Request::Kill {
                targets: s(&["main:leader"])
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn a_fault_record_keeps_its_seed_and_older_records_still_parse() {
        let old =
            r#"{"id":1,"description":"isolate main-1","started_at_ms":5,"healed_at_ms":null}"#;
        let record: crate::FaultRecord = serde_json::from_str(old).unwrap();
        assert_eq!(record.seed, None);
        assert!(!serde_json::to_string(&record).unwrap().contains("seed"));
        let seeded = crate::FaultRecord::new(2, "degrade main-2".into(), 7).with_seed(42);
        let json = serde_json::to_string(&seeded).unwrap();
        assert!(json.contains(r#""seed":42"#), "{json}");
        assert_eq!(
            serde_json::from_str::<crate::FaultRecord>(&json).unwrap(),
            seeded
        );
    }
}
