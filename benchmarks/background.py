"""Background tasks against turn time, and a timeline of a result woven in.

    python benchmarks/background.py [--turns 150]

1. Turn time of one session (tiny config) with no task, with a slow task in flight (a
   backend that takes 10 s), and with a stream of embedded-agent tasks (calculator,
   BM25 look-ups on the same process), as medians and p99, and their ratios.
2. A 9 s conversation, printed turn by turn: the user talks until 4 s; the model
   delegates at 0.6 s; the result is ready at once but held while the user talks, then
   enters the background slots. Until the trained model lands, the model's own outputs
   are scripted (forced) here; everything else is the real runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from microturn.background.agent import EmbeddedAgent  # noqa: E402
from microturn.background.tasks import BackgroundRunner  # noqa: E402
from microturn.config import EngineConfig, named_config  # noqa: E402
from microturn.engine.engine import Engine  # noqa: E402
from microturn.model.interaction import InteractionModel  # noqa: E402
from microturn.runtime.conversation import Conversation  # noqa: E402
from microturn.streams.text import ByteTokenizer  # noqa: E402
from microturn.streams.turns import SILENT, SPEAK, TurnOutput  # noqa: E402

TOK = ByteTokenizer()


class SlowBackend:
    name, timeout_s = "slow", 30.0

    async def run(self, ctx):
        await asyncio.sleep(10)
        yield "done after ten seconds."


def text_outputs(tokens: list[int], control: int = SILENT) -> list[TurnOutput]:
    tokens = tokens + [TOK.PAD] * (-len(tokens) % 4)
    return [TurnOutput(control, tokens[i:i + 4], None) for i in range(0, len(tokens), 4)]


def delegate(request: str) -> list[TurnOutput]:
    return text_outputs([TOK.DELEGATE] + TOK.encode(request) + [TOK.DELEGATE_END])


def speech(audio_level: float, k: int) -> np.ndarray:
    t = np.arange(3200) / 16000 + 0.2 * k
    return (
        audio_level * np.sin(2 * np.pi * 180 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    ).astype(np.float32)


def run(
    engine, agent, script: dict, turns: int, loud_until: int, settle: bool
) -> tuple[Conversation, list, list]:
    runner = BackgroundRunner() if agent else None
    conv = Conversation.open(engine, agent, runner, vocoder=False, settle=settle)
    times, rows = [], []
    quiet = TurnOutput(SILENT, [TOK.PAD] * 4, None)
    import time

    for k in range(turns):
        audio = speech(0.3 if k < loud_until else 0.0, k)
        inp = conv.prepare(audio)
        t0 = time.perf_counter()
        out = engine.step([conv.session], [inp], [script.get(k, quiet)]).outputs[0]
        times.append((time.perf_counter() - t0) * 1e3)
        events, _ = conv.finish(out)
        rows.append((k, k < loud_until, out, inp.background, events))
    conv.close()
    if runner:
        runner.close()
    return conv, times, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--turns", type=int, default=150)
    args = ap.parse_args()
    model = InteractionModel(named_config("tiny").model).eval()
    engine = Engine(model, EngineConfig(max_sessions=1))

    print("1. turn time (ms), one session, tiny config")
    many = {}
    for i in range(0, args.turns - 10, 10):  # a delegation every 2 s
        many.update(
            {
                i + 2 + j: o
                for j, o in enumerate(delegate(["17 * 23", "how far is the moon"][i // 10 % 2]))
            }
        )
    cases = {
        "no task": (None, {}),
        "slow task in flight": (SlowBackend(), dict(enumerate(delegate("anything"), 2))),
        "embedded task every 2 s": (EmbeddedAgent(), many),
    }
    base = None
    for name, (agent, script) in cases.items():
        _, times, _ = run(engine, agent, script, args.turns, 0, settle=False)
        t = np.array(times[10:])
        base = base or np.median(t)
        print(
            f"   {name:<26} p50 {np.median(t):6.1f}  p99 {np.percentile(t, 99):6.1f}  "
            f"p50 ratio {np.median(t) / base:.2f}"
        )

    print(
        "\n2. timeline: the user talks until 4.0 s; the model delegates at 0.6 s (outputs scripted)"
    )
    script = dict(enumerate(delegate("2**32 / 7"), 3))
    answer = text_outputs(TOK.encode("that is 613,566,756.57 "), SPEAK)
    script.update(enumerate(answer, 24))
    conv, _, rows = run(engine, EmbeddedAgent(), script, 45, loud_until=20, settle=True)
    task_by_t = {}
    for ev in conv.task_log:
        task_by_t.setdefault(round(ev.t, 1), []).append(f"{ev.task_id} {ev.kind}")
    print(f"   {'t (s)':>5}  {'user':<6} {'model text':<16} {'background slots':<18} events")
    for k, loud, out, background, events in rows:
        text = "".join(
            TOK.name(t) if t >= 256 and t != TOK.PAD else (chr(t) if t < 128 else "·")
            for t in out.text
            if t != TOK.PAD
        )
        bg = "".join(chr(t) if t < 128 else "" for t in background if t != TOK.PAD)
        marks = task_by_t.get(round(0.2 * k, 1), []) + [
            f"{e.kind}: {e.text}" for e in events if e.kind != "model_speech"
        ]
        res = [
            f"result in: {e.text}"
            for e in conv.events
            if e.kind == "result" and abs(e.t - 0.2 * k) < 1e-6
        ]
        if text or bg or marks or res or k % 5 == 0:
            print(
                f"   {0.2 * k:5.1f}  {'talks' if loud else '':<6} {text!r:<16} {bg!r:<18} "
                f"{'; '.join(marks + res)}"
            )


if __name__ == "__main__":
    main()
