//! Throughput, latency and availability of a history: how the system behaved, beside whether it
//! was correct.
//!
//! A correct system can still be useless during a fault, and the numbers that show it come from
//! the same history: per operation and per node, how many calls, how many acknowledged, how long
//! they took; and inside each fault window, the share of calls that succeeded. A call belongs to
//! the window its *invocation* falls in, since that is when the client asked.
//!
//! Latency counts completed calls (`ok` and `fail`); an `info` call has no return time.
//! Throughput is acknowledged calls per second over the span of the history. Availability is
//! `ok` over all calls (`ok`, `fail`, `info`): a timeout is a failure to serve.
//!
//! The same numbers over time ([`Stats::series`]) cut the span into at most [`MAX_BUCKETS`]
//! equal buckets of whole milliseconds, few enough to plot and coarse enough that each holds
//! calls, so a fault shows as a dip in throughput and a spike in latency where it happened.

use std::collections::BTreeMap;

use serde::Serialize;
use troupe_spec::history::Op;

use crate::CheckError;
use crate::pair::{Call, Outcome, pair};

/// A period during which a fault was active, `[start, end)` in history time (ns).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FaultWindow {
    pub start: u64,
    pub end: u64,
    pub label: String,
}

impl FaultWindow {
    pub fn new(start: u64, end: u64, label: impl Into<String>) -> FaultWindow {
        FaultWindow {
            start,
            end,
            label: label.into(),
        }
    }
}

impl<S: Into<String>> From<(u64, u64, S)> for FaultWindow {
    fn from((start, end, label): (u64, u64, S)) -> FaultWindow {
        FaultWindow::new(start, end, label)
    }
}

/// Latency percentiles in nanoseconds (nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// Counts and speeds of one group of calls.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Group {
    pub calls: usize,
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// `ok` calls per second over the span of the whole history.
    pub throughput: f64,
    /// Of `ok` and `fail` calls; `None` if there are none.
    pub latency: Option<Latency>,
}

/// Availability during one window, or outside all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Availability {
    /// The window's label, or `outside` for calls invoked in no window.
    pub label: String,
    /// The window's bounds; `None` for `outside`.
    pub window: Option<(u64, u64)>,
    pub calls: usize,
    pub ok: usize,
    /// `ok / calls`; `None` when no call was invoked there.
    pub share: Option<f64>,
}

/// One slice of the history's span in [`Stats::series`]: the calls invoked in
/// `[start, start + width)`, and how long the completed ones took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Bucket {
    /// History time (ns) the bucket begins at.
    pub start: u64,
    /// Its width (ns), a whole number of milliseconds; the same for every bucket of a series.
    pub width: u64,
    /// Calls invoked in the bucket that ended `ok`.
    pub ok: usize,
    /// Calls invoked in the bucket that ended `fail`.
    pub fail: usize,
    /// Calls invoked in the bucket that ended `info`, or never ended.
    pub info: usize,
    /// Median latency (ns, nearest rank) of the `ok` and `fail` calls invoked in the bucket;
    /// `None` if there are none.
    pub p50: Option<u64>,
    /// 99th percentile latency (ns), like `p50`.
    pub p99: Option<u64>,
}

/// The most buckets a [`Stats::series`] has.
pub const MAX_BUCKETS: u64 = 120;

/// The statistics of a history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// From the first invocation to the last event, ns.
    pub span: u64,
    pub all: Group,
    /// Per operation name.
    pub by_f: BTreeMap<String, Group>,
    /// Per node that served a call (from its completion, else its invocation). Calls with no
    /// node are only in `all` and `by_f`.
    pub by_node: BTreeMap<String, Group>,
    /// One per fault window, in the order given.
    pub windows: Vec<Availability>,
    /// Calls invoked in no window.
    pub outside: Availability,
    /// The span cut into at most [`MAX_BUCKETS`] equal buckets, each at least 1 ms wide;
    /// every call is counted in the bucket of its invocation (the last bucket includes the
    /// end of the span). Empty for an empty history.
    pub series: Vec<Bucket>,
}

/// Computes the statistics of `ops`, with availability inside each of `faults` and outside.
pub fn stats(ops: &[Op], faults: &[FaultWindow]) -> Result<Stats, CheckError> {
    let calls = pair(ops)?;
    Ok(of_calls(ops, &calls, faults))
}

