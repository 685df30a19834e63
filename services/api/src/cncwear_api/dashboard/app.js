// The cncwear dashboard: every number on this page comes from the API's JSON endpoints; the page
// only draws them. Views whose endpoint this server does not offer say so instead of failing.

import { askToken, forgetToken, get, post, routes, token } from "./api.js";
import { $, byTestId, el, errorText, fmt, guarded, missing, notice, setText, when } from "./dom.js";
import { COLORS, color, draw, horizontalBars, linearAxes, xyLine } from "./charts.js";
import { initRuns, loadDataVersions, setChampionDataVersion, startRuns } from "./runs.js";
import { setPromotionPolicy, startShadow } from "./shadow.js";

const DRIFT_POLL_MS = 10000;
const DRIFT_HISTORY_POINTS = 360;
const JOB_POLL_MS = 1000;
const READY_POLL_MS = 15000;
const METRIC_ORDER = ["accuracy", "precision", "recall", "f1", "mcc", "roc_auc", "experiment_accuracy"];

const state = {
  routes: new Set(),
  version: null,
  distributions: null,
  drift: null,
  driftHistory: [],
  liveDistributions: null,
  driftTimer: null,
  globalView: null,
  examples: [],
};

function offers(path) {
  return state.routes.has(path);
}

// -- status and champion ---------------------------------------------------------------------

async function loadStatus() {
  const status = $("#status");
  try {
    const ready = await fetch("/ready", { headers: { Accept: "application/json" } }).then((r) => r.json());
    if (ready.ready && ready.model) {
      status.className = "status ok";
      status.textContent = `serving ${ready.model.name} v${ready.model.version}`;
      return ready.model.version;
    }
    status.className = "status down";
    status.textContent = ready.detail || "no champion loaded";
  } catch (error) {
    status.className = "status down";
    status.textContent = `API unreachable: ${error}`;
  }
  return null;
}

async function loadChampion() {
  const model = await get("/model");
  state.version = model.version;
  setText("champion-version", model.version);
  setText("champion-candidate", model.candidate);
  setText("champion-estimator", model.estimator);
  setText("champion-engine", model.engine);
  setText("champion-trained", when(model.trained_at));
  setText("champion-data-version", model.data_version ?? "none recorded (trained on a data folder)");
  setChampionDataVersion(model.data_version ?? null);
  setPromotionPolicy(model.promotion_policy);
  setText("champion-runtime", model.serving.runtime);
  setText("champion-holdout", model.metrics.holdout_experiments.join(", "));
  setText("metric-grouped-accuracy", fmt(model.metrics.holdout.accuracy));
  setText("metric-leaky-accuracy", fmt(model.leaky_row_split.accuracy));
  const body = $("[data-testid=holdout-metrics] tbody");
  body.replaceChildren(
    ...METRIC_ORDER.filter((name) => name in model.metrics.holdout).map((name) =>
      el("tr", { "data-metric": name }, el("th", { text: name }), el("td", { class: "num", text: fmt(model.metrics.holdout[name]) })),
    ),
    el("tr", { "data-metric": "cv_grouped_accuracy" }, el("th", { text: "cv grouped accuracy" }), el("td", { class: "num", text: fmt(model.metrics.cv_grouped_accuracy) })),
  );
  notice("champion", model.promotion_reason ? `Promoted because: ${model.promotion_reason}` : null);
}

// -- evaluation ------------------------------------------------------------------------------

function heat(count, total) {
  const share = total ? count / total : 0;
  return `rgba(31, 111, 235, ${(0.08 + 0.6 * share).toFixed(3)})`;
}

