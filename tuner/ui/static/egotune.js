// egotune ui: draws each page from /api/... and redraws it whenever the experiment's tables change.
// Every number comes from the server as tuner.results computed it; this file only lays it out.
"use strict";

const body = document.body;
const POLL_MS = Number(body.dataset.poll) || 2000;
const NAME = body.dataset.name;
const MAX_CURVES = 6;
const TRAIN = "#1f77b4";
const VAL = "#ff7f0e";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"];
const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const PLOT_CONFIG = { displaylogo: false, responsive: true };

// -- helpers ----------------------------------------------------------------------------------

function $(selector) {
  return document.querySelector(selector);
}

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function api(path = "", params = {}) {
  const query = new URLSearchParams(params).toString();
  return `/api/experiments/${encodeURIComponent(NAME)}${path}${query ? "?" + query : ""}`;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-cache", credentials: "same-origin" });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error((data && data.error) || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

// Reads url() every POLL_MS; calls onChange(data) when the answer's stamp moved.
function watch(url, onChange, onError) {
  let stamp = null;
  const tick = async () => {
    try {
      const data = await getJSON(url());
      setLive(true);
      if (data.stamp !== stamp) {
        stamp = data.stamp;
        await onChange(data);
      }
    } catch (error) {
      setLive(false, error.message);
      if (onError) onError(error);
    } finally {
      setTimeout(tick, POLL_MS);
    }
  };
  tick();
}

function setLive(ok, message) {
  const live = $("#live");
  const time = new Date().toLocaleTimeString();
  live.className = ok ? "live ok" : "live down";
  live.textContent = ok ? `live, read ${time}` : `not updating: ${message}`;
}

function notice(lines, kind = "info") {
  const box = $("#notice");
  const shown = lines.filter(Boolean);
  box.hidden = shown.length === 0;
  box.className = `notice ${kind}`;
  box.replaceChildren(...shown.map((line) => h("p", {}, line)));
}

function note(id, text) {
  const target = $(id);
  if (target) target.textContent = text || "";
}

function message(div, text) {
  if (div.data) Plotly.purge(div);
  div.classList.add("empty");
  div.replaceChildren(h("p", { class: "note" }, text));
}

function plot(div, data, layout) {
  if (!div.data) div.replaceChildren();
  div.classList.remove("empty");
  const base = { margin: { l: 60, r: 20, t: 30, b: 50 }, font: { size: 12 } };
  return Plotly.react(div, data, { ...base, ...layout }, PLOT_CONFIG);
}

function viridis(t) {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const mix = VIRIDIS[i].map((c, k) => Math.round(c + (VIRIDIS[i + 1][k] - c) * (x - i)));
  return `rgb(${mix.join(",")})`;
}

function states(counts) {
  return Object.entries(counts || {}).map(([state, n]) => `${state} ${n}`).join(" · ");
}

function trialLink(trialId) {
  const href = `/experiments/${encodeURIComponent(NAME)}/trials/${encodeURIComponent(trialId)}`;
  return h("a", { href }, trialId);
}

function kvRows(table, pairs) {
  table.replaceChildren(...pairs.map(([key, value]) => h("tr", {}, h("th", {}, key), h("td", {}, value))));
}

// -- charts shared by the pages ---------------------------------------------------------------

// One row per trial: accuracy left, loss right; learning-rate phases shaded as `results curves`.
function drawCurves(div, curves) {
  if (!curves.length) return message(div, "No epoch recorded yet for the chosen trials.");
  const lrs = curves.flatMap((c) => c.phases.map((p) => Math.log10(p[2]))).filter(isFinite);
  const [low, high] = [Math.min(...lrs), Math.max(...lrs)];
  const traces = [], shapes = [], annotations = [];
  curves.forEach((curve, row) => {
    ["acc", "loss"].forEach((metric, column) => {
      const k = row * 2 + column + 1;
      const axes = { xaxis: `x${k}`, yaxis: `y${k}` };
      for (const [split, color, label] of [["train", TRAIN, "training"], ["val", VAL, "validation"]]) {
        traces.push({
          ...axes, x: curve.epoch, y: curve[`${split}_${metric}`], name: label, legendgroup: label,
          showlegend: k === 1, mode: curve.epoch.length > 40 ? "lines" : "lines+markers",
          line: { color, width: 1.6 }, marker: { size: 4 },
          hovertemplate: `epoch %{x}<br>${label} ${metric}: %{y:.3f}<extra>${curve.trial_id}</extra>`,
        });
      }
      curve.phases.forEach(([first, last, lr, text], index) => {
        const t = high > low ? (Math.log10(lr) - low) / (high - low) : 0.5;
        shapes.push({
          type: "rect", xref: `x${k}`, yref: `y${k} domain`, x0: first - 0.5, x1: last + 0.5,
          y0: 0, y1: 1, fillcolor: `rgba(44,160,44,${0.06 + 0.22 * t})`, line: { width: 0 },
          layer: "below",
          // centred in its phase: at a corner it would read as a label of the axis's ticks
          label: { text: `lr ${text}`, textposition: "bottom center", font: { size: 9, color: "#276b27" } },
        });
        if (index > 0) shapes.push(vline(k, first - 0.5, { color: "#888", width: 1, dash: "dash" }));
      });
      curve.stages.forEach(([epoch, stage], index) => {
        if (index > 0) shapes.push(vline(k, epoch - 0.5, { color: "black", width: 1.5 }));
        annotations.push({
          xref: `x${k}`, yref: `y${k} domain`, x: epoch - 0.5, y: 1, xanchor: "left",
          yanchor: "top", text: `stage ${stage}`, showarrow: false, font: { size: 10 },
        });
      });
      annotations.push({
        xref: `x${k} domain`, yref: `y${k} domain`, x: 0, y: 1.02, xanchor: "left",
        yanchor: "bottom", showarrow: false, font: { size: 12 },
        text: `${curve.title}: ${metric === "acc" ? "accuracy (%)" : "loss"}`,
      });
    });
  });
  const layout = {
    ...epochAxes(curves.length * 2, Math.max(...curves.map((c) => c.epoch.length))),
    grid: { rows: curves.length, columns: 2, pattern: "independent", ygap: 0.35, xgap: 0.12 },
    height: 90 + 290 * curves.length, shapes, annotations, legend: { orientation: "h", y: -0.08 / curves.length, x: 0 },
    margin: { l: 60, r: 20, t: 40, b: 40 },
  };
  return plot(div, traces, layout);
}

// One tick per epoch while they fit, never half epochs.
function epochAxes(count, epochs) {
  const axes = {};
  for (let k = 1; k <= count; k++) {
    axes[k === 1 ? "xaxis" : `xaxis${k}`] = { dtick: epochs <= 20 ? 1 : null, tickformat: "d" };
  }
  return axes;
}

function vline(k, x, line) {
  return { type: "line", xref: `x${k}`, yref: `y${k} domain`, x0: x, x1: x, y0: 0, y1: 1, line };
}

function drawTiming(div, timing, single) {
  if (!timing.epochs.length) {
    note("#timing-note", "");
    return message(div, timing.message);
  }
  const traces = timing.parts.map((part) => ({
    type: "bar", x: timing.epochs, y: part.seconds, name: part.name,
    hovertemplate: `epoch %{x}<br>${part.name}: %{y:.2f} s<extra></extra>`,
  }));
  traces.push({
    type: "scatter", mode: "lines+markers", x: timing.epochs, y: timing.wall,
    name: "epoch wall time", line: { color: "black", width: 1 }, marker: { size: 4 },
  });
  const shares = Object.entries(timing.shares).map(([k, v]) => `${k} ${(100 * v).toFixed(1)} %`);
  const startup = timing.startup_mean_s === null ? "" :
    ` Start-up before the first epoch: ${timing.startup_mean_s.toFixed(1)} s on average over ${timing.runs} run${timing.runs === 1 ? "" : "s"}.`;
  note("#timing-note", `Share of the timed seconds: ${shares.join(", ")}.${startup}`);
  return plot(div, traces, {
    barmode: "stack", height: 340,
    xaxis: { ...epochAxes(1, timing.epochs.length).xaxis, title: { text: "epoch" } },
    yaxis: { title: { text: single ? "seconds" : "seconds (mean over trials)" } },
    legend: { orientation: "h", y: -0.25 },
  });
}

async function loadTiming(trials = []) {
  const data = await getJSON(api("/timing", trials.length ? { trials: trials.join(",") } : {}));
  await drawTiming($("#timing"), data, trials.length === 1);
}

// -- the experiment list ----------------------------------------------------------------------

function experimentsPage() {
  const tbody = $("#experiments tbody");
  watch(() => "/api/experiments", (data) => {
    if (!data.exists) {
      notice([`${data.storage} does not exist yet. A search creates it: egotune search SPACE --data ROOT --storage ${data.storage}`]);
    } else if (!data.experiments.length) {
      notice([`No experiments in ${data.storage} yet. Start one with egotune search SPACE --data ROOT --storage ${data.storage}; it appears here by itself.`]);
    } else {
      notice(data.experiments.flatMap((e) => e.warnings.map((w) => `${e.name}: ${w}`)), "warning");
    }
    tbody.replaceChildren(...data.experiments.map(experimentRow));
  });
}

function experimentRow(e) {
  const link = h("a", { href: `/experiments/${encodeURIComponent(e.name)}` }, e.name);
  if (e.error) {
    return h("tr", { class: "error" }, h("td", {}, link), h("td", { colspan: 7 }, `cannot be read: ${e.error}`));
  }
  const best = e.best_trial
    ? h("a", { href: `/experiments/${encodeURIComponent(e.name)}/trials/${encodeURIComponent(e.best_trial)}` }, e.best_text)
    : e.best_text;
  return h("tr", {},
    h("td", {}, link), h("td", {}, e.space || "-"), h("td", {}, h("span", { class: `state ${e.state.replace(/ /g, "-")}` }, e.state)),
    h("td", { class: "num" }, e.trials), h("td", {}, states(e.states) || "-"), h("td", { class: "num" }, best),
    h("td", {}, (e.started_at || "-").replace("T", " ").replace("+00:00", "")),
    h("td", {}, e.updated_at.replace("T", " ").replace("+00:00", "")));
}

// -- one experiment ---------------------------------------------------------------------------

function experimentPage() {
  const view = { data: null, selected: null, sort: { key: "best", dir: -1 }, layout: null };
  $("#filter").addEventListener("input", () => drawTrialTable(view));
  watch(() => api(), async (data) => {
    view.data = data;
    const s = data.summary;
    $("#summary").textContent = [
      s.space ? `space ${s.space}` : null, `${s.trials} trials (${states(s.status) || "none yet"})`,
      `best ${s.best_text}${s.best_trial ? ` (${s.best_trial})` : ""}`, `${s.epochs} epochs trained`,
      data.started_at ? `started ${data.started_at.replace("T", " ")}` : null,
    ].filter(Boolean).join(" · ");
    const waiting = s.trials === 0 && !data.warnings.length
      ? ["No trial has reported yet: the search is starting. This page fills in by itself."] : [];
    notice([...waiting, ...data.warnings], data.warnings.length ? "warning" : "info");
    if (view.selected === null || (view.selected.size === 0 && data.default_curves.length)) {
      view.selected = new Set(data.default_curves);
    }
    if (view.layout === null && data.table.params.length) view.layout = data.pivot_layout;
    drawTrialTable(view);
    note("#intervals-note", data.table.intervals_note);
    // what a reader looks at first, then the rest (one CPU draws them all)
    await Promise.allSettled([loadPivot(view), loadCurves(view)]);
    await Promise.allSettled([loadImportance(), loadParallel(), loadPareto(), loadTiming()]);
    body.dataset.drawn = data.stamp; // every section drawn for this state of the tables
  }, (error) => {
    if (error.status === 404) notice([`${error.message}. This page shows it as soon as the search writes its first results.`]);
    if (error.status === 422) notice([error.message], "error");
  });
}

const TRIAL_COLUMNS = [
  ["trial_id", "Trial"], ["status", "State"], ["epoch", "Epoch"], ["best", "Best accuracy (%)"],
  ["best_epoch", "Best epoch"], ["stopped", "Stopped"], ["wall_s", "Wall (s)"],
];

const HINTS = {
  stopped: "where the scheduler (ASHA) stopped the trial; ran all: it ran its planned epochs",
  best: "best validation accuracy so far, with its 95 % interval when the predictions give one",
  wall_s: "wall time the trial has used, retries included",
};

function drawTrialTable(view) {
  const { params, rows } = view.data.table;
  const columns = [...TRIAL_COLUMNS.slice(0, 2), ...params.map((p, i) => [`p${i}`, p]), ...TRIAL_COLUMNS.slice(2)];
  const value = (row, key) => (/^p\d+$/.test(key) ? row.params[Number(key.slice(1))] : row[key]);
  const terms = $("#filter").value.toLowerCase().split(/\s+/).filter(Boolean);
  const shown = rows.filter((row) => {
    const text = [row.trial_id, row.status, `stopped=${row.stopped}`,
      ...params.map((p, i) => `${p}=${row.params_text[i]}`)].join(" ").toLowerCase();
    return terms.every((term) => text.includes(term));
  });
  const { key, dir } = view.sort;
  shown.sort((a, b) => compareValues(value(a, key), value(b, key)) * dir);
  const head = h("tr", {}, h("th", { title: "show its curves" }, "Curves"), ...columns.map(([k, label]) =>
    h("th", { class: k === key ? (dir > 0 ? "sorted asc" : "sorted desc") : "", title: HINTS[k], onclick: () => {
      view.sort = { key: k, dir: k === key ? -dir : (k === "best" ? -1 : 1) };
      drawTrialTable(view);
    } }, label)));
  $("#trials thead").replaceChildren(head);
  $("#trials tbody").replaceChildren(...shown.map((row) => trialRow(row, params, view)));
  $("#count").textContent = `${shown.length} of ${rows.length} trials`;
  const pair = [...view.selected];
  const compare = $("#compare");
  compare.classList.toggle("disabled", pair.length !== 2);
  compare.href = pair.length === 2
    ? `/experiments/${encodeURIComponent(NAME)}/compare?${new URLSearchParams({ a: pair[0], b: pair[1] })}` : "#";
}

function compareValues(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined || a === "") return 1;
  if (b === null || b === undefined || b === "") return -1;
  return typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b), undefined, { numeric: true });
}

