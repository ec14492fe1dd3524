// Direct mode: the browser talks to Gemini Live itself with a one-use ephemeral token from the
// service, and reports what it saw to /api/live/trace/event so the service builds the same trace.
//
// The audio path never waits for tracing: events are queued in memory and posted every
// FLUSH_MS with fetch(..., {keepalive: true}); a failed post is retried with the same sequence
// numbers (the service drops duplicates), a refused one (4xx) is dropped.
//
// The page's UI gets the same message shapes as in proxied mode (transcript, tool_call,
// turn_complete, …), built here from Gemini's own messages.

import { Microphone, Player } from "./audio.js";

const FLUSH_MS = 200;
const SEGMENT_MS = 100; // microphone audio is reported in segments of up to 100 ms
const VOICED_PEAK = 1000; // the service's own threshold (voice/audio.py)
const MAX_RETRY_EVENTS = 2000;

function base64(buffer) {
  const bytes = new Uint8Array(buffer);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function unbase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

function peak(buffer) {
  const samples = new Int16Array(buffer);
  let max = 0;
  for (let i = 0; i < samples.length; i++) {
    const v = samples[i] < 0 ? -samples[i] : samples[i];
    if (v > max) max = v;
  }
  return max;
}

/** Queues trace events and posts them off the audio path. */
class TraceReporter {
  constructor(api, sessionId, onError) {
    this.api = api;
    this.sessionId = sessionId;
    this.onError = onError;
    this.seq = 1;
    this.queue = [];
    this.retry = [];
    this.posting = null;
    this.segment = null; // the microphone segment being accumulated
    this.timer = setInterval(() => this.flush(), FLUSH_MS);
    this.posted = 0;
  }

  event(type, fields = {}) {
    this.queue.push({ seq: this.seq++, type, at_ms: Date.now(), ...fields });
  }

  microphone(ms, voiced) {
    const s = this.segment;
    if (s && (s.voiced !== voiced || s.ms >= SEGMENT_MS)) this.closeSegment();
    if (!this.segment) this.segment = { ms: 0, voiced, at: Date.now() };
    this.segment.ms += ms;
  }

  closeSegment() {
    const s = this.segment;
    this.segment = null;
    if (!s) return;
    this.queue.push({
      seq: this.seq++, type: "user_audio", at_ms: s.at, duration_ms: s.ms, voiced: s.voiced,
    });
  }

  flush() {
    if (this.posting) return this.posting;
    const events = [...this.retry, ...this.queue];
    if (!events.length) return Promise.resolve();
    this.retry = [];
    this.queue = [];
    this.posting = this.api
      .traceEvents({ sessionId: this.sessionId, sent_at_ms: Date.now(), events })
      .then(() => { this.posted += events.length; })
      .catch((error) => {
        if (error.status && error.status < 500 && error.status !== 429) {
          this.onError(`trace events refused: ${error.message}`); // fixing it is not ours
        } else {
          this.retry = [...events, ...this.retry].slice(-MAX_RETRY_EVENTS); // same seq: no doubles
        }
      })
      .finally(() => { this.posting = null; });
    return this.posting;
  }

  async end(reason) {
    clearInterval(this.timer);
    this.closeSegment();
    await this.flush();
    if (this.retry.length || this.queue.length) await this.flush(); // one more try
    return this.api.traceEnd({ sessionId: this.sessionId, reason });
  }
}

export class DirectCall {
  constructor(api, ui) {
    this.api = api;
    this.ui = ui;
    this.ws = null;
    this.context = null;
    this.mic = null;
    this.player = null;
    this.trace = null;
    this.session = null;
    this.muted = false;
    this.framesSent = 0;
    this.marks = [];
    this.turn = 1; // the turn Gemini is on: completed turns + 1
    this.timing = {};
    this.ended = false;
  }

  async start({ consent = false, mode = "browser-direct" } = {}) {
    this.context = new AudioContext({ latencyHint: "interactive" });
    await this.context.resume();
    this.ui.state("getting a token…");
    const grant = await this.api.liveToken({ mode, recording_consent: consent });
    this.session = { id: grant.sessionId };
    this.trace = new TraceReporter(this.api, grant.sessionId, (text) =>
      this.ui.message({ type: "error", code: "trace", message: text }));
    this.player = new Player(this.context, (mark) => {
      this.marks.push(mark);
      this.trace.event("playback", mark);
    });
    this.ui.state("connecting to Gemini Live…");
    const url = `${grant.wsUrl}?access_token=${encodeURIComponent(grant.token)}`;
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    const decoder = new TextDecoder();
    await new Promise((resolve, reject) => {
      ws.onopen = () => ws.send(JSON.stringify({ setup: { model: `models/${grant.model}` } }));
      ws.onmessage = (event) => {
        const msg = JSON.parse(typeof event.data === "string" ? event.data : decoder.decode(event.data));
        if (msg.setupComplete) {
          resolve();
          this.ui.message({
            type: "session_started", session_id: grant.sessionId, model: grant.model,
            input_sample_rate: 16000, output_sample_rate: 24000, direct: true,
          });
          return;
        }
        this.onGemini(msg);
      };
      ws.onclose = (event) => {
        reject(new Error(`Gemini Live closed ${event.code} ${event.reason || ""}`.trim()));
        this.onClosed(event.code, event.reason);
      };
    });
    this.mic = new Microphone(this.context, (frame) => this.sendAudio(frame));
    await this.mic.start();
    this.ui.state("live (direct) — speak now");
    return this.session;
  }

  sendAudio(frame) {
    if (this.muted || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify({
      realtimeInput: { audio: { data: base64(frame), mimeType: "audio/pcm;rate=16000" } },
    }));
    this.framesSent += 1;
    const voiced = peak(frame) > VOICED_PEAK;
    const now = performance.now();
    if (voiced) {
      this.timing.speechStart ??= now;
      this.timing.speechEnd = now;
    }
    this.trace.microphone(frame.byteLength / 32, voiced);
  }

  sendText(text) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.trace.event("user_text", { text });
    this.timing.speechStart ??= performance.now();
    this.timing.speechEnd = performance.now();
    this.ws.send(JSON.stringify({
      clientContent: { turns: [{ role: "user", parts: [{ text }] }], turnComplete: true },
    }));
  }

  setMuted(muted) {
    if (muted && !this.muted && this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ realtimeInput: { audioStreamEnd: true } }));
    }
    this.muted = muted;
  }

  async end() {
    if (this.ended) return;
    this.ended = true;
    this.mic?.stop();
    this.muted = true;
    await this.finish("completed"); // the summary first, then hang up on Gemini
    this.ws?.close(1000);
  }

  async finish(reason) {
    try {
      const summary = await this.trace.end(reason);
      this.ui.message({ type: "session_ended", reason, summary });
    } catch (error) {
      this.ui.message({ type: "error", code: "trace_end", message: error.message });
    }
  }

  onGemini(msg) {
    const trace = this.trace;
    const turn = this.turn;
    if (msg.toolCall) {
      for (const call of msg.toolCall.functionCalls || []) this.runTool(turn, call);
    }
    const content = msg.serverContent;
    if (content) {
      const heard = content.inputTranscription;
      if (heard?.text) {
        trace.event("input_transcript", { text: heard.text, finished: Boolean(heard.finished) });
        this.ui.message({ type: "transcript", role: "user", text: heard.text, final: Boolean(heard.finished), turn });
      }
      for (const part of content.modelTurn?.parts || []) {
        const data = part.inlineData?.data;
        if (!data) continue;
        const audio = unbase64(data);
        this.timing.firstAudio ??= performance.now();
        trace.event("model_audio", { duration_ms: audio.byteLength / 48 });
        this.player.push(turn, audio);
      }
      const said = content.outputTranscription;
      if (said?.text) {
        trace.event("output_transcript", { text: said.text });
        this.ui.message({ type: "transcript", role: "model", text: said.text, final: false, turn });
      }
      if (content.interrupted) {
        this.player.stop(turn);
        this.timing.interrupted = true;
        trace.event("interrupted");
        this.ui.message({ type: "interrupted", turn });
      }
      if (content.generationComplete) trace.event("generation_complete");
    }
    if (msg.usageMetadata) {
      trace.event("usage", { usage_metadata: msg.usageMetadata });
      this.timing.usage = msg.usageMetadata;
    }
    if (content?.turnComplete) {
      trace.event("turn_complete");
      this.player.finish(turn);
      this.ui.message(this.turnSummary(turn));
      this.turn += 1;
      this.timing = {};
      trace.flush();
    }
    if (msg.goAway) {
      trace.event("go_away", { time_left_s: parseFloat(msg.goAway.timeLeft || "0") || 0 });
    }
  }

  async runTool(turn, call) {
    const trace = this.trace;
    trace.event("tool_call", { call_id: call.id, name: call.name, args: call.args || {} });
    this.ui.message({ type: "tool_call", turn, call_id: call.id, name: call.name, args: call.args || {} });
    let result;
    try {
      result = await this.api.callTool({
        sessionId: this.session.id, call_id: call.id, name: call.name, args: call.args || {},
      });
    } catch (error) {
      result = { response: { error: error.message }, ok: false, error: error.message, duration_ms: 0 };
    }
    const response = { id: call.id, name: call.name, response: result.response };
    if (result.scheduling) response.scheduling = result.scheduling;
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ toolResponse: { functionResponses: [response] } }));
    }
    trace.event("tool_result", {
      call_id: call.id, ok: result.ok, error: result.error || null, duration_ms: result.duration_ms,
    });
    this.timing.toolMs = (this.timing.toolMs || 0) + result.duration_ms;
    this.ui.message({
      type: "tool_result", turn, call_id: call.id, name: call.name, ok: result.ok,
      error: result.error || null, duration_ms: result.duration_ms,
    });
  }

  /** The page's per-turn row, measured in the browser (cost comes with the session summary). */
  turnSummary(number) {
    const t = this.timing;
    const now = performance.now();
    const u = t.usage || {};
    const since = (a, b) => (a !== undefined && b !== undefined ? Math.max(b - a, 0) : null);
    return {
      type: "turn_complete",
      number,
      end_reason: t.interrupted ? "interrupted" : "completed",
      interrupted: Boolean(t.interrupted),
      user_speech_ms: since(t.speechStart, t.speechEnd),
      endpointing_ms: null,
      response_ms: since(t.firstAudio, now),
      total_ms: since(t.speechStart, now),
      ttfa_ms: since(t.speechEnd, t.firstAudio),
      tool_ms: t.toolMs || 0,
      input_tokens: (u.promptTokenCount || 0) + (u.toolUsePromptTokenCount || 0),
      output_tokens: (u.responseTokenCount || 0) + (u.thoughtsTokenCount || 0),
      cost_usd: null,
    };
  }

  onClosed(code, reason) {
    this.mic?.stop();
    this.player?.close();
    this.context?.close();
    this.mic = this.player = this.context = null;
    this.ws = null;
    if (!this.ended && this.trace) {
      this.ended = true;
      this.finish(code === 1000 ? "completed" : "model_error").then(() => this.ui.closed(code, reason));
      return;
    }
    this.ui.closed(code, reason);
  }
}
