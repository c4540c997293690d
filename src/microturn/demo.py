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
from .vocoder.asr import audio_text_agreement
from .vocoder.streaming import vocoder_kind
from .world.episode import Episode, EpisodeBuilder
from .world.tts import EspeakTTS

DURATION_S = 90.0


def script(tts: EspeakTTS, seed: int = 7) -> Episode:
    """Eight moments, each one a family of the world: answer, wait through a pause, stop
    when interrupted, ignore an aside, speak on time, delegate, react to a cue, watch."""
    b = EpisodeBuilder(
        "demo", "demo", DURATION_S, tts, np.random.default_rng(seed), "demo", user_voice="en-us"
    )
    b.user("What is the capital of France?", 0.6)  # turn-taking
    b.user("So what I really want to know is,", after=4.0)  # pause
    b.user("how long should I boil an egg?", after=1.6)
    b.user("Tell me a long story about the sea.", after=4.5)  # interruption
    b.user("Wait, what about the moon?", after=3.2)
    b.user("Hey Sam, could you pass me the salt please?", after=5.0)  # not addressed
    b.other("Sure, here you go.", b.turns[-1][1] + 0.6, gain=0.6)
    b.user("Please say now in five seconds.", after=3.5)  # TimeSpeak
    b.user("What is 27 times 14?", after=7.5)  # delegation
    b.user("By the way, I love this weather.", after=2.5)
    b.user("Say beep whenever I say apple.", after=5.0)  # CueSpeak
    b.user("I like pears, apple pie, bananas, and a green apple with honey.", after=2.5)
    ask = b.user("Tell me when a green circle appears.", after=3.0)  # visual, proactive
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
        level = (
            20 * np.log10(np.sqrt(np.mean(np.square(chunk))) + 1e-10)
            if chunk is not None
            else -120.0
        )
        self.user.append("█" if level > -40 else "·")
        self.model.append("█" if out.control == SPEAK else "·")
        self.said += [e.text for e in events if e.kind == "model_word"]
        self.tasks += [f"<delegate> {e.text}" for e in events if e.kind == "delegation"]
        for ev in conv.task_log[self._task_seen :]:
            self.tasks.append(f"{ev.task_id} {ev.kind}" + (f": {ev.text}" if ev.text else ""))
        self._task_seen = len(conv.task_log)
        t_end = (k + 1) * conv.engine.layout.turn_seconds
        self.heard += [
            w.text
            for w in self.user_words
            if t_end - conv.engine.layout.turn_seconds <= w.end < t_end
        ]
        if len(self.user) == self.turns_per_line:
            self.flush(t_end)

    def flush(self, t: float) -> None:
        if not self.user:
            return
        clean = lambda words: "".join(c if c.isprintable() else "?" for c in " ".join(words))
        line = (
            f"{t:5.1f}s  user {''.join(self.user):<5} {clean(self.heard)[:34]:<34} │ "
            f"model {''.join(self.model):<5} {clean(self.said)[:34]:<34} │ "
            f"{clean(self.tasks)[:60]}"
        )
        print(line, file=self.stream, flush=True)
        self.user, self.model, self.said, self.heard, self.tasks = [], [], [], [], []


def lanes(ep: Episode, result: OfflineResult) -> list[Lane]:
    tl = result.timeline
    user = ep.rendered.user_words
    model = tl.of("model_word")
    tasks = [
        e for e in tl.events if e.kind.startswith("task_") or e.kind in ("delegation", "result")
    ]
    return [
        Lane("user", [(w.t, w.end) for w in user], [(w.t, w.text) for w in user]),
        Lane("heard", [], [(e.t, e.text) for e in tl.of("heard_word")]),  # the model's transcript
        Lane(
            "model", [(e.t, e.end) for e in tl.of("model_speech")], [(w.t, w.text) for w in model]
        ),
        Lane("background", [], [(e.t, f"{e.kind}: {e.text}") for e in tasks]),
    ]