function trialRow(row, params, view) {
  const box = h("input", { type: "checkbox", checked: view.selected.has(row.trial_id), "aria-label": `curves of ${row.trial_id}` });
  box.addEventListener("change", () => {
    if (box.checked) view.selected.add(row.trial_id);
    else view.selected.delete(row.trial_id);
    drawTrialTable(view);
    loadCurves(view);
  });
  const best = row.interval
    ? `${row.best_text} [${row.interval[0].toFixed(2)}, ${row.interval[1].toFixed(2)}]` : row.best_text;
  return h("tr", { "data-trial": row.trial_id },
    h("td", {}, box), h("td", {}, trialLink(row.trial_id)),
    h("td", {}, h("span", { class: `state ${row.status.toLowerCase()}` }, row.status)),
    ...row.params_text.map((text) => h("td", { class: "num" }, text)),
    h("td", { class: "num" }, row.epoch ?? "-"), h("td", { class: "num best" }, best),
    h("td", { class: "num" }, row.best_epoch ?? "-"), h("td", {}, row.stopped),
    h("td", { class: "num" }, row.wall_s === null ? "-" : row.wall_s.toFixed(0)));
}

async function loadCurves(view) {
  const chosen = [...view.selected].slice(0, MAX_CURVES);
  const div = $("#curves");
  if (!chosen.length) return message(div, "Tick trials in the table to draw their curves.");
  const data = await getJSON(api("/curves", { trials: chosen.join(",") }));
  await drawCurves(div, data.curves);
}