async function loadEvaluation() {
  const evaluation = await get("/model/evaluation");
  const matrix = evaluation.confusion_matrix;
  if (!matrix) {
    notice("evaluation", "This version was trained before curves and the confusion matrix were recorded: retrain to see them.");
  } else {
    const total = matrix.counts.flat().reduce((a, b) => a + b, 0);
    matrix.counts.forEach((row, i) =>
      row.forEach((count, j) => {
        const cell = byTestId(`cm-${i}-${j}`);
        cell.textContent = String(count);
        cell.style.backgroundColor = heat(count, total);
      }),
    );
  }
  const experiments = Object.entries(evaluation.per_experiment_accuracy);
  draw("experiment-chart", {
    type: "bar",
    data: {
      labels: experiments.map(([number]) => `exp ${number}`),
      datasets: [{ label: "row accuracy", data: experiments.map(([, value]) => value), backgroundColor: COLORS.green }],
    },
    options: { plugins: { legend: { display: false } }, scales: { y: { min: 0, max: 1 } } },
  });
  if (evaluation.roc) {
    setText("roc-auc", fmt(evaluation.roc.auc));
    draw("roc-chart", {
      type: "scatter",
      data: {
        datasets: [
          xyLine(evaluation.roc.fpr, evaluation.roc.tpr, "ROC", COLORS.blue),
          xyLine([0, 1], [0, 1], "chance", COLORS.grey, { borderDash: [4, 4], borderWidth: 1 }),
        ],
      },
      options: { scales: linearAxes("false positive rate", "true positive rate", { x: { min: 0, max: 1 }, y: { min: 0, max: 1 } }) },
    });
  }
  if (evaluation.precision_recall) {
    const pr = evaluation.precision_recall;
    setText("pr-ap", fmt(pr.average_precision));
    draw("pr-chart", {
      type: "scatter",
      data: { datasets: [xyLine(pr.recall, pr.precision, "precision–recall", COLORS.orange)] },
      options: { scales: linearAxes("recall", "precision", { x: { min: 0, max: 1 }, y: { min: 0, max: 1 } }) },
    });
  }
}

// -- candidates of the last retrains ---------------------------------------------------------

const CANDIDATE_COLUMNS = [
  ["holdout_accuracy", "accuracy"],
  ["holdout_f1", "F1"],
  ["holdout_mcc", "MCC"],
  ["holdout_roc_auc", "ROC AUC"],
  ["holdout_experiment_accuracy", "exp. acc."],
  ["cv_grouped_accuracy", "CV grouped"],
  ["leaky_row_split_accuracy", "leaky split"],
  ["fit_seconds", "fit s"],
];

function retrainCard(retrain, index) {
  const decided = retrain.decision
    ? el("span", { class: `decision-tag ${retrain.decision === "promoted" ? "promoted" : "kept"}`, "data-testid": "retrain-decision-tag", text: retrain.decision })
    : el("span", { class: "decision-tag", text: retrain.status.toLowerCase() });
  const header = el(
    "div",
    {},
    el("h3", {}, `${when(retrain.started_at)} · `, decided),
    el(
      "p",
      { class: "hint" },
      `reason: ${retrain.reason || "–"} · budget ${retrain.budget || "–"} · winner ${retrain.winner || "–"} → version ${retrain.registered_version || "–"} · data `,
      el("span", { "data-testid": "retrain-data-version", text: retrain.data_version || "–" }),
    ),
    retrain.decision_reason ? el("p", { class: "hint", text: retrain.decision_reason }) : null,
  );
  const rows = retrain.candidates.map((candidate) =>
    el(
      "tr",
      { "data-testid": "candidate-row", "data-candidate": candidate.name, class: candidate.name === retrain.winner ? "winner" : null },
      el("td", { text: `${candidate.name === retrain.winner ? "★ " : ""}${candidate.name}` }),
      candidate.error
        ? el("td", { colspan: String(CANDIDATE_COLUMNS.length), class: "drifted", text: candidate.error })
        : CANDIDATE_COLUMNS.map(([key]) =>
            el("td", { class: "num", "data-metric": key, text: fmt(candidate.metrics[key], key === "fit_seconds" ? 1 : 3) }),
          ),
    ),
  );
  const table = el(
    "table",
    { class: "metrics" },
    el("thead", {}, el("tr", {}, el("th", { text: "candidate" }), CANDIDATE_COLUMNS.map(([, title]) => el("th", { class: "num", text: title })))),
    el("tbody", {}, rows),
  );
  const canvasId = `retrain-chart-${index}`;
  const card = el(
    "div",
    { class: "card", "data-testid": "retrain-card", "data-run": retrain.run_id },
    header,
    el("div", { class: "chart" }, el("canvas", { id: canvasId, "aria-label": "Candidates compared" })),
    el("div", { class: "scroll" }, table),
  );
  return { card, canvasId };
}