def moments(ep: Episode, result: OfflineResult) -> list[dict]:
    """What a listener hears at each moment of the script, measured from the output timeline
    (word onsets as heard): the honest answer to "did it answer, stop, wait, speak on time?"."""
    turns = [
        (a, b, u.text) for a, b, u in ep.rendered.turns
    ]  # each user utterance, in script order
    words = [(e.t, e.text) for e in result.model_words]
    speech = [(e.t, e.end) for e in result.timeline.of("model_speech")]

    def said(a: float, b: float) -> list[tuple[float, str]]:
        return [(t, w) for t, w in words if a <= t < b]

    def reply(i: int, until: float, prefix: str = "") -> dict:
        got = said(turns[i][1], until)
        return {
            prefix + "heard": " ".join(w for _, w in got),
            prefix + "latency_s": round(got[0][0] - turns[i][1], 2) if got else None,
        }

    def first(word: str, a: float, b: float) -> float | None:
        return next((t for t, w in said(a, b) if w.lower().strip(".,!?") == word), None)

    nxt = lambda i: turns[i + 1][0] if i + 1 < len(turns) else ep.scenario.duration
    cut = turns[4][0]  # "Wait, what about the moon?"
    talking = [end for start, end in speech if start <= cut < end]
    now = first("now", turns[6][1], nxt(6))
    answer = first("378", turns[7][1], nxt(9))
    apples = [
        w.t for w in ep.rendered.user_words if "apple" in w.text.lower() and w.t >= turns[10][0]
    ]
    beeps = [
        t for t, w in said(turns[10][0], turns[10][1] + 1.5) if w.lower().strip(".,!?") == "beep"
    ]
    appears = ep.rendered.truth.get("appears", turns[11][1])
    seen = said(appears, ep.scenario.duration)
    return [
        {"moment": "turn-taking", "cue": turns[0][2], **reply(0, nxt(0))},
        {
            "moment": "pause",
            "cue": turns[1][2],
            "heard_before_user_resumed": " ".join(w for _, w in said(turns[1][0], turns[2][0])),
            **reply(2, nxt(2), "answer_"),
        },
        {
            "moment": "interruption",
            "cue": turns[4][2],
            "talking_when_cut": bool(talking),
            "stop_latency_s": round(talking[0] - cut, 2) if talking else None,
            **reply(4, nxt(4), "answer_"),
        },
        {
            "moment": "not addressed",
            "cue": turns[5][2],
            "heard": " ".join(w for _, w in said(turns[5][0], nxt(5))),
        },
        {
            "moment": "TimeSpeak",
            "cue": turns[6][2],
            "target_s": 5.0,
            "now_at_s": round(now - turns[6][1], 2) if now else None,
        },
        {
            "moment": "delegation",
            "cue": turns[7][2],
            "tasks": len(result.timeline.of("delegation")),
            "answer_at_s": round(answer - turns[7][1], 2) if answer else None,
        },
        {
            "moment": "CueSpeak",
            "cue": turns[9][2],
            "apples": len(apples),
            "beeps": len(beeps),
            "beeps_within_1_5_s": sum(any(0 <= b - a <= 1.5 for b in beeps) for a in apples),
        },
        {
            "moment": "visual",
            "cue": turns[11][2],
            "appears_s": appears,
            "talking_when_it_appeared": any(a <= appears < b for a, b in speech),
            "heard": " ".join(w for _, w in seen),
            "latency_s": round(seen[0][0] - appears, 2) if seen else None,
        },
    ]


def describe(m: dict) -> str:
    """One line a person reads after the timeline."""
    show = lambda v: "-" if v in (None, "") else (repr(v[:40]) if isinstance(v, str) else str(v))
    fields = ", ".join(f"{k}={show(v)}" for k, v in m.items() if k not in ("moment", "cue"))
    return f"{m['moment']:<14} {m['cue'][:38]!r:<42} {fields}"


def run_demo(
    model: InteractionModel,
    out: str | Path,
    live: bool = True,
    seed: int = 0,
    temperature: float = 0.7,
) -> dict:
    """Run the script, write demo.wav, demo_timeline.png, demo_timeline.html; return a summary."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tts = EspeakTTS(rate=model.cfg.layout.sample_rate)
    ep = script(tts)
    view = LiveTimeline(
        user_words=ep.rendered.user_words, stream=sys.stdout if live else open("/dev/null", "w")
    )
    result = run_offline(
        Engine(model),
        ep.rendered.recording,
        SamplerSettings(temperature=temperature, seed=seed, text_temperature=temperature),
        agent=EmbeddedAgent(),
        policy=DeliveryPolicy(min_latency_s=OFFLINE_RESULT_LATENCY_S),
        on_turn=view,
    )
    view.flush(ep.scenario.duration)
    (out / "demo.wav").write_bytes(result.stereo_wav)
    title = f"microturn demo — {ep.scenario.duration:g} s, default model"
    ls = lanes(ep, result)
    write_png(out / "demo_timeline.png", title, ep.scenario.duration, ls)
    write_html(
        out / "demo_timeline.html",
        title,
        ep.scenario.duration,
        ls,
        ["Lanes: the user's words (espeak-ng), the model's words as heard, background tasks."],
    )
    wall = time.perf_counter() - t0
    summary = {
        "seconds": ep.scenario.duration,
        "wall_s": round(wall, 1),
        "real_time_factor": round(ep.scenario.duration / wall, 2),
        "model_words": len(result.model_words),
        "model_speech_s": round(sum(e.end - e.t for e in result.timeline.of("model_speech")), 1),
        "delegations": len(result.timeline.of("delegation")),
        "vocoder": vocoder_kind(),  # MICROTURN_VOCODER=griffin-lim for the fallback
        "audio_text_agreement": audio_text_agreement(
            result.timeline.model_audio,
            " ".join(w.text for w in result.model_words),
            [(e.t, e.end) for e in result.timeline.of("model_speech")],
        ),
        "moments": moments(ep, result),
        "files": [str(out / n) for n in ("demo.wav", "demo_timeline.png", "demo_timeline.html")],
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print("\nWhat a listener hears (times from the end of each cue):", file=view.stream)
    for m in summary["moments"]:
        print("  " + describe(m), file=view.stream)
    agree = summary["audio_text_agreement"]
    agree = "n/a" if agree is None else f"{agree:.2f}"
    print(
        f"  voice: {summary['vocoder']}; audio-text agreement (1 - WER of pocketsphinx on the "
        f"model's audio vs its words): {agree}",
        file=view.stream,
    )
    return summary
