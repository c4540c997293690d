"""`microturn demo`: a scripted conversation through the shipped default model.

The user's side is built with the world's `EpisodeBuilder` (real espeak-ng speech, a
second speaker, rendered video); the model's side is whatever the model does, turn by
turn, faster than real time. A live terminal timeline shows each second as it happens;
`demo.wav` (user left, model right), `demo_timeline.png` and `demo_timeline.html` are
written at the end.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .background.agent import EmbeddedAgent
from .engine.engine import Engine
from .engine.session import SamplerSettings
from .model.interaction import InteractionModel
from .runtime.conversation import DeliveryPolicy
from .runtime.offline import OFFLINE_RESULT_LATENCY_S, OfflineResult, run_offline
from .streams.turns import SPEAK, Event
from .viz import Lane, write_html, write_png
from .world.episode import Episode, EpisodeBuilder
from .world.tts import EspeakTTS

DURATION_S = 90.0


def script(tts: EspeakTTS, seed: int = 7) -> Episode:
    """Eight moments, each one a family of the world: answer, wait through a pause, stop
    when interrupted, ignore an aside, speak on time, delegate, react to a cue, watch."""
    b = EpisodeBuilder("demo", "demo", DURATION_S, tts, np.random.default_rng(seed), "demo", user_voice="en-us")
    b.user("What is the capital of France?", 0.6)                                       # turn-taking
    b.user("So what I really want to know is,", after=4.0)                               # pause
    b.user("how long should I boil an egg?", after=1.6)
    b.user("Tell me a long story about the sea.", after=4.5)                             # interruption
    b.user("Wait, what about the moon?", after=3.2)
    b.user("Hey Sam, could you pass me the salt please?", after=5.0)                     # not addressed
    b.other("Sure, here you go.", b.turns[-1][1] + 0.6, gain=0.6)
    b.user("Please say now in five seconds.", after=3.5)                                 # TimeSpeak
    b.user("What is 27 times 14?", after=7.5)                                            # delegation
    b.user("By the way, I love this weather.", after=2.5)
    b.user("Say beep whenever I say apple.", after=5.0)                                  # CueSpeak
    b.user("I like pears, apple pie, bananas, and a green apple with honey.", after=2.5)
    ask = b.user("Tell me when a green circle appears.", after=3.0)                      # visual, proactive
    b.video("appear", at=round(ask.end + 4.0, 1), shape="circle", color="green", seed=3)
    return b.build()


@dataclass
class LiveTimeline:
    """One terminal line per second: who is audible in each turn, and what was said."""

    turns_per_line: int = 5
    stream: object = sys.stdout
    user: list[str] = field(default_factory=list)
    model: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    heard: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    user_words: list[Event] = field(default_factory=list)
    _task_seen: int = 0

    def __call__(self, k: int, chunk, out, events: list[Event], conv) -> None:
        level = 20 * np.log10(np.sqrt(np.mean(np.square(chunk))) + 1e-10) if chunk is not None else -120.0
        self.user.append("█" if level > -40 else "·")
        self.model.append("█" if out.control == SPEAK else "·")
        self.said += [e.text for e in events if e.kind == "model_word"]
        self.tasks += [f"<delegate> {e.text}" for e in events if e.kind == "delegation"]
        for ev in conv.task_log[self._task_seen:]:
            self.tasks.append(f"{ev.task_id} {ev.kind}" + (f": {ev.text}" if ev.text else ""))
        self._task_seen = len(conv.task_log)
        t_end = (k + 1) * conv.engine.layout.turn_seconds
        self.heard += [w.text for w in self.user_words if t_end - conv.engine.layout.turn_seconds <= w.end < t_end]
        if len(self.user) == self.turns_per_line:
            self.flush(t_end)

    def flush(self, t: float) -> None:
        if not self.user:
            return
        clean = lambda words: "".join(c if c.isprintable() else "?" for c in " ".join(words))
        line = (f"{t:5.1f}s  user {''.join(self.user):<5} {clean(self.heard)[:34]:<34} │ "
                f"model {''.join(self.model):<5} {clean(self.said)[:34]:<34} │ {clean(self.tasks)[:60]}")
        print(line, file=self.stream, flush=True)
        self.user, self.model, self.said, self.heard, self.tasks = [], [], [], [], []


def lanes(ep: Episode, result: OfflineResult) -> list[Lane]:
    tl = result.timeline
    user = ep.rendered.user_words
    model = tl.of("model_word")
    tasks = [e for e in tl.events if e.kind.startswith("task_") or e.kind in ("delegation", "result")]
    return [Lane("user", [(w.t, w.end) for w in user], [(w.t, w.text) for w in user]),
            Lane("model", [(e.t, e.end) for e in tl.of("model_speech")], [(w.t, w.text) for w in model]),
            Lane("background", [], [(e.t, f"{e.kind}: {e.text}") for e in tasks])]


def run_demo(model: InteractionModel, out: str | Path, live: bool = True, seed: int = 0,
             temperature: float = 0.7) -> dict:
    """Run the script, write demo.wav, demo_timeline.png, demo_timeline.html; return a summary."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tts = EspeakTTS(rate=model.cfg.layout.sample_rate)
    ep = script(tts)
    view = LiveTimeline(user_words=ep.rendered.user_words, stream=sys.stdout if live else open("/dev/null", "w"))
    result = run_offline(Engine(model), ep.rendered.recording, SamplerSettings(temperature=temperature, seed=seed),
                         agent=EmbeddedAgent(), policy=DeliveryPolicy(min_latency_s=OFFLINE_RESULT_LATENCY_S), on_turn=view)
    view.flush(ep.scenario.duration)
    (out / "demo.wav").write_bytes(result.stereo_wav)
    title = f"microturn demo — {ep.scenario.duration:g} s, default model"
    ls = lanes(ep, result)
    write_png(out / "demo_timeline.png", title, ep.scenario.duration, ls)
    write_html(out / "demo_timeline.html", title, ep.scenario.duration, ls,
               ["Lanes: the user's words (espeak-ng), the model's words as heard, background tasks."])
    wall = time.perf_counter() - t0
    summary = {"seconds": ep.scenario.duration, "wall_s": round(wall, 1),
               "real_time_factor": round(ep.scenario.duration / wall, 2),
               "model_words": len(result.model_words),
               "model_speech_s": round(sum(e.end - e.t for e in result.timeline.of("model_speech")), 1),
               "delegations": len(result.timeline.of("delegation")),
               "files": [str(out / n) for n in ("demo.wav", "demo_timeline.png", "demo_timeline.html")]}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
