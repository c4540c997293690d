"""fp32 against bf16 (and fewer flow steps), interleaved turn by turn, so a shared, busy
machine slows every variant alike and the ratios hold even where the absolute ms do not.

    python benchmarks/dtype_ratio.py [--sessions 1,4,16,24] [--turns 20] [--config tiny]
        [--listen] [--vocoder] [--json F]

Each variant is its own engine with N sessions; every round steps each variant once
(forced to speak unless --listen, where the model decides), and the median ms per batched
turn of each variant is reported with its ratio to fp32. Default model: the shipped one.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from microturn.config import EngineConfig, load_config
from microturn.engine.engine import Engine
from microturn.model.checkpoint import load_default
from microturn.model.interaction import InteractionModel
from microturn.perf import _cpu_ticks, _Feed, machine_state
from microturn.streams.turns import SPEAK, TurnOutput

VARIANTS = (("fp32", None), ("bf16", None), ("bf16", 4))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", default="1,4,16,24")
    p.add_argument("--turns", type=int, default=20)
    p.add_argument("--config", help="named config or TOML (random weights); default: shipped model")
    p.add_argument("--listen", action="store_true", help="the model decides when it speaks")
    p.add_argument("--vocoder", action="store_true", help="unpack and vocode each turn too")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = (InteractionModel(load_config(args.config).model).eval() if args.config
             else load_default())
    forced = None if args.listen else TurnOutput(control=SPEAK, text=None, audio=None)
    rows = []
    for n in [int(x) for x in args.sessions.split(",")]:
        engines = [Engine(model, EngineConfig(max_sessions=n), dtype=d, flow_steps=s)
                   for d, s in VARIANTS]
        sessions = [[e.open(vocoder=args.vocoder) for _ in range(n)] for e in engines]
        feeds = [_Feed(e, 0) for e in engines]
        ms = [[] for _ in engines]
        ticks0 = _cpu_ticks()
        for k in range(args.turns + 3):
            for i, (e, ss) in enumerate(zip(engines, sessions)):
                inputs = [feeds[i].inputs(s, k) for s in ss]
                t0 = time.perf_counter()
                outs = e.step(ss, inputs, [forced] * n).outputs
                if args.vocoder:
                    for s, o in zip(ss, outs):
                        s.unpacker.unpack(s.turn - 1, o)
                if k >= 3:
                    ms[i].append((time.perf_counter() - t0) * 1e3)
        base = float(np.median(ms[0]))
        row = {"sessions": n, "machine": machine_state(ticks0)}
        for (d, s), t in zip(VARIANTS, ms):
            name = d + (f"_steps{s}" if s else "")
            row[name] = {"p50_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)),
                         "vs_fp32": base / float(np.median(t))}
        rows.append(row)
        print(f"N={n:3d}  " + "  ".join(
            f"{k} {v['p50_ms']:.1f} ms (x{v['vs_fp32']:.2f})" for k, v in row.items()
            if isinstance(v, dict) and "p50_ms" in v)
            + f"  (load {row['machine']['load_avg_1m']:.1f})", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "config": args.config or "default", "listen": args.listen,
                       "vocoder": args.vocoder, "turns": args.turns}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
