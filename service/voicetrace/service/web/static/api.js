// The service's REST API and its voice WebSocket (docs/api.md, docs/protocol.md).

export const SUBPROTOCOL = "voicetrace.v1";

export class ApiError extends Error {
  constructor(status, message) {
    super(`${status}: ${message}`);
    this.status = status;
  }
}

/** REST calls with the bearer token; errors carry the service's own message. */
export class Api {
  constructor(token, base = location.origin) {
    this.token = token;
    this.base = base;
  }

  async request(method, path, body, { keepalive = false } = {}) {
    const response = await fetch(this.base + path, {
      method,
      keepalive, // trace posts outlive the page (unload) and never hold up the audio path
      headers: {
        Authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new ApiError(response.status, describe(data) || response.statusText);
    return data;
  }

  createSession(body) {
    return this.request("POST", "/live-sessions", body);
  }

  listSessions(limit = 20) {
    return this.request("GET", `/live-sessions?limit=${limit}`);
  }

  // Direct mode (docs/protocol.md): the browser talks to Gemini Live itself.
  liveToken(body) {
    return this.request("POST", "/api/live/token", body);
  }

  traceEvents(batch) {
    return this.request("POST", "/api/live/trace/event", batch, { keepalive: true });
  }

  traceEnd(body) {
    return this.request("POST", "/api/live/trace/end", body, { keepalive: true });
  }

  callTool(body) {
    return this.request("POST", "/api/live/tools/call", body);
  }

  /** The voice WebSocket of a session. Browsers cannot set headers on a WebSocket, so the
   * token travels as the second offered subprotocol; the server selects only `voicetrace.v1`. */
  openVoice(sessionId) {
    const url = new URL(`/v1/voice/${encodeURIComponent(sessionId)}`, this.base);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url, [SUBPROTOCOL, `bearer.${this.token}`]);
    ws.binaryType = "arraybuffer";
    return ws;
  }
}

function describe(data) {
  const detail = data && data.detail;
  if (!detail) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return detail.message || JSON.stringify(detail);
}

/** The `sub` (user id) of a JWT, for display only — the server is what verifies it. */
export function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || null;
  } catch {
    return null;
  }
}