function drawCandidates(canvasId, retrain) {
  const shown = [
    ["holdout_accuracy", "grouped accuracy"],
    ["holdout_f1", "F1"],
    ["holdout_mcc", "MCC"],
    ["leaky_row_split_accuracy", "leaky row split"],
  ];
  const fitted = retrain.candidates.filter((c) => !c.error);
  draw(canvasId, {
    type: "bar",
    data: {
      labels: fitted.map((c) => c.name),
      datasets: shown.map(([key, label], i) => ({
        label,
        data: fitted.map((c) => c.metrics[key] ?? null),
        backgroundColor: key.startsWith("leaky") ? "rgba(224, 123, 0, 0.35)" : color(i === 0 ? 0 : i + 1),
      })),
    },
    options: { scales: { y: { min: -0.2, max: 1 } } },
  });
}

async function loadCandidates() {
  const retrains = await get("/model/retrains?limit=3");
  const box = byTestId("retrains");
  if (!retrains.length) {
    box.replaceChildren(el("p", { class: "hint", text: "No retrain recorded yet." }));
    return;
  }
  const built = retrains.map(retrainCard);
  box.replaceChildren(...built.map((b) => b.card));
  built.forEach((b, i) => drawCandidates(b.canvasId, retrains[i]));
}

// -- distributions (training vs live) -------------------------------------------------------

function centres(edges) {
  return edges.slice(0, -1).map((edge, i) => (edge + edges[i + 1]) / 2);
}

function shares(counts) {
  const total = counts.reduce((a, b) => a + b, 0) || 1;
  return counts.map((c) => c / total);
}

/** The live histogram of a feature (binned like the training one), when the server has one. */
function liveHistogram(feature) {
  const live = state.liveDistributions;
  const entry = live && live.features.find((f) => f.feature === feature);
  return entry ? entry.histogram : null;
}

/** This feature's entry in the last /drift answer (live window against the reference). */
function liveDrift(feature) {
  return driftFeatures().find((f) => f.feature === feature) || null;
}

/** A vertical line at x, from 0 to the top of the histogram, as a dataset. */
function marker(x, top, label, colour, dash) {
  return xyLine([x, x], [0, top], label, colour, { type: "line", borderDash: dash, borderWidth: 2 });
}

function drawDistribution() {
  const select = $("#feature-select");
  const data = state.distributions;
  if (!data || !select.value) return;
  const feature = data.features.find((f) => f.feature === select.value);
  const xs = centres(feature.histogram.edges);
  const training = shares(feature.histogram.counts);
  const top = Math.max(...training) * 1.05;
  const datasets = [
    { type: "bar", label: "training", data: xs.map((x, i) => ({ x, y: training[i] })), backgroundColor: "rgba(31, 111, 235, 0.45)", barPercentage: 1, categoryPercentage: 1 },
    marker(feature.mean, top, "training mean", COLORS.blue, [2, 2]),
  ];
  const histogram = liveHistogram(feature.feature);
  if (histogram) {
    datasets.push(xyLine(centres(histogram.edges), shares(histogram.counts), "live traffic", COLORS.orange, { type: "line", pointRadius: 2 }));
  }
  const drift = liveDrift(feature.feature);
  if (drift) datasets.push(marker(drift.current_mean, top, "live mean", COLORS.orange, [6, 3]));
  let live = offers("/drift") ? "; live traffic: not enough rows in the window yet" : "; live traffic appears once the server offers /drift";
  if (drift) {
    live = `; live mean ${fmt(drift.current_mean)} over the last ${state.drift.window_rows} rows served (PSI ${fmt(drift.psi)}${drift.drifted ? ", drifted" : ""})`;
  }
  setText(
    "distribution-caption",
    `${feature.feature}: training mean ${fmt(feature.mean)}, std ${fmt(feature.std)} (histogram of ${data.sample_rows} of ${data.rows} training rows)${live}`,
  );
  draw("distribution-chart", {
    type: "bar",
    data: { datasets },
    options: { scales: linearAxes(feature.feature, "share of rows", { x: { offset: false } }) },
  });
}

