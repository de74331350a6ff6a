//! A run as one self-contained HTML page: every client's calls on a timeline, the cluster's
//! nodes, faults and leaders beside them, and the verdict with the operations it is about.
//!
//! A verdict names operations by index; a person wants to *see* them among everything else
//! that happened: which node was down, which fault was on, who was leader. So the page draws
//! one lane per client process (each call a bar from call to return, coloured by outcome), one
//! lane per node (its states), fault windows shaded across all lanes, leader changes, the steps
//! of the scenario, throughput and latency over time, and highlights the operations of an
//! anomaly next to a panel that explains it in words.
//!
//! The page is shaped by two constraints. It must open from disk anywhere, years later, so it
//! is one file with no network access: the style sheet and script are inlined, and the data is
//! JSON in a `<script type="application/json">` element (with `<`, `>` and `&` escaped, so no
//! value can end the element). And it must stay usable at 100,000 operations: calls are encoded
//! as columns of numbers with a table of distinct texts (module `data`), and the lanes are drawn on
//! a `<canvas>`, with zoom, pan and a tooltip, instead of as one DOM element per call. Text a
//! reader or a test looks for (lane labels, the legend, the verdict, the anomaly panel, the
//! statistics) is ordinary markup (module `page`).
//!
//! ```
//! use troupe_spec::history::{Op, OpType};
//! use troupe_verify::html::{self, Judgement, NodeLane, NodeSpan, Timeline};
//!
//! let ops = [
//!     Op::new(0, OpType::Invoke, "write", 1_000_000).with_key("x").with_value(1),
//!     Op::new(0, OpType::Ok, "write", 3_000_000).with_key("x").with_value(1).with_node("n1"),
//! ];
//! let timeline = Timeline::new("register on one node")
//!     .with_seed(7)
//!     .with_node(NodeLane::new("n1").with_span(NodeSpan::new(0, None, "ready")))
//!     .with_fault((2_000_000, 2_500_000, "pause n1"));
//! let page = html::render(&ops, Judgement::None, &timeline).unwrap();
//! assert!(page.starts_with("<!DOCTYPE html>"));
//! assert!(page.contains("register on one node"));
//! ```

mod data;
mod page;

use serde::Serialize;
use troupe_spec::history::Op;

use crate::pair::pair;
use crate::stats;
use crate::{CheckError, FaultWindow, SetReport, Verdict};

/// Everything the report shows besides the history. All times are nanoseconds on the
/// history's clock (since the run started).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Timeline {
    /// The page's heading, such as the scenario's name.
    pub title: String,
    /// The seed the run's randomness came from, shown so the run can be repeated.
    pub seed: Option<u64>,
    /// One lane per server node, in the order given.
    pub nodes: Vec<NodeLane>,
    /// Faults, shaded across every lane; also the windows of the availability table.
    pub faults: Vec<FaultWindow>,
    /// Leader changes, in any order.
    pub leaders: Vec<LeaderMark>,
    /// The scenario's steps, in any order.
    pub steps: Vec<StepMark>,
}

impl Timeline {
    /// A timeline titled `title` with nothing on it yet.
    pub fn new(title: impl Into<String>) -> Timeline {
        Timeline {
            title: title.into(),
            ..Timeline::default()
        }
    }

    /// Sets the seed.
    pub fn with_seed(mut self, seed: u64) -> Timeline {
        self.seed = Some(seed);
        self
    }

    /// Adds a node's lane below those already added.
    pub fn with_node(mut self, node: NodeLane) -> Timeline {
        self.nodes.push(node);
        self
    }

    /// Adds a fault window, such as `(start, end, "partition n1 | n2 n3")`.
    pub fn with_fault(mut self, fault: impl Into<FaultWindow>) -> Timeline {
        self.faults.push(fault.into());
        self
    }

    /// Adds a leader change.
    pub fn with_leader(mut self, mark: LeaderMark) -> Timeline {
        self.leaders.push(mark);
        self
    }

