"""Does a fixed input dither help the shipped model after exact digital silence?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dither.py --per-family 4 --dbfs -90 -80

Eval-split turn-taking and pause episodes, heard under the `digital_silence` preset, then
with white dither at each level added to the whole input (what a dither stage in
`streams.audio` would do), and under `clean` (room tone at -70 dBFS) for reference. Prints
turn-taking TOR and latency and pause TOR per variant, for microturn only.
"""

from __future__ import annotations

import argparse

from dataclasses import replace

import numpy as np

from microturn.engine.engine import Engine
from microturn.eval.bench import run_bench
from microturn.model.checkpoint import load_default
from microturn.world.acoustics import db, preset
from microturn.world.families import generate
from microturn.world.tts import EspeakTTS


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-family", type=int, default=4)
    p.add_argument("--dbfs", type=float, nargs="+", default=[-90.0, -80.0])
    args = p.parse_args()
    tts, model = EspeakTTS(), load_default()
    episodes = [
        generate(f, i, "eval", 16.0, tts)
        for f in ("turn_taking", "pause")
        for i in range(args.per_family)
    ]
    silent = [ep.heard_under(preset("digital_silence")) for ep in episodes]
    variants = {
        "digital_silence": silent,
        "clean (room tone -70 dBFS)": [ep.heard_under(preset("clean")) for ep in episodes],
    }
    for level in args.dbfs:
        rng = np.random.default_rng(0)
        variants[f"digital_silence + dither {level:g} dBFS"] = [
            replace(
                r,
                recording=replace(
                    r.recording,
                    audio=r.recording.audio
                    + db(level) * rng.standard_normal(len(r.recording.audio)).astype(np.float32),
                ),
            )
            for r in silent
        ]
    for name, rendered in variants.items():
        s = run_bench(Engine(model), rendered, progress=False).summary()["systems"]["microturn"]
        lat = s["turn_taking_latency_s"]
        print(f"{name:<36} turn_taking_tor {s['turn_taking_tor']:.2f}  latency "
              f"{'—' if lat is None else f'{lat:.2f}'}  pause_tor {s['pause_tor']:.2f}",
              flush=True)

if __name__ == "__main__":
    main()
