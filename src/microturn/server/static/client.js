// The browser client: mic (AudioWorklet, echo cancellation requested), optional camera
// frames, playback through a jitter buffer, connection states with a reason for each, live
// lanes, meters and latencies, and a downloadable recording. No build step.
"use strict";
import {Lanes} from "./lanes.js";
import {Recording, TURN_S} from "./record.js";

const RATE = 16000;  // the model's rate: the AudioContext resamples the mic and plays the model
const RECONNECT = ["server_shutdown", "server_draining"];  // this replica goes away: find another
const MESSAGES = {
  idle: ["Ready", "Press Start and talk: the model listens while it speaks, so you can interrupt " +
    "it."],
  connecting: ["Connecting", "Opening a conversation with the server…"],
  live: ["Live", "Talk any time. The model hears you even while it is speaking."],
  reconnecting: ["Reconnecting", "Lost the server."],
  full: ["Server full", "Every conversation slot on this server is taken. Try again in a minute."],
  badtoken: ["Token needed", "The server refused the access token. Enter the token it was " +
    "started with (--token) and press Start."],
  micdenied: ["Microphone blocked", "The browser did not allow the microphone. Allow it for this " +
    "site (the icon left of the address), then press Start."],
  nomic: ["No microphone", "No microphone was found. Connect one, pick it under Microphone, then " +
    "press Start."],
  ended: ["Ended", "The server ended the conversation."],
  error: ["Error", "Something went wrong."],
};
const state = window.microturn = {events: {}, played: 0, underruns: 0, said: "", heard: "",
  tasks: [], state: "idle", states: ["idle"], rec: null, level: {in: -120, out: -120}, latency: {}};
let ws = null, ctx, mic, player, source, stream, cameraTimer, inTap, outTap;
let running = false, attempts = 0, retryTimer = null, lastChunkAt = 0;
const $ = (id) => document.getElementById(id);
const lanes = new Lanes($("lanes"));

function setState(name, detail) {
  const [title, text] = MESSAGES[name];
  state.state = name;
  if (state.states[state.states.length - 1] !== name) state.states.push(name);
  document.body.dataset.state = name;
  $("state-name").textContent = title;
  $("state-message").textContent = detail || text;
  if (name === "badtoken") $("token-row").hidden = false;
  $("send").disabled = name !== "live";
}

function b64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function pcm16(float32) {
  const out = new Int16Array(float32.length);
  for (let i = 0; i < float32.length; i++) out[i] = Math.max(-1, Math.min(1, float32[i])) * 32767;
  return new Uint8Array(out.buffer);
}

function floats(base64) {
  const bin = atob(base64), n = bin.length / 2, out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = bin.charCodeAt(2 * i) | (bin.charCodeAt(2 * i + 1) << 8);
    out[i] = (v >= 0x8000 ? v - 0x10000 : v) / 32768;
  }
  return out;
}

async function health() {
  try {
    const r = await fetch("healthz", {cache: "no-store"});  // a draining server answers 503
    return r.ok || r.status === 503 ? await r.json() : null;
  } catch (e) {
    return null;
  }
}

// ---- devices --------------------------------------------------------------------------
async function listDevices() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const devices = await navigator.mediaDevices.enumerateDevices();
  const pickers = [["mic", "audioinput", "Default microphone"], ["camera", "videoinput", "Off"]];
  for (const [id, kind, first] of pickers) {
    const sel = $(id), keep = sel.value;
    const found = devices.filter((d) => d.kind === kind && d.deviceId);
    sel.replaceChildren(new Option(first, ""), ...found.map((d, i) =>
      new Option(d.label || `${id === "mic" ? "Microphone" : "Camera"} ${i + 1}`, d.deviceId)));
    sel.value = [...sel.options].some((o) => o.value === keep) ? keep : "";
  }
}

async function openMedia() {
  const micId = $("mic").value, camId = $("camera").value;
  const next = await navigator.mediaDevices.getUserMedia({
    audio: {echoCancellation: true, noiseSuppression: true, channelCount: 1,
      ...(micId ? {deviceId: {exact: micId}} : {})},
    video: camId ? {deviceId: {exact: camId}, width: 320, height: 240} : false});
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = next;
  if (source) source.disconnect();
  if (ctx) {
    source = ctx.createMediaStreamSource(stream);
    source.connect(mic);
    source.connect(inTap);
  }
  startCamera(!!camId);
}