    /// Adds a step of the scenario.
    pub fn with_step(mut self, step: StepMark) -> Timeline {
        self.steps.push(step);
        self
    }
}

/// The lane of one server node: the states it went through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeLane {
    /// The node's name, as in [`Op::node`] and [`LeaderMark::leader`].
    pub name: String,
    /// Its states, in any order; a time in no span is drawn empty.
    pub spans: Vec<NodeSpan>,
}

impl NodeLane {
    /// A lane for node `name` with no states yet.
    pub fn new(name: impl Into<String>) -> NodeLane {
        NodeLane {
            name: name.into(),
            spans: Vec::new(),
        }
    }

    /// Adds a state.
    pub fn with_span(mut self, span: NodeSpan) -> NodeLane {
        self.spans.push(span);
        self
    }
}

/// A node's state from `start` until `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeSpan {
    /// When the state began.
    pub start: u64,
    /// `None`: until the end of the report.
    pub end: Option<u64>,
    /// `starting`, `ready`, `stopped`, `killed`, `paused` or `exited`, each with its own
    /// colour; any other text is drawn in grey under its own name.
    pub state: String,
}

impl NodeSpan {
    /// The state `state` from `start` until `end` (`None`: until the end).
    pub fn new(start: u64, end: Option<u64>, state: impl Into<String>) -> NodeSpan {
        NodeSpan {
            start,
            end,
            state: state.into(),
        }
    }
}

/// From `at` on, `cluster` has the leader `leader` (`None`: no leader).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LeaderMark {
    /// When the leader changed.
    pub at: u64,
    /// Which group of nodes the leader leads (a cluster, a shard); may be empty.
    pub cluster: String,
    /// The leader's node name, or `None` while there is none.
    pub leader: Option<String>,
}

impl LeaderMark {
    /// From `at` on, `cluster` is led by `leader` (`None`: by nobody).
    pub fn new(at: u64, cluster: impl Into<String>, leader: Option<String>) -> LeaderMark {
        LeaderMark {
            at,
            cluster: cluster.into(),
            leader,
        }
    }
}

/// A step of the scenario, from `start` to `end`, and whether it passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StepMark {
    /// What the step did, in the scenario's words.
    pub name: String,
    /// When it began.
    pub start: u64,
    /// When it ended.
    pub end: u64,
    /// Whether it did what it should.
    pub passed: bool,
}

impl StepMark {
    /// The step `name`, from `start` to `end`.
    pub fn new(name: impl Into<String>, start: u64, end: u64, passed: bool) -> StepMark {
        StepMark {
            name: name.into(),
            start,
            end,
            passed,
        }
    }
}

/// The verdict a report shows, if the history was checked.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Judgement<'a> {
    /// Of [`linearizable`](crate::linearizable()): a violation's stuck calls and longest valid
    /// order are highlighted.
    Linearizable(&'a Verdict),
    /// Of [`set`](crate::set()): the adds of lost, duplicated and failed-but-read values, and
    /// the final read, are highlighted.
    Set(&'a SetReport),
    /// Not checked: the report shows the history and the run only.
    None,
}

impl<'a> From<&'a Verdict> for Judgement<'a> {
    fn from(verdict: &'a Verdict) -> Judgement<'a> {
        Judgement::Linearizable(verdict)
    }
}

impl<'a> From<&'a SetReport> for Judgement<'a> {
    fn from(report: &'a SetReport) -> Judgement<'a> {
        Judgement::Set(report)
    }
}

/// Renders the report of `ops`, judged by `judgement`, with `timeline`, as one HTML document.
///
/// Fails only if the history is malformed (see [`pair`](crate::pair())); the page needs no
/// network and no other file.
pub fn render(
    ops: &[Op],
    judgement: Judgement<'_>,
    timeline: &Timeline,
) -> Result<String, CheckError> {
    let calls = pair(ops)?;
    let stats = stats::of_calls(ops, &calls, &timeline.faults);
    let encoded = data::encode(ops, &calls, judgement, timeline, &stats);
    Ok(page::page(ops, judgement, timeline, &stats, &encoded))
}
