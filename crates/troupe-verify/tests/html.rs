//! The HTML report in a real browser: Debian's `chromium`, headless, opens each rendered page
//! from disk, and the test reads back the DOM after the script ran, the browser's console, and
//! a screenshot.
//!
//! Checked on every page: the script finished (`<body data-rendered="ok">`), reported no error
//! (`#errors` empty, nothing on the console), drew a lane label per client process, and the
//! screenshot is a real picture. Per case: the operations of an anomaly are highlighted and
//! listed, and 100,000 calls stay small and render in time.
//!
//! Pages and screenshots stay in `target/tmp/html-report/<case>/` for a person to look at.
//! Browser runs are serialised: two cores cannot run several at once within a deadline.

#[path = "checks/sim.rs"]
mod sim;

use std::fs;
use std::io::BufReader;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use troupe_spec::history::{Format, Op, OpType, read_all};
use troupe_verify::html::{self, Judgement, LeaderMark, NodeLane, NodeSpan, StepMark, Timeline};
use troupe_verify::{Budget, Model, SetVerdict, Verdict, linearizable, set};

use sim::{Config, Rng, Store, generate};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// How long one browser run may take before its process group is killed.
const DEADLINE: Duration = Duration::from_secs(45);

/// One browser at a time.
static BROWSER: Mutex<()> = Mutex::new(());

// ---- The browser ----------------------------------------------------------------------------

fn chromium() -> PathBuf {
    let candidates = [
        PathBuf::from("/usr/bin/chromium"),
        PathBuf::from("/usr/bin/chromium-browser"),
    ];
    let found = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("chromium"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(candidates)
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "failed to find chromium, which the HTML report tests open pages in\n\
             (hint: apt-get install chromium)"
        )
    })
}

/// What a browser run left behind.
struct Run {
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs chromium headless on `page` with `args`, with its own profile in `dir`, and kills its
/// process group if it passes the deadline.
fn browse(dir: &Path, name: &str, page: &Path, args: &[String]) -> Run {
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let profile = dir.join(format!("profile-{name}"));
    let stdout_path = dir.join(format!("{name}.stdout"));
    let stderr_path = dir.join(format!("{name}.stderr"));
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-crash-reporter",
            "--disable-breakpad",
            "--no-first-run",
            "--no-default-browser-check",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout_path).unwrap())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .process_group(0);
    let started = Instant::now();
    let mut child = command.spawn().expect("start chromium");
    let group = child.id();
    let (done, exited) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done.send(());
        status
    });
    let finished = exited.recv_timeout(DEADLINE).is_ok();
    // Whatever is left of the group (helpers, or everything after the deadline) goes.
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
    let status = waiter.join().expect("join the waiter");
    let took = started.elapsed();
    let _ = fs::remove_dir_all(&profile);
    let stdout = fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        finished,
        "chromium did not finish {name} of {} within {DEADLINE:?}; stderr:\n{stderr}",
        page.display()
    );
    assert!(
        status.as_ref().is_ok_and(|s| s.success()),
        "chromium failed on {name}: {status:?}; stderr:\n{stderr}"
    );
    Run {
        stdout,
        stderr,
        took,
    }
}

/// A rendered page after the browser ran its script.
struct Rendered {
    dom: String,
    took: Duration,
}

/// `target/tmp/html-report/<case>/`, emptied.
fn case_dir(case: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("html-report")
        .join(case);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `page` to `<dir>/<name>.html` and returns the DOM after its scripts ran, and the
/// browser's console lines.
fn dump(dir: &Path, name: &str, page: &str) -> (Rendered, Vec<String>) {
    let path = dir.join(format!("{name}.html"));
    fs::write(&path, page).unwrap();
    let run = browse(
        dir,
        &format!("{name}-dom"),
        &path,
        &["--dump-dom".to_string()],
    );
    let console = run
        .stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let rendered = Rendered {
        dom: run.stdout,
        took: run.took,
    };
    (rendered, console)
}

/// Screenshots `<dir>/<name>.html` into `<dir>/<name>.png` and checks that it is a picture of
/// something.
fn screenshot(dir: &Path, name: &str) -> PathBuf {
    let shot = dir.join(format!("{name}.png"));
    browse(
        dir,
        &format!("{name}-screenshot"),
        &dir.join(format!("{name}.html")),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1600,1000".to_string(),
            "--hide-scrollbars".to_string(),
        ],
    );
    let png = fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot {}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{}: not a PNG",
        shot.display()
    );
    let (width, height) = (be32(&png[16..20]), be32(&png[20..24]));
    assert_eq!((width, height), (1600, 1000), "{}: size", shot.display());
    // A blank or unstyled page compresses to a few kB; a drawn report does not.
    assert!(
        png.len() > 40_000,
        "{}: the screenshot is suspiciously small ({} bytes)",
        shot.display(),
        png.len()
    );
    shot
}