function startCamera(on) {
  clearInterval(cameraTimer);
  const video = $("preview"), canvas = document.createElement("canvas");
  video.srcObject = on ? stream : null;
  $("camera-box").hidden = !on;
  if (!on) return;
  video.play().catch(() => {});
  canvas.width = canvas.height = 80;  // the model's frame; the server resizes anything else
  cameraTimer = setInterval(() => {
    if (state.state !== "live" || !ws || video.readyState < 2) return;
    canvas.getContext("2d").drawImage(video, 0, 0, 80, 80);
    const jpeg = canvas.toDataURL("image/jpeg", 0.8).split(",")[1];
    ws.send(JSON.stringify({type: "input.video", jpeg}));
    state.rec.frames.push(state.rec.user.length * TURN_S);
  }, 200);
}

// ---- the conversation -----------------------------------------------------------------
async function start() {
  if (running) return;
  $("start").disabled = true;
  setState("connecting", "Asking for the microphone…");
  try {
    ctx = new AudioContext({sampleRate: RATE});
    await ctx.audioWorklet.addModule("worklets.js");
    mic = new AudioWorkletNode(ctx, "mic-capture");
    player = new AudioWorkletNode(ctx, "player");
    inTap = ctx.createAnalyser();
    outTap = ctx.createAnalyser();
    player.connect(ctx.destination);
    player.connect(outTap);
    await openMedia();
  } catch (e) {
    const denied = ["NotAllowedError", "SecurityError"].includes(e.name);
    const missing = ["NotFoundError", "OverconstrainedError", "NotReadableError"].includes(e.name);
    const camera = $("camera").value !== "";  // one refusal covers both devices
    teardown();
    if (denied && camera) setState("micdenied", "The browser did not allow the microphone or " +
      "the camera. Allow them for this site, or set Camera to Off, then press Start.");
    else if (denied || missing) setState(denied ? "micdenied" : "nomic");
    else setState("error", `Could not start: ${e.message}`);
    return;
  }
  await listDevices();  // labels are readable once access is granted
  running = true;
  attempts = 0;
  state.rec = lanes.rec = new Recording(RATE);
  player.port.onmessage = (e) => {
    state.played = e.data.played;
    state.underruns = e.data.underruns;
  };
  mic.port.onmessage = (e) => {
    state.rec.addUser(e.data);
    lastChunkAt = performance.now();
    if (state.state !== "live" || !ws) return;  // reconnecting: recorded, not sent
    ws.send(JSON.stringify({type: "input.audio", audio: b64(pcm16(e.data))}));
  };
  $("stop").disabled = false;
  connect();
  requestAnimationFrame(frame);
}

function connect() {
  clearTimeout(retryTimer);
  if (attempts) setState("reconnecting", `Trying again (attempt ${attempts})…`);
  else setState("connecting");
  const token = $("token").value.trim();
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const base = location.pathname.replace(/[^/]*$/, "");
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  const sock = ws = new WebSocket(`${proto}://${location.host}${base}v1/ws${query}`);
  let opened = false, ending = null, leaving = false;
  sock.onopen = () => {
    opened = true;
    state.rec.sessionOpened();
    sock.send(JSON.stringify({type: "session.start", sample_rate: RATE}));
  };
  sock.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    const err = msg.type === "error" ? msg.code : null;
    if (err === "server_full") ending = ["full", ""];
    else if (RECONNECT.includes(err)) leaving = true;
    else if (err && err !== "bad_message" && !RECONNECT.includes(err)) {
      ending = ["ended", msg.message];  // idle_timeout, session_too_long: the server ended it
    }
    onEvent(msg);
  };
  sock.onclose = async () => {
    if (sock !== ws || !running) return;  // replaced, or the user pressed Stop
    ws = null;
    if (ending) { teardown(); setState(...ending); return; }
    const h = opened ? true : await health();  // refused before it opened: the token, or no server
    if (!running) return;
    if (h && h.token_required && h.status !== "draining") {
      teardown();
      setState("badtoken");
      return;
    }
    attempts++;
    const wait = Math.min(8, 0.5 * 2 ** (attempts - 1));
    const why = !h ? "Cannot reach the server" : leaving || h.status === "draining" ?
      "The server is shutting down" : "The connection dropped";
    setState("reconnecting", `${why}; trying again in ${wait} s. Your microphone is still ` +
      "being recorded.");
    retryTimer = setTimeout(connect, wait * 1000);
  };
}

