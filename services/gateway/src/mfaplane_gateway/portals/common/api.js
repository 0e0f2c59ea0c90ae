// The portals' only way out: JSON over the gateway's public /v1 API (plus the app's own config.json).

/** The API version these portals are written against (README, "Versions and deprecations"). */
const API_VERSION = "2026-12-07";

/** A refusal from the API: the RFC 9457 problem's `code` and `detail`, or a network failure. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `The request failed (HTTP ${status}).`);
    this.status = status;
    this.code = problem.code || "http_error";
    this.problem = problem;
  }
}

/** The app's settings from the gateway: {configured, portal_api_key, api_base}. */
export async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    return response.ok ? await response.json() : { configured: false };
  } catch {
    return { configured: false };
  }
}

export class Api {
  /** `token`: an API key or an admin session, sent as `Authorization: Bearer <token>`. */
  constructor(base, token, { onUnauthenticated } = {}) {
    this.base = base;
    this.token = token;
    this.onUnauthenticated = onUnauthenticated;
  }

  url(path, query) {
    const url = new URL(this.base + path, window.location.origin);
    for (const [name, value] of Object.entries(query || {})) {
      for (const item of [].concat(value)) {
        if (item !== undefined && item !== null && item !== "") url.searchParams.append(name, String(item));
      }
    }
    return url;
  }

  async request(method, path, { body, query } = {}) {
    const headers = { Accept: "application/json", "API-Version": API_VERSION };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.url(path, query), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store",
      });
    } catch {
      throw new ApiError(0, { code: "network_error", detail: "The gateway cannot be reached. Check your connection and try again." });
    }
    if (!response.ok) {
      let problem = {};
      try { problem = await response.json(); } catch { /* not a problem document */ }
      const error = new ApiError(response.status, problem);
      if (response.status === 401 && this.onUnauthenticated) this.onUnauthenticated(error);
      throw error;
    }
    return response;
  }

  async json(method, path, options) {
    const response = await this.request(method, path, options);
    return response.status === 204 ? null : response.json();
  }

  get(path, query) { return this.json("GET", path, { query }); }
  post(path, body = {}, query) { return this.json("POST", path, { body, query }); }

  /** An NDJSON list (the audit API), one parsed object per line. */
  async ndjson(path, query) {
    const text = await (await this.request("GET", path, { query })).text();
    return text.split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line));
  }
}
