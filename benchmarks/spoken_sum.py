"""The live check of spoken tool use: "What is 347 times 29?" said to a session, end to end.

A world voice says the question (espeak-ng's en-us by default, as one connected line:
`world.libespeak`), peaking at -2 dBFS, 1 s into a 16 s recording over room tone (pink
noise, -62 dBFS RMS) or exact digital silence. One session per seed runs it with the
embedded background agent, as `microturn run` does: the model must hear the numbers (its
listening transcript is what the context package carries), delegate, and say the agent's
answer back. Per run it prints what was heard, what the agent answered and what the model
said; a run passes when the model's own words say 10,063.

    python benchmarks/spoken_sum.py default --seeds 0 1 2 3 4 5 6 7
    python benchmarks/spoken_sum.py default --voices espeak-en-us espeak-en-us-nyc-m5 flite-rms
    python benchmarks/spoken_sum.py default --floors "digital silence" --text-temperature 0
"""

from __future__ import annotations

import argparse
import json
import re

import numpy as np

from microturn.background.agent import EmbeddedAgent
from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.engine.session import SamplerSettings
from microturn.model.checkpoint import load_default, load_model
from microturn.runtime.offline import RecordedInput, run_offline
from microturn.world.acoustics import db, pink
from microturn.world.voices import RATE, get_voice

QUESTION, ANSWER = "What is 347 times 29?", "10,063"
SECONDS, START_S, PEAK_DBFS, ROOM_DBFS = 16.0, 1.0, -2.0, -62.0
FLOORS = ("room tone", "digital silence")


def recording(voice: str, room_tone: bool) -> np.ndarray:
    """The question in `voice` at `START_S` in `SECONDS` of room tone (or of zeros)."""
    line = get_voice(voice).speak(QUESTION, RATE, connected=True).audio
    line = line * np.float32(db(PEAK_DBFS) / (np.abs(line).max() + 1e-9))
    out = np.zeros(int(SECONDS * RATE), np.float32)
    if room_tone:
        out += pink(len(out), np.random.default_rng(0)) * np.float32(db(ROOM_DBFS))
    at = int(START_S * RATE)
    out[at : at + len(line)] += line
    return out


def says_answer(words: str) -> bool:
    """The model's words say 10,063 (with or without the comma)."""
    return ANSWER.replace(",", "") in re.sub(r"(?<=\d),(?=\d)", "", words)


def one_run(model, audio: np.ndarray, seed: int, text_temperature: float = 0.8) -> dict:
    result = run_offline(Engine(model, EngineConfig()), RecordedInput(audio=audio),
                         SamplerSettings(seed=seed, text_temperature=text_temperature),
                         agent=EmbeddedAgent())
    events = result.timeline.events
    said = " ".join(e.text for e in result.model_words)
    return {
        "seed": seed,
        "heard": " ".join(e.text for e in events if e.kind == "heard_word"),
        "delegated": [e.text for e in events if e.kind == "delegation"],
        "result": [e.text for e in events if e.kind == "result"],
        "said": said,
        "passed": says_answer(said),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a model checkpoint, or 'default' (the shipped model)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--voices", nargs="+", default=["espeak-en-us"], help="world voice ids")
    ap.add_argument("--text-temperature", type=float, default=0.8, help="the words'; 0: greedy")
    ap.add_argument("--floors", nargs="+", default=list(FLOORS), choices=FLOORS)
    ap.add_argument("--json", help="write every run here")
    args = ap.parse_args()
    model = load_default() if args.checkpoint == "default" else load_model(args.checkpoint)
    runs = []
    for voice in args.voices:
        for floor in args.floors:
            audio = recording(voice, floor == "room tone")
            for seed in args.seeds:
                r = one_run(model, audio, seed, args.text_temperature)
                r |= {"voice": voice, "floor": floor}
                runs.append(r)
                print(f"{voice} / {floor} / seed {seed}: heard {r['heard']!r}; delegated "
                      f"{len(r['delegated'])}; result {r['result'][:1]}; said "
                      f"{r['said'][:120]!r} -> {'PASS' if r['passed'] else 'fail'}")
    for voice in args.voices:
        for floor in args.floors:
            mine = [r for r in runs if (r["voice"], r["floor"]) == (voice, floor)]
            heard = sum({"347", "29"} <= set(r["heard"].split()) for r in mine)
            asked = sum(bool(r["delegated"]) for r in mine)
            answered = sum(any(ANSWER in x for x in r["result"]) for r in mine)
            print(f"{voice} / {floor}: heard 347 and 29 in {heard}, delegated in {asked}, the "
                  f"agent answered {ANSWER} in {answered}, the model said it in "
                  f"{sum(r['passed'] for r in mine)} of {len(mine)} runs")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)


if __name__ == "__main__":
    main()