async function loadLiveDistributions() {
  if (offers("/drift/distributions")) state.liveDistributions = await get("/drift/distributions");
}

async function loadDistributions() {
  const [data] = await Promise.all([get("/model/distributions"), loadLiveDistributions()]);
  state.distributions = data;
  const select = $("#feature-select");
  const previous = select.value;
  select.replaceChildren(...data.features.map((f) => el("option", { value: f.feature, text: f.feature })));
  if (previous && data.features.some((f) => f.feature === previous)) select.value = previous;
  drawDistribution();
  const probability = data.holdout_probability_worn;
  draw("probability-chart", {
    type: "bar",
    data: {
      labels: centres(probability.edges).map((x) => x.toFixed(2)),
      datasets: [{ label: "held-out rows", data: probability.counts, backgroundColor: COLORS.green }],
    },
    options: { plugins: { legend: { display: false } }, scales: { x: { title: { display: true, text: "probability of wear" } } } },
  });
}

// -- drift over time -------------------------------------------------------------------------

/** Per-feature entries of the last /drift answer, each as {feature, ...}. */
function driftFeatures() {
  const features = (state.drift && state.drift.features) || [];
  return features.map((entry) => ({ feature: entry.name, ...entry }));
}

/** What the chart draws for a feature: its statistic as a share of its band's edge when it is
 * judged against the variation between normal runs (1: the edge), else its PSI. */
function driftLevel(f) {
  return f.calibrated && f.threshold > 0 ? f.statistic / f.threshold : f.psi;
}

function edgeLine(points) {
  return { label: "edge of the normal band", data: new Array(points).fill(1), borderColor: COLORS.red, borderDash: [6, 4], pointRadius: 0, borderWidth: 1 };
}

/** A calibrated statistic's normal band (the between-runs null, median to maximum) and the edge
 * it is judged against; a fixed threshold otherwise. */
function bandText(f) {
  if (!f.calibrated) return `fixed · ${fmt(f.threshold)}`;
  return `${fmt(f.band["0.5"])}–${fmt(f.band["1.0"])} · ${fmt(f.threshold)}`;
}

function driftSummary(drift, features) {
  const calibrated = Boolean(drift.reference && drift.reference.calibrated);
  const rule = calibrated
    ? "alarm when any is beyond the normal band of the training runs"
    : `share ${fmt(drift.drift_share, 2)}, alarm at ${fmt(drift.drift_share_threshold, 2)}`;
  const parts = [
    `${drift.drifted_features.length} of ${features.length} features drifted (${rule})`,
    `window ${drift.window_rows} of ${drift.window_capacity} rows` + (drift.enough_rows ? "" : ` (statistics need ${drift.min_rows})`),
  ];
  if (drift.prediction) {
    parts.push(`prediction drift PSI ${fmt(drift.prediction.psi)}${drift.prediction.drifted ? " (drifted)" : ""}`);
  }
  const live = drift.performance;
  if (live && live.enough_rows) {
    parts.push(`live accuracy ${fmt(live.metrics.accuracy)} vs holdout ${fmt(live.holdout.accuracy)} (${live.labelled_rows} labelled rows)`);
  } else if (live) {
    parts.push(`live accuracy: ${live.labelled_rows} labelled rows so far`);
  }
  parts.push(`${state.driftHistory.length} snapshot(s) since this page opened, one every ${DRIFT_POLL_MS / 1000} s`);
  return parts.join(" · ");
}

