//! The report's markup: everything a reader (or a test) finds as text, written out here so it
//! reads without the script: the heading, the verdict, the legend, the anomaly panel and the
//! statistics. The script ([`SCRIPT`]) draws the lanes and plots into the empty containers.
//!
//! Every text from the history or the timeline goes through [`escape`].

use std::fmt::Write as _;

use troupe_spec::history::Op;

use super::data::{Encoded, Highlight, Role, truncate};
use super::{Judgement, Timeline};
use crate::set::SetVerdict;
use crate::stats::{Group, Stats};
use crate::{SetReport, Verdict};

/// The style sheet, inlined into the page.
const STYLE: &str = include_str!("report.css");
/// The script that shows errors in `#errors`, inlined before [`SCRIPT`].
const ERRORS: &str = include_str!("errors.js");
/// The script that draws the timeline, inlined into the page.
const SCRIPT: &str = include_str!("report.js");

/// How many operations of one role the panel lists; the timeline outlines all of them.
const LISTED: usize = 100;
/// How many operations at the end of the longest valid order the panel lists.
const LONGEST_LISTED: usize = 8;
/// Longest description of an operation in the panel, in characters (a final read can hold
/// every element of a big set).
const PANEL_TEXT: usize = 240;

/// Escapes text for HTML content and quoted attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How a verdict looks: a class for its colour, a short name, and its sentence.
struct Badge {
    class: &'static str,
    name: &'static str,
    text: String,
    anomaly: bool,
}

fn badge(judgement: Judgement<'_>) -> Badge {
    let (class, name, anomaly) = match judgement {
        Judgement::Linearizable(Verdict::Linearizable) => ("good", "linearizable", false),
        Judgement::Linearizable(Verdict::NotLinearizable(_)) => ("bad", "not linearizable", true),
        Judgement::Linearizable(_) => ("unknown", "unknown", false),
        Judgement::Set(SetReport {
            verdict: SetVerdict::Valid,
            ..
        }) => ("good", "valid", false),
        Judgement::Set(SetReport {
            verdict: SetVerdict::Invalid,
            ..
        }) => ("bad", "invalid", true),
        Judgement::Set(_) => ("unknown", "unknown", false),
        Judgement::None => ("none", "not checked", false),
    };
    let text = match judgement {
        Judgement::Linearizable(v) => v.to_string(),
        Judgement::Set(r) => r.to_string(),
        Judgement::None => "The history was not checked.".to_string(),
    };
    Badge {
        class,
        name,
        text,
        anomaly,
    }
}

/// The whole document.
pub(super) fn page(
    ops: &[Op],
    judgement: Judgement<'_>,
    timeline: &Timeline,
    stats: &Stats,
    encoded: &Encoded,
) -> String {
    let badge = badge(judgement);
    let title = if timeline.title.is_empty() {
        "troupe report"
    } else {
        timeline.title.as_str()
    };
    let mut out = String::with_capacity(
        encoded.json.len() + STYLE.len() + ERRORS.len() + SCRIPT.len() + 16_384,
    );
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · troupe</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        escape(title)
    );

    // Heading and verdict.
    let _ = write!(
        out,
        "<header class=\"page-head\">\n<div class=\"titles\">\n<h1>{}</h1>\n<p class=\"meta\">{}</p>\n</div>\n\
         <div id=\"verdict\" class=\"verdict verdict-{}\" data-verdict=\"{}\">\
         <span class=\"verdict-name\">{}</span><span class=\"verdict-text\" title=\"{}\">{}</span></div>\n\
         </header>\n",
        escape(title),
        meta(timeline, stats, encoded),
        badge.class,
        escape(badge.name),
        escape(badge.name),
        escape(&badge.text),
        escape(&badge.text),
    );
    out.push_str(
        "<div id=\"errors\" role=\"alert\" hidden></div>\n<noscript><p class=\"noscript\">The \
         timeline needs JavaScript; the verdict and the statistics below do not.</p></noscript>\n",
    );

    // The timeline, and the anomaly beside it.
    let _ = writeln!(
        out,
        "<main class=\"layout{}\">",
        if badge.anomaly { " with-panel" } else { "" }
    );
    timeline_section(&mut out, judgement, encoded, badge.anomaly);
    if badge.anomaly {
        anomaly_panel(&mut out, ops, judgement, &badge, &encoded.highlights);
    }
    out.push_str("</main>\n");

    stats_section(&mut out, stats);
    if !timeline.steps.is_empty() {
        steps_section(&mut out, timeline);
    }

    let _ = write!(
        out,
        "<script>\n{ERRORS}</script>\n<script type=\"application/json\" id=\"report-data\">{}</script>\n\
         <script>\n{SCRIPT}</script>\n\
         </body>\n</html>\n",
        encoded.json
    );
    out
}

