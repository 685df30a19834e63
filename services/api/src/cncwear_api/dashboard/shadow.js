// The champion-versus-challenger view: the version in shadow and the evidence of this replica's
// last shadow decision about it (GET /model/challenger), and the shadow decisions the retrains
// record (GET /model/retrains). With no challenger, one line says so, and under which policy; under
// the offline policy the server loads no challenger, so the page does not ask (a 404 would be an
// error in the browser's console at every poll).

import { ApiError, get } from "./api.js";
import { $, byTestId, el, fmt, guarded, notice, setText, when } from "./dom.js";

const POLL_MS = 10000;
/** Retrains read for their shadow decisions (/model/retrains takes at most 50). */
const DECISIONS_FROM = 10;

const view = { policy: null, challenger: undefined, timer: null };

/** A duration in seconds, in the largest unit that keeps it readable. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const units = [
    [86400, "d"],
    [3600, "h"],
    [60, "min"],
  ];
  for (const [size, unit] of units) {
    if (seconds >= size) return `${fmt(seconds / size, 1)} ${unit}`;
  }
  return `${fmt(seconds, 0)} s`;
}

function policyText() {
  return view.policy ? ` (promotion policy: ${view.policy})` : "";
}

function summary(found) {
  if (found === null) return `No challenger in shadow${policyText()}.`;
  const against = found.champion_version ? ` against champion v${found.champion_version}` : "";
  if (found.loaded === null || found.loaded === undefined) {
    return `v${found.version} holds the ${found.alias} alias${against}, but this server runs the offline policy: it scores nothing in shadow and decides nothing.`;
  }
  const age = `${duration(found.age_seconds)} of at most ${duration(found.max_age_seconds)}`;
  return `v${found.version} in shadow${against} for ${age}.`;
}

/** The exact McNemar p-value, to three decimals like every figure here, or a bound below that. */
function pValue(p) {
  return p < 0.001 ? "< 0.001" : fmt(p);
}

function labelsText(byLabel) {
  const parts = Object.entries(byLabel || {}).map(([label, count]) => `${count} ${label}`);
  return parts.length ? ` (${parts.join(", ")})` : "";
}

function drawEvidence(found) {
  const evidence = found && found.evidence;
  const box = byTestId("shadow-evidence");
  box.dataset.outcome = evidence ? evidence.outcome : "none";
  setText("shadow-champion-accuracy", fmt(evidence && evidence.champion_accuracy));
  setText("shadow-challenger-accuracy", fmt(evidence && evidence.challenger_accuracy));
  setText("shadow-agreement", fmt(evidence && evidence.agreement));
  setText("shadow-runs", evidence ? `${evidence.runs}${labelsText(evidence.runs_by_label)}` : "–");
  setText("shadow-challenger-wins", evidence ? evidence.challenger_wins : "–");
  setText("shadow-champion-wins", evidence ? evidence.champion_wins : "–");
  setText("shadow-p-value", evidence ? pValue(evidence.p_value) : "–");
  setText("shadow-outcome", evidence ? evidence.outcome : "–");
  setText("shadow-decided-at", evidence ? when(evidence.decided_at) : "–");
  setText("shadow-reason", evidence ? evidence.reason : "no labelled run both scored yet: the first one decides");
  byTestId("shadow-needs").replaceChildren(
    ...(evidence ? evidence.needs : []).map((need) => el("li", { "data-testid": "shadow-need", text: need })),
  );
}

function drawChallenger() {
  const found = view.challenger;
  if (found === undefined) return;
  const line = byTestId("shadow-summary");
  line.textContent = summary(found);
  const offline = found !== null && (found.loaded === null || found.loaded === undefined);
  line.dataset.state = found === null ? "none" : offline ? "offline" : "shadow";
  $("#shadow [data-role=challenger]").hidden = found === null;
  byTestId("shadow-evidence").hidden = found === null || offline;
  if (found === null) return;
  setText("shadow-champion-version", found.champion_version);
  setText("shadow-challenger-version", found.version);
  setText("shadow-state", found.state);
  setText("shadow-age", `${duration(found.age_seconds)} of ${duration(found.max_age_seconds)}`);
  setText("shadow-since", when(found.since));
  setText("shadow-candidate", found.candidate);
  setText("shadow-holdout-accuracy", fmt(found.holdout.accuracy));
  const loaded = offline ? "no (offline policy)" : found.loaded ? "yes" : `no: ${found.load_error || "not yet"}`;
  setText("shadow-loaded", `${loaded}${found.load_failures ? ` · ${found.load_failures} failed load(s)` : ""}`);
  drawEvidence(found);
}

async function loadChallenger() {
  if (view.policy === "offline") {
    view.challenger = null; // this server scores nothing in shadow: nothing to ask
    drawChallenger();
    return;
  }
  try {
    view.challenger = await get("/model/challenger");
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    view.challenger = null;
  }
  drawChallenger();
}

function decisionRow(retrain) {
  return el(
    "tr",
    { "data-testid": "shadow-decision", "data-version": retrain.registered_version },
    el("td", { text: when(retrain.started_at) }),
    el("td", { text: `v${retrain.registered_version} (${retrain.winner || "–"})` }),
    el("td", { text: retrain.shadow_state }),
    el("td", { text: retrain.shadow_decided_by || "–" }),
    el("td", { class: "wrap", text: retrain.shadow_reason || "–" }),
  );
}

async function loadDecisions() {
  const retrains = await get(`/model/retrains?limit=${DECISIONS_FROM}`);
  const shadowed = retrains.filter((r) => r.shadow_state);
  const body = $("[data-testid=shadow-decisions] tbody");
  if (!shadowed.length) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: "5", class: "hint", text: `No shadow decision in the last ${retrains.length} retrain(s).` })));
    return;
  }
  body.replaceChildren(...shadowed.map(decisionRow));
}

export async function loadShadow() {
  await Promise.all([loadChallenger(), loadDecisions()]);
  notice("shadow", null);
}

/** The policy this server runs under (GET /model), named in the line shown without a challenger. */
export function setPromotionPolicy(policy) {
  if (view.policy === (policy ?? null)) return;
  view.policy = policy ?? null;
  drawChallenger();
}

/** The first load, then again every few seconds: labelled runs move the evidence. */
export async function startShadow() {
  await guarded("shadow", loadShadow);
  if (view.timer) clearInterval(view.timer);
  view.timer = setInterval(() => {
    if (document.visibilityState === "visible") guarded("shadow", loadShadow);
  }, POLL_MS);
}
