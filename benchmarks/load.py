"""Load: N concurrent sessions streaming real-time audio into a real `microturn serve`.

    python benchmarks/load.py [--sessions 1,2,4,8] [--seconds 10] [--config tiny | --checkpoint F]

Starts `microturn serve` on loopback as a subprocess (nothing leaves the machine), then
for each N opens N native WebSocket sessions that each send 200 ms of speech-like audio
every 200 ms for T seconds. Reports, per N: p50/p99 turn compute (the server's batched
step, from `turn.timing`), the deadline-miss rate, input audio dropped and output
messages dropped, and the largest N with no missed deadline. Bounded: N <= 64, T <= 120.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import websockets


def speechlike(seconds: float, rate: int = 16_000) -> str:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * sum(np.sin(2 * np.pi * 180 * h * t) / h for h in range(1, 6))
    return base64.b64encode((x * 32767).astype("<i2").tobytes()).decode()


async def client(url: str, seconds: float, timings: list, missed: list) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.start"}))
        json.loads(await ws.recv())
        chunk = speechlike(0.2)
        t0 = time.monotonic()

        async def send():
            for i in range(int(seconds / 0.2)):
                await ws.send(json.dumps({"type": "input.audio", "audio": chunk}))
                await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.2 - time.monotonic()))

        sender = asyncio.create_task(send())
        while not sender.done() or time.monotonic() - t0 < seconds:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
            except asyncio.TimeoutError:
                continue
            if msg["type"] == "turn.timing":
                timings.append(msg["compute_ms"])
                missed.append(msg["missed_deadline"])
        await sender


def metric(base: str, name: str) -> float:
    text = urllib.request.urlopen(f"{base}/metrics").read().decode()
    m = re.search(rf"^microturn_{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", default="1,2,4,8")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--config", help="named config or TOML (random weights); default: the shipped default model")
    p.add_argument("--checkpoint")
    p.add_argument("--threads", type=int, help="the server's torch threads (default: serve's, half the cores)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    if max(counts) > 64 or args.seconds > 120:
        p.error("bounded: at most 64 sessions and 120 s")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "microturn.cli", "serve", "--port", str(port), "--max-sessions", str(max(counts))]
    cmd += (["--threads", str(args.threads)] if args.threads else [])
    cmd += (["--config", args.config] if args.config else []) + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        rows = []
        for n in counts:
            for _ in range(200):  # the last round's sessions close asynchronously: start on an empty server
                health = json.loads(urllib.request.urlopen(f"{base}/healthz").read())
                if health["free_slots"] == health["max_sessions"]:
                    break
                time.sleep(0.05)
            timings: list[float] = []
            missed: list[bool] = []
            drops0 = metric(base, "dropped_audio_seconds_total"), metric(base, "dropped_messages_total")

            async def run():
                await asyncio.gather(*(client(f"ws://127.0.0.1:{port}/v1/ws", args.seconds, timings, missed)
                                       for _ in range(n)))
            asyncio.run(run())
            ms = np.array(timings) if timings else np.zeros(1)
            row = {"sessions": n, "turn_ms_p50": round(float(np.percentile(ms, 50)), 1),
                   "turn_ms_p99": round(float(np.percentile(ms, 99)), 1),
                   "miss_rate": round(sum(missed) / max(len(missed), 1), 4),
                   "dropped_audio_s": round(metric(base, "dropped_audio_seconds_total") - drops0[0], 2),
                   "dropped_messages": int(metric(base, "dropped_messages_total") - drops0[1])}
            rows.append(row)
            print(f"N={n:3d}  turn p50 {row['turn_ms_p50']:6.1f} ms  p99 {row['turn_ms_p99']:6.1f} ms  "
                  f"missed {100 * row['miss_rate']:5.1f}%  dropped audio {row['dropped_audio_s']} s, "
                  f"messages {row['dropped_messages']}", flush=True)
        ok = [r["sessions"] for r in rows if r["miss_rate"] == 0]
        print(f"largest N with no missed deadline: {max(ok) if ok else 'none'}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"rows": rows, "largest_n_no_miss": max(ok) if ok else None}, f, indent=2)
    finally:
        server.terminate()
        server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
