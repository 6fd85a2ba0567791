// The fleet dashboard: reads /api/cells and /api/devices and draws them with
// uPlot. Times are UTC throughout. A withheld breakdown (null in the JSON) is
// drawn as a hatched "withheld" bar and counted as such, never as zero.
"use strict";

const HOUR = 3600, DAY = 86400;
const PRESETS = { "24h": DAY, "7d": 7 * DAY, "30d": 30 * DAY, "90d": 90 * DAY };
const LABELS = {
  age: ["0-19", "20-39", "40-59", "60-79", "80+"],
  gender: ["female", "male"],
  emotion: ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"],
};
const COLORS = {
  age: ["#8ecae6", "#219ebc", "#126782", "#fb8500", "#ffb703"],
  gender: ["#d1495b", "#2b59c3"],
  emotion: ["#d62828", "#6a994e", "#7b2cbf", "#f4a261", "#adb5bd", "#457b9d", "#e9c46a"],
};
const DEPT_COLORS = ["#2b59c3", "#d1495b", "#2a9d8f", "#e9a03b", "#7b2cbf", "#6a994e", "#8d5524", "#ff5d8f", "#118ab2", "#5c677d"];
const WITHHELD = "#c8ccd1";
// Long windows close just after each hour and then travel through brokers
// and the collector's roll-up refresh.
const PENDING = 15 * 60;

const $ = (id) => document.getElementById(id);
const utc = (sec) => uPlot.tzDate(new Date(sec * 1e3), "Etc/UTC");
let charts = [];

// The x axis in UTC, 24-hour: a date at midnight, the time otherwise.
const fmtDay = uPlot.fmtDate("{MM}-{DD}"), fmtTime = uPlot.fmtDate("{HH}:{mm}");
const timeAxis = () => ({ values: (u, splits) => splits.map((v) => v % DAY === 0 ? fmtDay(utc(v)) : fmtTime(utc(v))) });

// --- the range ---------------------------------------------------------

function toInput(sec) { return new Date(sec * 1e3).toISOString().slice(0, 16); }
function fromInput(v) { const t = Date.parse(v + ":00Z"); return isNaN(t) ? NaN : t / 1e3; }
function iso(sec) { return new Date(sec * 1e3).toISOString().replace(".000Z", "Z"); }

// rangeFromURL reads ?from=&to= (RFC 3339) or ?range=24h|7d|30d|90d, and ?step=.
function rangeFromURL() {
  const q = new URLSearchParams(location.search);
  let step = q.get("step") || "auto";
  const from = Date.parse(q.get("from") || ""), to = Date.parse(q.get("to") || "");
  if (!isNaN(from) && !isNaN(to) && to > from) {
    return { preset: "custom", from: from / 1e3, to: to / 1e3, step };
  }
  const preset = PRESETS[q.get("range")] ? q.get("range") : "24h";
  // End at the next full hour, so the current hour is in view.
  const end = Math.ceil(Date.now() / 1e3 / HOUR) * HOUR;
  return { preset, from: end - PRESETS[preset], to: end, step };
}

function stepFor(r) {
  if (r.step === "hour" || r.step === "day") return r.step;
  return r.to - r.from <= 7 * DAY ? "hour" : "day";
}

function showRange(r) {
  $("preset").value = r.preset;
  $("from").value = toInput(r.from);
  $("to").value = toInput(r.to);
  $("step").value = r.step;
}

$("preset").addEventListener("change", () => {
  const p = $("preset").value;
  if (!PRESETS[p]) return;
  const end = Math.ceil(Date.now() / 1e3 / HOUR) * HOUR;
  $("from").value = toInput(end - PRESETS[p]);
  $("to").value = toInput(end);
});
for (const id of ["from", "to"]) $(id).addEventListener("input", () => { $("preset").value = "custom"; });

$("range").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const q = new URLSearchParams();
  const p = $("preset").value;
  if (PRESETS[p]) {
    q.set("range", p);
  } else {
    const from = fromInput($("from").value), to = fromInput($("to").value);
    if (!(to > from)) { setStatus("The end of the range must be after its start.", true); return; }
    q.set("from", iso(from));
    q.set("to", iso(to));
  }
  if ($("step").value !== "auto") q.set("step", $("step").value);
  history.pushState(null, "", "?" + q);
  load();
});
window.addEventListener("popstate", load);