/// [`stats`] of calls already paired from `ops`.
pub(crate) fn of_calls(ops: &[Op], calls: &[Call], faults: &[FaultWindow]) -> Stats {
    let first = ops.iter().map(|op| op.time).min().unwrap_or(0);
    let last = ops.iter().map(|op| op.time).max().unwrap_or(0);
    let span = last.saturating_sub(first);

    let all: Vec<&Call> = calls.iter().collect();
    let mut by_f: BTreeMap<String, Vec<&Call>> = BTreeMap::new();
    let mut by_node: BTreeMap<String, Vec<&Call>> = BTreeMap::new();
    for call in calls {
        let invoke = ops.get(call.invoke);
        if let Some(op) = invoke {
            by_f.entry(op.f.clone()).or_default().push(call);
        }
        let complete = call.complete.and_then(|i| ops.get(i));
        let node = complete
            .and_then(|op| op.node.as_ref())
            .or_else(|| invoke.and_then(|op| op.node.as_ref()));
        if let Some(node) = node {
            by_node.entry(node.clone()).or_default().push(call);
        }
    }

    let windows = faults
        .iter()
        .map(|w| {
            let inside = calls
                .iter()
                .filter(|c| (w.start..w.end).contains(&c.call_time));
            availability(w.label.clone(), Some((w.start, w.end)), inside)
        })
        .collect();
    let outside = availability(
        "outside".to_string(),
        None,
        calls.iter().filter(|c| {
            !faults
                .iter()
                .any(|w| (w.start..w.end).contains(&c.call_time))
        }),
    );

    Stats {
        span,
        all: group(&all, span),
        by_f: by_f
            .into_iter()
            .map(|(k, v)| (k, group(&v, span)))
            .collect(),
        by_node: by_node
            .into_iter()
            .map(|(k, v)| (k, group(&v, span)))
            .collect(),
        windows,
        outside,
        series: series(calls, first, span),
    }
}

/// Nanoseconds in a millisecond, the unit bucket widths are rounded up to.
const MS: u64 = 1_000_000;

fn series(calls: &[Call], first: u64, span: u64) -> Vec<Bucket> {
    if calls.is_empty() {
        return Vec::new();
    }
    let width = span
        .div_ceil(MAX_BUCKETS)
        .div_ceil(MS)
        .max(1)
        .saturating_mul(MS);
    let count = span.div_ceil(width).max(1);
    let mut buckets: Vec<(Bucket, Vec<u64>)> = (0..count)
        .map(|i| {
            let bucket = Bucket {
                start: first.saturating_add(i.saturating_mul(width)),
                width,
                ok: 0,
                fail: 0,
                info: 0,
                p50: None,
                p99: None,
            };
            (bucket, Vec::new())
        })
        .collect();
    for call in calls {
        let offset = call.call_time.saturating_sub(first) / width;
        let index = usize::try_from(offset.min(count - 1)).unwrap_or(usize::MAX);
        let Some((bucket, latencies)) = buckets.get_mut(index) else {
            continue;
        };
        let counter = match call.outcome {
            Outcome::Ok => &mut bucket.ok,
            Outcome::Fail => &mut bucket.fail,
            Outcome::Info => &mut bucket.info,
        };
        *counter = counter.saturating_add(1);
        if let Some(ret) = call.return_time {
            latencies.push(ret.saturating_sub(call.call_time));
        }
    }
    buckets
        .into_iter()
        .map(|(mut bucket, mut latencies)| {
            latencies.sort_unstable();
            let l = latency(&latencies);
            bucket.p50 = l.map(|l| l.p50);
            bucket.p99 = l.map(|l| l.p99);
            bucket
        })
        .collect()
}

fn availability<'a>(
    label: String,
    window: Option<(u64, u64)>,
    calls: impl Iterator<Item = &'a Call>,
) -> Availability {
    let (mut total, mut ok) = (0usize, 0usize);
    for call in calls {
        total = total.saturating_add(1);
        if call.outcome == Outcome::Ok {
            ok = ok.saturating_add(1);
        }
    }
    Availability {
        label,
        window,
        calls: total,
        ok,
        share: (total > 0).then(|| ok as f64 / total as f64),
    }
}

fn group(calls: &[&Call], span: u64) -> Group {
    let count = |o: Outcome| calls.iter().filter(|c| c.outcome == o).count();
    let ok = count(Outcome::Ok);
    let mut latencies: Vec<u64> = calls
        .iter()
        .filter_map(|c| c.return_time.map(|r| r.saturating_sub(c.call_time)))
        .collect();
    latencies.sort_unstable();
    Group {
        calls: calls.len(),
        ok,
        fail: count(Outcome::Fail),
        info: count(Outcome::Info),
        throughput: if span == 0 {
            0.0
        } else {
            ok as f64 * 1e9 / span as f64
        },
        latency: latency(&latencies),
    }
}

