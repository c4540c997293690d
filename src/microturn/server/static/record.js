// The session as recorded by the page, on one grid of 200 ms micro-turns: your microphone,
// the model's audio and events, exported as a stereo WAV (you left, model right) and the
// timeline JSON that `microturn run` writes ({duration, events: [{t, kind, text, end}]}).

export const TURN_S = 0.2;
export const SPEECH_DBFS = -40;  // the runtime's level rule: a louder turn is someone talking
export const ANSWER_WINDOW_TURNS = 20;  // speech starting later than 4 s is not an answer to you

export function dbfs(x) {
  let sum = 0;
  for (let i = 0; i < x.length; i++) sum += x[i] * x[i];
  return 10 * Math.log10(sum / Math.max(1, x.length) + 1e-12);
}

function int16(f32) {
  const out = new Int16Array(f32.length);
  for (let i = 0; i < f32.length; i++) out[i] = Math.max(-1, Math.min(1, f32[i])) * 32767;
  return out;
}

// Answer and stop latencies from per-turn flags on one grid (loud: you were audible;
// speaking: the model's speech is heard in that turn). An answer is the model starting
// within ANSWER_WINDOW_TURNS of the end of your speech while you stay quiet; a stop is how
// long the model goes on after you start talking over it (as `microturn demo` measures).
export function latencies(loud, speaking) {
  const answers = [], stops = [];
  let lastLoud = -1, answered = true, cut = -1;
  for (let g = 0; g < Math.max(loud.length, speaking.length); g++) {
    const sp = !!speaking[g], wasSp = g > 0 && !!speaking[g - 1];
    const ld = !!loud[g], wasLd = g > 0 && !!loud[g - 1];
    if (sp && !wasSp && !ld && !answered && g - (lastLoud + 1) <= ANSWER_WINDOW_TURNS) {
      answers.push({at: g * TURN_S, s: round2((g - lastLoud - 1) * TURN_S)});
    }
    if (sp && !wasSp) answered = true;
    if (ld && !wasLd && sp && wasSp && cut < 0) cut = g;  // you cut in on the model
    if (!sp && cut >= 0) {
      stops.push({at: cut * TURN_S, s: round2((g - cut) * TURN_S)});
      cut = -1;
    }
    if (ld) { lastLoud = g; answered = false; }
  }
  return {answers, stops};
}

const round2 = (x) => Math.round(x * 100) / 100;

export class Recording {
  constructor(rate) {
    this.rate = rate;
    this.turnSamples = Math.round(rate * TURN_S);
    this.user = [];  // Int16Array per turn, in capture order: the recording's clock
    this.userDb = [];
    this.model = new Map();  // turn on this grid -> Int16Array
    this.modelDb = [];
    this.speaking = [];
    this.missed = [];  // grid turns whose step missed its deadline on the server
    this.events = [];  // {t, kind, text, end} in seconds on this grid
    this.frames = [];  // seconds at which a camera frame was sent
    this.tasks = new Map();  // task id -> {start, end, text, state}
    this.offset = 0;
    this.served = 0;  // grid turns the server has computed: the model's clock
  }

  get turns() { return Math.max(this.user.length, this.speaking.length); }

  addUser(f32) {
    this.user.push(int16(f32));
    this.userDb.push(dbfs(f32));
  }

  // A session opened now: the next chunk sent is its turn 0, and OUT_k plays during k + 1.
  sessionOpened() { this.offset = this.user.length; }
  grid(k) { return this.offset + k + 1; }
  seconds(t) { return this.offset * TURN_S + t; }

  addModel(k, f32) {
    const g = this.grid(k);
    this.model.set(g, int16(f32));
    this.modelDb[g] = dbfs(f32);
  }

  addTiming(msg) {
    const g = this.grid(msg.turn);
    this.speaking[g] = msg.speaking;
    this.served = Math.max(this.served, g);
    if (msg.missed_deadline) this.missed.push(g);
  }

  addEvent(t, kind, text, end = null) {
    this.events.push({t: round2(t), kind, text, end});
  }

  addTask(msg) {
    const kind = msg.type.split(".")[1], t = this.seconds(msg.t);
    if (kind === "created") {
      this.addEvent(t, "delegation", msg.text);
      this.tasks.set(msg.task_id, {start: t, end: null, text: msg.text, state: kind});
    }
    const task = this.tasks.get(msg.task_id);
    if (task && kind !== "created") {
      task.state = kind;
      if (msg.text) task.text = msg.text;
      if (kind !== "progress") task.end = t;
    }
    this.addEvent(t, `task_${kind}`, `${msg.task_id}: ${msg.text || ""}`.replace(/[: ]+$/, ""));
  }

  // How far the model's clock is behind your microphone: turns sent, not yet computed.
  lag() { return Math.max(0, this.user.length - this.served) * TURN_S; }
  loud() { return this.userDb.map((d) => d > SPEECH_DBFS); }
  latencies() { return latencies(this.loud(), this.speaking); }

  timeline() {
    const events = [...this.events];
    let start = -1;
    for (let g = 0; g <= this.speaking.length; g++) {
      if (this.speaking[g] && start < 0) start = g;
      if (!this.speaking[g] && start >= 0) {
        const end = round2(g * TURN_S);
        events.push({t: round2(start * TURN_S), kind: "model_speech", text: "", end});
        start = -1;
      }
    }
    events.sort((a, b) => a.t - b.t || (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0));
    return {duration: round2(this.turns * TURN_S), events};
  }

  wav() {
    const n = this.turns * this.turnSamples, data = new Int16Array(2 * n);
    this.user.forEach((chunk, g) => {
      for (let i = 0; i < chunk.length; i++) data[2 * (g * this.turnSamples + i)] = chunk[i];
    });
    for (const [g, chunk] of this.model) {
      for (let i = 0; i < chunk.length && g * this.turnSamples + i < n; i++) {
        data[2 * (g * this.turnSamples + i) + 1] = chunk[i];
      }
    }
    const head = new DataView(new ArrayBuffer(44)), text = (o, s) => [...s].forEach((c, i) =>
      head.setUint8(o + i, c.charCodeAt(0)));
    text(0, "RIFF"); head.setUint32(4, 36 + data.byteLength, true); text(8, "WAVEfmt ");
    head.setUint32(16, 16, true); head.setUint16(20, 1, true); head.setUint16(22, 2, true);
    head.setUint32(24, this.rate, true); head.setUint32(28, this.rate * 4, true);
    head.setUint16(32, 4, true); head.setUint16(34, 16, true);
    text(36, "data"); head.setUint32(40, data.byteLength, true);
    return new Blob([head, data], {type: "audio/wav"});
  }
}
