// troupe report: draws a run's timeline from the JSON in #report-data onto three canvases
// (the head: axis, steps, faults, leaders, nodes; the client lanes; the plots), with zoom,
// pan and a tooltip. No network, no dependencies. Errors are shown in #errors by the small
// script before this one; a complete render sets <body data-rendered="ok">.
(function () {
  "use strict";

  const began = performance.now();
  const errorsEl = document.getElementById("errors");

  // ---- Data -------------------------------------------------------------------------------

  const D = JSON.parse(document.getElementById("report-data").textContent);
  const S = D.strings;
  const N = D.calls.lane.length;
  const P = D.processes.length;
  const cLane = D.calls.lane;
  const cKind = D.calls.kind;
  const cStart = new Float64Array(N);
  const cDur = new Float64Array(N);
  const cOp = new Float64Array(N);
  {
    let t = 0;
    let op = 0;
    for (let i = 0; i < N; i++) {
      t += D.calls.start[i];
      op += D.calls.op[i];
      cStart[i] = t;
      cDur[i] = D.calls.dur[i];
      cOp[i] = op;
    }
  }
  const historyEnd = D.history[1];
  const KIND = ["ok", "fail", "info"];

  // When a call stops occupying its lane: its return, or for info the end of the history.
  function callEnd(i) {
    if (cKind[i] === 2) return Math.max(historyEnd, cStart[i]);
    return cStart[i] + Math.max(0, cDur[i]);
  }

  // Each lane's calls, by start. A process runs one call at a time, so they do not overlap.
  const laneCalls = [];
  {
    const counts = new Int32Array(P);
    for (let i = 0; i < N; i++) counts[cLane[i]]++;
    for (let l = 0; l < P; l++) laneCalls.push(new Int32Array(counts[l]));
    const fill = new Int32Array(P);
    for (let i = 0; i < N; i++) laneCalls[cLane[i]][fill[cLane[i]]++] = i;
    for (const calls of laneCalls) {
      let sorted = true;
      for (let k = 1; k < calls.length; k++) {
        if (cStart[calls[k]] < cStart[calls[k - 1]]) { sorted = false; break; }
      }
      if (!sorted) calls.sort(function (a, b) { return cStart[a] - cStart[b] || a - b; });
    }
  }

  // Highlighted calls: role index per call (-1: none).
  const role = new Int8Array(N).fill(-1);
  const highlighted = [];
  const culpritLanes = new Set();
  for (const [call, r] of D.highlights) {
    if (call < 0 || call >= N) continue;
    role[call] = r;
    highlighted.push(call);
    if (D.roles[r].culprit) culpritLanes.add(cLane[call]);
  }

  // ---- Look ---------------------------------------------------------------------------------

  const css = getComputedStyle(document.documentElement);
  function cssColor(name) {
    return css.getPropertyValue("--" + name).trim() || "#868e96";
  }
  const COLOR = {};
  for (const name of ["ok", "fail", "info", "culprit", "context", "selected", "fault",
    "fault-edge", "fault-text", "leader", "step-passed", "step-failed", "starting", "ready",
    "paused", "stopped", "killed", "exited", "other-state", "p50", "p99", "grid", "axis",
    "lane-alt", "text", "muted"]) {
    COLOR[name] = cssColor(name);
  }
  const KIND_COLOR = [COLOR.ok, COLOR.fail, COLOR.info];
  const STATES = ["starting", "ready", "paused", "stopped", "killed", "exited"];
  function stateColor(state) {
    return STATES.includes(state) ? COLOR[state] : COLOR["other-state"];
  }
  const FONT = "11px system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif";
  const LANE_H = P > 60 ? 12 : 16;
  const AXIS_H = 24;
  const ROW_H = 18;
  const NODE_H = 18;
  const PLOT_H = 92;
  const PLOT_GAP = 12;

  // ---- Time and text ---------------------------------------------------------------------------

  const full0 = D.extent[0];
  const full1 = Math.max(D.extent[1], full0 + 1);
  const fullPad = (full1 - full0) * 0.01;
  const FULL = [full0 - fullPad, full1 + fullPad];
  const MIN_SPAN = 10;
  const view = { t0: FULL[0], t1: FULL[1] };
  const AT_DECIMALS = full1 - full0 < 1e6 ? 9 : 6;

  function at(ns) {
    return (ns / 1e9).toFixed(AT_DECIMALS) + " s";
  }
  function duration(ns) {
    if (ns < 1000) return Math.round(ns) + " ns";
    let value;
    let unit;
    if (ns < 999500) { value = ns / 1e3; unit = "µs"; }
    else if (ns < 999500000) { value = ns / 1e6; unit = "ms"; }
    else { value = ns / 1e9; unit = "s"; }
    const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
    return value.toFixed(digits) + " " + unit;
  }
  function niceStep(raw) {
    const pow = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / pow;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * pow;
  }
  function tickLabel(t, step) {
    const decimals = Math.max(0, Math.min(9, Math.ceil(-Math.log10(step / 1e9) - 1e-9)));
    return (t / 1e9).toFixed(decimals);
  }
  function text(index) {
    return index > 0 ? S[index] : "";
  }
  function callText(i) {
    const args = [];
    const key = text(D.calls.key[i]);
    if (key !== "") args.push(JSON.stringify(key));
    const arg = text(D.calls.arg[i]);
    if (arg !== "") args.push(arg);
    return text(D.calls.f[i]) + "(" + args.join(", ") + ")";
  }
  function el(tag, className, content) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (content !== undefined) e.textContent = content;
    return e;
  }

  // ---- Layout -------------------------------------------------------------------------------

  const headCanvas = document.getElementById("head-canvas");
  const lanesCanvas = document.getElementById("lanes-canvas");
  const plotsCanvas = document.getElementById("plots-canvas");
  const scroller = document.getElementById("lanes-scroll");
  const lanesInner = document.getElementById("lanes-inner");
  const tooltip = document.getElementById("tooltip");
  const viewRange = document.getElementById("view-range");
  const section = document.getElementById("timeline");

  // Fault windows in sub-rows, so that overlapping ones stay readable.
  const faultRow = [];
  let faultRows = 0;
  {
    const order = D.faults.map(function (f, i) { return i; })
      .sort(function (a, b) { return D.faults[a].start - D.faults[b].start; });
    const rowEnds = [];
    for (const i of order) {
      let r = rowEnds.findIndex(function (end) { return end <= D.faults[i].start; });
      if (r < 0) { r = rowEnds.length; rowEnds.push(0); }
      rowEnds[r] = D.faults[i].end;
      faultRow[i] = r;
    }
    faultRows = rowEnds.length;
  }

  // Leader terms per cluster: [start, end, leader].
  const clusters = [...new Set(D.leaders.map(function (l) { return l.cluster; }))];
  const terms = [];
  for (const cluster of clusters) {
    const marks = D.leaders.filter(function (l) { return l.cluster === cluster; })
      .sort(function (a, b) { return a.at - b.at; });
    marks.forEach(function (m, k) {
      const end = k + 1 < marks.length ? marks[k + 1].at : full1;
      if (m.leader !== null) terms.push({ start: m.at, end: end, leader: m.leader, cluster: cluster });
    });
  }

  // The head's rows, top to bottom.
  const headRows = [{ kind: "axis", h: AXIS_H, label: "time (s)" }];
  if (D.steps.length) headRows.push({ kind: "steps", h: ROW_H, label: "steps" });
  if (faultRows) headRows.push({ kind: "faults", h: ROW_H * faultRows, label: "faults" });
  if (D.leaders.length) headRows.push({ kind: "leaders", h: ROW_H, label: "leader" });
  D.nodes.forEach(function (node, i) {
    headRows.push({ kind: "node", h: NODE_H, label: node.name, node: i });
  });
  {
    let y = 0;
    for (const row of headRows) { row.y = y; y += row.h; }
  }
  const HEAD_H = headRows.reduce(function (s, r) { return s + r.h; }, 0) + 4;

  const headLabels = document.getElementById("head-labels");
  for (const row of headRows) {
    const label = el("div", row.kind === "node" ? "head-label node-label" : "head-label", row.label);
    label.style.height = row.h + "px";
    if (row.kind === "node") label.dataset.node = row.label;
    headLabels.appendChild(label);
  }

  lanesInner.style.setProperty("--lane-h", LANE_H + "px");
  lanesInner.style.height = P * LANE_H + "px";
  const laneLabels = document.getElementById("lane-labels");
  {
    const fragment = document.createDocumentFragment();
    D.processes.forEach(function (p, l) {
      const label = el("div", culpritLanes.has(l) ? "lane-label has-anomaly" : "lane-label",
        "process " + p);
      label.dataset.process = String(p);
      fragment.appendChild(label);
    });
    laneLabels.appendChild(fragment);
  }

  const plotLabels = document.getElementById("plot-labels");
  function plotLabel(title, keys) {
    const label = el("div", "plot-label");
    label.style.height = PLOT_H + "px";
    label.appendChild(el("b", null, title));
    const line = el("span");
    for (const [name, color] of keys) {
      const key = el("i", "key");
      key.style.background = color;
      line.appendChild(key);
      line.appendChild(document.createTextNode(name));
    }
    label.appendChild(line);
    return label;
  }
  plotLabels.appendChild(plotLabel("calls / s", [["ok", COLOR.ok], ["fail", COLOR.fail],
    ["info", COLOR.info]]));
  const gap = el("div");
  gap.style.height = PLOT_GAP + "px";
  plotLabels.appendChild(gap);
  plotLabels.appendChild(plotLabel("latency", [["p50", COLOR.p50], ["p99", COLOR.p99]]));
  const PLOTS_H = 2 * PLOT_H + PLOT_GAP + 16;

  const surfaces = {};
  function fit(name, canvas, height) {
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(100, canvas.parentElement.clientWidth);
    canvas.style.height = height + "px";
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    surfaces[name] = { g: g, w: width, h: height };
  }
  function layout() {
    fit("head", headCanvas, HEAD_H);
    fit("plots", plotsCanvas, PLOTS_H);
    const visible = Math.min(P * LANE_H, scroller.clientHeight || P * LANE_H);
    fit("lanes", lanesCanvas, Math.max(LANE_H, visible));
  }

  // ---- Drawing --------------------------------------------------------------------------------

  function xOf(t, w) {
    const x = (t - view.t0) / (view.t1 - view.t0) * w;
    return Math.max(-50, Math.min(w + 50, x));
  }
  function tOf(x, w) {
    return view.t0 + x / w * (view.t1 - view.t0);
  }
  function ticks(w) {
    const step = niceStep((view.t1 - view.t0) / Math.max(1, w / 110));
    const out = [];
    // No ticks before the run started.
    for (let t = Math.max(0, Math.ceil(view.t0 / step)) * step; t <= view.t1; t += step) out.push(t);
    return { step: step, at: out };
  }
  function grid(g, w, y0, y1, tk) {
    g.fillStyle = COLOR.grid;
    for (const t of tk.at) g.fillRect(Math.round(xOf(t, w)), y0, 1, y1 - y0);
  }
  function shadeFaults(g, w, y0, y1) {
    for (const f of D.faults) {
      const x0 = xOf(f.start, w);
      const x1 = Math.max(x0 + 1, xOf(f.end, w));
      g.fillStyle = COLOR.fault;
      g.fillRect(x0, y0, x1 - x0, y1 - y0);
      g.fillStyle = COLOR["fault-edge"];
      for (let y = y0; y < y1; y += 6) {
        g.fillRect(Math.round(x0), y, 1, 3);
        g.fillRect(Math.round(x1) - 1, y, 1, 3);
      }
    }
  }
  function label(g, s, x0, x1, y, color) {
    const x = Math.max(x0, 0) + 4;
    const room = Math.min(x1, surfaces.head.w) - x - 2;
    if (room < 14) return;
    g.save();
    g.beginPath();
    g.rect(x, y - 12, room, 16);
    g.clip();
    g.fillStyle = color;
    g.fillText(s, x, y);
    g.restore();
  }

  function drawHead() {
    const { g, w, h } = surfaces.head;
    g.clearRect(0, 0, w, h);
    g.font = FONT;
    g.textBaseline = "alphabetic";
    const tk = ticks(w);
    grid(g, w, AXIS_H, h, tk);
    shadeFaults(g, w, AXIS_H, h);
    for (const row of headRows) {
      const y = row.y;
      if (row.kind === "axis") {
        g.fillStyle = COLOR.axis;
        g.fillRect(0, y + AXIS_H - 1, w, 1);
        for (const t of tk.at) {
          const x = Math.round(xOf(t, w));
          g.fillRect(x, y + AXIS_H - 6, 1, 6);
          g.fillText(tickLabel(t, tk.step), x + 3, y + 14);
        }
      } else if (row.kind === "steps") {
        for (const s of D.steps) {
          const x0 = xOf(s.start, w);
          const x1 = Math.max(x0 + 3, xOf(s.end, w));
          const edge = s.passed ? COLOR["step-passed"] : COLOR["step-failed"];
          g.fillStyle = s.passed ? "rgba(47, 158, 98, 0.16)" : "rgba(224, 49, 49, 0.18)";
          g.fillRect(x0, y + 2, x1 - x0, row.h - 4);
          g.strokeStyle = edge;
          g.lineWidth = 1;
          g.strokeRect(x0 + 0.5, y + 2.5, x1 - x0 - 1, row.h - 5);
          label(g, (s.passed ? "✓ " : "✗ ") + s.name, x0, x1, y + 13, COLOR.text);
        }
      } else if (row.kind === "faults") {
        D.faults.forEach(function (f, i) {
          const fy = y + faultRow[i] * ROW_H;
          const x0 = xOf(f.start, w);
          const x1 = Math.max(x0 + 2, xOf(f.end, w));
          g.fillStyle = "rgba(232, 89, 12, 0.22)";
          g.fillRect(x0, fy + 2, x1 - x0, ROW_H - 4);
          label(g, f.label, x0, x1, fy + 13, COLOR["fault-text"]);
        });
      } else if (row.kind === "leaders") {
        const marks = D.leaders.slice().sort(function (a, b) { return a.at - b.at; });
        let textEnd = -Infinity;
        for (const m of marks) {
          const x = xOf(m.at, w);
          const mid = y + row.h / 2;
          g.fillStyle = m.leader === null ? COLOR.fail : COLOR.leader;
          g.beginPath();
          g.moveTo(x, mid - 5); g.lineTo(x + 5, mid); g.lineTo(x, mid + 5); g.lineTo(x - 5, mid);
          g.closePath();
          if (m.leader === null) {
            g.strokeStyle = COLOR.fail;
            g.lineWidth = 1.5;
            g.stroke();
          } else {
            g.fill();
          }
          const name = (clusters.length > 1 ? m.cluster + ": " : "") + (m.leader === null ? "none" : m.leader);
          if (x + 8 > textEnd + 6 && x < w) {
            g.fillStyle = m.leader === null ? COLOR.fail : COLOR.text;
            g.fillText(name, x + 8, mid + 4);
            textEnd = x + 8 + g.measureText(name).width;
          }
          // The change, down through the node lanes.
          g.fillStyle = COLOR.leader;
          for (let yy = y + row.h; yy < h; yy += 4) g.fillRect(Math.round(x), yy, 1, 2);
        }
      } else if (row.kind === "node") {
        const node = D.nodes[row.node];
        for (const s of node.spans) {
          const x0 = xOf(s.start, w);
          const x1 = Math.max(x0 + 1, xOf(s.end === null ? full1 : s.end, w));
          g.fillStyle = stateColor(s.state);
          g.fillRect(x0, y + 3, x1 - x0, row.h - 6);
          const dark = s.state === "killed" || s.state === "exited" || s.state === "ready";
          if (x1 - x0 > g.measureText(s.state).width + 10) {
            label(g, s.state, x0, x1, y + 13, dark ? "#ffffff" : COLOR.text);
          }
        }
        for (const term of terms) {
          if (term.leader !== node.name) continue;
          const x0 = xOf(term.start, w);
          const x1 = Math.max(x0 + 1, xOf(term.end, w));
          g.fillStyle = COLOR.leader;
          g.fillRect(x0, y, x1 - x0, 3);
        }
      }
    }
  }

  // The first position in a lane whose call may be visible from t0 on.
  function firstVisible(calls, t0) {
    let lo = 0;
    let hi = calls.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cStart[calls[mid]] < t0) lo = mid + 1; else hi = mid;
    }
    return Math.max(0, lo - 1);
  }

  let selected = -1;

  function drawLanes() {
    const { g, w, h } = surfaces.lanes;
    g.clearRect(0, 0, w, h);
    const top = scroller.scrollTop;
    const first = Math.max(0, Math.floor(top / LANE_H));
    const last = Math.min(P - 1, Math.floor((top + h) / LANE_H));
    g.fillStyle = COLOR["lane-alt"];
    for (let l = first; l <= last; l++) {
      if (l % 2 === 1) g.fillRect(0, l * LANE_H - top, w, LANE_H);
    }
    grid(g, w, 0, h, ticks(w));
    shadeFaults(g, w, 0, h);
    const scale = w / (view.t1 - view.t0);
    const barH = LANE_H - 4;
    // One pass per outcome, so the rare fail and info bars are drawn over the common ok ones.
    for (let kind = 0; kind < 3; kind++) {
      g.fillStyle = KIND_COLOR[kind];
      for (let l = first; l <= last; l++) {
        const calls = laneCalls[l];
        const y = l * LANE_H - top + 2;
        let lastX = -Infinity;
        for (let k = firstVisible(calls, view.t0); k < calls.length; k++) {
          const i = calls[k];
          const start = cStart[i];
          if (start > view.t1) break;
          if (cKind[i] !== kind) continue;
          // An info call's solid part lasts until the client gave up; its tail comes after.
          const end = kind === 2 ? start + Math.max(0, cDur[i]) : callEnd(i);
          let x0 = (start - view.t0) * scale;
          let x1 = (end - view.t0) * scale;
          if (x1 - x0 > 4) x1 -= 1;
          if (x1 - x0 < 1) x1 = x0 + 1;
          if (x1 <= lastX) continue;
          if (x0 < lastX) x0 = lastX;
          x0 = Math.max(-2, x0);
          x1 = Math.min(w + 2, x1);
          g.fillRect(x0, y, x1 - x0, barH);
          lastX = x1;
        }
      }
    }
    // The open ends of info calls, thin: they may take effect at any time until the history
    // ends, or never.
    g.globalAlpha = 0.45;
    g.fillStyle = COLOR.info;
    for (let l = first; l <= last; l++) {
      const calls = laneCalls[l];
      if (!calls.length) continue;
      const i = calls[calls.length - 1];
      if (cKind[i] !== 2) continue;
      const x0 = xOf(cStart[i] + Math.max(0, cDur[i]), w);
      const x1 = xOf(callEnd(i), w);
      if (x1 > x0) g.fillRect(x0, l * LANE_H - top + Math.floor(LANE_H / 2) - 1, x1 - x0, 2);
    }
    g.globalAlpha = 1;
    // The anomaly's calls, outlined (and at least a few pixels wide when zoomed out).
    for (const i of highlighted) {
      drawOutline(g, i, top, w, D.roles[role[i]].culprit ? COLOR.culprit : COLOR.context, 0);
    }
    // The selected call: around its highlight, if it has one.
    if (selected >= 0) drawOutline(g, selected, top, w, COLOR.selected, role[selected] >= 0 ? 2 : 0);
  }
  function drawOutline(g, i, top, w, color, grow) {
    const l = cLane[i];
    const y = l * LANE_H - top;
    if (y + LANE_H < 0 || y > surfaces.lanes.h) return;
    let x0 = xOf(cStart[i], w);
    let x1 = xOf(cKind[i] === 2 ? cStart[i] + Math.max(0, cDur[i]) : callEnd(i), w);
    if (x1 - x0 < 6) { const mid = (x0 + x1) / 2; x0 = mid - 3; x1 = mid + 3; }
    g.strokeStyle = color;
    g.lineWidth = 2;
    g.strokeRect(x0 - 1 - grow, y + 1 - grow, x1 - x0 + 2 + 2 * grow, LANE_H - 2 + 2 * grow);
  }

  function drawPlots() {
    const { g, w, h } = surfaces.plots;
    g.clearRect(0, 0, w, h);
    g.font = FONT;
    const tk = ticks(w);
    const series = D.series;
    const y0 = 4;
    const y1 = y0 + PLOT_H + PLOT_GAP;
    for (const top of [y0, y1]) {
      g.fillStyle = "#fbfbfc";
      g.fillRect(0, top, w, PLOT_H);
      grid(g, w, top, top + PLOT_H, tk);
      shadeFaults(g, w, top, top + PLOT_H);
      g.fillStyle = COLOR.grid;
      g.fillRect(0, top + PLOT_H, w, 1);
    }
    if (!series.length) return;

    // Throughput: calls per second invoked in each bucket, stacked by outcome.
    let most = 0;
    for (const b of series) most = Math.max(most, (b.ok + b.fail + b.info) / (b.width / 1e9));
    const yMax = most > 0 ? niceStep(most) : 1;
    for (const b of series) {
      const x0 = xOf(b.start, w);
      const x1 = xOf(b.start + b.width, w);
      if (x1 < 0 || x0 > w) continue;
      const bw = Math.max(1, x1 - x0 - (x1 - x0 > 3 ? 1 : 0));
      let base = y0 + PLOT_H;
      for (const [count, color] of [[b.ok, COLOR.ok], [b.fail, COLOR.fail], [b.info, COLOR.info]]) {
        const bh = count / (b.width / 1e9) / yMax * (PLOT_H - 6);
        g.fillStyle = color;
        g.fillRect(x0, base - bh, bw, bh);
        base -= bh;
      }
    }
    const half = Math.round(y0 + PLOT_H - (PLOT_H - 6) / 2);
    g.fillStyle = "rgba(73, 80, 87, 0.25)";
    g.fillRect(0, half, w, 1);
    g.fillRect(0, y0 + 6, w, 1);
    axisLabel(g, formatRate(yMax), y0 + 17);
    axisLabel(g, formatRate(yMax / 2), half + 12);

    // Latency: p50 and p99 of the completed calls invoked in each bucket, on a log scale.
    let lo = Infinity;
    let hi = 0;
    for (const b of series) {
      for (const v of [b.p50, b.p99]) {
        if (v !== null && v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      }
    }
    if (hi === 0) return;
    let d0 = Math.floor(Math.log10(lo));
    let d1 = Math.ceil(Math.log10(hi));
    if (d1 <= d0) d1 = d0 + 1;
    const yOf = function (v) {
      return y1 + PLOT_H - 3 - (Math.log10(Math.max(v, 1)) - d0) / (d1 - d0) * (PLOT_H - 8);
    };
    for (let d = d0; d <= d1; d++) {
      const y = Math.round(yOf(Math.pow(10, d)));
      g.fillStyle = COLOR.grid;
      g.fillRect(0, y, w, 1);
    }
    for (const [field, color] of [["p50", COLOR.p50], ["p99", COLOR.p99]]) {
      g.strokeStyle = color;
      g.fillStyle = color;
      g.lineWidth = 1.5;
      g.beginPath();
      let open = false;
      for (const b of series) {
        const v = b[field];
        if (v === null) { open = false; continue; }
        const x = xOf(b.start + b.width / 2, w);
        const y = yOf(v);
        if (open) g.lineTo(x, y); else g.moveTo(x, y);
        open = true;
      }
      g.stroke();
      for (const b of series) {
        if (b[field] === null) continue;
        const x = xOf(b.start + b.width / 2, w);
        if (x < -2 || x > w + 2) continue;
        g.fillRect(x - 1.5, yOf(b[field]) - 1.5, 3, 3);
      }
    }
    for (let d = d0; d <= d1; d++) {
      if (d1 - d0 <= 4 || (d - d0) % 2 === 0) axisLabel(g, decade(d), Math.round(yOf(Math.pow(10, d))) + 4);
    }
  }
  // A y-axis label on a light background, readable over bars and lines.
  function axisLabel(g, s, y) {
    const width = g.measureText(s).width;
    g.fillStyle = "rgba(255, 255, 255, 0.85)";
    g.fillRect(2, y - 10, width + 4, 13);
    g.fillStyle = COLOR.muted;
    g.fillText(s, 4, y);
  }
  // 10^d nanoseconds, in words: "100 µs", "1 s".
  function decade(d) {
    for (const [e, unit] of [[9, "s"], [6, "ms"], [3, "µs"], [0, "ns"]]) {
      if (d >= e) return Math.pow(10, d - e) + " " + unit;
    }
    return "1 ns";
  }
  function formatRate(r) {
    if (r >= 1e6) return (r / 1e6).toFixed(1) + "M/s";
    if (r >= 1e4) return (r / 1e3).toFixed(0) + "k/s";
    if (r >= 1e3) return (r / 1e3).toFixed(1) + "k/s";
    return (r >= 10 ? r.toFixed(0) : r.toPrecision(2)) + "/s";
  }

  function draw() {
    drawHead();
    drawLanes();
    drawPlots();
    viewRange.textContent = "showing " + at(Math.max(view.t0, 0)) + " – " + at(view.t1) +
      " (" + duration(view.t1 - view.t0) + ")";
  }
  // Redraws at the next frame, once however many changes come before it. A timer stands in
  // where frames do not come (a hidden tab, a headless browser), whichever is first.
  let pending = false;
  function requestDraw() {
    if (pending) return;
    pending = true;
    const once = function () {
      if (!pending) return;
      pending = false;
      draw();
    };
    requestAnimationFrame(once);
    setTimeout(once, 100);
  }

  // ---- Zoom and pan ----------------------------------------------------------------------------

  function setView(t0, t1) {
    let span = Math.max(MIN_SPAN, t1 - t0);
    const fullSpan = FULL[1] - FULL[0];
    if (span >= fullSpan) {
      view.t0 = FULL[0];
      view.t1 = FULL[1];
    } else {
      let start = Math.min(Math.max(t0, FULL[0]), FULL[1] - span);
      view.t0 = start;
      view.t1 = start + span;
    }
    requestDraw();
  }
  function zoomAt(t, factor) {
    setView(t - (t - view.t0) * factor, t + (view.t1 - t) * factor);
  }
  function pan(fraction) {
    const d = (view.t1 - view.t0) * fraction;
    setView(view.t0 + d, view.t1 + d);
  }
  function showCall(i) {
    const start = cStart[i];
    const end = cKind[i] === 2 ? start + Math.max(0, cDur[i]) : callEnd(i);
    const span = Math.max((end - start) * 8, (FULL[1] - FULL[0]) / 2000, 50);
    const mid = (start + end) / 2;
    setView(mid - span / 2, mid + span / 2);
    const y = cLane[i] * LANE_H;
    if (y < scroller.scrollTop || y + LANE_H > scroller.scrollTop + scroller.clientHeight) {
      scroller.scrollTop = Math.max(0, y - scroller.clientHeight / 2);
    }
    select(i);
  }
  function showAnomaly() {
    const culprits = highlighted.filter(function (i) { return D.roles[role[i]].culprit; });
    const calls = culprits.length ? culprits : highlighted;
    if (!calls.length) return;
    let t0 = Infinity;
    let t1 = -Infinity;
    for (const i of calls) {
      t0 = Math.min(t0, cStart[i]);
      t1 = Math.max(t1, cKind[i] === 2 ? cStart[i] + Math.max(0, cDur[i]) : callEnd(i));
    }
    const span = Math.max((t1 - t0) * 3, (FULL[1] - FULL[0]) / 500, 50);
    const mid = (t0 + t1) / 2;
    setView(mid - span / 2, mid + span / 2);
    const lane = Math.min.apply(null, calls.map(function (i) { return cLane[i]; }));
    scroller.scrollTop = Math.max(0, lane * LANE_H - LANE_H);
  }

  let drag = null;
  for (const canvas of [headCanvas, lanesCanvas, plotsCanvas]) {
    canvas.addEventListener("wheel", function (event) {
      event.preventDefault();
      const unit = event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? 400 : 1;
      const w = canvas.clientWidth;
      if (Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
        pan(event.deltaX * unit / w);
      } else {
        zoomAt(tOf(event.offsetX, w), Math.exp(event.deltaY * unit * 0.0015));
      }
    }, { passive: false });
    canvas.addEventListener("mousedown", function (event) {
      if (event.button !== 0) return;
      drag = { canvas: canvas, x: event.clientX, t0: view.t0, t1: view.t1, moved: false };
      canvas.classList.add("dragging");
    });
    canvas.addEventListener("mousemove", function (event) {
      if (drag) return;
      if (selected < 0) hover(canvas, event);
    });
    canvas.addEventListener("mouseleave", function () {
      if (selected < 0) hideTooltip();
    });
  }
  window.addEventListener("mousemove", function (event) {
    if (!drag) return;
    const dx = event.clientX - drag.x;
    if (Math.abs(dx) > 2) drag.moved = true;
    if (!drag.moved) return;
    const d = dx / drag.canvas.clientWidth * (drag.t1 - drag.t0);
    setView(drag.t0 - d, drag.t1 - d);
  });
  window.addEventListener("mouseup", function (event) {
    if (!drag) return;
    const { canvas, moved } = drag;
    canvas.classList.remove("dragging");
    drag = null;
    if (moved) return;
    if (canvas === lanesCanvas) {
      const rect = canvas.getBoundingClientRect();
      const i = callAt(event.clientX - rect.left, event.clientY - rect.top);
      if (i >= 0 && i !== selected) { select(i); return; }
    }
    select(-1);
    hover(canvas, event);
  });
  document.getElementById("zoom-in").addEventListener("click", function () {
    zoomAt((view.t0 + view.t1) / 2, 0.5);
  });
  document.getElementById("zoom-out").addEventListener("click", function () {
    zoomAt((view.t0 + view.t1) / 2, 2);
  });
  document.getElementById("zoom-reset").addEventListener("click", function () {
    setView(FULL[0], FULL[1]);
  });
  const anomalyButton = document.getElementById("zoom-anomaly");
  if (anomalyButton) anomalyButton.addEventListener("click", showAnomaly);
  document.addEventListener("keydown", function (event) {
    if (event.target && /^(INPUT|TEXTAREA|SELECT)$/.test(event.target.tagName)) return;
    const mid = (view.t0 + view.t1) / 2;
    if (event.key === "+" || event.key === "=") zoomAt(mid, 0.5);
    else if (event.key === "-") zoomAt(mid, 2);
    else if (event.key === "0") setView(FULL[0], FULL[1]);
    else if (event.key === "ArrowLeft") pan(-0.2);
    else if (event.key === "ArrowRight") pan(0.2);
    else if (event.key === "Escape") select(-1);
    else return;
    event.preventDefault();
  });
  for (const item of document.querySelectorAll(".anomaly-op[data-call]")) {
    item.addEventListener("click", function () {
      const i = Number(item.dataset.call);
      if (i >= 0 && i < N) showCall(i);
      for (const other of document.querySelectorAll(".anomaly-op.selected")) other.classList.remove("selected");
      item.classList.add("selected");
    });
  }
  scroller.addEventListener("scroll", requestDraw);
  window.addEventListener("resize", function () {
    layout();
    draw();
  });

  // ---- Tooltip ------------------------------------------------------------------------------

  // The call under a point of the lanes canvas, or -1.
  function callAt(x, y) {
    const w = surfaces.lanes.w;
    const l = Math.floor((y + scroller.scrollTop) / LANE_H);
    if (l < 0 || l >= P) return -1;
    const calls = laneCalls[l];
    const slack = 3 * (view.t1 - view.t0) / w;
    const t = tOf(x, w);
    let best = -1;
    let bestDistance = Infinity;
    for (let k = firstVisible(calls, t - slack); k < calls.length; k++) {
      const i = calls[k];
      if (cStart[i] > t + slack) break;
      const end = callEnd(i);
      const distance = t < cStart[i] ? cStart[i] - t : t > end ? t - end : 0;
      if (distance <= slack && distance < bestDistance) { best = i; bestDistance = distance; }
    }
    return best;
  }
  function select(i) {
    selected = i;
    if (i < 0) {
      hideTooltip();
    } else {
      const rect = lanesCanvas.getBoundingClientRect();
      const x = rect.left + xOf(cStart[i], surfaces.lanes.w);
      const y = rect.top + cLane[i] * LANE_H - scroller.scrollTop;
      showTooltip(callTooltip(i), Math.max(rect.left, x), Math.max(rect.top, y) + LANE_H);
    }
    requestDraw();
  }
  function hover(canvas, event) {
    const rect = canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    let content = null;
    if (canvas === lanesCanvas) {
      const i = callAt(x, y);
      if (i >= 0) content = callTooltip(i);
    } else if (canvas === headCanvas) {
      content = headTooltip(x, y);
    } else {
      content = plotTooltip(x);
    }
    if (content) showTooltip(content, event.clientX + 14, event.clientY + 14);
    else hideTooltip();
  }
  function showTooltip(content, x, y) {
    tooltip.replaceChildren(content);
    tooltip.hidden = false;
    const box = tooltip.getBoundingClientRect();
    tooltip.style.left = Math.max(4, Math.min(x, window.innerWidth - box.width - 8)) + "px";
    tooltip.style.top = Math.max(4, y + box.height > window.innerHeight - 4 ? y - box.height - 24 : y) + "px";
  }
  function hideTooltip() {
    tooltip.hidden = true;
  }
  function lines(parts) {
    const box = el("div");
    for (const [className, content] of parts) box.appendChild(el("div", className, content));
    return box;
  }
  function callTooltip(i) {
    const parts = [
      ["tt-head", "op " + cOp[i] + " · process " + D.processes[cLane[i]] + " · " + KIND[cKind[i]]],
      ["tt-call", callText(i)],
    ];
    const ret = text(D.calls.ret[i]);
    if (ret !== "") parts.push(["tt-call", "→ " + ret]);
    if (cKind[i] === 2) {
      parts.push(["", "called " + at(cStart[i]) +
        (cDur[i] >= 0 ? "; gave up after " + duration(cDur[i]) : "; never completed")]);
      parts.push(["tt-muted", "may have taken effect at any time after its call, or never"]);
    } else {
      parts.push(["", "called " + at(cStart[i]) + " · returned " + at(callEnd(i)) + " · took " +
        duration(cDur[i])]);
    }
    const node = text(D.calls.node[i]);
    const error = text(D.calls.error[i]);
    if (node !== "" || error !== "") {
      parts.push(["tt-muted", [node !== "" ? "node " + node : "", error !== "" ? "error: " + error : ""]
        .filter(Boolean).join(" · ")]);
    }
    if (role[i] >= 0) {
      const r = D.roles[role[i]];
      parts.push(["tt-role", "anomaly (" + r.name + "): " + r.meaning]);
    }
    return lines(parts);
  }
  function headTooltip(x, y) {
    const w = surfaces.head.w;
    const t = tOf(x, w);
    const slack = 4 * (view.t1 - view.t0) / w;
    const row = headRows.find(function (r) { return y >= r.y && y < r.y + r.h; });
    if (!row) return null;
    if (row.kind === "axis") return lines([["", at(t)]]);
    if (row.kind === "steps") {
      const s = D.steps.find(function (s) { return t >= s.start - slack && t <= s.end + slack; });
      if (!s) return null;
      return lines([["tt-head", "step " + s.name + (s.passed ? " ✓ passed" : " ✗ failed")],
        ["", at(s.start) + " – " + at(s.end) + " (" + duration(s.end - s.start) + ")"]]);
    }
    if (row.kind === "faults") {
      const sub = Math.floor((y - row.y) / ROW_H);
      const f = D.faults.find(function (f, i) {
        return faultRow[i] === sub && t >= f.start - slack && t <= f.end + slack;
      });
      if (!f) return null;
      return lines([["tt-head", "fault: " + f.label],
        ["", at(f.start) + " – " + at(f.end) + " (" + duration(f.end - f.start) + ")"]]);
    }
    if (row.kind === "leaders") {
      let best = null;
      for (const m of D.leaders) {
        if (Math.abs(m.at - t) <= slack * 2 && (!best || Math.abs(m.at - t) < Math.abs(best.at - t))) best = m;
      }
      if (!best) return null;
      return lines([["tt-head", (best.cluster ? best.cluster + ": " : "") +
        (best.leader === null ? "no leader" : "leader " + best.leader)], ["", "from " + at(best.at)]]);
    }
    const node = D.nodes[row.node];
    const span = node.spans.find(function (s) {
      return t >= s.start && t <= (s.end === null ? full1 : s.end);
    });
    const parts = [["tt-head", node.name + (span ? ": " + span.state : "")]];
    if (span) {
      parts.push(["", "from " + at(span.start) + (span.end === null ? " to the end" : " to " +
        at(span.end) + " (" + duration(span.end - span.start) + ")")]);
    }
    const term = terms.find(function (term) { return term.leader === node.name && t >= term.start && t < term.end; });
    if (term) parts.push(["tt-muted", "leader" + (term.cluster ? " of " + term.cluster : "") + " since " + at(term.start)]);
    return lines(parts);
  }
  function plotTooltip(x) {
    const t = tOf(x, surfaces.plots.w);
    const b = D.series.find(function (b) { return t >= b.start && t < b.start + b.width; });
    if (!b) return null;
    const seconds = b.width / 1e9;
    return lines([
      ["tt-head", at(b.start) + " – " + at(b.start + b.width)],
      ["", b.ok + " ok · " + b.fail + " fail · " + b.info + " info (" +
        formatRate((b.ok + b.fail + b.info) / seconds) + ")"],
      ["", "latency p50 " + (b.p50 === null ? "–" : duration(b.p50)) + " · p99 " +
        (b.p99 === null ? "–" : duration(b.p99))],
    ]);
  }

  // ---- First render ---------------------------------------------------------------------------

  layout();
  draw();
  section.dataset.calls = String(N);
  section.dataset.lanes = String(P);
  section.dataset.highlighted = String(highlighted.length);
  section.dataset.renderMs = (performance.now() - began).toFixed(0);
  if (!errorsEl || errorsEl.hidden) document.body.dataset.rendered = "ok";
})();