/// Nearest-rank percentiles of sorted latencies.
fn latency(sorted: &[u64]) -> Option<Latency> {
    let max = *sorted.last()?;
    let at = |percent: usize| {
        // The smallest rank r with r >= percent% of n, 1-based.
        let rank = sorted.len().saturating_mul(percent).div_ceil(100).max(1);
        sorted.get(rank - 1).copied().unwrap_or(max)
    };
    Some(Latency {
        p50: at(50),
        p90: at(90),
        p99: at(99),
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use troupe_spec::history::OpType;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u64> = (1..=100).collect();
        let l = latency(&sorted).unwrap();
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50, 90, 99, 100));
        let l = latency(&[7]).unwrap();
        assert_eq!((l.p50, l.p99, l.max), (7, 7, 7));
        assert_eq!(latency(&[]), None);
    }

    #[test]
    fn groups_and_windows() {
        let op = |p: u64, kind: OpType, f: &str, t: u64| Op::new(p, kind, f, t);
        let ops = [
            op(0, OpType::Invoke, "read", 0),
            op(0, OpType::Ok, "read", 100).with_node("n1"),
            op(1, OpType::Invoke, "write", 1_000),
            op(1, OpType::Fail, "write", 1_300).with_node("n2"),
            op(2, OpType::Invoke, "write", 1_500).with_node("n2"),
            op(2, OpType::Info, "write", 1_900),
            op(3, OpType::Invoke, "read", 2_000),
            op(3, OpType::Ok, "read", 2_000_000_000),
        ];
        let s = stats(&ops, &[(1_000, 1_600, "partition").into()]).unwrap();
        assert_eq!(s.span, 2_000_000_000);
        assert_eq!(
            (s.all.calls, s.all.ok, s.all.fail, s.all.info),
            (4, 2, 1, 1)
        );
        assert!((s.all.throughput - 1.0).abs() < 1e-9);
        assert_eq!(s.by_f["read"].latency.unwrap().p50, 100);
        assert_eq!(s.by_f["write"].latency.unwrap().max, 300);
        assert_eq!(s.by_node["n2"].calls, 2);
        assert_eq!(s.by_node["n1"].ok, 1);
        assert_eq!(s.windows[0].share, Some(0.0));
        assert_eq!((s.outside.calls, s.outside.share), (2, Some(1.0)));
    }

    #[test]
    fn series_cuts_the_span_into_whole_millisecond_buckets() {
        const MS: u64 = 1_000_000;
        let op = |p: u64, kind: OpType, t: u64| Op::new(p, kind, "write", t);
        let ops = [
            op(0, OpType::Invoke, 5 * MS),
            op(0, OpType::Ok, 5 * MS + 1_000),
            op(1, OpType::Invoke, 6 * MS),
            op(1, OpType::Fail, 6 * MS + 3_000),
            op(2, OpType::Invoke, 8 * MS - 1),
            op(2, OpType::Info, 9 * MS),
            op(3, OpType::Invoke, 8 * MS),
            // The last event: the span is 360 ms, so buckets are 3 ms wide and there are 120.
            op(3, OpType::Ok, 365 * MS),
            // Invoked at the very end: counted in the last bucket, not a 121st.
            op(4, OpType::Invoke, 365 * MS),
        ];
        let s = stats(&ops, &[]).unwrap();
        assert_eq!(s.span, 360 * MS);
        assert_eq!(s.series.len(), 120);
        let bucket = |start, ok, fail, info, p50, p99| Bucket {
            start,
            width: 3 * MS,
            ok,
            fail,
            info,
            p50,
            p99,
        };
        assert_eq!(
            s.series[0],
            bucket(5 * MS, 1, 1, 1, Some(1_000), Some(3_000))
        );
        assert_eq!(
            s.series[1],
            bucket(8 * MS, 1, 0, 0, Some(357 * MS), Some(357 * MS))
        );
        assert_eq!(s.series[2], bucket(11 * MS, 0, 0, 0, None, None));
        assert_eq!(s.series[119], bucket(362 * MS, 0, 0, 1, None, None));
        let counted: usize = s.series.iter().map(|b| b.ok + b.fail + b.info).sum();
        assert_eq!(counted, s.all.calls);

        // A span shorter than a millisecond is one bucket of 1 ms; no history, no buckets.
        let s = stats(&ops[..2], &[]).unwrap();
        assert_eq!(
            s.series,
            [bucket(5 * MS, 1, 0, 0, Some(1_000), Some(1_000))].map(|b| Bucket { width: MS, ..b })
        );
        assert_eq!(stats(&[], &[]).unwrap().series, []);
        let json = serde_json::to_value(&stats(&ops[..2], &[]).unwrap().series).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"start": 5 * MS, "width": MS, "ok": 1, "fail": 0, "info": 0,
                                "p50": 1_000, "p99": 1_000}])
        );
    }
}
