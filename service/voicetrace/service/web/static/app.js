// The page: sign-in, a proxied voice session, live transcripts, per-turn latency and cost, and
// the caller's sessions. Plain ES modules, no build step.

import { Api, tokenSubject } from "./api.js";
import { ProxiedCall } from "./call.js";
import { DirectCall } from "./direct.js";

const TOKEN_KEY = "voicetrace.token";
const $ = (selector) => document.querySelector(selector);

// What happened, for a look from the browser console (`voicetrace.messages`).
const debug = { messages: [], call: null };
window.voicetrace = debug;

let api = null;
let call = null;

function takeTokenFromFragment() {
  // `voicetrace dev` prints …/app#token=<jwt>: keep it for this tab only and drop it from the
  // address bar so it is not bookmarked, shared or screenshotted.
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token);
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function signIn(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
  api = new Api(token);
  const user = tokenSubject(token);
  $("#user").textContent = user ? `signed in as ${user}` : "";
  $("#login").hidden = true;
  for (const id of ["#call", "#turns-card", "#sessions-card"]) $(id).hidden = false;
  setStatus("ready");
  refreshSessions();
}

function signOut() {
  call?.end();
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

function setStatus(text, kind = "") {
  const pill = $("#status");
  pill.textContent = text;
  pill.className = `pill ${kind}`;
}

function setLive(live) {
  $("#start").disabled = live;
  for (const id of ["#mute", "#end", "#text", "#send"]) $(id).disabled = !live;
  $("#mute").textContent = "Mute";
}

// -- transcript --------------------------------------------------------------------------------

const lines = new Map(); // `${turn}:${role}` → element

function line(turn, role) {
  const key = `${turn}:${role}`;
  let el = lines.get(key);
  if (!el) {
    el = document.createElement("div");
    el.className = "line partial";
    el.dataset.role = role;
    el.dataset.turn = String(turn);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "you" : "model";
    const text = document.createElement("span");
    text.className = "text";
    el.append(who, text);
    $("#transcript").append(el);
    lines.set(key, el);
  }
  return el;
}

function note(text, kind = "") {
  const el = document.createElement("div");
  el.className = `event ${kind}`;
  el.textContent = text;
  $("#transcript").append(el);
  el.scrollIntoView({ block: "nearest" });
}

function onTranscript(msg) {
  const el = line(msg.turn ?? 0, msg.role);
  el.querySelector(".text").textContent += msg.text;
  if (msg.final) el.classList.remove("partial");
  el.scrollIntoView({ block: "nearest" });
}

function settle(turn, cut) {
  for (const role of ["user", "model"]) {
    const el = lines.get(`${turn}:${role}`);
    if (!el) continue;
    el.classList.remove("partial");
    if (cut && role === "model") el.classList.add("cut");
  }
}

// -- turns and sessions ------------------------------------------------------------------------

const ms = (v) => (v === null || v === undefined ? "–" : Math.round(v).toString());
const usd = (v) => (v === null || v === undefined ? "–" : `$${Number(v).toFixed(5)}`);

function addTurn(t) {
  const row = document.createElement("tr");
  row.dataset.turn = String(t.number);
  const cells = [
    t.number, t.end_reason, ms(t.user_speech_ms), ms(t.endpointing_ms), ms(t.response_ms),
    ms(t.total_ms), ms(t.ttfa_ms), ms(t.tool_ms), `${t.input_tokens} / ${t.output_tokens}`,
    usd(t.cost_usd),
  ];
  for (const value of cells) {
    const td = document.createElement("td");
    td.textContent = String(value);
    row.append(td);
  }
  $("#turns tbody").append(row);
}

async function refreshSessions() {
  try {
    const { sessions } = await api.listSessions();
    const body = $("#sessions tbody");
    body.replaceChildren();
    for (const s of sessions) {
      const row = document.createElement("tr");
      row.dataset.session = s.id;
      const summary = s.summary || {};
      const cells = [
        s.id.slice(0, 8), s.state, s.mode, new Date(s.created_at).toLocaleTimeString(),
        summary.turns ?? "–", usd(summary.cost_usd), s.end_reason || "",
      ];
      for (const value of cells) {
        const td = document.createElement("td");
        td.textContent = String(value);
        row.append(td);
      }
      body.append(row);
    }
  } catch (error) {
    note(`could not list sessions: ${error.message}`, "bad");
    if (error.status === 401) setStatus("token rejected", "error");
  }
}

// -- the call ----------------------------------------------------------------------------------

const ui = {
  state: (text) => setStatus(text, text.startsWith("live") ? "live" : ""),
  message(msg) {
    debug.messages.push(msg);
    switch (msg.type) {
      case "session_started":
        $("#session-info").textContent =
          `session ${msg.session_id} · ${msg.model} · ${msg.direct ? "direct to Gemini Live" : "proxied"}` +
          ` · mic ${msg.input_sample_rate} Hz → speech ${msg.output_sample_rate} Hz`;
        break;
      case "transcript":
        onTranscript(msg);
        break;
      case "tool_call":
        note(`tool call ${msg.name}(${JSON.stringify(msg.args)})`);
        break;
      case "tool_result":
        note(`tool ${msg.name} ${msg.ok ? "ok" : `failed: ${msg.error}`} in ${ms(msg.duration_ms)} ms`,
          msg.ok ? "" : "bad");
        break;
      case "interrupted":
        settle(msg.turn, true);
        note(`turn ${msg.turn} interrupted (barge-in)`);
        break;
      case "turn_complete":
        settle(msg.number, msg.interrupted);
        addTurn(msg);
        break;
      case "budget_warning":
        note(`budget warning: ${msg.budget.metric} ${msg.budget.used} of ${msg.budget.limit}`, "warn");
        break;
      case "session_paused":
        note(`session paused (${msg.reason})`, "warn");
        break;
      case "error":
        note(`error ${msg.code}: ${msg.message}`, "bad");
        break;
      case "session_ended": {
        const s = msg.summary || {};
        note(`session ended (${msg.reason}): ${s.turns ?? 0} turns, ${usd(s.cost_usd)}`);
        break;
      }
      default:
        break;
    }
  },
  closed(code, reason) {
    setLive(false);
    for (const radio of document.querySelectorAll('input[name="mode"]')) radio.disabled = false;
    setStatus(code === 1000 ? "ended" : `closed ${code}`, code === 1000 ? "" : "error");
    if (code !== 1000 && reason) note(`connection closed (${code}): ${reason}`, "bad");
    call = debug.call = null;
    refreshSessions();
  },
};

async function startCall() {
  $("#start").disabled = true;
  const direct = $('input[name="mode"]:checked').value === "direct";
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.disabled = true;
  call = debug.call = direct ? new DirectCall(api, ui) : new ProxiedCall(api, ui);
  try {
    await call.start({ consent: $("#consent").checked });
    setLive(true);
  } catch (error) {
    setStatus("failed", "error");
    note(`could not start: ${error.message}`, "bad");
    $("#start").disabled = false;
    for (const radio of document.querySelectorAll('input[name="mode"]')) radio.disabled = false;
  }
}

function main() {
  takeTokenFromFragment();
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("#token").value.trim());
  });
  $("#start").addEventListener("click", startCall);
  $("#end").addEventListener("click", () => call?.end());
  $("#mute").addEventListener("click", () => {
    if (!call) return;
    call.setMuted(!call.muted);
    $("#mute").textContent = call.muted ? "Unmute" : "Mute";
  });
  $("#text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#text").value.trim();
    if (!text || !call) return;
    call.sendText(text);
    $("#text").value = "";
  });
  $("#signout").addEventListener("click", signOut);
  $("#refresh").addEventListener("click", refreshSessions);
  // Leaving the page ends the session properly (direct mode posts its trace end with keepalive).
  window.addEventListener("pagehide", () => call?.end());
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) signIn(token);
}

main();