function pivotControls(view) {
  const box = $("#pivot-controls");
  const params = view.data.table.params;
  const place = (p) => (view.layout.rows.includes(p) ? "rows" : view.layout.cols.includes(p) ? "cols" : "");
  const controls = params.map((p) => h("label", {}, `${p} `,
    h("select", { "data-param": p, onchange: (event) => {
      const where = event.target.value;
      for (const side of ["rows", "cols"]) view.layout[side] = view.layout[side].filter((q) => q !== p);
      if (where) view.layout[where].push(p);
      loadPivot(view);
    } }, ...[["rows", "down"], ["cols", "across"], ["", "averaged"]].map(([v, label]) =>
      h("option", { value: v, selected: place(p) === v }, label)))));
  const agg = h("select", { id: "pivot-agg", onchange: () => loadPivot(view) },
    h("option", { value: "mean" }, "mean over repeats"), h("option", { value: "max" }, "max over repeats"));
  if ($("#pivot-agg")) agg.value = $("#pivot-agg").value;
  box.replaceChildren(...controls, agg);
}

async function loadPivot(view) {
  const div = $("#pivot");
  if (!view.layout) return div.replaceChildren(h("p", { class: "note" }, "Needs two or more trials whose hyperparameters differ."));
  pivotControls(view);
  if (!view.layout.rows.length) return div.replaceChildren(h("p", { class: "note" }, "Choose at least one hyperparameter to lay down the rows."));
  const agg = $("#pivot-agg").value;
  const data = await getJSON(api("/pivot", { rows: view.layout.rows.join(","), cols: view.layout.cols.join(","), agg }));
  drawPivot(div, data);
}

