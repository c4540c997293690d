"""`microturn perf`: what a streaming session costs, measured against baselines run here.

* one session's turn time (p50, p99) in steady state, and at turn 10 against turn N
  (a streaming session's turn must not grow with the conversation);
* the same turn recomputed from scratch over the whole context, as a server without
  streaming sessions must (the ratio is `speedup_vs_reprefill`);
* trainer-sampler parity (max |difference| of every output logit and flow condition);
* batched steps: milliseconds per session for several sessions stepped together;
* the speaking path as a listener gets it: the shipped default model (or --checkpoint)
  with the flow head and the vocoder on, per-turn ms for 1, 4 and 16 sessions, and
  `speaking_turn_ms_p99` for one.

Every turn is forced to *speak*, the costliest path (flow head on all audio slots);
text and audio are still sampled. `dtype`/`device` choose the engine's mode (the parity
figure is always the fp32 engine's).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .config import Config, EngineConfig
from .engine.engine import Engine
from .engine.parity import measure_parity, random_batch
from .model.interaction import InteractionModel
from .streams.turns import SPEAK, TurnInput, TurnOutput


@dataclass
class PerfOptions:
    turns: int = 1500
    batch_sizes: tuple[int, ...] = (1, 4, 16)
    batch_turns: int = 40
    window: int = 30  # turns whose median is taken at each end
    reprefill_runs: int = 2
    seed: int = 0
    dtype: str = "fp32"
    device: str | None = None
    flow_steps: int | None = None
    speaking_turns: int = 200  # one session's speaking turns (its p99); batches run fewer


class _Feed:
    """Synthetic input for a session: speech-like noise bursts and a moving square."""

    def __init__(self, engine: Engine, seed: int) -> None:
        self.lay = engine.layout
        self.rng = np.random.default_rng(seed)

    def inputs(self, session, k: int) -> TurnInput:
        lay = self.lay
        audio = self.rng.standard_normal(lay.turn_samples).astype(np.float32) * (
            0.1 if (k // 10) % 2 else 0.01
        )
        frame = np.zeros((lay.video_height, lay.video_width, 3), dtype=np.uint8)
        x = (k * 3) % (lay.video_width - 10)
        frame[10:20, x : x + 10] = 255
        return session.packer.pack(audio, frame)


SPEAK_ALWAYS = TurnOutput(control=SPEAK, text=None, audio=None)


def _time_turns(
    engine: Engine,
    sessions: list,
    feed: _Feed,
    turns: int,
    desc: str | None = None,
    vocode: bool = False,
) -> np.ndarray:
    """ms per batched turn; with `vocode`, each session's frames are unpacked and vocoded too
    (what a server does before it can send the turn's audio)."""
    out = np.zeros(turns)
    for k in tqdm(range(turns), desc=desc, unit="turn", disable=desc is None, leave=False):
        inputs = [feed.inputs(s, k) for s in sessions]
        t0 = time.perf_counter()
        outs = engine.step(sessions, inputs, [SPEAK_ALWAYS] * len(sessions)).outputs
        if vocode:
            for s, o in zip(sessions, outs):
                s.unpacker.unpack(s.turn - 1, o)
        if engine.device.type == "cuda":
            torch.cuda.synchronize()
        out[k] = time.perf_counter() - t0
    return out * 1e3


def _engine(model: InteractionModel, opts: PerfOptions) -> Engine:
    """An engine for every batch size measured, in the precision and on the device asked for."""
    return Engine(model, EngineConfig(max_sessions=max(opts.batch_sizes)), dtype=opts.dtype,
                  device=opts.device, flow_steps=opts.flow_steps)

def _speaking(model: InteractionModel, opts: PerfOptions, progress: bool) -> dict:
    """The speaking path with the flow head and the vocoder on: ms per batched turn."""
    engine = _engine(model, opts)
    feed = _Feed(engine, opts.seed)
    per_turn = {}
    p99 = None
    for n in opts.batch_sizes:
        sessions = [engine.open(vocoder=True) for _ in range(n)]
        turns = opts.speaking_turns if n == 1 else max(5, opts.batch_turns // 2)
        t = _time_turns(
            engine, sessions, feed, turns + 5, f"speaking, {n}" if progress else None, vocode=True
        )[5:]
        per_turn[str(n)] = {"p50": float(np.percentile(t, 50)), "p99": float(np.percentile(t, 99))}
        if n == 1:
            p99 = per_turn["1"]["p99"]
        for s in sessions:
            engine.close(s)
    return {
        "speaking_turn_ms_p99": p99,
        "speaking_turn_ms": per_turn,
        "speaking_flow_steps": engine.flow_steps,
    }


def vocoder_ms_per_session(
    batch_sizes: tuple[int, ...] = (1, 4, 16), turns: int = 30, seed: int = 0
) -> dict[str, float]:
    """The trained vocoder alone: median ms per session-turn when n speaking sessions are
    vocoded in one batched call (what the server does each turn), for each n."""
    from .config import TurnLayout
    from .streams.audio import AudioFrontend
    from .vocoder.streaming import NeuralVoice, shared_vocoder, vocode_turn

    lay = TurnLayout()
    model = shared_vocoder()
    rng = np.random.default_rng(seed)
    t = np.arange(turns * lay.turn_samples) / lay.sample_rate
    speech = 0.3 * np.sin(2 * np.pi * (120 + 40 * np.sin(3 * t)) * t)
    speech += 0.03 * rng.standard_normal(len(t))
    mel = AudioFrontend(lay).log_mel(speech.astype(np.float32))  # never silent: always vocoded
    f = lay.frames_per_turn
    out = {}
    for n in batch_sizes:
        voices = [NeuralVoice(model) for _ in range(n)]
        ms = []
        for k in range(turns):
            frames = [mel[k * f : (k + 1) * f]] * n
            t0 = time.perf_counter()
            vocode_turn(voices, frames)
            ms.append((time.perf_counter() - t0) * 1e3 / n)
        out[str(n)] = float(np.median(ms[3:]))
    return out


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies from /proc/stat: how much CPU the host took from this VM."""
    try:
        fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def steal_since(ticks0: tuple[int, int] | None) -> float | None:
    """Share of CPU time the VM host took since `ticks0` (from `_cpu_ticks`)."""
    ticks1 = _cpu_ticks()
    if ticks0 and ticks1 and ticks1[1] > ticks0[1]:
        return (ticks1[0] - ticks0[0]) / (ticks1[1] - ticks0[1])
    return None


def machine_state(ticks0: tuple[int, int] | None) -> dict:
    """What else the machine was doing: a figure without it cannot be compared."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (None,) * 3
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "load_avg_1m": load[0],
        "load_avg_5m": load[1],
        "cpu_steal": steal_since(ticks0),
    }


@torch.no_grad()
def _reprefill_ms(model: InteractionModel, turns: int, runs: int, seed: int) -> float:
    """One forward over the whole context, as a server without streaming sessions does every
    turn (before decoding the turn's outputs, which this leaves out: a lower bound)."""
    batch = random_batch(model.cfg, 1, turns, seed)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.hidden(batch)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def run_perf(
    cfg: Config,
    model: InteractionModel | None = None,
    opts: PerfOptions | None = None,
    progress: bool = True,
    speaking_model: InteractionModel | None = None,
) -> dict:
    """`speaking_model` is what the speaking path measures (default: the shipped model)."""
    from .model.checkpoint import load_default

    opts = opts or PerfOptions()
    torch.manual_seed(opts.seed)
    model = (model or InteractionModel(cfg.model)).eval()
    w = opts.window
    if opts.turns < 10 + 2 * w:
        raise ValueError(f"--turns {opts.turns}: expected at least {10 + 2 * w}")
    ticks0 = _cpu_ticks()
    # 1. one session, a long conversation
    engine = _engine(model, opts)
    session = engine.open(vocoder=False)
    feed = _Feed(engine, opts.seed)
    one = _time_turns(engine, [session], feed, opts.turns, "one session" if progress else None)
    engine.close(session)
    early = float(np.median(one[10 : 10 + w]))
    late = float(np.median(one[-w:]))
    steady = one[10:]
    # 2. the same turn without a streaming session
    reprefill = _reprefill_ms(model, opts.turns, opts.reprefill_runs, opts.seed)
    # 3. parity past the window, sessions of different lengths batched together
    win = cfg.model.window_turns + cfg.model.sink_turns
    parity = measure_parity(model, starts=[0, 3, 11], turns=win + 12, seed=opts.seed)
    # 4. batched steps
    batched = {}
    for n in opts.batch_sizes:
        sessions = [engine.open(vocoder=False) for _ in range(n)]
        t = _time_turns(
            engine, sessions, feed, opts.batch_turns, f"{n} sessions" if progress else None
        )
        batched[str(n)] = float(np.median(t[5:]) / n)
        for s in sessions:
            engine.close(s)
    # 5. the speaking path with the vocoder, on the model a listener would hear
    speaking = _speaking(speaking_model or load_default(), opts, progress)
    turn_s = cfg.model.layout.turn_seconds
    state = machine_state(ticks0)
    return {
        "config": cfg.name,
        "params": model.num_params(),
        "tokens_per_turn": cfg.model.layout.tokens_per_turn,
        "turns": opts.turns,
        "turn_ms_p50": float(np.percentile(steady, 50)),
        "turn_ms_p99": float(np.percentile(steady, 99)),
        "real_time_factor_p99": float(np.percentile(steady, 99)) / (turn_s * 1e3),
        "turn_ms_at_10": early,
        f"turn_ms_at_{opts.turns}": late,
        "late_over_early": late / early,
        "reprefill_ms": reprefill,
        "speedup_vs_reprefill": reprefill / late,
        "parity_max_abs_diff": parity.max_abs_diff,
        "parity_turns_compared": parity.compared,
        "batched_ms_per_session": batched,
        "kv_bytes_per_session": engine.pool.bytes_per_session,
        "dtype": opts.dtype,
        "device": str(engine.device),
        **speaking,
        "vocoder_ms_per_session": vocoder_ms_per_session(opts.batch_sizes, seed=opts.seed),
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "processor": state["cpu_model"],
            **state,
        },
    }


