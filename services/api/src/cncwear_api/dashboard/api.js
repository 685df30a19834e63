// Talking to the API this page was served by (same origin only), with the token rules:
// reads are open unless the server protects them; mutations send the Bearer token, which the user
// types once and which stays in this tab's sessionStorage only.

const TOKEN_KEY = "cncwear.apiToken";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

let pendingAsk = null;

/** Ask for the token in the page's dialog; resolves to it, or to null when cancelled. */
export function askToken(message) {
  if (pendingAsk) return pendingAsk;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  dialog.querySelector("[data-role=message]").textContent = message;
  input.value = "";
  pendingAsk = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        pendingAsk = null;
        const value = input.value.trim();
        if (dialog.returnValue === "ok" && value) {
          sessionStorage.setItem(TOKEN_KEY, value);
          resolve(value);
        } else {
          resolve(null);
        }
      },
      { once: true },
    );
  });
  dialog.showModal();
  return pendingAsk;
}

async function send(method, path, body, useToken) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const current = token();
  if (useToken && current) headers.Authorization = `Bearer ${current}`;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
  });
  const text = await response.text();
  let payload = null;
  try {
    payload = text ? JSON.parse(text) : null;
  } catch {
    payload = { detail: text };
  }
  if (!response.ok) {
    throw new ApiError(response.status, describeError(response.status, payload));
  }
  return payload;
}

function describeError(status, payload) {
  if (payload && Array.isArray(payload.problems) && payload.problems.length) {
    const problems = payload.problems
      .map((p) => `${p.row === null || p.row === undefined ? "" : `row ${p.row} `}${p.column}: ${p.problem}`)
      .join("; ");
    return `${payload.detail} (${problems})`;
  }
  if (payload && typeof payload.detail === "string") return payload.detail;
  if (payload && payload.detail) return JSON.stringify(payload.detail);
  return `HTTP ${status}`;
}

/** A request that asks for the token when the server answers 401, then tries once more. */
async function withToken(method, path, body, reason) {
  try {
    return await send(method, path, body, true);
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    if (token()) forgetToken();
    const given = await askToken(reason);
    if (!given) throw new ApiError(401, "no API token given");
    return send(method, path, body, true);
  }
}

export function get(path) {
  return withToken("GET", path, undefined, "This server protects reads: enter the API token.");
}

export function post(path, body) {
  return withToken("POST", path, body, "This action needs the API token.");
}

export function del(path) {
  return withToken("DELETE", path, undefined, "This action needs the API token.");
}

/** The routes this server offers (from its OpenAPI schema), so the page asks only for those. */
export async function routes() {
  const schema = await get("/openapi.json");
  return new Set(Object.keys(schema.paths || {}));
}