// The report's Fig. 10 layout: row labels down, column labels across, cells colored by value.
function drawPivot(div, p) {
  if (!p.values.length) return div.replaceChildren(h("p", { class: "note" }, p.message || "No finished trial yet."));
  const present = p.values.flat().filter((v) => v !== null);
  const [low, high] = [Math.min(...present), Math.max(...present)];
  const head = [
    h("tr", {}, h("th", { colspan: p.rows.length, class: "corner" }, p.cols.join(" / ")),
      ...p.col_labels.map((labels) => h("th", { class: "num" }, labels.join(" / ")))),
    h("tr", {}, ...p.rows.map((r) => h("th", {}, r)), ...p.col_labels.map(() => h("th"))),
  ];
  const body = p.row_labels.map((labels, i) => h("tr", {},
    ...labels.map((label, level) => {
      const repeated = i > 0 && p.row_labels[i - 1].slice(0, level + 1).join("\u0000") === labels.slice(0, level + 1).join("\u0000");
      return h("th", { class: "label" }, repeated ? "" : label);
    }),
    ...p.values[i].map((v, j) => {
      if (v === null) return h("td", { class: "num missing" }, "-");
      const t = high > low ? (v - low) / (high - low) : 1;
      const marked = p.marks && p.marks[i][j];
      return h("td", {
        class: ["num", v === p.best ? "best" : "", marked ? "indistinct" : ""].join(" ").trim(),
        style: `background:${viridis(t)};color:${t > 0.55 ? "#111" : "#fff"}`,
        title: marked ? "not distinguishable from the best" : null,
      }, p.text[i][j]);
    })));
  div.replaceChildren(h("table", { class: "heatmap" }, h("thead", {}, ...head), h("tbody", {}, ...body)));
  const legend = `${p.agg} best validation accuracy (%); outlined: the best cell.`;
  note("#pivot-note", p.marks ? `${legend} Dashed: not distinguishable from the best.` : `${legend} ${p.marks_note}.`);
}

