"""Speech from the real `espeak-ng` program, with exact word times.

Each word is synthesised on its own, trimmed of silence and joined with short gaps (longer
after commas and sentence ends), so every word's start and end are known to the sample.
Voices vary by language voice, variant (+f1 ... +m7), speed and pitch.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import MicroturnError
from ..streams.audio import read_wav
from ..streams.turns import Event
from .wordcache import WordCache, program_version

WORD_GAP_S = 0.06
COMMA_GAP_S = 0.22
SENTENCE_GAP_S = 0.38
TRIM_DBFS = -45.0


class TTSUnavailable(MicroturnError, RuntimeError):
    """The speech synthesiser is not installed."""


class EngineUnavailable(TTSUnavailable):
    """A synthesis engine (program or Python package) is missing: the message names its package."""


@dataclass(frozen=True)
class Voice:
    name: str = "en-us"
    variant: str | None = None  # espeak-ng variants: f1..f5, m1..m7, klatt, ...
    speed: int = 165  # words per minute
    pitch: int = 50  # 0..99

    @property
    def spec(self) -> str:
        return f"{self.name}+{self.variant}" if self.variant else self.name


@dataclass
class Speech:
    audio: np.ndarray  # mono float32 at the requested rate
    words: list[Event]  # kind "user_word" (or as given), t = start, end = end, in seconds from 0
    rate: int

    @property
    def duration(self) -> float:
        return len(self.audio) / self.rate

    def shifted(self, t0: float, kind: str | None = None) -> list[Event]:
        """The words placed at t0 on a conversation's clock."""
        return [Event(round(w.t + t0, 4), kind or w.kind, w.text, round(w.end + t0, 4))
                for w in self.words]


def loud_span(x: np.ndarray, rate: int) -> tuple[int, int]:
    """[start, end) samples of `x` between its first and last 5 ms frame above TRIM_DBFS."""
    hop = rate // 200
    frames = len(x) // hop
    if frames == 0:
        return 0, len(x)
    power = np.mean(x[: frames * hop].reshape(frames, hop) ** 2, axis=1)
    level = 20 * np.log10(np.sqrt(power) + 1e-10)
    loud = np.nonzero(level > TRIM_DBFS)[0]
    if not len(loud):
        return 0, 0
    return int(loud[0]) * hop, (int(loud[-1]) + 1) * hop


def trim(x: np.ndarray, rate: int) -> np.ndarray:
    """Cut leading and trailing silence (below TRIM_DBFS in 5 ms frames)."""
    a, b = loud_span(x, rate)
    return x[a:b]


class EspeakTTS:
    def __init__(self, rate: int = 16_000, binary: str = "espeak-ng") -> None:
        path = shutil.which(binary)
        if path is None:
            raise EngineUnavailable(
                f"'{binary}' was not found on PATH: install the Debian package 'espeak-ng' "
                "(apt-get install espeak-ng) to synthesise speech")
        self.binary, self.rate = path, rate
        self.cache = WordCache(f"espeak-ng|{program_version(path)}|{rate}")

    def word(self, word: str, voice: Voice) -> np.ndarray:
        """One word, trimmed, at `rate` (cached: a world reuses its vocabulary)."""
        if (audio := self.cache.get((voice, word))) is not None:
            return audio
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "w.wav"
            cmd = [self.binary, "-v", voice.spec, "-s", str(voice.speed), "-p", str(voice.pitch),
                   "-w", str(out), "--", word]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if proc.returncode != 0 or not out.exists():
                raise TTSUnavailable(f"espeak-ng failed for voice {voice.spec!r}: "
                                     f"{proc.stderr.strip() or proc.returncode}")
            audio = read_wav(out, self.rate)
        return self.cache.put((voice, word), trim(audio, self.rate))

    def speak(self, text: str, voice: Voice = Voice(), kind: str = "user_word") -> Speech:
        """Text -> audio and word times. Punctuation sets the pauses and is kept on the words."""
        return join_words(text, lambda w: self.word(w, voice), self.rate, kind)


def words_of(text: str) -> list[tuple[str, str]]:
    """(token as written, what to say) per word: punctuation is kept on the token, not spoken."""
    tokens = re.findall(r"\S+", text)
    if not tokens:
        raise ValueError("nothing to say: the text has no words")
    return [(tok, re.sub(r"^[^\w']+|[^\w']+$", "", tok) or tok) for tok in tokens]


def join_words(text: str, word: Callable[[str], np.ndarray], rate: int,
               kind: str = "user_word") -> Speech:
    """Each word synthesised alone by `word` (trimmed audio at `rate`), joined with silent gaps
    (longer after commas and sentence ends), so every word's start and end are exact."""
    tokens = words_of(text)
    parts: list[np.ndarray] = []
    words: list[Event] = []
    t = 0
    for i, (tok, spoken) in enumerate(tokens):
        audio = word(spoken)
        words.append(Event(t / rate, kind, tok, (t + len(audio)) / rate))
        parts.append(audio)
        t += len(audio)
        if i < len(tokens) - 1:
            gap = (SENTENCE_GAP_S if tok[-1] in ".!?" else COMMA_GAP_S if tok[-1] in ",;:"
                   else WORD_GAP_S)
            parts.append(np.zeros(int(gap * rate), np.float32))
            t += int(gap * rate)
    return Speech(np.concatenate(parts).astype(np.float32), words, rate)
