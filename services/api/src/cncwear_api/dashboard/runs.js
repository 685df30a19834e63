// The Runs view and the dataset versions: the labelled runs as the shared store holds them (paged,
// filtered by state), labelling and withdrawing a run with the API token, and the dataset versions
// that accepted runs make, with the model versions trained on each.

import { askToken, del, get, post, token } from "./api.js";
import { $, byTestId, el, errorText, fmt, guarded, notice, whenEpoch } from "./dom.js";

const PAGE_SIZE = 20;
const POLL_MS = 10000;
const VERSIONS_SHOWN = 20;
const COLUMNS = 11;

/** A run's drift verdict: unusual (on which checks) or normal, against which version's band. */
function driftText(drift) {
  if (!drift) return "–";
  return drift.drifted ? `unusual: ${drift.drifted_features.join(", ")}` : "normal";
}

function driftTitle(drift) {
  return drift ? `${drift.rows} active rows against the normal band of v${drift.model_version}` : "not judged yet";
}

const view = {
  offset: 0,
  total: 0,
  runs: [],
  versions: [],
  versionsLoading: null,
  looked: new Set(),
  championDataVersion: null,
  timer: null,
};

/** The path of a run: its id may hold `/` (`mill-3/job-1842`), which the route takes as is. */
function runPath(run) {
  return `/runs/${run.split("/").map(encodeURIComponent).join("/")}`;
}

/** A time of the runs store (seconds since the epoch), to the minute in UTC as the column says. */
function minute(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 16).replace("T", " ");
}

/** First and last seen in one cell: the last without its date when it is the same day. */
function seen(run) {
  const first = minute(run.first_seen);
  const last = minute(run.last_seen);
  const lastShown = last.slice(0, 10) === first.slice(0, 10) ? last.slice(11) : last;
  return [
    el("span", { "data-field": "first_seen", "data-minute": first, text: first }),
    " → ",
    el("span", { "data-field": "last_seen", "data-minute": last, text: lastShown }),
  ];
}

function shortId(id) {
  return id.length > 12 ? `${id.slice(0, 12)}…` : id;
}

function labelText(label) {
  if (!label) return "–";
  const settings = [
    label.feedrate === null ? null : `feed ${label.feedrate}`,
    label.clamp_pressure === null ? null : `clamp ${label.clamp_pressure}`,
    label.material,
  ].filter((part) => part !== null && part !== undefined);
  return settings.length ? `${label.tool_condition} (${settings.join(", ")})` : label.tool_condition;
}

function liveText(live) {
  if (!live) return "–";
  if (!live.rows) return "no rows served";
  return `${fmt(live.accuracy)} of ${live.rows}`;
}

function versionTag(id) {
  const champion = id === view.championDataVersion;
  return el("span", { class: `version-tag${champion ? " champion" : ""}`, title: champion ? `${id}: the champion's` : id, text: champion ? `★ ${shortId(id)}` : shortId(id) });
}

// -- the runs --------------------------------------------------------------------------------

function runRows(run) {
  const actions = [];
  if (run.state === "collecting") {
    actions.push(el("button", { type: "button", class: "small", "data-action": "label", text: "Label…" }));
  }
  if (run.state !== "withdrawn") {
    actions.push(el("button", { type: "button", class: "small secondary", "data-action": "withdraw", text: "Withdraw" }));
  }
  const rows = [
    el(
      "tr",
      { "data-testid": "run-row", "data-run": run.run, "data-state": run.state },
      el("td", { "data-field": "run", title: `from ${run.source === "upload" ? "an upload" : "/predict"}` }, run.run),
      el("td", { "data-field": "state" }, el("span", { class: `state-tag ${run.state}`, text: run.state })),
      el("td", { "data-field": "label", text: labelText(run.label) }),
      el(
        "td",
        { class: "num", "data-field": "rows" },
        String(run.rows),
        run.truncated ? el("span", { class: "flag", "data-field": "truncated", title: "The run reached CNCWEAR_RUN_MAX_ROWS; later rows were answered but not kept", text: " truncated" }) : null,
      ),
      el("td", { class: "num", "data-field": "active_rows", text: String(run.active_rows) }),
      el("td", { title: run.labelled_at ? `labelled ${whenEpoch(run.labelled_at)}` : null }, ...seen(run)),
      el("td", { "data-field": "model_versions", text: run.model_versions.length ? run.model_versions.map((v) => `v${v}`).join(", ") : "–" }),
      el("td", { class: "num", "data-field": "live", title: run.live ? `precision ${fmt(run.live.precision)}, recall ${fmt(run.live.recall)}` : null, text: liveText(run.live) }),
      el("td", { "data-field": "drift", class: run.drift && run.drift.drifted ? "drifted" : null, title: driftTitle(run.drift), text: driftText(run.drift) }),
      el("td", { "data-field": "dataset_versions" }, run.dataset_versions.length ? run.dataset_versions.map(versionTag) : "–"),
      el("td", {}, el("span", { class: "actions" }, actions)),
    ),
  ];
  if (run.reasons.length) {
    rows.push(
      el(
        "tr",
        { class: "reasons", "data-testid": "run-reasons", "data-run": run.run },
        el("td", { colspan: String(COLUMNS), "data-field": "reasons" }, el("div", { class: "why" }, `why rejected: ${run.reasons.join("; ")}`)),
      ),
    );
  }
  return rows;
}