function drawDrift() {
  const drift = state.drift;
  const features = driftFeatures();
  const body = $("[data-testid=drift-table] tbody");
  body.replaceChildren(
    ...features.map((f) =>
      el(
        "tr",
        { "data-feature": f.feature },
        el("td", { text: f.feature }),
        el("td", { class: "num", "data-metric": "psi", text: fmt(f.psi) }),
        el("td", { text: f.test }),
        el("td", { class: "num", "data-metric": "statistic", text: fmt(f.statistic) }),
        el("td", { class: "num", "data-metric": "band", text: bandText(f) }),
        el("td", { class: f.drifted ? "drifted" : null, "data-metric": "drifted", text: (f.drifted ? "yes" : "no") + (f.stuck ? " (stuck)" : "") }),
      ),
    ),
  );
  setText("drift-summary", driftSummary(drift, features));
  const names = features.map((f) => f.feature);
  const calibrated = Boolean(drift.reference && drift.reference.calibrated);
  draw("drift-chart", {
    type: "line",
    data: {
      labels: state.driftHistory.map((h) => h.at.toISOString().slice(11, 19)),
      datasets: names.map((name, i) => ({
        label: name,
        data: state.driftHistory.map((h) => h.level[name] ?? null),
        borderColor: color(i),
        backgroundColor: color(i),
        pointRadius: 2,
        borderWidth: 1.5,
        spanGaps: true,
      })).concat(calibrated ? [edgeLine(state.driftHistory.length)] : []),
    },
    options: { scales: { y: { title: { display: true, text: calibrated ? "statistic / edge of the normal band (above 1: drifted)" : "PSI (0.2: significant shift)" }, min: 0 } } },
  });
}

async function pollDrift() {
  try {
    [state.drift] = await Promise.all([get("/drift"), loadLiveDistributions()]);
  } catch (error) {
    // Stop asking (each failed request is an error in the browser's console too); a new
    // champion starts the polling again.
    stopDriftPolling();
    notice("drift", `Could not load /drift: ${errorText(error)}. Not asking again until the champion changes.`, "error");
    return;
  }
  const level = {};
  for (const f of driftFeatures()) level[f.feature] = driftLevel(f);
  state.driftHistory.push({ at: new Date(), level });
  if (state.driftHistory.length > DRIFT_HISTORY_POINTS) state.driftHistory.shift();
  notice("drift", null);
  drawDrift();
  if (state.distributions) drawDistribution();
}

function startDriftPolling() {
  stopDriftPolling();
  state.driftTimer = setInterval(pollDrift, DRIFT_POLL_MS);
  return pollDrift();
}

function stopDriftPolling() {
  if (state.driftTimer) clearInterval(state.driftTimer);
  state.driftTimer = null;
}

// -- global explanations ---------------------------------------------------------------------

function drawPartialDependence() {
  const view = state.globalView;
  const name = $("#pd-select").value;
  const curve = view.partial_dependence.find((p) => p.feature === name);
  if (!curve) return;
  const ice = curve.ice.map((ys, i) => xyLine(curve.grid, ys, i === 0 ? "ICE (single rows)" : "", "rgba(139, 149, 167, 0.35)", { borderWidth: 1 }));
  draw("pd-chart", {
    type: "scatter",
    data: { datasets: [xyLine(curve.grid, curve.average, "partial dependence", COLORS.red, { borderWidth: 3 }), ...ice] },
    options: {
      plugins: { legend: { labels: { filter: (item) => item.text !== "" } } },
      scales: linearAxes(curve.feature, view.output_space === "log_odds" ? "log-odds of wear" : "probability of wear"),
    },
  });
}

async function loadGlobal() {
  notice("global", "Computing global explanations (the first time for a version takes a few seconds)…");
  const view = await get("/explain/global");
  state.globalView = view;
  notice("global", null);
  const top = view.importance.slice(0, 15);
  horizontalBars("importance-chart", top.map((i) => i.feature), top.map((i) => i.mean_abs_shap), "mean |SHAP|");
  setText("surrogate-fidelity", fmt(view.surrogate.fidelity_accuracy));
  byTestId("surrogate-rules").textContent =
    `depth ${view.surrogate.depth}, ${view.surrogate.leaves} leaves; agrees with the champion on ` +
    `${fmt(view.surrogate.fidelity_accuracy)} of ${view.surrogate.check_rows} unseen rows\n\n${view.surrogate.rules}`;
  const select = $("#pd-select");
  select.replaceChildren(...view.partial_dependence.map((p) => el("option", { value: p.feature, text: p.feature })));
  drawPartialDependence();
}

// -- explain a row ---------------------------------------------------------------------------

async function loadExamples() {
  const data = await get("/model/examples?per_experiment=3");
  state.examples = data.examples;
  const select = $("#example-select");
  select.replaceChildren(
    ...data.examples.map((example, i) =>
      el("option", { value: String(i), text: `experiment ${example.experiment} (${example.true_label}) · row ${(i % 3) + 1}` }),
    ),
  );
  fillRow();
}

