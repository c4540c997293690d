"""The world's voices: one `Voice` interface over four engines, one registry, one split.

Every voice speaks with `Voice.speak(text) -> Speech`: audio at the requested rate and each
word's exact start and end (words are synthesised one by one and joined with silent gaps,
`tts.join_words`). The registry names every user voice with its engine and its split:

* "train": the voices training episodes are spoken in;
* "heldout": never heard in training; the eval split speaks one episode in three in them
  (`draw_user_voice`), so the bench reports seen and unseen voices apart. They are spread
  over the engines, and a held-out speaker is not also a training voice in another engine
  (flite rms and festival ked exist once each).

Piper "joe" is the model's identity voice (`MODEL_VOICE`, split "model"): every line the
model says in the world is joe, and no user ever speaks in it.

espeak-ng voices are accents x variants chosen to sound distinct; flite's kal (8 kHz) and
kal16 share a speaker but not a band, festival's kal_diphone is the same speaker again.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .engines import EngineUnavailable, FestivalTTS, FliteTTS, PiperTTS
from .libespeak import speak_connected
from .tts import EspeakTTS, Speech
from .tts import Voice as EspeakVoice

RATE = 16_000
ENGINES = ("espeak-ng", "flite", "festival", "piper")
SPLITS = ("train", "heldout")
HELDOUT_SHARE = 1 / 3  # of eval episodes spoken in a held-out voice
TEMPOS = (0.9, 1.0, 1.1)  # per-episode pace: few values, so the word caches keep hitting
ESPEAK_WPM = 165


@dataclass(frozen=True)
class Voice:
    """One named voice: `engine` speaks it as its voice `voice` (espeak-ng: accent[+variant])."""

    id: str
    engine: str
    voice: str
    split: str = "train"  # "train", "heldout", "model" (the model's own) or "custom"
    pitch: int = 50  # espeak-ng only, 0..99
    speed: float = 1.0  # the voice's own pace, relative; a line's tempo multiplies it

    def speak(self, text: str, rate: int = RATE, kind: str = "user_word",
              tempo: float = 1.0, connected: bool = False) -> Speech:
        """`text` as audio at `rate` with each word's times (kind "user_word" etc.): said word
        by word, or with `connected` as one line (espeak-ng only: `world.libespeak`)."""
        speed = round(self.speed * tempo, 3)
        eng = engine(self.engine, rate)
        if self.engine == "espeak-ng":
            name, _, variant = self.voice.partition("+")
            spec = EspeakVoice(name, variant or None, round(ESPEAK_WPM * speed), self.pitch)
            if connected and (line := speak_connected(text, spec, rate, kind)) is not None:
                return line
            return eng.speak(text, spec, kind)
        return eng.speak(text, self.voice, speed, kind)


def _espeak(voice: str, split: str = "train", pitch: int = 50, speed: float = 1.0) -> Voice:
    return Voice(f"espeak-{voice.replace('+', '-')}", "espeak-ng", voice, split, pitch, speed)


REGISTRY: tuple[Voice, ...] = (
    # espeak-ng: the twelve voices the world always had (its 'en-gb+f3' and 'en-gb+m1' were
    # plain en-gb: espeak-ng drops a variant on 'en-gb'; 'en+f3' keeps it), then more
    *(_espeak(v) for v in ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-us+f2", "en-us+f4",
                           "en-us+m3", "en-us+m7", "en+f3", "en+m1", "en-gb-x-gbclan",
                           "en-gb-x-gbcwmd")),
    _espeak("en-us-nyc", pitch=40), _espeak("en-gb-x-rp+f5", pitch=60), _espeak("en-us+klatt"),
    _espeak("en-029+f1", pitch=65, speed=0.95), _espeak("en-gb-scotland+m2", pitch=35),
    _espeak("en-us+Annie", speed=1.05),
    _espeak("en-gb-x-gbclan+f4", "heldout", pitch=62), _espeak("en-us-nyc+m5", "heldout", pitch=38),
    _espeak("en-gb-x-rp+Andy", "heldout", speed=0.95),
    # flite's built-in voices (awb_time only knows clock times: left out)
    Voice("flite-kal", "flite", "kal"), Voice("flite-kal16", "flite", "kal16"),
    Voice("flite-awb", "flite", "awb"), Voice("flite-slt", "flite", "slt"),
    Voice("flite-rms", "flite", "rms", "heldout"),
    # festival with the Debian festvox voices
    Voice("festival-kal", "festival", "kal_diphone"),
    Voice("festival-slt-hts", "festival", "cmu_us_slt_arctic_hts"),
    Voice("festival-ked", "festival", "ked_diphone", "heldout"),
)
MODEL_VOICE = Voice("piper-joe", "piper", "joe", "model", speed=0.8)  # the model's identity
BY_ID = {v.id: v for v in (*REGISTRY, MODEL_VOICE)}


def model_voice() -> Voice:
    """The one voice the model speaks in (Piper joe): the world's lines and the vocoder's data."""
    return MODEL_VOICE


def user_voices(split: str | None = None) -> list[Voice]:
    """The registry's user voices, all or one split's."""
    if split is not None and split not in SPLITS:
        raise ConfigError(f"voice split {split!r}; expected one of {', '.join(SPLITS)}")
    return [v for v in REGISTRY if split is None or v.split == split]


def get_voice(name: str) -> Voice:
    """A registry voice by id, or (for scenario files) any espeak-ng 'accent[+variant]' spec."""
    if name in BY_ID:
        return BY_ID[name]
    if name.startswith("en") and " " not in name:
        for v in REGISTRY:  # a registry espeak voice named by its spec keeps its split
            if v.engine == "espeak-ng" and v.voice == name:
                return v
        return Voice(name, "espeak-ng", name, "custom")
    raise ConfigError(f"unknown voice {name!r}: expected a registry id (`microturn voices`) or an "
                      "espeak-ng voice such as 'en-us+f2'")


def voice_split(name: str) -> str:
    """'train', 'heldout', 'model' or 'custom' (an espeak-ng voice outside the registry)."""
    return get_voice(name).split


def draw_user_voice(rng: np.random.Generator, episode_split: str,
                    exclude: tuple[str, ...] = ()) -> Voice:
    """A user voice for an episode: training episodes only ever hear "train" voices; eval
    episodes hear a held-out voice HELDOUT_SHARE of the time and a training voice otherwise."""
    group = "heldout" if episode_split != "train" and rng.random() < HELDOUT_SHARE else "train"
    pool = [v for v in user_voices(group) if v.id not in exclude]
    return pool[int(rng.integers(len(pool)))]


def engine(name: str, rate: int = RATE) -> EspeakTTS | FliteTTS | FestivalTTS | PiperTTS:
    """The shared engine instance for `name` at `rate` (its word cache lives as long as it)."""
    if name not in ENGINES:
        raise ConfigError(f"unknown speech engine {name!r}; expected one of {', '.join(ENGINES)}")
    return _engine(name, int(rate))


@functools.lru_cache(maxsize=16)
def _engine(name: str, rate: int) -> EspeakTTS | FliteTTS | FestivalTTS | PiperTTS:
    kinds = {"espeak-ng": EspeakTTS, "flite": FliteTTS, "festival": FestivalTTS, "piper": PiperTTS}
    return kinds[name](rate=rate)


__all__ = ["Voice", "REGISTRY", "MODEL_VOICE", "model_voice", "user_voices", "get_voice",
           "voice_split", "draw_user_voice", "engine", "EngineUnavailable", "Speech", "RATE"]