function drawRuns(page, wanted) {
  view.runs = page.runs;
  view.total = page.total;
  const body = $("[data-testid=runs-table] tbody");
  if (!page.runs.length) {
    const none = wanted ? `No ${wanted} run.` : "No run yet: send rows to /predict with a \"run\" id.";
    body.replaceChildren(el("tr", {}, el("td", { colspan: String(COLUMNS), class: "hint", text: none })));
  } else {
    body.replaceChildren(...page.runs.flatMap(runRows));
  }
  const first = page.total ? page.offset + 1 : 0;
  const last = page.offset + page.runs.length;
  byTestId("runs-summary").textContent = `${first}–${last} of ${page.total}${wanted ? ` ${wanted}` : ""} run(s), newest first`;
  $("#runs-newer").disabled = page.offset === 0;
  $("#runs-older").disabled = last >= page.total;
  const collecting = page.runs.filter((r) => r.state === "collecting");
  $("#collecting-runs").replaceChildren(...collecting.map((r) => el("option", { value: r.run })));
}

export async function loadRuns() {
  const wanted = $("#runs-state").value;
  const query = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(view.offset) });
  if (wanted) query.set("state", wanted);
  let page = await get(`/runs?${query}`);
  if (!page.runs.length && page.total && view.offset) {
    view.offset = Math.max(0, Math.floor((page.total - 1) / PAGE_SIZE) * PAGE_SIZE); // the page emptied
    query.set("offset", String(view.offset));
    page = await get(`/runs?${query}`);
  }
  drawRuns(page, wanted);
  await showNewVersions(page.runs);
}

/** Load the dataset versions again when a run is in one not shown yet (a run just accepted);
 * once only for each, since a version older than those listed is not shown anyway. */
async function showNewVersions(runs) {
  if (view.versionsLoading) await view.versionsLoading.catch(() => null);
  const shown = new Set(view.versions.map((v) => v.id));
  const unseen = runs.flatMap((r) => r.dataset_versions).filter((id) => !shown.has(id) && !view.looked.has(id));
  if (!unseen.length) return;
  unseen.forEach((id) => view.looked.add(id));
  await guarded("data", loadDataVersions);
}

function startPolling() {
  if (view.timer) clearInterval(view.timer);
  view.timer = setInterval(() => {
    if (document.visibilityState === "visible") guarded("runs", loadRuns);
  }, POLL_MS);
}

function pickForLabel(run) {
  const form = $("#label-form");
  form.run.value = run;
  const outcome = byTestId("label-outcome");
  outcome.textContent = "";
  delete outcome.dataset.state;
  form.scrollIntoView({ block: "nearest" });
  form.querySelector("input[name=tool_condition]").focus();
}

function showOutcome(record) {
  const outcome = byTestId("label-outcome");
  outcome.dataset.state = record.state;
  if (record.state === "accepted") {
    outcome.className = "decision promoted";
    const versions = record.dataset_versions.length ? ` It is in dataset version ${record.dataset_versions.join(", ")}.` : "";
    outcome.textContent = `Accepted: ${record.run} (${record.label.tool_condition}, ${record.active_rows} rows of active cutting).${versions}`;
  } else {
    outcome.className = "decision failed";
    outcome.textContent = `${record.state === "rejected" ? "Rejected" : record.state}: ${record.run}. ${record.reasons.join("; ")}`;
  }
}

async function labelRun(event) {
  event.preventDefault();
  const form = event.target;
  const run = form.run.value.trim();
  const body = {
    tool_condition: form.tool_condition.value,
    feedrate: Number(form.feedrate.value),
    clamp_pressure: Number(form.clamp_pressure.value),
    material: form.material.value.trim(),
  };
  if (!token() && !(await askToken("Labelling a run needs the API token."))) return;
  const button = $("#label-button");
  button.disabled = true;
  try {
    showOutcome(await post(`${runPath(run)}/label`, body));
    notice("runs", null);
    await Promise.all([guarded("runs", loadRuns), guarded("data", loadDataVersions)]);
  } catch (error) {
    const outcome = byTestId("label-outcome");
    outcome.className = "decision failed";
    outcome.dataset.state = "error";
    outcome.textContent = `Not labelled: ${errorText(error)}`;
  } finally {
    button.disabled = false;
  }
}