def format_table(r: dict) -> str:
    late = r[f"turn_ms_at_{r['turns']}"]
    rows = [
        (
            "config",
            f"{r['config']} ({r['params'] / 1e6:.1f}M params, {r['tokens_per_turn']} tokens/turn)",
        ),
        (
            "turn ms p50 / p99",
            f"{r['turn_ms_p50']:.1f} / {r['turn_ms_p99']:.1f}  "
            f"(real-time factor {r['real_time_factor_p99']:.2f})",
        ),
        (
            f"turn ms at 10 / {r['turns']}",
            f"{r['turn_ms_at_10']:.1f} / {late:.1f}  (late/early {r['late_over_early']:.2f})",
        ),
        (
            "re-prefill ms",
            f"{r['reprefill_ms']:.0f}  (streaming is {r['speedup_vs_reprefill']:.0f}x faster)",
        ),
        (
            "parity max |diff|",
            f"{r['parity_max_abs_diff']:.3g}  over {r['parity_turns_compared']} turns",
        ),
    ] + [
        (f"batched, {n} sessions", f"{ms:.1f} ms per session")
        for n, ms in r["batched_ms_per_session"].items()
    ]
    rows += [
        (f"speaking + vocoder, {n}", f"{t['p50']:.1f} / {t['p99']:.1f} ms a turn (p50 / p99)")
        for n, t in r["speaking_turn_ms"].items()
    ]
    rows.append(("engine", f"{r['dtype']} on {r['device']}"))
    if r["machine"]["cpu_steal"] is not None:
        rows.append(
            (
                "cpu steal during run",
                f"{100 * r['machine']['cpu_steal']:.0f}% (time the VM host took)",
            )
        )
    if r["machine"].get("load_avg_1m") is not None:
        rows.append(
            (
                "load average (1 min)",
                f"{r['machine']['load_avg_1m']:.1f} on {r['machine']['cores']} cores",
            )
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def write_json(r: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(r, indent=2) + "\n")