/// Renders `page` in the browser (`target/tmp/html-report/<case>/report.html`), checks what
/// every page must satisfy, and screenshots it.
fn open(case: &str, page: &str, ops: &[Op]) -> Rendered {
    let dir = case_dir(case);

    // Self-contained: nothing the page could load from anywhere.
    for needle in ["http://", "https://", "<link", " src="] {
        assert!(
            !page.contains(needle),
            "{case}: the page contains {needle:?}"
        );
    }

    let (rendered, console) = dump(&dir, "report", page);
    let dom = &rendered.dom;
    assert!(
        console.is_empty(),
        "{case}: the page wrote to the console:\n{}",
        console.join("\n")
    );
    let body = tag(dom, "<body");
    assert!(
        body.contains("data-rendered=\"ok\""),
        "{case}: the script did not finish: {body}\n{}",
        element(dom, "id=\"errors\"")
    );
    let errors = element(dom, "id=\"errors\"");
    assert!(
        errors.ends_with("></div>"),
        "{case}: #errors is not empty: {errors}"
    );

    // A lane label per client process, and nothing else labelled as one.
    let mut processes: Vec<u64> = ops.iter().map(|op| op.process).collect();
    processes.sort_unstable();
    processes.dedup();
    assert_eq!(
        dom.matches("class=\"lane-label").count(),
        processes.len(),
        "{case}: lane labels"
    );
    for p in &processes {
        assert!(
            dom.contains(&format!("data-process=\"{p}\"")),
            "{case}: no lane label for process {p}"
        );
    }

    let shot = screenshot(&dir, "report");
    eprintln!(
        "{case}: {} ({} bytes), screenshot {}",
        dir.join("report.html").display(),
        page.len(),
        shot.display()
    );
    rendered
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().unwrap())
}

/// The opening tag that starts with `start`.
fn tag<'a>(dom: &'a str, start: &str) -> &'a str {
    let at = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in the DOM"));
    let end = dom[at..].find('>').map_or(dom.len(), |e| at + e + 1);
    &dom[at..end]
}

/// From the tag holding `attribute` to its first `</div>`: enough for an element without
/// nested divs.
fn element<'a>(dom: &'a str, attribute: &str) -> &'a str {
    let at = dom
        .find(attribute)
        .unwrap_or_else(|| panic!("no {attribute} in the DOM"));
    let start = dom[..at].rfind('<').unwrap_or(at);
    let end = dom[at..].find("</div>").map_or(dom.len(), |e| at + e + 6);
    &dom[start..end]
}

/// The value of `data-<name>` on the element with `id="<id>"`.
fn data_attribute(dom: &str, id: &str, name: &str) -> String {
    let tag = tag(dom, &format!("<section id=\"{id}\""));
    let key = format!("data-{name}=\"");
    let at = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no data-{name} on #{id}: {tag}"))
        + key.len();
    tag[at..].split('"').next().unwrap_or_default().to_string()
}

// ---- Cases ----------------------------------------------------------------------------------

/// Three nodes, one killed and restarted during a partition, leaders coming and going, steps.
fn made_up_timeline(title: &str, end: u64) -> Timeline {
    let node =
        |name: &str| NodeLane::new(name).with_span(NodeSpan::new(0, Some(150 * MS), "starting"));
    Timeline::new(title)
        .with_seed(20_240_611)
        .with_node(node("n1").with_span(NodeSpan::new(150 * MS, None, "ready")))
        .with_node(
            node("n2")
                .with_span(NodeSpan::new(150 * MS, Some(1_500 * MS), "ready"))
                .with_span(NodeSpan::new(1_500 * MS, Some(2_500 * MS), "killed"))
                .with_span(NodeSpan::new(2_500 * MS, Some(2_700 * MS), "starting"))
                .with_span(NodeSpan::new(2_700 * MS, None, "ready")),
        )
        .with_node(
            node("n3")
                .with_span(NodeSpan::new(150 * MS, Some(3_000 * MS), "ready"))
                .with_span(NodeSpan::new(3_000 * MS, Some(3_300 * MS), "paused"))
                .with_span(NodeSpan::new(3_300 * MS, None, "ready")),
        )
        .with_fault((S, 2 * S, "partition n1 | n2 n3"))
        .with_fault((1_500 * MS, 2_500 * MS, "kill n2"))
        .with_fault((3 * S, 3_300 * MS, "pause n3"))
        .with_leader(LeaderMark::new(180 * MS, "", Some("n2".to_string())))
        .with_leader(LeaderMark::new(1_500 * MS, "", None))
        .with_leader(LeaderMark::new(1_700 * MS, "", Some("n3".to_string())))
        .with_step(StepMark::new("start cluster", 0, 150 * MS, true))
        .with_step(StepMark::new("workload", 150 * MS, end, true))
        .with_step(StepMark::new("check", end, end + 50 * MS, false))
}

