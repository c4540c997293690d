"""Load: how many real-time sessions one engine holds.

    python benchmarks/load.py --sessions 1,4,8,16 --seconds 10 --json load.json
        [--config tiny | --checkpoint F] [--dtype fp32|bf16] [--device cpu|cuda]
        [--simulate [--speak]] [--threads T]

Default: starts `microturn serve` on loopback as a subprocess (nothing leaves the machine),
then for each N opens N native WebSocket sessions that each send 200 ms of speech-like
audio every 200 ms for S seconds. Per N: p50/p99 turn compute (the server's batched step,
from `turn.timing`), missed deadlines, input audio and output messages dropped.

`--simulate` needs no sockets (the GPU check): N sessions in this process on a 200 ms
clock, each turn packed, stepped in one batch, unpacked and vocoded as the server does;
a turn whose work overruns its 200 ms is missed. `--speak` forces every turn to speak
(the costliest path); `--no-vocoder` leaves waveforms out (the engine's own capacity,
e.g. on a GPU while the vocoder still runs per session on the CPU).

Writes rows of (sessions, p50_ms, p99_ms, missed, miss_rate, speaking_share) and
max_realtime_sessions, the largest N with no missed turn, with the machine's CPU model,
load average and CPU steal beside each row (the figures mean little without them).
Bounded: N <= 64 over sockets, N <= 1024 simulated, S <= 120.
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

from microturn.perf import _cpu_ticks, machine_state

PERIOD_S = 0.2


def speechlike(seconds: float, rate: int = 16_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * sum(np.sin(2 * np.pi * 180 * h * t) / h
                                                            for h in range(1, 6))
    return x.astype(np.float32)


def _row(n: int, ms: list[float], missed: list[bool], speaking: list[bool], ticks0) -> dict:
    def pct(q: float) -> float | None:
        return round(float(np.percentile(ms, q)), 1) if ms else None
    return {"sessions": n, "p50_ms": pct(50), "p99_ms": pct(99), "missed": int(sum(missed)),
            "turns": len(missed), "miss_rate": round(sum(missed) / max(len(missed), 1), 4),
            "speaking_share": round(sum(speaking) / max(len(speaking), 1), 3),
            "machine": machine_state(ticks0)}


# ---- over sockets, against a real server ----------------------------------------------
async def client(url: str, seconds: float, timings: list, missed: list, speaking: list) -> None:
    import websockets

    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"type": "session.start"}))
        json.loads(await ws.recv())
        pcm = (speechlike(PERIOD_S) * 32767).astype("<i2").tobytes()
        chunk = base64.b64encode(pcm).decode()
        t0 = time.monotonic()

        async def send():
            for i in range(int(seconds / PERIOD_S)):
                await ws.send(json.dumps({"type": "input.audio", "audio": chunk}))
                await asyncio.sleep(max(0.0, t0 + (i + 1) * PERIOD_S - time.monotonic()))

        sender = asyncio.create_task(send())
        while not sender.done() or time.monotonic() - t0 < seconds:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
            except asyncio.TimeoutError:
                continue
            if msg["type"] == "turn.timing":
                timings.append(msg["compute_ms"])
                missed.append(msg["missed_deadline"])
                speaking.append(bool(msg.get("speaking")))
        await sender


def metric(base: str, name: str) -> float:
    text = urllib.request.urlopen(f"{base}/metrics").read().decode()
    m = re.search(rf"^microturn_{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def over_sockets(args: argparse.Namespace, counts: list[int]) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "microturn.cli", "serve", "--port", str(port),
           "--max-sessions", str(max(counts)), "--dtype", args.dtype]
    for flag in ("threads", "config", "checkpoint", "device", "flow_steps"):
        if getattr(args, flag):
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=dict(os.environ))
    base = f"http://127.0.0.1:{port}"
    rows = []
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        for n in counts:
            for _ in range(200):  # the last round's sessions close asynchronously: start empty
                health = json.loads(urllib.request.urlopen(f"{base}/healthz").read())
                if health["free_slots"] == health["max_sessions"]:
                    break
                time.sleep(0.05)
            timings: list[float] = []
            missed: list[bool] = []
            speaking: list[bool] = []
            drops0 = (metric(base, "dropped_audio_seconds_total"),
                      metric(base, "dropped_messages_total"))
            ticks0 = _cpu_ticks()

            async def run():
                await asyncio.gather(*(client(f"ws://127.0.0.1:{port}/v1/ws", args.seconds, timings,
                                              missed, speaking) for _ in range(n)))
            asyncio.run(run())
            row = _row(n, timings, missed, speaking, ticks0)
            dropped = metric(base, "dropped_audio_seconds_total") - drops0[0]
            row["dropped_audio_s"] = round(dropped, 2)
            row["dropped_messages"] = int(metric(base, "dropped_messages_total") - drops0[1])
            rows.append(row)
            _print(row)
    finally:
        server.terminate()
        server.wait(10)
    return rows


# ---- in process, no sockets -------------------------------------------------------------
def simulated(args: argparse.Namespace, counts: list[int]) -> list[dict]:
    """N sessions on a 200 ms clock in this process: pack, one batched step, unpack and
    vocode, per turn; `missed` counts turns whose work ended after their deadline."""
    import torch

    from microturn.config import EngineConfig
    from microturn.engine.engine import Engine
    from microturn.streams.turns import SPEAK, TurnOutput

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) // 2))
    model = _model(args)
    engine = Engine(model, EngineConfig(max_sessions=max(counts)), dtype=args.dtype,
                    device=args.device, flow_steps=args.flow_steps)
    audio = speechlike(PERIOD_S)
    frame = np.zeros((model.cfg.layout.video_height, model.cfg.layout.video_width, 3), np.uint8)
    forced = TurnOutput(control=SPEAK, text=None, audio=None) if args.speak else None
    rows = []
    for n in counts:
        sessions = [engine.open(vocoder=args.vocoder) for _ in range(n)]
        ms, missed, speaking = [], [], []
        ticks0 = _cpu_ticks()
        deadline = time.monotonic() + PERIOD_S
        for k in range(int(args.seconds / PERIOD_S)):
            t0 = time.perf_counter()
            inputs = [s.packer.pack(audio, frame if k % 5 == 0 else None) for s in sessions]
            outs = engine.step(sessions, inputs, [forced] * n).outputs
            for s, o in zip(sessions, outs):
                s.unpacker.unpack(s.turn - 1, o)
            if engine.device.type == "cuda":
                torch.cuda.synchronize()
            ms.append((time.perf_counter() - t0) * 1e3)
            late = time.monotonic() > deadline
            missed += [late] * n
            speaking += [o.control == SPEAK for o in outs]
            deadline += PERIOD_S
            time.sleep(max(0.0, deadline - PERIOD_S - time.monotonic()))
            if deadline < time.monotonic() - PERIOD_S:  # far behind: skip, as the server does
                deadline = time.monotonic() + PERIOD_S
        for s in sessions:
            engine.close(s)
        rows.append(_row(n, ms, missed, speaking, ticks0))
        _print(rows[-1])
    return rows


def _model(args: argparse.Namespace):
    import torch

    from microturn.config import load_config
    from microturn.model.checkpoint import load_default, load_model
    from microturn.model.interaction import InteractionModel

    torch.manual_seed(0)
    if args.checkpoint:
        return load_model(args.checkpoint)
    if args.config:
        return InteractionModel(load_config(args.config).model).eval()
    return load_default()


def _print(row: dict) -> None:
    m = row["machine"]
    steal = "?" if m["cpu_steal"] is None else f"{100 * m['cpu_steal']:.0f}%"
    if not row["turns"]:
        print(f"N={row['sessions']:3d}  no turn came back within the run (load "
              f"{m['load_avg_1m']:.1f}, steal {steal})", flush=True)
        return
    print(f"N={row['sessions']:3d}  turn p50 {row['p50_ms']:6.1f} ms  p99 {row['p99_ms']:6.1f} ms  "
          f"missed {row['missed']}/{row['turns']}  speaking {100 * row['speaking_share']:.0f}%  "
          f"(load {m['load_avg_1m']:.1f}, steal {steal})", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", default="1,2,4,8")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--config", help="named config or TOML (random weights); default: the shipped "
                                     "model")
    p.add_argument("--checkpoint")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", help="cpu or cuda (default: cpu)")
    p.add_argument("--flow-steps", type=int, help="the flow head's Euler steps (default: model's)")
    p.add_argument("--threads", type=int, help="engine torch threads (default: half the cores)")
    p.add_argument("--simulate", action="store_true", help="in-process clients, no sockets")
    p.add_argument("--speak", action="store_true", help="with --simulate: every turn speaks")
    p.add_argument("--no-vocoder", dest="vocoder", action="store_false",
                   help="with --simulate: no waveforms (the engine alone)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    if max(counts) > (1024 if args.simulate else 64) or min(counts) < 1 or args.seconds > 120:
        p.error("bounded: 1 to 64 sessions over sockets (1024 simulated), at most 120 s")
    if (args.speak or not args.vocoder) and not args.simulate:
        p.error("--speak and --no-vocoder need --simulate (a served model decides when it speaks)")
    rows = simulated(args, counts) if args.simulate else over_sockets(args, counts)
    # a round where no turn came back at all (the server never caught up) is no success
    ok = [r["sessions"] for r in rows if r["missed"] == 0 and r["turns"] > 0]
    best = max(ok) if ok else None
    print(f"max_realtime_sessions (largest N with no missed turn): {best if best else 'none'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "max_realtime_sessions": best, "dtype": args.dtype,
                       "device": args.device or "cpu", "config": args.config or args.checkpoint
                       or "default", "mode": "simulate" if args.simulate else "sockets",
                       "speak_forced": args.speak, "vocoder": args.vocoder,
                       "seconds": args.seconds}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