function fillRow() {
  const example = state.examples[Number($("#example-select").value)];
  if (example) $("#row-input").value = JSON.stringify(example.row, null, 1);
}

function explainCard(method) {
  return byTestId(`explain-${method}`);
}

function renderShap(answer) {
  const card = explainCard("shap");
  card.dataset.state = "done";
  $("[data-role=summary]", card).textContent =
    `P(worn) ${fmt(answer.probability_worn)} → ${answer.label} · base ${fmt(answer.base_value)} + contributions = ${fmt(answer.output)} ` +
    `(${answer.output_space}, ${answer.algorithm}) · ${fmt(answer.seconds * 1000, 0)} ms`;
  const top = answer.contributions.slice(0, 12);
  horizontalBars(
    "shap-chart",
    top.map((c) => `${c.feature} = ${fmt(c.value)}`),
    top.map((c) => c.contribution),
    "contribution",
    top.map((c) => (c.contribution >= 0 ? COLORS.red : COLORS.blue)),
  );
  // Derived features in raw columns: Z = X1_CommandPosition (12.3) − X1_ActualPosition (12.1)
  const derived = top.filter((c) => c.terms.length > 1);
  $("[data-role=raw]", card).replaceChildren(
    ...derived.map((c) =>
      el("li", {
        "data-feature": c.feature,
        text:
          `${c.feature} = ` +
          c.terms.map((t, i) => `${i ? (t.sign < 0 ? "− " : "+ ") : t.sign < 0 ? "−" : ""}${t.column} (${fmt(t.value)})`).join(" ") +
          ` → ${fmt(c.contribution)}`,
      }),
    ),
  );
}

// A clear mark when an answer is not to be taken at face value (partial, below its threshold,
// poor local fit); none when it holds.
function setFlags(card, flags) {
  card.dataset.flags = flags.map((f) => f.key).join(" ");
  $("[data-role=flags]", card).replaceChildren(
    ...flags.map((f) => el("span", { class: "badge warn", "data-flag": f.key, title: f.title, text: f.text })),
  );
}

function renderLime(answer) {
  const card = explainCard("lime");
  card.dataset.state = "done";
  $("[data-role=summary]", card).textContent =
    `explains "${answer.label}" · local fit R² ${fmt(answer.score)} (asked ≥ ${fmt(answer.min_score, 2)}) · ` +
    `local prediction ${fmt(answer.local_prediction)} · ${answer.samples} samples · ${fmt(answer.seconds, 2)} s`;
  setFlags(
    card,
    answer.low_fidelity
      ? [{ key: "low_fidelity", text: "low fidelity", title: "the local linear model fits the model poorly around this row: read its weights with care" }]
      : [],
  );
  const top = answer.features.slice(0, 12);
  horizontalBars(
    "lime-chart",
    top.map((w) => w.condition.text),
    top.map((w) => w.weight),
    "weight",
    top.map((w) => (w.weight >= 0 ? COLORS.orange : COLORS.grey)),
  );
}

function renderAnchor(answer) {
  const card = explainCard("anchor");
  card.dataset.state = "done";
  $("[data-role=summary]", card).textContent =
    `precision ${fmt(answer.precision)} ${answer.precision >= answer.threshold ? "≥" : "<"} threshold ${fmt(answer.threshold, 2)} · ` +
    `coverage ${fmt(answer.coverage)}` +
    (answer.partial ? ` · partial: stopped by ${answer.stopped_by}` : "") +
    (answer.widened ? ` · searched again on ${answer.candidates.length} features` : "") +
    ` · ${answer.binning === "decision_path" ? "the tree's decision path" : `${answer.binning} bins`} · ${fmt(answer.seconds, 2)} s`;
  const flags = [];
  if (answer.partial) flags.push({ key: "partial", text: "partial", title: `the search hit its cap (${answer.stopped_by}): the best rule so far` });
  if (answer.precision < answer.threshold) flags.push({ key: "below_threshold", text: "below threshold", title: "the rule holds for fewer rows than asked" });
  setFlags(card, flags);
  const line = (c) => `  ${c.text}` + (c.formula && c.formula !== c.feature ? `   [${c.feature} = ${c.formula}]` : "");
  const conditions = answer.conditions.length ? answer.conditions.map(line).join("\n  AND\n") : "  (any row)";
  $("[data-role=rule]", card).textContent = `IF\n${conditions}\nTHEN ${answer.label}`;
}