fn meta(timeline: &Timeline, stats: &Stats, encoded: &Encoded) -> String {
    let mut parts = vec![
        format!(
            "{} call{} by {} client process{}",
            encoded.calls,
            plural(encoded.calls, "s"),
            encoded.processes,
            plural(encoded.processes, "es")
        ),
        format!(
            "{} node{}",
            timeline.nodes.len(),
            plural(timeline.nodes.len(), "s")
        ),
        format!(
            "{} fault{}",
            timeline.faults.len(),
            plural(timeline.faults.len(), "s")
        ),
        format!("history span {}", duration(stats.span)),
    ];
    if let Some(seed) = timeline.seed {
        parts.push(format!("seed <code class=\"seed\">{seed}</code>"));
    }
    parts.join(" · ")
}

fn plural(n: usize, suffix: &'static str) -> &'static str {
    if n == 1 { "" } else { suffix }
}

fn timeline_section(out: &mut String, judgement: Judgement<'_>, encoded: &Encoded, anomaly: bool) {
    out.push_str(
        "<section id=\"timeline\" class=\"card timeline\" aria-label=\"timeline\">\n\
         <div class=\"toolbar\">\n\
         <button type=\"button\" id=\"zoom-in\" title=\"zoom in (+)\">+</button>\
         <button type=\"button\" id=\"zoom-out\" title=\"zoom out (−)\">−</button>\
         <button type=\"button\" id=\"zoom-reset\" title=\"show everything (0)\">all</button>",
    );
    if anomaly && !encoded.highlights.is_empty() {
        out.push_str(
            "<button type=\"button\" id=\"zoom-anomaly\" class=\"anomaly-button\">anomaly</button>",
        );
    }
    out.push_str(
        "\n<span id=\"view-range\" class=\"view-range\"></span>\
         <span class=\"hint\">wheel: zoom · drag: pan · wheel over the labels: scroll · \
         click a bar: details</span>\n</div>\n",
    );
    legend(out, anomaly.then_some(judgement));
    out.push_str(
        "<div class=\"tl-row tl-head\"><div id=\"head-labels\" class=\"labels\"></div>\
         <div class=\"canvas-col\"><canvas id=\"head-canvas\"></canvas></div></div>\n\
         <div id=\"lanes-scroll\" class=\"lanes-scroll\"><div id=\"lanes-inner\" class=\"tl-row\">\
         <div id=\"lane-labels\" class=\"labels\"></div>\
         <div class=\"canvas-col\"><canvas id=\"lanes-canvas\"></canvas></div></div></div>\n\
         <div class=\"tl-row tl-plots\"><div id=\"plot-labels\" class=\"labels\"></div>\
         <div class=\"canvas-col\"><canvas id=\"plots-canvas\"></canvas></div></div>\n\
         <div id=\"tooltip\" class=\"tooltip\" hidden></div>\n</section>\n",
    );
}

/// The legend; with an anomaly, its outlines too, named for the kind of check.
fn legend(out: &mut String, anomaly: Option<Judgement<'_>>) {
    let mut items: Vec<(&str, &str, &str)> = vec![
        ("ok", "sw-ok", "ok"),
        ("fail", "sw-fail", "fail"),
        ("info", "sw-info", "info (outcome unknown, open-ended)"),
    ];
    match anomaly {
        Some(Judgement::Linearizable(_)) => {
            items.push(("culprit", "sw-culprit", "cannot come next"));
            items.push(("context", "sw-context", "longest valid order"));
        }
        Some(Judgement::Set(_)) => {
            items.push(("culprit", "sw-culprit", "involved in the anomaly"));
            items.push(("context", "sw-context", "final read"));
        }
        _ => {}
    }
    items.extend([
        ("fault", "sw-fault", "fault window"),
        ("leader", "sw-leader", "leader change"),
        ("step-passed", "sw-step-passed", "step passed"),
        ("step-failed", "sw-step-failed", "step failed"),
        ("starting", "sw-starting", "node starting"),
        ("ready", "sw-ready", "ready"),
        ("paused", "sw-paused", "paused"),
        ("stopped", "sw-stopped", "stopped"),
        ("killed", "sw-killed", "killed"),
        ("exited", "sw-exited", "exited"),
    ]);
    out.push_str("<ul id=\"legend\" class=\"legend\">");
    for (key, swatch, label) in items {
        let _ = write!(
            out,
            "<li class=\"legend-item\" data-key=\"{key}\"><i class=\"sw {swatch}\"></i>{label}</li>"
        );
    }
    out.push_str("</ul>\n");
}

fn anomaly_panel(
    out: &mut String,
    ops: &[Op],
    judgement: Judgement<'_>,
    badge: &Badge,
    highlights: &[Highlight],
) {
    let _ = write!(
        out,
        "<aside id=\"anomaly\" class=\"card anomaly\" aria-label=\"anomaly\">\n<h2>Anomaly</h2>\n\
         <p class=\"explanation\">{}</p>\n",
        escape(&badge.text)
    );
    if !highlights.is_empty() {
        out.push_str(
            "<h3>Operations involved</h3>\n<p class=\"note\">Outlined on the timeline; click one \
             to go to it.</p>\n<ol class=\"anomaly-ops\">\n",
        );
    }
    let mut roles: Vec<Role> = Vec::new();
    for h in highlights {
        if !roles.contains(&h.role) {
            roles.push(h.role);
        }
    }
    for role in roles {
        let of_role: Vec<&Highlight> = highlights.iter().filter(|h| h.role == role).collect();
        // The end of the longest order is what leads to the stuck calls; its start is context.
        let (shown, skipped): (&[&Highlight], usize) = if role == Role::Longest {
            let skip = of_role.len().saturating_sub(LONGEST_LISTED);
            (of_role.get(skip..).unwrap_or(&[]), skip)
        } else {
            (of_role.get(..LISTED).unwrap_or(&of_role), 0)
        };
        if skipped > 0 {
            let _ = writeln!(
                out,
                "<li class=\"anomaly-more\">… {skipped} earlier operation{} of the longest valid \
                 order</li>",
                plural(skipped, "s")
            );
        }
        for h in shown {
            let _ = writeln!(
                out,
                "<li class=\"anomaly-op {}\" data-op=\"{}\" data-call=\"{}\" data-role=\"{}\">\
                 <span class=\"op-index\">op {}</span> <code>{}</code> \
                 <span class=\"role\">{}</span></li>",
                if role.culprit() { "culprit" } else { "context" },
                h.op,
                h.call,
                role.name(),
                h.op,
                escape(&truncate(&h.text, PANEL_TEXT)),
                escape(role.meaning()),
            );
        }
        let hidden = of_role.len().saturating_sub(shown.len() + skipped);
        if hidden > 0 {
            let _ = writeln!(
                out,
                "<li class=\"anomaly-more\">… and {hidden} more ({})</li>",
                escape(role.meaning())
            );
        }
    }
    if !highlights.is_empty() {
        out.push_str("</ol>\n");
    }
    if let Judgement::Set(report) = judgement
        && !report.unexpected.is_empty()
    {
        out.push_str("<h3>Values read but never added</h3>\n<ul class=\"anomaly-values\">\n");
        for value in report.unexpected.iter().take(LISTED) {
            let _ = writeln!(out, "<li><code>{}</code></li>", escape(&value.to_string()));
        }
        if report.unexpected.len() > LISTED {
            let _ = writeln!(
                out,
                "<li class=\"anomaly-more\">… and {} more</li>",
                report.unexpected.len() - LISTED
            );
        }
        out.push_str("</ul>\n");
    }
    if let Judgement::Linearizable(Verdict::NotLinearizable(v)) = judgement {
        let key = v.key.as_deref().unwrap_or("(none)");
        let on_key = ops
            .iter()
            .filter(|op| op.key.as_deref() == v.key.as_deref())
            .count();
        let _ = writeln!(
            out,
            "<p class=\"note\">Key <code>{}</code>: {on_key} history lines; the value after the \
             longest valid order is <code>{}</code>.</p>",
            escape(key),
            escape(&v.state.to_string())
        );
    }
    out.push_str("</aside>\n");
}

fn stats_section(out: &mut String, stats: &Stats) {
    out.push_str(
        "<section id=\"summary\" class=\"card summary\">\n<h2>Statistics</h2>\n\
         <table id=\"stats\" class=\"stats\">\n<thead><tr><th>calls of</th><th>calls</th><th>ok</th>\
         <th>fail</th><th>info</th><th>ok/s</th><th>p50</th><th>p99</th><th>max</th></tr></thead>\n",
    );
    out.push_str("<tbody class=\"all\">\n");
    group_row(out, "all", "all", &stats.all);
    out.push_str("</tbody>\n");
    for (class, heading, groups) in [
        ("by-f", "per operation", &stats.by_f),
        ("by-node", "per node (that served the call)", &stats.by_node),
    ] {
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<tbody class=\"{class}\"><tr class=\"section\"><th colspan=\"9\">{heading}</th></tr>"
        );
        for (name, group) in groups {
            let id = format!("{}:{name}", if class == "by-f" { "f" } else { "node" });
            group_row(out, &id, name, group);
        }
        out.push_str("</tbody>\n");
    }
    out.push_str("</table>\n");

    out.push_str(
        "<h3>Availability</h3>\n<table id=\"availability\" class=\"stats\">\n<thead><tr>\
         <th>calls invoked</th><th>from</th><th>to</th><th>calls</th><th>ok</th>\
         <th>ok share</th></tr></thead>\n<tbody>\n",
    );
    for a in stats.windows.iter().chain([&stats.outside]) {
        let (from, to) = match a.window {
            Some((start, end)) => (seconds(start), seconds(end)),
            None => (String::new(), String::new()),
        };
        let label = if a.window.is_some() {
            format!("during {}", escape(&a.label))
        } else {
            "outside every fault".to_string()
        };
        let _ = writeln!(
            out,
            "<tr><th>{label}</th><td>{from}</td><td>{to}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            a.calls,
            a.ok,
            a.share
                .map_or_else(|| "–".to_string(), |s| format!("{:.1} %", s * 100.0))
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn group_row(out: &mut String, id: &str, name: &str, g: &Group) {
    let latency = |pick: fn(&crate::Latency) -> u64| {
        g.latency
            .as_ref()
            .map_or_else(|| "–".to_string(), |l| duration(pick(l)))
    };
    let _ = writeln!(
        out,
        "<tr data-group=\"{}\"><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
         <td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        escape(id),
        escape(name),
        g.calls,
        g.ok,
        g.fail,
        g.info,
        g.throughput,
        latency(|l| l.p50),
        latency(|l| l.p99),
        latency(|l| l.max),
    );
}

fn steps_section(out: &mut String, timeline: &Timeline) {
    out.push_str(
        "<section id=\"steps\" class=\"card steps\">\n<h2>Steps</h2>\n<table class=\"stats\">\n\
         <thead><tr><th>step</th><th>from</th><th>to</th><th>took</th><th>result</th></tr></thead>\n\
         <tbody>\n",
    );
    let mut steps: Vec<_> = timeline.steps.iter().collect();
    steps.sort_by_key(|s| (s.start, s.end));
    for step in steps {
        let _ = writeln!(
            out,
            "<tr class=\"step {}\"><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if step.passed { "passed" } else { "failed" },
            escape(&step.name),
            seconds(step.start),
            seconds(step.end),
            duration(step.end.saturating_sub(step.start)),
            if step.passed {
                "✓ passed"
            } else {
                "✗ failed"
            },
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

/// A point in time: seconds since the run started, to the microsecond.
fn seconds(ns: u64) -> String {
    format!("{:.6} s", ns as f64 / 1e9)
}

/// A duration with three significant digits: `812 ns`, `1.25 ms`, `12.5 s`.
pub(super) fn duration(ns: u64) -> String {
    let (value, unit) = match ns {
        0..1_000 => return format!("{ns} ns"),
        // From where rounding to three digits would print 1000 of the smaller unit.
        1_000..999_500 => (ns as f64 / 1e3, "µs"),
        999_500..999_500_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn durations_keep_three_digits() {
        assert_eq!(duration(812), "812 ns");
        assert_eq!(duration(1_250_000), "1.25 ms");
        assert_eq!(duration(12_500_000_000), "12.5 s");
        assert_eq!(duration(999_999), "1.00 ms");
        assert_eq!(duration(999_499), "999 µs");
        assert_eq!(duration(250_000_000), "250 ms");
    }

    #[test]
    fn the_inlined_assets_cannot_end_their_elements() {
        for script in [ERRORS, SCRIPT] {
            assert!(!script.to_ascii_lowercase().contains("</script"));
        }
        assert!(!STYLE.to_ascii_lowercase().contains("</style"));
        // No network: nothing is fetched from anywhere.
        for asset in [ERRORS, SCRIPT, STYLE] {
            for needle in [
                "http://",
                "https://",
                "fetch(",
                "XMLHttpRequest",
                "@import",
                "url(",
            ] {
                assert!(!asset.contains(needle), "an asset contains {needle}");
            }
        }
    }
}