async function loadImportance() {
  const data = await getJSON(api("/importance"));
  const div = $("#importance");
  if (!data.names.length) return message(div, `Not yet: ${data.message}.`);
  return plot(div, [{
    type: "bar", orientation: "h", x: [...data.values].reverse(), y: [...data.names].reverse(),
    text: [...data.values].reverse().map((v) => v.toFixed(2)), textposition: "outside",
    marker: { color: TRAIN }, hovertemplate: "%{y}: %{x:.3f}<extra></extra>", cliponaxis: false,
  }], {
    height: 90 + 34 * data.names.length, margin: { l: 20, r: 40, t: 10, b: 50 }, yaxis: { automargin: true },
    xaxis: { title: { text: "importance (share, Optuna ped-anova)" }, range: [0, Math.max(1, ...data.values) * 1.1] },
  });
}

async function loadParallel() {
  const data = await getJSON(api("/parallel"));
  const div = $("#parallel");
  if (!data.dimensions.length) return message(div, `Not yet: ${data.message}.`);
  const value = data.dimensions[data.dimensions.length - 1].label;
  await plot(div, [{
    type: "parcoords",
    line: { color: data.color, colorscale: "Viridis", showscale: false },
    dimensions: data.dimensions.map((d) => ({ ...d, range: [0, 1] })),
  }], { height: 400, margin: { l: 60, r: 60, t: 50, b: 30 } });
  note("#parallel-note", `One line per trial, colored by ${value}; drag along an axis to filter.`);
}