const RENDERERS = { shap: renderShap, lime: renderLime, anchor: renderAnchor };

async function explainRow() {
  let row;
  try {
    row = JSON.parse($("#row-input").value);
    if (typeof row !== "object" || row === null || Array.isArray(row)) throw new Error("not a JSON object");
  } catch (error) {
    notice("explain", `The row must be a JSON object of column: value (${error.message}).`, "error");
    return;
  }
  notice("explain", null);
  const button = $("#explain-button");
  button.disabled = true;
  for (const method of Object.keys(RENDERERS)) {
    const card = explainCard(method);
    card.dataset.state = "running";
    $("[data-role=summary]", card).textContent = "explaining…";
  }
  // One after the other, fastest first: the server runs only a few explanations at a time.
  for (const [method, render] of Object.entries(RENDERERS)) {
    try {
      render(await post("/explain", { row, method }));
    } catch (error) {
      const card = explainCard(method);
      card.dataset.state = "failed";
      $("[data-role=summary]", card).textContent = `failed: ${errorText(error)}`;
    }
  }
  button.disabled = false;
}

// -- retrain ---------------------------------------------------------------------------------

/** A job that ran but did not train: the automatic triggers ask to skip when there is no new data.
 * The trainer says so in its result (`skipped`, `reason`, `detail`); read defensively, since older
 * or newer workers may say it differently. */
function skippedJob(job) {
  const r = job.result || {};
  return job.state === "skipped" || r.skipped === true;
}

function showSkipped(job, decision, table) {
  const r = job.result || {};
  const champion = r.champion_version ?? r.version;
  decision.className = "decision kept";
  decision.dataset.skipped = "true";
  decision.textContent =
    `Skipped: ${r.reason || "nothing to do"}${r.detail ? ` (${r.detail})` : ""}. Nothing was trained` +
    (champion ? `; the champion, version ${champion}${r.champion_data_version ? ` on data ${r.champion_data_version}` : ""}, stays.` : ".");
  table.replaceChildren();
}

function showJob(job) {
  setText("retrain-job-id", job.job_id.slice(0, 8));
  setText("retrain-state", skippedJob(job) ? "skipped" : job.state);
  setText("retrain-stage", job.stage || "");
  byTestId("retrain-progress").value = job.percent ?? (job.state === "succeeded" ? 100 : 0);
  const decision = byTestId("retrain-decision");
  const table = $("[data-testid=retrain-candidates] tbody");
  delete decision.dataset.skipped;
  if (skippedJob(job)) {
    showSkipped(job, decision, table);
  } else if (job.state === "failed") {
    decision.className = "decision failed";
    decision.textContent = `Failed: ${job.error || "unknown error"}`;
  } else if (job.state === "succeeded" && job.result) {
    const r = job.result;
    decision.className = `decision ${r.promoted ? "promoted" : "kept"}`;
    decision.dataset.promoted = String(r.promoted);
    const data = r.data_version ? ` on data ${r.data_version}` : "";
    decision.textContent = `${r.promoted ? "Promoted" : "Kept the champion"}: version ${r.version} (${r.winner})${data}. ${r.decision}`;
    table.replaceChildren(
      el("tr", {}, el("th", { text: "candidate" }), el("th", { class: "num", text: "grouped acc." }), el("th", { class: "num", text: "leaky split" })),
      ...r.candidates.map((c) =>
        el(
          "tr",
          { class: c.name === r.winner ? "winner" : null, "data-candidate": c.name },
          el("td", { text: c.name }),
          el("td", { class: "num", text: c.error ? "failed" : fmt(c.holdout && c.holdout.accuracy) }),
          el("td", { class: "num", text: fmt(c.leaky_row_split_accuracy) }),
        ),
      ),
    );
  } else {
    decision.className = "decision";
    decision.textContent = "";
    table.replaceChildren();
  }
}

