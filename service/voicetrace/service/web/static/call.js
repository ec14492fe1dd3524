// One proxied voice session: REST create → WebSocket → microphone up, model speech down.
//
// The page's UI listens to `ui` callbacks; everything protocol-shaped lives here.

import { Microphone, Player } from "./audio.js";

export class ProxiedCall {
  /**
   * @param {import("./api.js").Api} api
   * @param {object} ui callbacks: message(msg), state(text), closed(code, reason)
   */
  constructor(api, ui) {
    this.api = api;
    this.ui = ui;
    this.ws = null;
    this.context = null;
    this.mic = null;
    this.player = null;
    this.speakingTurn = null; // binary frames belong to the last `response_started` turn
    this.muted = false;
    this.session = null;
    this.framesSent = 0;
    this.marks = []; // playback marks sent, in order
  }

  /** Start a session. Call from a click handler: the AudioContext needs a user gesture. */
  async start({ consent = false, mode = "browser" } = {}) {
    this.context = new AudioContext({ latencyHint: "interactive" });
    await this.context.resume();
    this.player = new Player(this.context, (mark) => {
      this.marks.push(mark);
      this.send({ type: "playback", ...mark });
    });
    this.ui.state("creating session…");
    this.session = await this.api.createSession({ mode, recording_consent: consent });
    this.ui.state("connecting…");
    const ws = this.api.openVoice(this.session.id);
    this.ws = ws;
    const started = new Promise((resolve, reject) => {
      ws.onmessage = (event) => {
        if (typeof event.data === "string") {
          const msg = JSON.parse(event.data);
          if (msg.type === "session_started") resolve(msg);
          this.onMessage(msg);
        } else {
          this.onAudio(event.data);
        }
      };
      ws.onclose = (event) => {
        reject(new Error(`closed ${event.code} ${event.reason || ""}`.trim()));
        this.onClosed(event.code, event.reason);
      };
    });
    await started;
    this.mic = new Microphone(this.context, (frame) => this.sendAudio(frame));
    await this.mic.start();
    this.ui.state("live — speak now");
    return this.session;
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  sendAudio(frame) {
    if (this.muted || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(frame);
    this.framesSent += 1;
  }

  sendText(text) {
    this.send({ type: "text", text });
  }

  /** Mute stops the audio and tells the model to answer what it heard (`audio_end`). */
  setMuted(muted) {
    if (muted && !this.muted) this.send({ type: "audio_end" });
    this.muted = muted;
  }

  end() {
    this.send({ type: "end" }); // the service answers session_ended, then closes 1000
  }

  onAudio(data) {
    if (this.speakingTurn !== null) this.player.push(this.speakingTurn, data);
  }

  onMessage(msg) {
    switch (msg.type) {
      case "response_started":
        this.speakingTurn = msg.turn;
        break;
      case "interrupted":
        this.player.stop(msg.turn); // barge-in: silence now, report what was heard
        break;
      case "turn_complete":
        this.player.finish(msg.number);
        break;
      case "session_paused":
        this.ui.state(`paused: ${msg.reason}`);
        break;
      case "session_resumed":
        this.ui.state("live — speak now");
        break;
      default:
        break;
    }
    this.ui.message(msg);
  }

  onClosed(code, reason) {
    this.mic?.stop();
    this.player?.close();
    this.context?.close();
    this.mic = this.player = this.context = null;
    this.ws = null;
    this.ui.closed(code, reason);
  }
}
