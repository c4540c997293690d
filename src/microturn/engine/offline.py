"""Offline runner: a recorded conversation through one session, turn by turn.

Deterministic for a given seed and faster than real time; `demo` and `bench` drive it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..errors import InputError
from ..streams.audio import wav_bytes
from ..streams.timeline import Timeline
from ..streams.turns import Event, TurnOutput
from .engine import Engine
from .session import SamplerSettings


@dataclass
class RecordedInput:
    """What the user side does: audio (mono, layout rate), frames and typed text, with times."""

    audio: np.ndarray | None = None
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)
    typed: list[tuple[float, str]] = field(default_factory=list)
    duration: float | None = None  # default: the audio's length (or the last event + 1 s)

    def seconds(self, rate: int) -> float:
        if self.duration is not None:
            return self.duration
        ends = [len(self.audio) / rate] if self.audio is not None else []
        ends += [t + 1.0 for t, _ in self.frames] + [t + 1.0 for t, _ in self.typed]
        if not ends:
            raise InputError("recorded input is empty: give audio, frames, typed text or a duration")
        return max(ends)


@dataclass
class OfflineResult:
    timeline: Timeline  # user input events + model events, as heard
    outputs: list[TurnOutput]
    stereo_wav: bytes  # user left, model right

    @property
    def model_words(self) -> list[Event]:
        return self.timeline.of("model_word")


def run_offline(engine: Engine, rec: RecordedInput, sampler: SamplerSettings | None = None,
                progress: bool = False) -> OfflineResult:
    lay = engine.layout
    duration = rec.seconds(lay.sample_rate)
    n = max(1, math.ceil(round(duration / lay.turn_seconds, 6)))
    audio = None
    if rec.audio is not None:
        audio = np.zeros(n * lay.turn_samples, dtype=np.float32)
        audio[: min(len(audio), len(rec.audio))] = rec.audio[: len(audio)]
    frames = {int(t // lay.turn_seconds): f for t, f in sorted(rec.frames, key=lambda x: x[0])}
    typed: dict[int, list[str]] = {}
    for t, text in rec.typed:
        typed.setdefault(int(t // lay.turn_seconds), []).append(text)
    session = engine.open(sampler)
    events: list[Event] = [Event(round(t, 6), "user_text", text) for t, text in rec.typed]
    outputs = []
    try:
        for k in tqdm(range(n), desc="turns", unit="turn", disable=not progress):
            for text in typed.get(k, []):
                session.push_text(text)
            chunk = audio[k * lay.turn_samples:(k + 1) * lay.turn_samples] if audio is not None else None
            inp = session.packer.pack(chunk, frames.get(k))
            out = engine.step([session], [inp]).outputs[0]
            events += session.unpacker.unpack(k, out)[0]
            outputs.append(out)
        events += session.unpacker.flush(n - 1)
    finally:
        engine.close(session)
    model_audio = session.unpacker.waveform(n)
    events.sort(key=lambda e: (e.t, e.kind))
    user = audio if audio is not None else np.zeros(n * lay.turn_samples, dtype=np.float32)
    model = model_audio if model_audio is not None else np.zeros_like(user)
    tl = Timeline(duration=n * lay.turn_seconds, events=events, user_audio=audio, model_audio=model_audio,
                  frames=list(rec.frames))
    return OfflineResult(tl, outputs, wav_bytes([user, model], lay.sample_rate))