async function followJob(jobId) {
  for (;;) {
    const job = await get(`/jobs/${jobId}`);
    showJob(job);
    if (job.state === "succeeded" || job.state === "failed" || skippedJob(job)) {
      await Promise.all([guarded("candidates", loadCandidates), refreshIfNewChampion()]);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, JOB_POLL_MS));
  }
}

async function startRetrain(event) {
  event.preventDefault();
  const form = event.target;
  const body = { reason: "from the dashboard" };
  if (form.budget.value) body.budget = form.budget.value;
  const candidates = [...form.querySelectorAll("input[name=candidates]:checked")].map((c) => c.value);
  if (candidates.length) body.candidates = candidates;
  if (!token() && !(await askToken("Retraining needs the API token."))) return;
  const button = $("#retrain-button");
  button.disabled = true;
  try {
    const accepted = await post("/retrain", body);
    notice("retrain", accepted.created ? null : "A retrain was already queued or running: following it.");
    await followJob(accepted.job_id);
  } catch (error) {
    notice("retrain", `Retrain not started: ${errorText(error)}`, "error");
  } finally {
    button.disabled = false;
  }
}

async function resumeActiveJob() {
  const jobs = await get("/jobs?limit=1");
  const latest = jobs[0];
  if (!latest) return;
  showJob(latest);
  if (latest.state === "queued" || latest.state === "running") followJob(latest.job_id);
}

// -- putting it together ---------------------------------------------------------------------

async function refreshIfNewChampion() {
  const version = await loadStatus();
  if (version !== null && version !== state.version) await loadAll();
}

/** The champion-versus-challenger view, once the champion's card has said the policy. */
function startShadowView() {
  return offers("/model/challenger") ? startShadow() : missing("shadow", "GET /model/challenger", "shadow promotion");
}

async function loadAll() {
  const tasks = [guarded("candidates", loadCandidates)];
  if (offers("/data/versions")) tasks.push(guarded("data", loadDataVersions)); // the models trained on each
  if (state.version === null) return Promise.all([...tasks, startShadowView()]); // nothing served yet
  tasks.push(
    guarded("champion", loadChampion).then(startShadowView),
    guarded("evaluation", loadEvaluation),
    guarded("distributions", loadDistributions),
  );
  tasks.push(offers("/drift") ? startDriftPolling() : missing("drift", "GET /drift", "drift monitoring"));
  tasks.push(offers("/explain/global") ? guarded("global", loadGlobal) : missing("global", "GET /explain/global", "explanations"));
  if (offers("/explain")) tasks.push(guarded("explain", loadExamples));
  else {
    missing("explain", "POST /explain", "explanations");
    $("#explain-button").disabled = true;
    tasks.push(guarded("explain", loadExamples));
  }
  await Promise.all(tasks);
}

async function main() {
  $("#feature-select").addEventListener("change", drawDistribution);
  $("#pd-select").addEventListener("change", drawPartialDependence);
  $("#example-select").addEventListener("change", fillRow);
  $("#explain-button").addEventListener("click", explainRow);
  $("#retrain-form").addEventListener("submit", startRetrain);
  initRuns();
  $("#forget-token").addEventListener("click", () => {
    forgetToken();
    notice("retrain", "Token forgotten.");
  });
  if (!window.Chart) {
    document.body.prepend(el("p", { class: "notice error", text: "The charting library did not load." }));
    return;
  }
  window.Chart.defaults.font.size = 11;
  state.version = await loadStatus();
  try {
    state.routes = await routes();
  } catch (error) {
    notice("champion", `Cannot read the API's routes: ${errorText(error)}`, "error");
  }
  if (state.version === null) {
    notice("champion", "No champion is being served yet: train one (the retrain view below), the page fills in once it is promoted.");
  }
  const runs = offers("/runs") ? startRuns() : missing("runs", "GET /runs", "labelled runs");
  if (!offers("/data/versions")) missing("data", "GET /data/versions", "dataset versions");
  await Promise.all([loadAll(), guarded("retrain", resumeActiveJob), runs]);
  document.body.dataset.loaded = "true";
  setInterval(refreshIfNewChampion, READY_POLL_MS);
}

main();
