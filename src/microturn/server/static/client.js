// The browser client: mic (AudioWorklet, echo cancellation requested), optional camera
// frames, playback through a jitter buffer, and a live timeline. No build step.
"use strict";

const RATE = 16000;  // the model's rate: the AudioContext resamples the mic and plays the model at it
const LANE_TURNS = 150;  // 30 s of micro-turns on screen
const state = window.microturn = {events: {}, played: 0, underruns: 0, said: "", tasks: []};
let ws, ctx, mic, player, stream, cameraTimer, userLoud = false, bgActive = 0;

const $ = (id) => document.getElementById(id);
const status = (text) => { $("status").textContent = text; };

function b64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
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

function tick(lane, on) {
  const el = $(lane), cell = document.createElement("span");
  if (on) cell.className = "on";
  el.appendChild(cell);
  while (el.childNodes.length > LANE_TURNS) el.removeChild(el.firstChild);
}

function onEvent(msg) {
  state.events[msg.type] = (state.events[msg.type] || 0) + 1;
  if (msg.type === "output.audio.delta") player.port.postMessage(floats(msg.audio));
  else if (msg.type === "output.transcript.delta") { state.said += msg.text; $("said").textContent = state.said; }
  else if (msg.type.startsWith("delegation.")) {
    const kind = msg.type.split(".")[1];
    bgActive += kind === "created" ? 1 : (["done", "failed", "cancelled"].includes(kind) ? -1 : 0);
    state.tasks.push(`${msg.t.toFixed(1)} s  ${msg.task_id} ${kind} ${msg.text || ""}`);
    $("tasks").textContent = state.tasks.join("\n");
  } else if (msg.type === "turn.timing") {
    tick("lane-user", userLoud); tick("lane-model", msg.speaking); tick("lane-bg", bgActive > 0);
    status(`live · turn ${msg.turn} · ${msg.compute_ms.toFixed(0)} ms compute${msg.missed_deadline ? " · late" : ""}`);
  } else if (msg.type === "error") status(`error: ${msg.message}`);
}

async function start() {
  $("start").disabled = true;
  status("starting…");
  ctx = new AudioContext({sampleRate: RATE});
  await ctx.audioWorklet.addModule("worklets.js");
  stream = await navigator.mediaDevices.getUserMedia({
    audio: {echoCancellation: true, noiseSuppression: true, channelCount: 1},
    video: $("camera").checked ? {width: 320, height: 240} : false});
  mic = new AudioWorkletNode(ctx, "mic-capture");
  player = new AudioWorkletNode(ctx, "player");
  player.port.onmessage = (e) => { state.played = e.data.played; state.underruns = e.data.underruns; };
  ctx.createMediaStreamSource(stream).connect(mic);
  player.connect(ctx.destination);
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const token = new URLSearchParams(location.search).get("token");
  ws = new WebSocket(`${proto}://${location.host}/v1/ws${token ? "?token=" + encodeURIComponent(token) : ""}`);
  ws.onopen = () => ws.send(JSON.stringify({type: "session.start", sample_rate: RATE}));
  ws.onmessage = (e) => onEvent(JSON.parse(e.data));
  ws.onclose = () => { status("closed"); stop(); };
  mic.port.onmessage = (e) => {
    let sum = 0;
    for (const v of e.data) sum += v * v;
    userLoud = 10 * Math.log10(sum / e.data.length + 1e-12) > -40;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({type: "input.audio", audio: b64(pcm16(e.data))}));
  };
  if ($("camera").checked) startCamera();
  $("stop").disabled = false;
}

function startCamera() {
  const video = $("preview"), canvas = document.createElement("canvas");
  canvas.width = canvas.height = 80;  // the model's frame; the server resizes anything else
  video.srcObject = stream;
  video.play();
  cameraTimer = setInterval(() => {
    if (!ws || ws.readyState !== WebSocket.OPEN || video.readyState < 2) return;
    canvas.getContext("2d").drawImage(video, 0, 0, 80, 80);
    const jpeg = canvas.toDataURL("image/jpeg", 0.8).split(",")[1];
    ws.send(JSON.stringify({type: "input.video", jpeg}));
  }, 200);
}

function stop() {
  clearInterval(cameraTimer);
  if (mic) { mic.port.onmessage = null; mic.disconnect(); }
  if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify({type: "session.end"})); ws.close(); }
  if (stream) stream.getTracks().forEach((t) => t.stop());
  if (ctx) ctx.close();
  ws = ctx = stream = mic = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

$("start").onclick = () => start().catch((e) => { status(`could not start: ${e.message}`); $("start").disabled = false; });
$("stop").onclick = stop;
$("typed").onkeydown = (e) => {
  if (e.key === "Enter" && ws && ws.readyState === WebSocket.OPEN && e.target.value.trim()) {
    ws.send(JSON.stringify({type: "input.text", text: e.target.value.trim()}));
    e.target.value = "";
  }
};
