// Small helpers every view of the dashboard shares: finding and making elements, writing numbers
// and times the same way everywhere, and each view's own notice box.

import { ApiError } from "./api.js";

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function byTestId(id, root = document) {
  return root.querySelector(`[data-testid="${id}"]`);
}

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fmt(value, digits = 3) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "–";
  return Number(value).toFixed(digits);
}

export function setText(testId, value, root = document) {
  const node = byTestId(testId, root);
  if (node) node.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

/** A time the API gives in seconds since the epoch (the runs store's), written like {@link when}. */
export function whenEpoch(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return when(new Date(seconds * 1000).toISOString());
}

export function notice(sectionId, message, kind = "warn") {
  const box = $(`#${sectionId} [data-role=notice]`);
  if (!message) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.className = `notice${kind === "error" ? " error" : ""}`;
  box.textContent = message;
}

export function missing(sectionId, path, who) {
  notice(sectionId, `This server does not offer ${path} yet (${who}); this view fills in once it does.`);
}

export function errorText(error) {
  return error instanceof ApiError ? `${error.message} (HTTP ${error.status})` : String(error);
}

/** Run a view's loader; its failure shows in its own section and never stops the others. */
export async function guarded(sectionId, loader) {
  try {
    await loader();
  } catch (error) {
    notice(sectionId, `Could not load: ${errorText(error)}`, "error");
  }
}