// --- loading -----------------------------------------------------------

function setStatus(text, error) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function getJSON(url) {
  const res = await fetch(url, { cache: "no-store" });
  if (!res.ok) throw new Error(url.split("?")[0] + ": " + res.status + " " + (await res.text()).trim());
  return res.json();
}

let last = null;

async function load() {
  const r = rangeFromURL();
  showRange(r);
  const step = stepFor(r);
  document.body.dataset.state = "loading";
  setStatus("Loading…");
  try {
    const q = new URLSearchParams({ step, from: iso(r.from), to: iso(r.to) });
    const [cells, devices] = await Promise.all([getJSON("api/cells?" + q), getJSON("api/devices")]);
    last = { r, step, cells, devices };
    render();
    document.body.dataset.state = "ready";
  } catch (e) {
    setStatus("Could not load the data: " + e.message, true);
    document.body.dataset.state = "error";
  }
}

let resizeTimer = 0;
window.addEventListener("resize", () => {
  clearTimeout(resizeTimer);
  resizeTimer = setTimeout(() => last && render(), 200);
});

// --- drawing -----------------------------------------------------------

function render() {
  const { r, step, cells, devices } = last;
  for (const c of charts) c.destroy();
  charts = [];
  const size = step === "hour" ? HOUR : DAY;
  // One x per cell of the range, so hours without data are gaps, not lines across them.
  const first = Math.floor(r.from / size) * size;
  const xs = [];
  for (let t = first; t < r.to; t += size) xs.push(t);
  const index = new Map(xs.map((t, i) => [t, i]));
  const byDept = new Map();
  for (const c of cells.cells) {
    const i = index.get(Date.parse(c.start) / 1e3);
    if (i === undefined) continue;
    if (!byDept.has(c.department)) byDept.set(c.department, new Array(xs.length).fill(null));
    byDept.get(c.department)[i] = c;
  }
  const depts = [...byDept.keys()].sort();
  for (const el of document.querySelectorAll(".step-name")) el.textContent = step;

  headcount("chart-seen", xs, depts, byDept, (c) => c.people_seen, size);
  headcount("chart-peak", xs, depts, byDept, (c) => c.people_now_peak, size);
  const withheld = mixes(xs, depts, byDept, size, Date.parse(cells.now) / 1e3);
  deviceTable(devices);

  const n = cells.cells.length;
  setStatus(n === 0
    ? "No data in this range."
    : `${depts.length} department(s), ${n} ${step} cell(s), ${devices.devices.length} device(s); ` +
      `${withheld} breakdown(s) withheld. ${iso(r.from)} to ${iso(r.to)}.`);
  document.body.dataset.cells = String(n);
  document.body.dataset.departments = String(depts.length);
  document.body.dataset.withheld = String(withheld);
  document.body.dataset.charts = String(charts.length);
}

function width(el) { return Math.max(el.clientWidth, 300); }

