"""How far bf16 and fewer Euler steps move the drawn audio frames, against fp32.

    python benchmarks/flow_quality.py [--turns 100] [--json F]

One session of the shipped default model hears speech-like audio and is forced to speak
every turn with the same text tokens (those the fp32 engine sampled), so every run draws
its frames under the same conditions and, per seed, the same noise. Reported per variant
(dtype, flow steps, seed): the mean |difference| of its frames from the fp32 8-step run's,
in log10-mel units, beside the spread between two fp32 runs that differ only in the noise
seed (what sampling alone moves a frame), and the ms per speaking turn (no vocoder).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.engine.session import SamplerSettings
from microturn.model.checkpoint import load_default
from microturn.perf import _cpu_ticks, machine_state
from microturn.streams.turns import SPEAK, TurnOutput


def speechlike(n: int, k: int, rate: int = 16_000) -> np.ndarray:
    t = (np.arange(n) + k * n) / rate
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.3 * t)
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    return (0.15 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * x).astype(np.float32)


def run(model, dtype: str, steps: int, seed: int, turns: int, text: list | None) -> tuple:
    engine = Engine(model, EngineConfig(max_sessions=1), dtype=dtype, flow_steps=steps)
    s = engine.open(SamplerSettings(seed=seed), vocoder=False)
    frames, tokens, ms = [], [], []
    n = model.cfg.layout.turn_samples
    for k in range(turns):
        forced = TurnOutput(control=SPEAK, text=None if text is None else text[k], audio=None)
        t0 = time.perf_counter()
        out = engine.step([s], [s.packer.pack(speechlike(n, k))], [forced]).outputs[0]
        ms.append((time.perf_counter() - t0) * 1e3)
        mel = out.audio.reshape(-1, model.cfg.layout.mel_channels)
        frames.append(model.mel_norm.denormalize(mel))
        tokens.append(out.text)
    return torch.stack(frames), tokens, float(np.median(ms[5:]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--turns", type=int, default=100)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_default()
    ticks0 = _cpu_ticks()
    ref, text, ref_ms = run(model, "fp32", 8, 0, args.turns, None)
    rows = [{"dtype": "fp32", "flow_steps": 8, "seed": 0, "mean_abs_diff_log_mel": 0.0,
             "ms_per_turn": ref_ms}]
    for dtype, steps, seed in (("fp32", 8, 1), ("bf16", 8, 0), ("fp32", 4, 0), ("bf16", 4, 0),
                               ("fp32", 2, 0), ("bf16", 8, 1)):
        frames, _, ms = run(model, dtype, steps, seed, args.turns, text)
        diff = float((frames - ref).abs().mean())
        # what a listener hears on average: the spectral envelope, and how much frames move
        envelope = float((frames.mean((0, 1)) - ref.mean((0, 1))).abs().mean())
        motion = float(frames.std((0, 1)).mean() / ref.std((0, 1)).mean())
        rows.append({"dtype": dtype, "flow_steps": steps, "seed": seed,
                     "mean_abs_diff_log_mel": diff, "envelope_abs_diff": envelope,
                     "std_ratio": motion, "ms_per_turn": ms})
        print(f"{dtype} steps {steps} seed {seed}: mean |diff| {diff:.4f} log10-mel, envelope "
              f"{envelope:.4f}, std ratio {motion:.3f}, {ms:.1f} ms a turn", flush=True)
    print(f"reference fp32 8 steps: mean log10-mel {float(ref.mean()):.3f}, {ref_ms:.1f} ms a turn "
          f"(load {machine_state(ticks0)['load_avg_1m']:.1f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "turns": args.turns, "machine": machine_state(ticks0)}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
