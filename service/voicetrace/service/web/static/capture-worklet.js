// AudioWorklet processor: microphone samples (the context's rate, e.g. 48 kHz float32) →
// 16 kHz PCM16 mono frames of 20 ms, posted to the main thread as transferable ArrayBuffers.
//
// It runs on the audio rendering thread, so it allocates nothing per sample and never blocks:
// one Int16Array per 20 ms frame, handed over without a copy.
//
// Downsampling averages the input samples that fall into each output sample's window (a box
// filter: a cheap anti-alias that is plenty for speech at 16 kHz); upsampling, for the rare
// device slower than 16 kHz, interpolates linearly.

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample (global `sampleRate`)
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.sum = 0; // box filter: running sum and count of the current window
    this.count = 0;
    this.phase = 0; // input samples consumed in the current window (fractional windows carry)
    this.prev = 0; // last input sample (linear interpolation when upsampling)
    this.pos = 0; // fractional read position between prev and the next sample (upsampling)
  }

  emit(value) {
    const clamped = value > 1 ? 1 : value < -1 ? -1 : value;
    this.frame[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    if (this.filled === FRAME_SAMPLES) {
      // PCM16 little-endian: Int16Array uses the platform's byte order, little-endian on every
      // platform browsers ship on.
      this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
      this.frame = new Int16Array(FRAME_SAMPLES);
      this.filled = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true; // no input yet (or the track ended): stay alive
    if (this.step >= 1) {
      for (let i = 0; i < channel.length; i++) {
        this.sum += channel[i];
        this.count += 1;
        this.phase += 1;
        if (this.phase >= this.step) {
          this.emit(this.sum / this.count);
          this.sum = 0;
          this.count = 0;
          this.phase -= this.step;
        }
      }
    } else {
      for (let i = 0; i < channel.length; i++) {
        const cur = channel[i];
        while (this.pos < 1) {
          this.emit(this.prev + (cur - this.prev) * this.pos);
          this.pos += this.step;
        }
        this.pos -= 1;
        this.prev = cur;
      }
    }
    return true;
  }
}

registerProcessor("voicetrace-capture", CaptureProcessor);
