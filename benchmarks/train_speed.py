"""Training step speed on this CPU: fp32, bf16 autocast, and bf16 with torch.compile.

    python benchmarks/train_speed.py [--steps 6] [--batch 4] [--seconds 16] [--json F]

One AdamW step (forward, backward, clip, update) of the tiny config on a batch of random
micro-turn sequences the size of the default training batch (4 x 16 s episodes). The
variants run interleaved, step by step, in one process, so a busy machine slows them alike
and the ratios hold; the median of each is reported with tokens/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from microturn.config import named_config  # noqa: E402
from microturn.engine.parity import random_batch  # noqa: E402
from microturn.model.interaction import InteractionModel  # noqa: E402
from microturn.streams.timeline import transcript_targets  # noqa: E402


def make_step(dtype: str, compiled: bool, batch, seed: int = 0):
    torch.manual_seed(seed)
    cfg = named_config("tiny").model
    model = InteractionModel(cfg.__class__(**{**cfg.__dict__, "batch_invariant": False}))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    fwd = torch.compile(model) if compiled else model

    def step() -> float:
        t0 = time.perf_counter()
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()
        with amp:
            loss = fwd(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return time.perf_counter() - t0
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=16.0)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    cfg = named_config("tiny").model
    turns = int(args.seconds * 5)
    batch = random_batch(cfg, args.batch, turns, seed=1, speak=0.4)
    batch.heard = transcript_targets([], cfg.layout, turns)[None].expand(args.batch, -1, -1).clone()
    tokens = args.batch * turns * cfg.layout.tokens_per_turn
    variants = {"fp32": ("fp32", False), "bf16": ("bf16", False)}
    if not args.no_compile:
        variants["bf16_compiled"] = ("bf16", True)
    steps = {name: make_step(d, c, batch) for name, (d, c) in variants.items()}
    for name, fn in steps.items():  # warm-up (and compilation) outside the timing
        t0 = time.perf_counter()
        fn()
        fn()
        print(f"{name}: warm-up {time.perf_counter() - t0:.1f} s", flush=True)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.steps):
        for name, fn in steps.items():
            times[name].append(fn())
    rows = {k: {"step_s": statistics.median(v), "tokens_per_s": tokens / statistics.median(v)}
            for k, v in times.items()}
    base = rows["fp32"]["step_s"]
    for k, r in rows.items():
        r["speedup_vs_fp32"] = base / r["step_s"]
        print(f"{k:>14}: {r['step_s']:.2f} s/step  {r['tokens_per_s']:8,.0f} tokens/s  "
              f"{r['speedup_vs_fp32']:.2f}x fp32")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"tokens_per_step": tokens, "variants": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
