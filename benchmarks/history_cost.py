"""What the byte history and the copy lookup cost a live session: engine step time, A/B.

    python benchmarks/history_cost.py [--turns 120] [--threads 1] [--json F]

Four engines over the tiny config (plain; with `byte_history`; with it and `copy_lookup`; and
with the lookup keyed on three bytes, `lookup_bytes = 3`) step one session each through the
same random turns (text from three letters, so lookups hit), interleaved turn by turn in one
process so a busy machine slows them alike; the median step time of each, after a warm-up,
and its ratio to plain, per dtype.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from microturn.config import EngineConfig, named_config  # noqa: E402
from microturn.engine.engine import Engine  # noqa: E402
from microturn.engine.parity import random_batch  # noqa: E402
from microturn.model.interaction import InteractionModel  # noqa: E402

ARMS = {  # (byte_history, copy_lookup, lookup_bytes)
    "plain": (False, False, 2),
    "history": (True, False, 2),
    "history + lookup": (True, True, 2),
    "history + 3-byte lookup": (True, True, 3),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=120)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the medians and ratios here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = named_config("tiny").model
    batch = random_batch(cfg, 1, args.turns, seed=1, letters=3)
    report = {}
    for dtype in ("fp32", "bf16"):
        sessions = {}
        for name, (history, lookup, key) in ARMS.items():
            torch.manual_seed(0)
            model = InteractionModel(
                dataclasses.replace(
                    cfg, byte_history=history, copy_lookup=lookup, lookup_bytes=key
                )
            )
            engine = Engine(model, EngineConfig(max_sessions=1), dtype=dtype)
            sessions[name] = (engine, engine.open(vocoder=False))
        times: dict[str, list[float]] = {name: [] for name in ARMS}
        for t in range(args.turns):
            inp, out = batch.turn(0, t)
            for name, (engine, session) in sessions.items():
                t0 = time.perf_counter()
                engine.step([session], [inp], [out])
                times[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(v[args.turns // 6 :]) * 1000 for name, v in times.items()}
        report[dtype] = {n: {"ms": m, "ratio": m / med["plain"]} for n, m in med.items()}
        print(dtype, "  ".join(f"{n} {m:.2f} ms ({m / med['plain']:.3f}x)" for n, m in med.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