// Best accuracy against counted FLOPs: the front as a staircase, the recommendation marked.
async function loadPareto() {
  const data = await getJSON(api("/pareto"));
  const div = $("#pareto");
  if (!data.points.length) return message(div, `Not yet: ${data.message}.`);
  const front = data.points.filter((p) => p.on_front).sort((a, b) => a.cost - b.cost);
  const group = (points, name, marker) => ({
    type: "scatter", mode: "markers", name, x: points.map((p) => p.cost), y: points.map((p) => p.value),
    text: points.map((p) => p.trial_id), marker,
    hovertemplate: "%{text}<br>%{y:.2f} %<br>%{x:.3g}<extra></extra>",
  });
  const traces = [
    { type: "scatter", mode: "lines", name: "Pareto front", x: front.map((p) => p.cost), y: front.map((p) => p.value),
      line: { shape: "hv", color: VAL }, hoverinfo: "skip" },
    group(data.points.filter((p) => p.on_front && !p.stopped), "on the front", { color: VAL, size: 9 }),
    group(data.points.filter((p) => !p.on_front && !p.stopped), "dominated", { color: "#999", size: 7 }),
    group(data.points.filter((p) => p.stopped), "stopped early", { color: "#555", size: 7, symbol: "circle-open" }),
  ].filter((t) => t.mode === "lines" || t.x.length);
  const r = data.recommendation;
  const byId = Object.fromEntries(data.points.map((p) => [p.trial_id, p]));
  const marks = r ? [[r.best, "best"], ...(r.same_trial ? [] : [[r.recommended, "recommended"]])] : [];
  await plot(div, traces, {
    height: 380, margin: { l: 60, r: 20, t: 10, b: 50 },
    xaxis: { title: { text: data.unit } }, yaxis: { title: { text: "best validation accuracy (%)" } },
    annotations: marks.filter(([id]) => byId[id]).map(([id, label]) => ({
      x: byId[id].cost, y: byId[id].value, text: label, showarrow: true, arrowhead: 0, ax: 30, ay: 25,
    })),
  });
  const saving = r && !r.same_trial
    ? `Recommended: ${r.recommended}, ${Math.round(100 * r.saving)} % cheaper than the best ${r.best}; `
      + `the ${r.videos} validation videos cannot tell them apart (Holm-corrected McNemar p = ${r.p_holm.toPrecision(2)}).`
    : r ? `The best trial ${r.best} is also the cheapest the validation videos cannot tell from it.`
      : data.recommendation_note;
  note("#pareto-note", `One point per trial; on the front, no other trial is as accurate for less. ${saving}`);
}

// -- one trial --------------------------------------------------------------------------------

function trialPage() {
  const trialId = body.dataset.trial;
  watch(() => api(`/trials/${encodeURIComponent(trialId)}`), async (data) => {
    notice(data.warnings, "warning");
    kvRows($("#config"), Object.entries(data.config));
    kvRows($("#trial-summary"), Object.entries(data.summary));
    const logs = data.logs.length ? data.logs : ["Ray Tune has written no folder for this trial yet"];
    $("#logs").replaceChildren(...logs.map((path) => h("li", {}, h("code", {}, path))));
    drawStatistics(trialId, data);
    const [curves] = await Promise.all([getJSON(api("/curves", { trials: trialId })), loadTiming([trialId])]);
    await drawCurves($("#curves"), curves.curves);
    const all = await getJSON(api());
    const others = all.table.rows.map((r) => r.trial_id).filter((t) => t !== trialId);
    const select = $("#other");
    const keep = select.value;
    select.replaceChildren(...others.map((t) => h("option", { value: t, selected: t === keep }, t)));
  }, (error) => notice([error.status === 404 ? `${error.message}. This page shows it once the search reports it.` : error.message], "error"));
}

