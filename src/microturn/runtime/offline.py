"""Offline runner: a recorded conversation through one session, turn by turn.

Faster than real time and deterministic for a given seed (background tasks run on the
conversation's clock; an LLM backend's answer times are its own); `demo` and `bench`
drive it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..background.agent import BackgroundAgent
from ..background.tasks import BackgroundRunner
from ..engine.engine import Engine
from ..engine.session import SamplerSettings
from ..errors import InputError
from ..streams.audio import wav_bytes
from ..streams.timeline import Timeline
from ..streams.turns import Event, TurnOutput
from .conversation import Conversation, DeliveryPolicy


# Offline runs settle background tasks at once. Demo and bench show a result to the model no
# sooner than this after its request, as a remote model answers (half the world's results
# take 1.5-4 s; the other half, a local tool's, come the turn after the request, which
# `benchmarks/spoken_sum.py` runs live); the bench's tool_use figures stay comparable.
OFFLINE_RESULT_LATENCY_S = 2.0


@dataclass
class RecordedInput:
    """What the user side does: audio (mono, layout rate), frames and typed text, with times."""

    audio: np.ndarray | None = None
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    typed: list[tuple[float, str]] = field(default_factory=list)
    user_words: list[Event] = field(
        default_factory=list
    )  # the user's words, if an alignment is known
    duration: float | None = None  # default: the audio's length (or the last event + 1 s)

    def seconds(self, rate: int) -> float:
        if self.duration is not None:
            return self.duration
        ends = [len(self.audio) / rate] if self.audio is not None else []
        ends += [t + 1.0 for t, _ in self.frames] + [t + 1.0 for t, _ in self.typed]
        if not ends:
            raise InputError(
                "recorded input is empty: give audio, frames, typed text or a duration"
            )
        return max(ends)


@dataclass
class OfflineResult:
    timeline: Timeline  # user input events + model events, as heard
    outputs: list[TurnOutput]
    stereo_wav: bytes  # user left, model right

    @property
    def model_words(self) -> list[Event]:
        return self.timeline.of("model_word")


def run_offline(
    engine: Engine,
    rec: RecordedInput,
    sampler: SamplerSettings | None = None,
    progress: bool = False,
    agent: BackgroundAgent | None = None,
    policy: DeliveryPolicy | None = None,
    on_turn: Callable | None = None,
) -> OfflineResult:
    """Run `rec` through a new session; with `agent`, delegations start background tasks.
    `on_turn(k, audio_chunk, output, events, conversation)` sees each turn as it happens."""
    lay = engine.layout
    duration = rec.seconds(lay.sample_rate)
    n = max(1, math.ceil(round(duration / lay.turn_seconds, 6)))
    audio = None
    if rec.audio is not None:
        audio = np.zeros(n * lay.turn_samples, dtype=np.float32)
        audio[: min(len(audio), len(rec.audio))] = rec.audio[: len(audio)]
    by_turn = lambda items: {
        k: [x for t, x in items if int(t // lay.turn_seconds) == k] for k in range(n)
    }
    frames = {int(t // lay.turn_seconds): f for t, f in sorted(rec.frames, key=lambda x: x[0])}
    typed = by_turn(rec.typed)
    words = by_turn(
        [(w.end if w.end is not None else w.t, w) for w in rec.user_words]
    )  # known once said
    runner = BackgroundRunner() if agent is not None else None
    conv = Conversation.open(engine, agent, runner, sampler, policy, settle=True)
    outputs = []
    try:
        for k in tqdm(range(n), desc="turns", unit="turn", disable=not progress):
            chunk = (
                audio[k * lay.turn_samples : (k + 1) * lay.turn_samples]
                if audio is not None
                else None
            )
            inp = conv.prepare(chunk, frames.get(k), typed[k], words[k])
            out = engine.step([conv.session], [inp]).outputs[0]
            events, _ = conv.finish(out)
            if on_turn is not None:
                on_turn(k, chunk, out, events, conv)
            outputs.append(out)
    finally:
        conv.close()
        if runner is not None:
            runner.close()
    user = audio if audio is not None else np.zeros(n * lay.turn_samples, dtype=np.float32)
    model_audio = conv.session.unpacker.waveform(n)
    model = model_audio if model_audio is not None else np.zeros_like(user)
    tl = Timeline(
        duration=n * lay.turn_seconds,
        events=conv.timeline_events(),
        user_audio=audio,
        model_audio=model_audio,
        frames=list(rec.frames),
    )
    return OfflineResult(tl, outputs, wav_bytes([user, model], lay.sample_rate))
