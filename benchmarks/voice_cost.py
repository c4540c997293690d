"""Synthesis cost per engine: milliseconds a word, cold, from the disk cache, from memory.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/voice_cost.py

One line of 15 words per voice (a voice per engine, two for flite and festival), in a fresh
word cache (a temporary MICROTURN_WORD_CACHE): cold is synthesis (wall and CPU, engine
subprocesses included; Piper's model load is done first and not counted); "disk" is a new
engine instance reading the words back, as another render worker would; "memory" is the
same line again in this process.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time

os.environ["MICROTURN_WORD_CACHE"] = tempfile.mkdtemp(prefix="voice_cost_")

from microturn.world import voices as V  # noqa: E402  (after the cache is pointed away)

LINE = "what is the capital of France tell me a story about seven small green apples please"
VOICES = ("espeak-en-us-f2", "flite-slt", "flite-kal", "festival-kal", "festival-slt-hts",
          "piper-joe")


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    n = len(LINE.split())
    V.model_voice().speak("warm")  # Piper's model load (~1.5 s) is not a word's cost
    for vid in VOICES:
        voice = V.get_voice(vid)
        t, c = time.perf_counter(), _cpu()
        voice.speak(LINE)
        cold, cold_cpu = time.perf_counter() - t, _cpu() - c
        V._engine.cache_clear()  # a new engine instance: empty memory, the same disk cache
        t = time.perf_counter()
        voice.speak(LINE)
        disk = time.perf_counter() - t
        t = time.perf_counter()
        voice.speak(LINE)
        memory = time.perf_counter() - t
        print(f"{vid:18s} {voice.engine:9s} cold {1000 * cold / n:6.1f} ms/word "
              f"({1000 * cold_cpu / n:5.1f} ms CPU), disk {1000 * disk / n:5.2f}, "
              f"memory {1000 * memory / n:5.3f}")


if __name__ == "__main__":
    main()
