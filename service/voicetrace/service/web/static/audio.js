// Audio in and out of the page: the microphone (AudioWorklet → 16 kHz PCM16 frames) and the
// model's speech (24 kHz PCM16, scheduled gap-free, stoppable at once for barge-in).

export const INPUT_RATE = 16000;
export const OUTPUT_RATE = 24000;

/** Microphone capture. `onFrame(ArrayBuffer)` receives 20 ms PCM16 frames at 16 kHz. */
export class Microphone {
  constructor(context, onFrame) {
    this.context = context;
    this.onFrame = onFrame;
    this.stream = null;
    this.source = null;
    this.node = null;
    this.sink = null;
  }

  async start() {
    // Voice apps want the browser's echo cancellation, so the model does not hear itself
    // through the speakers and barge in on its own answer.
    this.stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    await this.context.audioWorklet.addModule("/app/capture-worklet.js");
    this.source = this.context.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(this.context, "voicetrace-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      channelCountMode: "explicit",
    });
    this.node.port.onmessage = (event) => this.onFrame(event.data);
    // A worklet is only rendered while it is connected towards the destination; a muted gain
    // keeps it pulled without playing the microphone back.
    this.sink = this.context.createGain();
    this.sink.gain.value = 0;
    this.source.connect(this.node).connect(this.sink).connect(this.context.destination);
  }

  stop() {
    if (this.node) this.node.port.onmessage = null;
    for (const node of [this.source, this.node, this.sink]) node?.disconnect();
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = this.source = this.node = this.sink = null;
  }
}

/**
 * Plays each turn's audio as it arrives and reports `playback` marks through
 * `onMark({event: "started"|"stopped", turn, played_ms})`:
 * - `started` when the turn's first sample actually reaches the speakers;
 * - `stopped` when its audio has played out (after `finish(turn)`), when it is cut off by
 *   `interrupted`, or when a newer turn's audio replaces it — with what was really heard.
 */
export class Player {
  constructor(context, onMark) {
    this.context = context;
    this.onMark = onMark;
    this.current = null;
    this.output = context.createGain();
    this.output.connect(context.destination);
  }

  /** Queue a PCM16 24 kHz chunk of `turn`. */
  push(turn, arrayBuffer) {
    if (!this.current || this.current.turn !== turn) {
      if (this.current) this.stop(this.current.turn);
      this.current = {
        turn, startAt: null, end: 0, ms: 0, sources: new Set(),
        startedTimer: null, started: false, stopped: false, finished: false,
      };
    }
    const t = this.current;
    if (t.stopped) return; // audio that arrives after a barge-in is not played
    const samples = new Int16Array(arrayBuffer, 0, arrayBuffer.byteLength >> 1);
    if (!samples.length) return;
    const buffer = this.context.createBuffer(1, samples.length, OUTPUT_RATE);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) data[i] = samples[i] / 0x8000;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.output);
    const now = this.context.currentTime;
    const at = Math.max(now + 0.01, t.end); // back to back: no gaps, no overlaps
    source.start(at);
    t.end = at + buffer.duration;
    t.ms += buffer.duration * 1000;
    t.sources.add(source);
    source.onended = () => {
      t.sources.delete(source);
      if (t.finished && !t.sources.size) this.markStopped(t, t.ms);
    };
    if (t.startAt === null) {
      t.startAt = at;
      t.startedTimer = setTimeout(() => {
        t.startedTimer = null;
        t.started = true;
        this.onMark({ event: "started", turn, played_ms: 0 });
      }, Math.max(0, (at - now) * 1000));
    }
  }

  /** The turn is complete: report `stopped` once its queued audio has played out. */
  finish(turn) {
    const t = this.current;
    if (!t || t.turn !== turn) return;
    t.finished = true;
    if (!t.sources.size) this.markStopped(t, t.ms);
  }

  /** Stop `turn` now (barge-in): silence at once and report what was heard. */
  stop(turn) {
    const t = this.current;
    if (!t || t.turn !== turn || t.stopped) return;
    const played = this.playedMs(t);
    for (const source of t.sources) {
      source.onended = null;
      source.stop();
    }
    t.sources.clear();
    this.markStopped(t, played);
  }

  playedMs(t) {
    if (t.startAt === null) return 0;
    const ms = (this.context.currentTime - t.startAt) * 1000;
    return Math.min(Math.max(ms, 0), t.ms);
  }

  markStopped(t, playedMs) {
    if (t.stopped) return;
    t.stopped = true;
    if (t.startedTimer !== null) {
      clearTimeout(t.startedTimer); // cut off before it was heard: nothing played
      t.startedTimer = null;
    }
    this.onMark({ event: "stopped", turn: t.turn, played_ms: Math.round(playedMs * 10) / 10 });
  }

  get playing() {
    return Boolean(this.current && !this.current.stopped && this.current.sources.size);
  }

  close() {
    if (this.current) this.stop(this.current.turn);
    this.output.disconnect();
  }
}
