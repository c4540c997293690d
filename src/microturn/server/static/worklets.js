// Audio worklets: the microphone in 200 ms chunks, and playback through a jitter buffer.

class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.chunk = new Float32Array(sampleRate / 5);  // one micro-turn
    this.n = 0;
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) {
      for (let i = 0; i < ch.length; i++) {
        this.chunk[this.n++] = ch[i];
        if (this.n === this.chunk.length) {
          this.port.postMessage(this.chunk.slice(0));
          this.n = 0;
        }
      }
    }
    return true;
  }
}

class Player extends AudioWorkletProcessor {
  // Chunks wait until `target` samples are queued (the jitter buffer), then play in order;
  // on underrun it plays silence and refills to the target before resuming.
  constructor() {
    super();
    this.queue = [];
    this.offset = 0;
    this.queued = 0;
    this.target = sampleRate / 5;  // 200 ms
    this.playing = false;
    this.played = 0;  // samples played that were not silence
    this.underruns = 0;
    this.frames = 0;
    this.port.onmessage = (e) => {
      if (e.data === "flush") { this.queue = []; this.queued = 0; this.offset = 0; this.playing = false; return; }
      this.queue.push(e.data);
      this.queued += e.data.length;
    };
  }
  process(_, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.queued >= this.target) this.playing = true;
    for (let i = 0; i < out.length; i++) {
      if (!this.playing || this.queue.length === 0) {
        if (this.playing) { this.playing = false; this.underruns++; }
        out[i] = 0;
        continue;
      }
      const head = this.queue[0];
      out[i] = head[this.offset++];
      this.queued--;
      if (Math.abs(out[i]) > 1e-4) this.played++;
      if (this.offset === head.length) { this.queue.shift(); this.offset = 0; }
    }
    if (++this.frames % 40 === 0) this.port.postMessage({played: this.played, underruns: this.underruns, queued: this.queued});
    return true;
  }
}

registerProcessor("mic-capture", MicCapture);
registerProcessor("player", Player);