function headcount(id, xs, depts, byDept, value, size) {
  const el = $(id);
  el.textContent = "";
  if (depts.length === 0) { el.innerHTML = '<p class="empty">No data in this range.</p>'; return; }
  const data = [xs];
  const series = [{ value: (u, v) => v == null ? "" : uPlot.fmtDate("{YYYY}-{MM}-{DD} {HH}:{mm}")(utc(v)) }];
  depts.forEach((d, i) => {
    data.push(byDept.get(d).map((c) => c ? value(c) : null));
    series.push({ label: d, stroke: DEPT_COLORS[i % DEPT_COLORS.length], width: 2, points: { show: xs.length < 60 } });
  });
  charts.push(new uPlot({
    width: width(el), height: 220, tzDate: utc, series, data: undefined,
    scales: { x: { time: true, range: [xs[0], xs[xs.length - 1] + size] }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
    axes: [timeAxis(), { label: "people", size: 60 }],
  }, data, el));
}

// mixes draws, per department and task, the share of each label per cell as
// stacked bars; withheld cells are one hatched bar. A cell that has not
// ended (plus PENDING for the devices' long windows to arrive) has no
// breakdown yet: it is left blank and counted as incomplete, not withheld. It
// returns how many department-cells had a task withheld.
function mixes(xs, depts, byDept, size, now) {
  const list = $("mix-list");
  list.textContent = "";
  if (depts.length === 0) { list.innerHTML = '<p class="empty">No data in this range.</p>'; return 0; }
  // Emotion only where some device publishes it (the packaged default does not).
  const tasks = ["age", "gender"];
  if (depts.some((d) => byDept.get(d).some((c) => c && c.emotion))) tasks.push("emotion");
  let withheldTotal = 0;
  // Charts are drawn once every box is in place: their widths depend on
  // how the boxes share a row.
  const pending = [];
  for (const d of depts) {
    const box = document.createElement("div");
    box.className = "dept";
    box.dataset.department = d;
    box.innerHTML = `<h3></h3><div class="tasks"></div>`;
    box.querySelector("h3").textContent = d;
    list.appendChild(box);
    for (const task of tasks) {
      const cells = byDept.get(d);
      const labels = LABELS[task], colors = COLORS[task];
      const totals = labels.map(() => 0);
      let reported = 0, withheld = 0, incomplete = 0;
      // Coverage: a department's breakdown sums only the devices that
      // published the task, so it covers `covered` of the `seen` people of
      // the complete cells, from `pub` of `pub + unpub` device-hours.
      let covered = 0, seen = 0, pub = 0, unpub = 0;
      const cum = labels.map(() => new Array(xs.length).fill(null));
      const held = new Array(xs.length).fill(null);
      const notes = new Array(xs.length).fill("");
      cells.forEach((c, i) => {
        if (!c) return; // no data at all in this cell
        const counts = c[task];
        if (!counts && xs[i] + size + PENDING > now) { incomplete++; return; }
        const cov = (c.coverage && c.coverage[task]) || { people: 0, published: 0, withheld: 0 };
        covered += cov.people; seen += c.hour_people || 0; pub += cov.published; unpub += cov.withheld;
        notes[i] = coverageText(cov, c.hour_people || 0, size === HOUR ? "camera" : "camera-hour");
        if (!counts) { held[i] = 100; withheld++; return; }
        const n = labels.reduce((s, l) => s + (counts[l] || 0), 0);
        if (n === 0) return;
        reported++;
        let acc = 0;
        labels.forEach((l, k) => { totals[k] += counts[l] || 0; acc += counts[l] || 0; cum[k][i] = 100 * acc / n; });
      });
      withheldTotal += withheld;
      const el = document.createElement("div");
      el.className = "task";
      el.dataset.task = task;
      el.dataset.reported = String(reported);
      el.dataset.withheld = String(withheld);
      el.dataset.incomplete = String(incomplete);
      el.dataset.covered = String(covered);
      el.dataset.seen = String(seen);
      const all = totals.reduce((a, b) => a + b, 0);
      el.innerHTML = `<div class="chart-title"></div><div class="legend"></div><div class="plot"></div><div class="hover"></div><div class="summary"></div>`;
      const legend = el.querySelector(".legend");
      labels.forEach((l, k) => {
        const s = document.createElement("span");
        // CSSOM, not a style attribute: the page's CSP allows no inline styles.
        s.style.setProperty("--c", colors[k]);
        s.textContent = l + (all ? " " + (100 * totals[k] / all).toFixed(0) + "%" : "");
        legend.appendChild(s);
      });
      const w = document.createElement("span");
      w.className = "withheld";
      w.textContent = "withheld";
      legend.appendChild(w);
      const cv = document.createElement("span");
      cv.className = "coverage";
      cv.textContent = coverageText({ people: covered, published: pub, withheld: unpub }, seen, "camera-hour");
      legend.appendChild(cv);
      el.querySelector(".chart-title").textContent = task + " (share of the people in each " + (size === HOUR ? "hour" : "day") + "'s breakdown, summed over the cameras that published it)";
      el.querySelector(".summary").innerHTML = `${reported} ${size === HOUR ? "hour" : "day"}(s) with a breakdown` +
        (all ? ` (${all} people)` : "") + `, <span class="w">${withheld} withheld</span>` +
        (incomplete ? `, ${incomplete} not complete yet` : "");
      box.querySelector(".tasks").appendChild(el);
      const plot = el.querySelector(".plot"), hover = el.querySelector(".hover");
      const bars = uPlot.paths.bars({ size: [0.9, 40], align: 1 });
      // Drawn top share first: each later (lower) series paints over the
      // bottom of the one before, which stacks them.
      const data = [xs, held];
      const series = [{}, { label: "withheld", fill: WITHHELD, stroke: WITHHELD, paths: bars, points: { show: false } }];
      for (let k = labels.length - 1; k >= 0; k--) {
        data.push(cum[k]);
        series.push({ label: labels[k], fill: colors[k], stroke: colors[k], paths: bars, points: { show: false } });
      }
      pending.push({ plot, data, opts: {
        height: 130, tzDate: utc, series,
        legend: { show: false },
        // The cursor only names the hovered cell's coverage.
        cursor: { x: true, y: false, points: { show: false }, drag: { x: false, y: false } },
        hooks: { setCursor: [(u) => {
          const i = u.cursor.idx;
          hover.textContent = i == null || !notes[i] ? "" : fmtCell(xs[i], size) + ": " + notes[i];
        }] },
        scales: { x: { time: true, range: [xs[0], xs[xs.length - 1] + size] }, y: { range: [0, 100] } },
        axes: [timeAxis(), { size: 52, values: (u, v) => v.map((x) => x + "%"), splits: () => [0, 50, 100] }],
      } });
    }
  }
  for (const p of pending) charts.push(new uPlot({ ...p.opts, width: width(p.plot) }, p.data, p.plot));
  return withheldTotal;
}

// coverageText says whom a breakdown covers: "covers 62 of 80 people (3 of
// 4 cameras)"; over more than an hour it counts camera-hours (one long
// window each).
function coverageText(cov, seen, unit) {
  const cams = cov.published + cov.withheld;
  return `covers ${cov.people} of ${seen} people (${cov.published} of ${cams} ${unit}${cams === 1 ? "" : "s"})`;
}

function fmtCell(x, size) {
  return size === HOUR ? fmtDay(utc(x)) + " " + fmtTime(utc(x)) : fmtDay(utc(x));
}

function ago(sec) {
  sec = Math.max(sec, 0); // the database's clock may run a little ahead of the collector's
  if (sec < 90) return Math.round(sec) + " s ago";
  if (sec < 5400) return Math.round(sec / 60) + " min ago";
  if (sec < 2 * DAY) return (sec / HOUR).toFixed(1) + " h ago";
  return (sec / DAY).toFixed(1) + " days ago";
}

function deviceTable(devices) {
  const body = $("devices").querySelector("tbody");
  body.textContent = "";
  const now = Date.parse(devices.now) / 1e3;
  if (devices.devices.length === 0) {
    body.innerHTML = '<tr><td colspan="6" class="empty">No device has reported yet.</td></tr>';
    return;
  }
  for (const d of devices.devices) {
    const tr = document.createElement("tr");
    const lastWin = d.last_window_at ? Date.parse(d.last_window_at) / 1e3 : null;
    // Silent for over ten minutes: worth a look whatever the window length.
    if (lastWin === null || now - lastWin > 600) tr.className = "stale";
    const cells = [
      d.device, d.department,
      lastWin === null ? "never" : d.last_window_at.replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC") + " (" + ago(now - lastWin) + ")",
      ago(now - Date.parse(d.last_received_at) / 1e3),
      String(d.windows_lost_total),
      d.source_down_seconds_24h >= 60 ? (d.source_down_seconds_24h / 60).toFixed(1) + " min" : d.source_down_seconds_24h.toFixed(0) + " s",
    ];
    cells.forEach((v, i) => {
      const td = document.createElement("td");
      td.textContent = v;
      if (i >= 4) td.className = "num";
      tr.appendChild(td);
    });
    tr.dataset.device = d.device;
    body.appendChild(tr);
  }
}

load();