function onEvent(msg) {
  const rec = state.rec;
  state.events[msg.type] = (state.events[msg.type] || 0) + 1;
  if (msg.type === "session.started") {
    attempts = 0;
    player.port.postMessage("flush");  // nothing of an older session plays into this one
    setState("live");
  } else if (msg.type === "output.audio.delta") {
    const x = floats(msg.audio);
    player.port.postMessage(x);
    rec.addModel(msg.turn, x);
  } else if (msg.type === "output.transcript.delta" || msg.type === "input.transcript.delta") {
    const said = msg.type.startsWith("output"), key = said ? "said" : "heard";
    const text = msg.text.replace(/\p{Cc}/gu, "\ufffd");  // a raw control byte would garble the log
    rec.addEvent(rec.seconds(msg.t), said ? "model_word" : "heard_word", text.trim());
    state[key] += text;
    $(key).textContent = state[key];
  } else if (msg.type.startsWith("delegation.")) {
    rec.addTask(msg);
    const kind = msg.type.split(".")[1];
    const at = rec.seconds(msg.t).toFixed(1);
    state.tasks.push(`${at} s  ${msg.task_id} ${kind} ${msg.text || ""}`);
    $("tasks").textContent = state.tasks.join("\n");
  } else if (msg.type === "turn.timing") {
    rec.addTiming(msg);
    state.latency = rec.latencies();
    const last = (xs) => xs.length ?
      `${xs[xs.length - 1].s.toFixed(1)} s (${xs.length} so far)` : "–";
    $("answer-latency").textContent = last(state.latency.answers);
    $("stop-latency").textContent = last(state.latency.stops);
    $("missed").textContent = String(rec.missed.length);
    $("lag").textContent = `${rec.lag().toFixed(1)} s`;
    $("compute").textContent = `${msg.compute_ms.toFixed(0)} ms`;
  } else if (msg.type === "error" && msg.code === "bad_message") {
    $("state-message").textContent = `The server could not read a message: ${msg.message}`;
  }
}

function teardown() {
  running = false;
  clearTimeout(retryTimer);
  clearInterval(cameraTimer);
  if (mic) { mic.port.onmessage = null; mic.disconnect(); }
  const sock = ws;
  ws = null;
  if (sock && sock.readyState === WebSocket.OPEN) {
    sock.send(JSON.stringify({type: "session.end"}));
    sock.close();
  }
  if (stream) stream.getTracks().forEach((t) => t.stop());
  if (ctx) ctx.close();
  ctx = stream = mic = source = inTap = outTap = null;
  $("preview").srcObject = null;
  $("camera-box").hidden = true;
  for (const id of ["in", "out"]) {
    $(`${id}-meter`).value = -60;
    $(`${id}-db`).textContent = "–";
  }
  $("start").disabled = false;
  $("stop").disabled = true;
  const has = !!(state.rec && state.rec.turns);
  $("save-wav").disabled = $("save-json").disabled = !has;
}

// ---- meters, lanes, recording ---------------------------------------------------------
function level(tap) {
  if (!tap) return -120;
  const buf = new Float32Array(tap.fftSize);
  tap.getFloatTimeDomainData(buf);
  let sum = 0;
  for (const v of buf) sum += v * v;
  return 10 * Math.log10(sum / buf.length + 1e-12);
}

function frame() {
  if (!running) return;
  state.level = {in: level(inTap), out: level(outTap)};
  for (const [id, db] of [["in", state.level.in], ["out", state.level.out]]) {
    $(`${id}-meter`).value = Math.max(-60, db);
    $(`${id}-db`).textContent = db > -60 ? `${db.toFixed(0)} dBFS` : "silent";
  }
  const rec = state.rec;
  const since = Math.min(TURN_S, (performance.now() - lastChunkAt) / 1000);  // smooth scrolling
  if (rec) lanes.draw(rec.user.length * TURN_S + since);
  requestAnimationFrame(frame);
}

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

const stamp = () => new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
$("save-wav").onclick = () => download(state.rec.wav(), `microturn-${stamp()}.wav`);
$("save-json").onclick = () => download(new Blob([JSON.stringify(state.rec.timeline(), null, 1)],
  {type: "application/json"}), `microturn-${stamp()}-timeline.json`);
$("start").onclick = start;
$("stop").onclick = () => {
  teardown();
  setState("idle", "Stopped. Download the recording below, or press Start.");
};
$("say").onsubmit = (e) => {
  e.preventDefault();
  const text = $("typed").value.trim();
  if (!text || state.state !== "live") return;
  ws.send(JSON.stringify({type: "input.text", text}));
  state.rec.addEvent(state.rec.user.length * TURN_S, "user_text", text);
  $("typed").value = "";
};
for (const id of ["mic", "camera"]) {  // a new pick while live swaps the device in place
  $(id).onchange = () => { if (running) openMedia().catch((e) => setState("error", e.message)); };
}
navigator.mediaDevices?.addEventListener?.("devicechange", listDevices);

$("token").value = new URLSearchParams(location.search).get("token") || "";
if ($("token").value) $("token-row").hidden = false;
health().then((h) => { if (h && h.token_required) $("token-row").hidden = false; });
listDevices();
const redraw = () => lanes.draw(state.rec ? state.rec.user.length * TURN_S : 0);
new ResizeObserver(redraw).observe($("lanes"));