/// Gives each completion the node that served it, so the per-node statistics have rows.
fn assign_nodes(ops: &mut [Op]) {
    for op in ops.iter_mut().filter(|op| op.kind != OpType::Invoke) {
        op.node = Some(format!("n{}", op.process % 3 + 1));
    }
}

#[test]
fn a_non_linearizable_history_highlights_its_anomaly() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/histories/kv/c10-bad.txt");
    let file = match fs::File::open(&path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("skipping: cannot open {}: {e}", path.display());
            return;
        }
    };
    let mut ops = read_all(BufReader::new(file), Format::Jepsen).unwrap();
    // The file has no times (each line's is its index); spread it over a few seconds, which
    // keeps the order, so it sits among the made-up nodes and faults.
    for op in &mut ops {
        op.time = 200 * MS + op.time * 5 * MS;
    }
    assign_nodes(&mut ops);
    let end = ops.last().map_or(0, |op| op.time);
    let verdict = linearizable(
        &ops,
        Model::Kv,
        Budget::new(Duration::from_secs(60), 10_000_000),
    )
    .unwrap();
    let Verdict::NotLinearizable(violation) = &verdict else {
        panic!("c10-bad is not linearizable, got {verdict}");
    };
    let timeline = made_up_timeline("kv, 10 clients (porcupine c10-bad)", end);
    let page = html::render(&ops, Judgement::Linearizable(&verdict), &timeline).unwrap();
    let rendered = open("c10-bad", &page, &ops);
    let dom = &rendered.dom;

    assert!(dom.contains("data-verdict=\"not linearizable\""));
    assert!(dom.contains("<aside id=\"anomaly\""));
    // The explanation, as the verdict says it (the DOM escapes only `&`, `<` and `>` in text).
    let explanation = verdict
        .to_string()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    assert!(dom.contains(&explanation), "no explanation: {explanation}");
    for op in &violation.stuck {
        let item = format!("class=\"anomaly-op culprit\" data-op=\"{}\"", op.invoke);
        assert!(dom.contains(&item), "stuck op {} is not listed", op.invoke);
        let label = format!(
            "class=\"lane-label has-anomaly\" data-process=\"{}\"",
            op.process
        );
        assert!(dom.contains(&label), "process {} is not marked", op.process);
    }
    let highlighted: usize = data_attribute(dom, "timeline", "highlighted")
        .parse()
        .unwrap();
    assert_eq!(highlighted, violation.stuck.len() + violation.longest.len());
    // The timeline's parts and the statistics are there as text.
    for node in ["n1", "n2", "n3"] {
        assert!(
            dom.contains(&format!("data-node=\"{node}\"")),
            "node {node}"
        );
        assert!(
            dom.contains(&format!("data-group=\"node:{node}\"")),
            "stats of {node}"
        );
    }
    let interaction = interact(&page, &violation.stuck[0].invoke.to_string());
    assert!(
        interaction["tooltip"]
            .as_str()
            .is_some_and(|t| t.contains("cannot come next")),
        "{interaction}"
    );
    for text in [
        "id=\"legend\"",
        "data-group=\"all\"",
        "data-group=\"f:append\"",
        "during partition n1 | n2 n3",
        "<code class=\"seed\">20240611</code>",
        "✗ failed",
    ] {
        assert!(dom.contains(text), "missing {text}");
    }
}