async function withdrawRun(run) {
  const sure = window.confirm(
    `Withdraw run ${run}? It stays listed as withdrawn, with its rows; the next dataset version leaves it out.`,
  );
  if (!sure) return;
  if (!token() && !(await askToken("Withdrawing a run needs the API token."))) return;
  try {
    await del(runPath(run));
    notice("runs", `Run ${run} withdrawn.`);
    await Promise.all([guarded("runs", loadRuns), guarded("data", loadDataVersions)]);
  } catch (error) {
    notice("runs", `Run ${run} not withdrawn: ${errorText(error)}`, "error");
  }
}

function onTableClick(event) {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const run = button.closest("tr").dataset.run;
  if (button.dataset.action === "label") pickForLabel(run);
  else if (button.dataset.action === "withdraw") withdrawRun(run);
}

// -- the dataset versions --------------------------------------------------------------------

function countsText(counts, label) {
  const base = (counts.base && counts.base[label]) || 0;
  const runs = (counts.runs && counts.runs[label]) || 0;
  return `${(counts.all && counts.all[label]) || 0} (${base} + ${runs})`;
}

const RUNS_NAMED = 3;

function runsText(runs) {
  if (!runs.length) return "none";
  const named = runs.slice(0, RUNS_NAMED).map((r) => r.run).join(", ");
  return `${runs.length}: ${named}${runs.length > RUNS_NAMED ? `, +${runs.length - RUNS_NAMED} more` : ""}`;
}

function versionRow(version) {
  const runs = version.parts.runs;
  const base = version.parts.base;
  const champion = version.id === view.championDataVersion;
  return el(
    "tr",
    { "data-testid": "data-version-row", "data-version": version.id, "data-current": String(Boolean(version.current)), class: champion ? "winner" : null },
    el(
      "td",
      { "data-field": "id", title: champion ? "the champion was trained on this version" : null },
      `${champion ? "★ " : ""}${version.id}`,
      version.current ? el("span", { class: "badge", "data-field": "current", title: "the base data and the runs accepted now: what a retrain trains on", text: "current" }) : null,
    ),
    el("td", { "data-field": "made_at", text: whenEpoch(version.made_at) }),
    el("td", { "data-field": "base", title: `content hash ${base.content_hash}`, text: `${base.source}, ${base.experiments} experiments` }),
    el(
      "td",
      { "data-field": "runs", title: runs.map((r) => `${r.run}: ${r.label.tool_condition}, ${r.rows} rows, group ${r.group}`).join("\n") || null },
      runsText(runs),
    ),
    el("td", { class: "num", "data-field": "worn", text: countsText(version.counts, "worn") }),
    el("td", { class: "num", "data-field": "unworn", text: countsText(version.counts, "unworn") }),
    el("td", { "data-field": "model_versions", text: version.model_versions.length ? version.model_versions.map((v) => `v${v}`).join(", ") : "none yet" }),
  );
}

/** The dataset versions, newest first; one request at a time (several views ask at once). */
export function loadDataVersions() {
  if (!view.versionsLoading) {
    view.versionsLoading = fetchDataVersions().finally(() => {
      view.versionsLoading = null;
    });
  }
  return view.versionsLoading;
}

async function fetchDataVersions() {
  view.versions = await get(`/data/versions?limit=${VERSIONS_SHOWN}`);
  const body = $("[data-testid=data-versions] tbody");
  if (!view.versions.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "hint", text: "No dataset version yet: the first retrain or accepted run makes one." })));
    return;
  }
  body.replaceChildren(...view.versions.map(versionRow));
}

/** The champion's dataset version, marked in both tables. */
export function setChampionDataVersion(id) {
  if (view.championDataVersion === id) return;
  view.championDataVersion = id;
  if (view.versions.length) $("[data-testid=data-versions] tbody").replaceChildren(...view.versions.map(versionRow));
  if (view.runs.length) $("[data-testid=runs-table] tbody").replaceChildren(...view.runs.flatMap(runRows));
}

// -- wiring ----------------------------------------------------------------------------------

export function initRuns() {
  $("#runs-state").addEventListener("change", () => {
    view.offset = 0;
    guarded("runs", loadRuns);
  });
  $("#runs-newer").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - PAGE_SIZE);
    guarded("runs", loadRuns);
  });
  $("#runs-older").addEventListener("click", () => {
    view.offset += PAGE_SIZE;
    guarded("runs", loadRuns);
  });
  $("[data-testid=runs-table]").addEventListener("click", onTableClick);
  $("#label-form").addEventListener("submit", labelRun);
}

/** The first load of the runs, then again every few seconds (rows keep arriving). The dataset
 * versions load with the champion (their model versions change with it) and when a run names a
 * version not shown yet. */
export async function startRuns() {
  await guarded("runs", loadRuns);
  startPolling();
}