function drawStatistics(trialId, data) {
  const stats = data.statistics;
  note("#statistics-note", data.statistics_note);
  if (!stats) return;
  plot($("#confusion"), [{
    type: "heatmap", z: stats.confusion, x: stats.classes, y: stats.classes, colorscale: "Viridis",
    texttemplate: "%{z}", hovertemplate: "true %{y}<br>predicted %{x}: %{z}<extra></extra>",
  }], {
    // automargin: the margins grow to the longest class name (GTEA61's reach 30 characters)
    height: 420, xaxis: { title: { text: "predicted" }, automargin: true },
    yaxis: { title: { text: "true" }, autorange: "reversed", automargin: true },
    margin: { l: 20, r: 20, t: 30, b: 20 },
  });
  plot($("#per-class"), [{
    type: "bar", x: stats.classes, y: stats.per_class_accuracy, marker: { color: VAL },
    hovertemplate: "%{x}: %{y:.1f} %<extra></extra>",
  }], {
    height: 420, xaxis: { automargin: true }, margin: { l: 60, r: 20, t: 30, b: 20 },
    yaxis: { title: { text: "accuracy (%)" }, range: [0, 100], automargin: true },
  });
  const base = `/experiments/${encodeURIComponent(NAME)}/trials/${encodeURIComponent(trialId)}/cam/`;
  $("#cam-section").hidden = !stats.cam_strips.length;  // no heading over nothing
  $("#cams").replaceChildren(...stats.cam_strips.map((file) =>
    h("figure", {}, h("img", { src: base + encodeURIComponent(file), alt: `CAM strip ${file}` }), h("figcaption", {}, file))));
}

// -- two trials -------------------------------------------------------------------------------

function comparePage() {
  const pair = [body.dataset.a, body.dataset.b];
  watch(() => api("/compare", { a: pair[0], b: pair[1] }), async (data) => {
    notice(data.warnings, "warning");
    const header = h("tr", {}, h("th", {}, ""), ...pair.map((t) => h("th", {}, trialLink(t))));
    $("#config").replaceChildren(header, ...data.config.map(([key, a, b, differs]) =>
      h("tr", { class: differs ? "differs" : "" }, h("th", {}, key), h("td", {}, a), h("td", {}, b))));
    $("#pair-summary").replaceChildren(header.cloneNode(true), ...data.summary.map(([key, a, b]) =>
      h("tr", {}, h("th", {}, key), h("td", {}, a), h("td", {}, b))));
    note("#paired-note", data.paired_note);
    kvRows($("#paired"), Object.entries(data.paired_test || {}));
    const curves = await getJSON(api("/curves", { trials: pair.join(",") }));
    drawPair($("#curves"), curves.curves);
  }, (error) => notice([error.message], "error"));
}

function drawPair(div, curves) {
  if (!curves.length) return message(div, "No epoch recorded yet for these trials.");
  const traces = curves.flatMap((curve, i) => [["val", "solid", "validation"], ["train", "dot", "training"]].map(
    ([split, dash, label]) => ({
      x: curve.epoch, y: curve[`${split}_acc`], name: `${curve.trial_id} ${label}`, mode: "lines+markers",
      line: { color: PALETTE[i % PALETTE.length], dash, width: 1.6 }, marker: { size: 4 },
    })));
  return plot(div, traces, {
    height: 380, xaxis: { ...epochAxes(1, Math.max(...curves.map((c) => c.epoch.length))).xaxis, title: { text: "epoch" } },
    yaxis: { title: { text: "accuracy (%)" } },
    legend: { orientation: "h", y: -0.2 },
  });
}

const PAGES = { experiments: experimentsPage, experiment: experimentPage, trial: trialPage, compare: comparePage };
if (PAGES[body.dataset.page]) PAGES[body.dataset.page]();