/// Clicks the anomaly's first listed operation, then zooms out with the wheel over the lanes,
/// and returns what the page showed: the view before and after, and the tooltip. Screenshots
/// the result into `c10-bad-interaction/`.
fn interact(page: &str, op: &str) -> Value {
    const PROBE: &str = r#"<script>
(function () {
  const range = document.getElementById("view-range");
  const tooltip = document.getElementById("tooltip");
  const before = range.textContent;
  document.querySelector(".anomaly-op.culprit").click();
  const canvas = document.getElementById("lanes-canvas");
  const box = canvas.getBoundingClientRect();
  canvas.dispatchEvent(new WheelEvent("wheel", {
    deltaY: 200, clientX: box.left + box.width / 2, clientY: box.top + 5,
    bubbles: true, cancelable: true,
  }));
  // After the redraw, which comes at the next frame or within 100 ms.
  setTimeout(function () {
    document.body.dataset.probe = JSON.stringify({
      before: before,
      after: range.textContent,
      tooltip: tooltip.hidden ? null : tooltip.textContent,
    });
  }, 200);
})();
</script>
</body>"#;
    let dir = case_dir("c10-bad-interaction");
    let probed = page.replace("</body>", PROBE);
    let (rendered, console) = dump(&dir, "report", &probed);
    assert!(console.is_empty(), "console: {console:?}");
    let dom = &rendered.dom;
    let errors = element(dom, "id=\"errors\"");
    assert!(
        errors.ends_with("></div>"),
        "#errors is not empty: {errors}"
    );
    let body = tag(dom, "<body");
    let probe = body
        .split("data-probe=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("the probe did not run: {body}"));
    let probe = probe
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let probe: Value = serde_json::from_str(&probe).unwrap();
    assert_ne!(probe["before"], probe["after"], "the view did not change");
    let tooltip = probe["tooltip"].as_str().unwrap_or_default();
    assert!(tooltip.starts_with(&format!("op {op} ")), "{probe}");
    screenshot(&dir, "report");
    probe
}

#[test]
fn an_error_in_the_page_is_shown_on_it() {
    let ops = [
        Op::new(0, OpType::Invoke, "read", 0),
        Op::new(0, OpType::Ok, "read", MS),
    ];
    let page = html::render(&ops, Judgement::None, &Timeline::new("broken")).unwrap();
    let start = page.find("id=\"report-data\">").unwrap() + "id=\"report-data\">".len();
    let end = start + page[start..].find("</script>").unwrap();
    let broken = format!("{}{{\"truncated\": {}", &page[..start], &page[end..]);
    let dir = case_dir("broken");
    let (rendered, _console) = dump(&dir, "report", &broken);
    let body = tag(&rendered.dom, "<body");
    assert!(body.contains("data-rendered=\"error\""), "{body}");
    let errors = element(&rendered.dom, "id=\"errors\"");
    assert!(errors.contains("SyntaxError"), "{errors}");
}

#[test]
fn a_hundred_thousand_calls_stay_small_and_render_in_time() {
    let cfg = Config {
        fail_percent: 2,
        info_percent: 1,
        ..Config::new(Store::Kv, 24, 100_000, 64)
    };
    let mut ops = generate(&cfg, 7).ops;
    // The simulator ticks 1–40 ns between events; make it microseconds, as a real store's.
    for op in &mut ops {
        op.time *= 1_000;
    }
    assign_nodes(&mut ops);
    let calls = ops.iter().filter(|op| op.kind == OpType::Invoke).count();
    assert_eq!(calls, 100_000);
    let end = ops.last().map_or(0, |op| op.time);
    // Linearizable by construction (the checker's own tests hold the simulator to that).
    let verdict = Verdict::Linearizable;
    let timeline = made_up_timeline("kv, 100,000 calls", end);
    let started = Instant::now();
    let page = html::render(&ops, Judgement::Linearizable(&verdict), &timeline).unwrap();
    eprintln!(
        "rendered {} lines into {} bytes in {:?}",
        ops.len(),
        page.len(),
        started.elapsed()
    );
    assert!(
        page.len() < 8 * 1024 * 1024,
        "the page is {} bytes, over 8 MiB",
        page.len()
    );
    let rendered = open("kv-100k", &page, &ops);
    assert!(rendered.dom.contains("data-verdict=\"linearizable\""));
    assert!(!rendered.dom.contains("<aside id=\"anomaly\""));
    assert_eq!(data_attribute(&rendered.dom, "timeline", "calls"), "100000");
    let script_ms: f64 = data_attribute(&rendered.dom, "timeline", "render-ms")
        .parse()
        .unwrap();
    eprintln!(
        "browser run took {:?}; the script rendered in {script_ms:.0} ms",
        rendered.took
    );
    assert!(script_ms < 5_000.0, "the script took {script_ms} ms");
}

/// Five clients add distinct values concurrently; the store drops three acknowledged ones.
fn lossy_set(seed: u64) -> (Vec<Op>, Vec<Value>) {
    let mut rng = Rng::new(seed);
    let mut ops = Vec::new();
    let mut stored: Vec<Value> = Vec::new();
    let mut lost: Vec<Value> = Vec::new();
    let mut time = 100 * MS;
    // Per client: the value it is adding and how it will end, if it is mid-call.
    let mut running: Vec<Option<(i64, OpType)>> = vec![None; 5];
    let mut process: Vec<u64> = (0..5).collect();
    let mut next_value = 0i64;
    let mut next_process = 5u64;
    while next_value < 400 || running.iter().any(Option::is_some) {
        let c = rng.below(running.len());
        time += (1 + rng.below(3_000) as u64) * 1_000;
        match running[c].take() {
            None if next_value < 400 => {
                let value = next_value;
                next_value += 1;
                ops.push(Op::new(process[c], OpType::Invoke, "add", time).with_value(value));
                let outcome = match rng.below(100) {
                    0..=3 => OpType::Fail,
                    4..=5 => OpType::Info,
                    _ => OpType::Ok,
                };
                running[c] = Some((value, outcome));
            }
            None => {}
            Some((value, outcome)) => {
                let node = format!("n{}", c % 3 + 1);
                ops.push(
                    Op::new(process[c], outcome, "add", time)
                        .with_value(value)
                        .with_node(node),
                );
                let drop = outcome == OpType::Ok && [97, 211, 302].contains(&value);
                if drop {
                    lost.push(json!(value));
                } else if outcome == OpType::Ok || (outcome == OpType::Info && rng.percent(50)) {
                    stored.push(json!(value));
                }
                if outcome == OpType::Info {
                    process[c] = next_process;
                    next_process += 1;
                }
            }
        }
    }
    time += 5 * MS;
    ops.push(Op::new(999, OpType::Invoke, "read", time));
    ops.push(Op::new(999, OpType::Ok, "read", time + 3 * MS).with_value(json!(stored)));
    (ops, lost)
}

#[test]
fn a_set_with_lost_adds_highlights_them() {
    let (ops, lost) = lossy_set(3);
    let report = set(&ops).unwrap();
    assert_eq!(report.verdict, SetVerdict::Invalid, "{report}");
    assert_eq!(report.lost, lost);
    let end = ops.last().map_or(0, |op| op.time);
    let timeline = Timeline::new("set, 5 clients")
        .with_node(NodeLane::new("n1").with_span(NodeSpan::new(0, None, "ready")))
        .with_node(
            NodeLane::new("n2")
                .with_span(NodeSpan::new(0, Some(end / 2), "ready"))
                .with_span(NodeSpan::new(end / 2, Some(end * 2 / 3), "stopped"))
                .with_span(NodeSpan::new(end * 2 / 3, None, "ready")),
        )
        .with_node(NodeLane::new("n3").with_span(NodeSpan::new(0, Some(end), "ready")))
        .with_fault((end / 2, end * 2 / 3, "stop n2 (</script> & friends)"));
    let page = html::render(&ops, Judgement::Set(&report), &timeline).unwrap();
    let rendered = open("set-lost", &page, &ops);
    let dom = &rendered.dom;
    assert!(dom.contains("data-verdict=\"invalid\""));
    for value in &lost {
        let add = ops
            .iter()
            .position(|op| op.kind == OpType::Invoke && op.value == *value)
            .unwrap();
        let item = format!("data-op=\"{add}\"");
        let li = dom
            .find(&item)
            .map(|at| &dom[dom[..at].rfind("<li").unwrap()..at])
            .unwrap_or_else(|| panic!("the add of {value} (op {add}) is not listed"));
        assert!(li.contains("class=\"anomaly-op culprit\""), "{li}");
        assert!(
            dom.contains(&format!("add({value}) → ok")),
            "{value} in words"
        );
    }
    assert!(dom.contains("data-role=\"final-read\""));
    // A fault label that looks like markup is text, in the table and in the data.
    assert!(dom.contains("during stop n2 (&lt;/script&gt; &amp; friends)"));
}

#[test]
fn an_empty_history_still_renders() {
    let page = html::render(&[], Judgement::None, &Timeline::default()).unwrap();
    let rendered = open("empty", &page, &[]);
    assert!(rendered.dom.contains("data-verdict=\"not checked\""));
}
