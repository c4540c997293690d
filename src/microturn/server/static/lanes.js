// The live lanes: one canvas, time running right to left on the 200 ms micro-turn grid.
// Rows: your level, what the model heard, the model's level, its words, background tasks
// from delegation to result, and camera frames as ticks. Drawn from a Recording.

import {SPEECH_DBFS, TURN_S} from "./record.js";

const PX_PER_TURN = 8;  // 40 px a second: ~25 s on a desktop, ~8 s on a phone
const ROW = 26, AXIS = 18, FLOOR_DB = -60;
const ROWS = ["you", "heard", "model", "said", "tasks", "video"];
const C = {grid: "#e5e7eb", second: "#9ca3af", text: "#111827", quiet: "#9ca3af", you: "#1d4ed8",
  heard: "#1e3a8a", model: "#0f766e", said: "#134e4a", task: "#ede9fe", taskEdge: "#6b21a8",
  video: "#374151", missed: "#b91c1c", now: "#111827", pending: "#f3f4f6"};

export class Lanes {
  constructor(canvas) {
    this.canvas = canvas;
    this.rec = null;
  }

  draw(now) {
    const cv = this.canvas, dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth, h = ROWS.length * ROW + AXIS;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
      cv.style.height = `${h}px`;
    }
    const g = cv.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const gutter = w < 500 ? 48 : 64, right = w - 4;
    const span = (right - gutter) / (PX_PER_TURN / TURN_S);  // seconds on screen
    const x = (t) => right - (now - t) * PX_PER_TURN / TURN_S;
    const y = (row) => ROWS.indexOf(row) * ROW;
    g.font = "12px system-ui, sans-serif";
    g.textBaseline = "middle";
    ROWS.forEach((name, i) => {
      g.fillStyle = C.text;
      g.fillText(name, 4, i * ROW + ROW / 2);
      g.fillStyle = C.grid;
      g.fillRect(gutter, (i + 1) * ROW - 1, right - gutter, 1);
    });
    g.save();
    g.beginPath();
    g.rect(gutter, 0, right - gutter, h);
    g.clip();
    const first = Math.max(0, Math.floor((now - span) / TURN_S));
    for (let k = first; k * TURN_S <= now; k++) {  // the micro-turn grid, seconds stronger
      const sec = k % 5 === 0;
      g.fillStyle = sec ? C.second : C.grid;
      g.fillRect(x(k * TURN_S), ROWS.length * ROW, 1, sec ? 6 : 3);
      const label = `${(k * TURN_S).toFixed(0)} s`, every = w < 500 ? 10 : 25;
      if (sec && k % every === 0 && x(k * TURN_S) + g.measureText(label).width + 2 < right) {
        g.fillStyle = C.text;
        g.fillText(label, x(k * TURN_S) + 2, ROWS.length * ROW + 12);
      }
    }
    const rec = this.rec;
    if (rec && rec.served) {  // the model has not computed these turns yet: shade them
      g.fillStyle = C.pending;
      g.fillRect(x(rec.served * TURN_S), y("heard"), right, y("video") - y("heard"));
    }
    if (rec) {
      const bars = (row, dbs, on, color) => {
        for (let k = first; k < dbs.length; k++) {
          if (dbs[k] === undefined) continue;
          const frac = Math.min(1, Math.max(0, dbs[k] - FLOOR_DB) / -FLOOR_DB);
          const hgt = Math.max(1, (ROW - 6) * frac);
          g.fillStyle = on(k) ? color : C.quiet;
          g.fillRect(x(k * TURN_S) + 1, y(row) + ROW - 3 - hgt, PX_PER_TURN - 2, hgt);
        }
      };
      bars("you", rec.userDb, (k) => rec.userDb[k] > SPEECH_DBFS, C.you);
      bars("model", rec.modelDb, (k) => !!rec.speaking[k], C.model);
      let from = rec.events.length;  // events arrive in time order: scan only what is on screen
      while (from > 0 && rec.events[from - 1].t >= now - span - 5) from--;
      const words = (row, kind, color) => {
        let edge = -Infinity;  // a word may slide right a little for room, no further
        g.fillStyle = color;
        for (let i = from; i < rec.events.length; i++) {
          const e = rec.events[i];
          if (e.kind !== kind) continue;
          const at = Math.max(x(e.t), edge + 4);
          if (at - x(e.t) > 2 * PX_PER_TURN) {  // no room: a tick says a word was there
            g.fillRect(x(e.t), y(row) + ROW - 6, 1, 4);
            continue;
          }
          g.fillText(e.text, at, y(row) + ROW / 2);
          edge = at + g.measureText(e.text).width;
        }
      };
      words("heard", "heard_word", C.heard);
      words("said", "model_word", C.said);
      const tasks = [...rec.tasks];
      tasks.forEach(([id, task], i) => {  // a span from delegation to result; its label ends
        const a = x(task.start), b = x(task.end ?? now);  // where the next task begins
        const until = i + 1 < tasks.length ? x(tasks[i + 1][1].start) - 2 : right;
        g.fillStyle = C.task;
        g.fillRect(a, y("tasks") + 3, Math.max(2, b - a), ROW - 6);
        g.strokeStyle = C.taskEdge;
        g.strokeRect(a + 0.5, y("tasks") + 3.5, Math.max(2, b - a) - 1, ROW - 7);
        g.save();
        g.beginPath();
        g.rect(a, y("tasks"), Math.max(0, until - a), ROW);
        g.clip();
        g.fillStyle = C.taskEdge;
        g.fillText(`${id} ${task.state}: ${task.text}`, a + 4, y("tasks") + ROW / 2);
        g.restore();
      });
      g.fillStyle = C.video;
      for (const t of rec.frames) {
        if (t >= now - span) g.fillRect(x(t), y("video") + 6, 2, ROW - 12);
      }
      g.fillStyle = C.missed;
      for (const k of rec.missed) g.fillRect(x(k * TURN_S), ROWS.length * ROW, PX_PER_TURN, 4);
    }
    g.restore();
    g.fillStyle = C.now;
    g.fillRect(right, 0, 1, ROWS.length * ROW);
  }
}
