"""World rendering speed: training episodes a second, from family generator to cached tensors.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/world_speed.py [--per-family 3]

Each family renders one warm-up episode first (the word caches fill; so does the babble
bank, built once a process), then
`--per-family` timed episodes (other indices), each through `generate` and
`timeline_tensors`, the path `WorldData.render` takes. `--dry` skips the acoustic
conditions (the mic hears the dry user and room tracks, as before `world.acoustics`), so
one tree measures the conditions' cost.
"""

from __future__ import annotations

import argparse
import resource
import time

from microturn.config import TurnLayout
from microturn.streams.audio import DMelCodec
from microturn.train.data import timeline_tensors
from microturn.world import acoustics
from microturn.world.episode import _babble
from microturn.world.families import FAMILY_GENERATORS, generate
from microturn.world.tts import EspeakTTS


def _cpu() -> float:
    """CPU seconds of this process and its children (espeak-ng runs as a subprocess): on a
    shared machine this is steadier than wall time."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--per-family", type=int, default=3)
    p.add_argument("--dry", action="store_true", help="no acoustic conditions: the dry mix")
    args = p.parse_args()
    if args.dry:
        acoustics.render_mic = lambda c, tracks, rng, bank=(): tracks.user + tracks.other
    layout, codec, tts = TurnLayout(), DMelCodec(), EspeakTTS()
    for f in FAMILY_GENERATORS:
        timeline_tensors(generate(f, 1000, "train", 16.0, tts).timeline, layout, codec)
    if not args.dry:  # the babble bank is built once a process: warm-up, like the word caches
        _babble(acoustics.Conditions(noise="babble"))
    t0, c0 = time.perf_counter(), _cpu()
    n = 0
    for f in FAMILY_GENERATORS:
        for i in range(args.per_family):
            timeline_tensors(generate(f, i, "train", 16.0, tts).timeline, layout, codec)
            n += 1
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    print(
        f"{n} episodes in {dt:.2f} s wall, {cpu:.2f} s CPU (espeak-ng included): "
        f"{n / dt:.2f} episodes/s wall, {n / cpu:.2f} episodes per CPU second"
    )


if __name__ == "__main__":
    main()
