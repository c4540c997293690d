"""Acoustic conditions: how the world's speech reaches the model's microphone.

An episode's sources are built dry, one track each (`Tracks`: the user, other people in
the room, the model's own voice as played). `render_mic` passes them through one
`Conditions`, in the order sound travels:

    room (an RIR per speaker) -> + noise at an SNR -> + the model's voice leaking back ->
    input gain (to a peak) -> + noise floor -> clip at full scale -> channel -> digital-silence gate

Each stage, its range, and how `sample` draws it for train and eval episodes:

* room: a shoebox 3-10 x 3-8 x 2.4-4 m, RT60 0.15-0.9 s (but no shorter than the room's
  size allows: a large room rings at least as long as with walls that absorb everything),
  the mic and each speaker >= 0.5 m from the walls and 0.5-4 m apart; one room per
  episode, one position (so one impulse response) per speaker. Drawn for 35 % of episodes.
* noise: white, pink (1/f) or babble (4 talkers of the world's own TTS), SNR 0-30 dB (the
  user's active speech level over the noise's mean power). None 40 %, else 20 % each.
* echo: the model's voice leaking back (what echo cancellation missed), -40..-20 dB
  relative to the voice as played, delayed 20-120 ms. 20 % of episodes.
* gain: the mix scaled to a peak of -35..0 dBFS (uniform in dB); 5 % are driven 1-12 dB
  past full scale and clipped.
* floor: room tone and the capture chain's own noise (pink), -100..-50 dBFS RMS (uniform
  in dB), or none at all: digital silence, 40 % of episodes.
* channel: native 16 kHz 65 %; a 24 / 44.1 / 48 kHz source converted by soxr at a random
  quality 25 %; telephone (8 kHz, 300-3400 Hz, mu-law) 10 %.
* gate (with digital silence): every sample outside the speech spans and their tails is
  exactly 0.0, as a client's noise suppression sends.

A quarter of episodes is drawn clean (no room, noise, echo or channel change; gain and
floor still drawn), so about a third of the world is clean overall (0.25 + 0.75 x the
chance every independent draw is "none").

The room is pyroomacoustics' image-source model up to reflection order 8 plus a Gaussian
tail decaying at the room's RT60 (the usual hybrid): the full image-source model takes
0.5-3.4 s an RIR at RT60 0.5-0.9 s on this machine, the hybrid a few ms. The codec is
continuous mu-law (mu = 255) quantised to 8 bits in numpy, what G.711 approximates with
segments; no codec package is needed. The world speaks at 16 kHz, so "resampled" models the
capture path's rate conversion (filter ripple and roll-off near 8 kHz), not extra bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pyroomacoustics as pra
import soxr
from scipy.signal import butter, fftconvolve, sosfilt

from ..errors import ConfigError

RATE = 16_000
NOISES = ("none", "white", "pink", "babble")
CHANNELS = ("native", "resampled", "telephone")
SOURCE_RATES = (24_000, 44_100, 48_000)
SOXR_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
GAIN_RANGE_DBFS = (-35.0, 0.0)
FLOOR_RANGE_DBFS = (-100.0, -50.0)
SNR_RANGE_DB = (0.0, 30.0)
ECHO_RANGE_DB = (-40.0, -20.0)
ECHO_DELAY_RANGE_S = (0.02, 0.12)
RT60_RANGE_S = (0.15, 0.9)
CLIP_RANGE_DB = (0.0, 12.0)
TELEPHONE_BAND_HZ = (300.0, 3400.0)
MU = 255.0
ISM_ORDER = 8
GATE_PRE_S, GATE_POST_S = 0.02, 0.08  # kept around speech: a gate opens early, closes late
ACTIVE_FRAME_S, ACTIVE_RANGE_DB = (
    0.02,
    40.0,
)  # active speech level: frames within 40 dB of the loudest
BABBLE_TALKERS, BABBLE_SECONDS = 4, 12.0
BABBLE_LINES = (
    "I think we should leave a little earlier tomorrow.",
    "Did you see the game last night?",
    "The soup here is really good, you should try it.",
    "She said the meeting moved to Tuesday.",
    "We could take the train and walk from the station.",
    "My brother just got back from Spain.",
    "Honestly, I never liked that film very much.",
    "Can you send me the pictures later?",
)


@dataclass(frozen=True)
class Room:
    """A shoebox room: size (m), reverberation time, the mic and one position per speaker
    (the user, others in the room, the loudspeaker the model plays from)."""

    dims: tuple[float, float, float]
    rt60: float
    mic: tuple[float, float, float]
    speakers: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class Conditions:
    """One episode's acoustics; see the module's table for each field's range.

    `floor_dbfs = None` is digital silence: the gate leaves exact zeros between utterances."""

    name: str = "sampled"
    floor_dbfs: float | None = -70.0
    peak_dbfs: float = -6.0
    clip_db: float = 0.0  # > 0: driven this far past full scale, then hard-clipped at 0 dBFS
    noise: str = "none"
    snr_db: float = 30.0
    room: Room | None = None
    channel: str = "native"
    source_rate: int = RATE  # "resampled": the capture rate converted to 16 kHz
    soxr_quality: str = "HQ"
    echo_db: float | None = None
    echo_delay_s: float = 0.06

    def __post_init__(self) -> None:
        checks = [
            ("noise", self.noise, NOISES),
            ("channel", self.channel, CHANNELS),
            ("soxr_quality", self.soxr_quality, SOXR_QUALITIES),
        ]
        for key, value, allowed in checks:
            if value not in allowed:
                raise ConfigError(f"conditions {self.name!r}: {key} {value!r}; "
                                  f"expected one of {', '.join(allowed)}")
        ranges = [
            ("peak_dbfs", self.peak_dbfs, GAIN_RANGE_DBFS),
            ("snr_db", self.snr_db, SNR_RANGE_DB),
            ("clip_db", self.clip_db, CLIP_RANGE_DB),
            ("floor_dbfs", self.floor_dbfs, FLOOR_RANGE_DBFS),
            ("echo_db", self.echo_db, ECHO_RANGE_DB),
            ("echo_delay_s", self.echo_delay_s, ECHO_DELAY_RANGE_S),
        ]
        for key, value, (lo, hi) in ranges:
            if value is not None and not lo <= value <= hi:
                raise ConfigError(
                    f"conditions {self.name!r}: {key} = {value}; expected {lo} to {hi}"
                )
        if self.channel == "resampled" and self.source_rate not in SOURCE_RATES:
            raise ConfigError(
                f"conditions {self.name!r}: source_rate {self.source_rate}; expected one of "
                f"{', '.join(map(str, SOURCE_RATES))}"
            )
        if self.room is not None and not RT60_RANGE_S[0] <= self.room.rt60 <= RT60_RANGE_S[1]:
            raise ConfigError(
                f"conditions {self.name!r}: rt60 {self.room.rt60} s; expected {RT60_RANGE_S}"
            )

    @property
    def digital_silence(self) -> bool:
        return self.floor_dbfs is None


@dataclass
class Tracks:
    """An episode's sources, dry, at 16 kHz, and when each speaks (seconds)."""

    user: np.ndarray
    other: np.ndarray  # other people in the room, already at their own level
    model: np.ndarray  # the model's voice as played
    speech: list[tuple[float, float]] = field(default_factory=list)  # the user's and others' spans
    model_speech: list[tuple[float, float]] = field(default_factory=list)


_ROOM = Room(
    (7.0, 5.0, 3.0), 0.6, (3.5, 2.5, 1.2), ((1.7, 3.3, 1.6), (5.5, 1.2, 1.5), (3.8, 2.6, 1.1))
)
PRESETS: dict[str, Conditions] = {
    c.name: c
    for c in (
        Conditions("clean"),
        Conditions("digital_silence", floor_dbfs=None),
        Conditions("low_gain", peak_dbfs=-30.0),
        Conditions("hot_gain", peak_dbfs=0.0, clip_db=6.0),
        Conditions("noisy", noise="pink", snr_db=5.0),
        Conditions("reverberant", room=_ROOM),
        Conditions("telephone", channel="telephone"),
        Conditions("echo_leak", echo_db=-25.0, echo_delay_s=0.06),
    )
}


def preset(name: str) -> Conditions:
    if name not in PRESETS:
        raise ConfigError(f"unknown acoustic preset {name!r}; expected one of {', '.join(PRESETS)}")
    return PRESETS[name]


# ---- the distribution --------------------------------------------------------------------
def _point(
    rng: np.random.Generator, dims: tuple[float, float, float], height: tuple[float, float]
) -> tuple:
    return (
        float(rng.uniform(0.5, dims[0] - 0.5)),
        float(rng.uniform(0.5, dims[1] - 0.5)),
        float(rng.uniform(*height)),
    )


def sample_room(rng: np.random.Generator, speakers: int = 3) -> Room:
    dims = (float(rng.uniform(3, 10)), float(rng.uniform(3, 8)), float(rng.uniform(2.4, 4)))
    mic = _point(rng, dims, (0.7, 1.5))
    spots = []
    for _ in range(speakers):
        for _ in range(50):  # a speaker 0.5-4 m from the mic
            p = _point(rng, dims, (1.0, 1.9))
            if 0.5 <= float(np.linalg.norm(np.subtract(p, mic))) <= 4.0:
                break
        spots.append(p)
    rt60 = max(float(rng.uniform(*RT60_RANGE_S)), 1.01 * shortest_rt60(dims))
    return Room(dims, rt60, mic, tuple(spots))


def shortest_rt60(dims: tuple[float, float, float]) -> float:
    """The RT60 of a shoebox whose walls absorb everything, by pyroomacoustics' own Sabine
    formula (it refuses a shorter one: 10 x 8 x 4 m cannot ring for less than 0.17 s). The
    absorption it needs goes as 1 / RT60, and the longest RT60 drawn fits any room drawn."""
    absorption, _ = pra.inverse_sabine(RT60_RANGE_S[1], list(dims))
    return absorption * RT60_RANGE_S[1]


def sample(rng: np.random.Generator) -> Conditions:
    """Conditions for one world episode, from the distribution in the module's table."""
    peak = float(rng.uniform(*GAIN_RANGE_DBFS))
    clip = 0.0
    if rng.random() < 0.05:
        peak, clip = 0.0, float(rng.uniform(1.0, 12.0))
    floor = None if rng.random() < 0.4 else float(rng.uniform(*FLOOR_RANGE_DBFS))
    if rng.random() < 0.25:
        return Conditions("sampled", floor, peak, clip)
    noise = "none" if rng.random() < 0.4 else str(rng.choice(NOISES[1:]))
    snr = float(rng.uniform(*SNR_RANGE_DB))
    room = sample_room(rng) if rng.random() < 0.35 else None
    u = rng.random()
    channel = "native" if u < 0.65 else "resampled" if u < 0.9 else "telephone"
    src = int(rng.choice(SOURCE_RATES)) if channel == "resampled" else RATE
    quality = str(rng.choice(SOXR_QUALITIES))
    echo = float(rng.uniform(*ECHO_RANGE_DB)) if rng.random() < 0.2 else None
    delay = float(rng.uniform(*ECHO_DELAY_RANGE_S))
    return Conditions(
        "sampled", floor, peak, clip, noise, snr, room, channel, src, quality, echo, delay
    )


# ---- signals ------------------------------------------------------------------------------
def db(x: float) -> float:
    return float(10 ** (x / 20))


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise (-3 dB an octave) of unit RMS: white noise shaped in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    spec /= np.sqrt(np.maximum(f, 20.0))  # flat below 20 Hz: no drift
    x = np.fft.irfft(spec, n)
    return (x / (np.sqrt(np.mean(x**2)) + 1e-12)).astype(np.float32)


def active_level(x: np.ndarray) -> float:
    """Mean power of the frames within ACTIVE_RANGE_DB of the loudest (a simple active
    speech level, in the spirit of ITU-T P.56); 0 for silence."""
    hop = int(ACTIVE_FRAME_S * RATE)
    n = len(x) // hop
    if n == 0:
        return 0.0
    p = np.mean(x[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1)
    if p.max() <= 0:
        return 0.0
    return float(p[p >= p.max() * 10 ** (-ACTIVE_RANGE_DB / 10)].mean())


_BANKS: dict[str, list[np.ndarray]] = {}


def babble_bank(key: str, speak: Callable[[str, int], np.ndarray]) -> list[np.ndarray]:
    """BABBLE_TALKERS streams of continuous speech, built once per process and `key`:
    `speak(text, talker)` is the world's TTS in talker's voice (16 kHz audio)."""
    if key not in _BANKS:
        bank = []
        for talker in range(BABBLE_TALKERS):
            parts, total, i = [], 0, talker
            while total < BABBLE_SECONDS * RATE:
                a = speak(BABBLE_LINES[i % len(BABBLE_LINES)], talker)
                parts += [a, np.zeros(int(0.15 * RATE), np.float32)]
                total += len(a) + int(0.15 * RATE)
                i += 3
            bank.append(np.concatenate(parts).astype(np.float32))
        _BANKS[key] = bank
    return _BANKS[key]


def babble(n: int, bank: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Every talker of the bank at once, each from a random point (looped), at ±3 dB."""
    if not bank:
        raise ConfigError("babble noise needs a babble bank (the world's TTS talkers)")
    out = np.zeros(n, np.float32)
    for talker in bank:
        idx = (int(rng.integers(len(talker))) + np.arange(n)) % len(talker)
        out += db(float(rng.uniform(-3, 3))) * talker[idx] / (np.sqrt(active_level(talker)) + 1e-12)
    return out


def noise(
    kind: str, n: int, rng: np.random.Generator, bank: Sequence[np.ndarray] = ()
) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(n).astype(np.float32)
    if kind == "pink":
        return pink(n, rng)
    return babble(n, bank, rng)


def rir(room: Room, rng: np.random.Generator) -> list[np.ndarray]:
    """One impulse response per speaker position: image sources up to ISM_ORDER, plus a
    Gaussian tail decaying 60 dB over RT60 from where the image sources thin out. Each is
    scaled so its direct path is 1 (reverb adds; the dry level stays)."""
    absorption, _ = pra.inverse_sabine(room.rt60, list(room.dims))
    shoebox = pra.ShoeBox(
        list(room.dims),
        fs=RATE,
        materials=pra.Material(absorption),
        max_order=ISM_ORDER,
        air_absorption=False,
    )
    for s in room.speakers:
        shoebox.add_source(list(s))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    out = []
    for h in shoebox.rir[0]:
        h = np.asarray(h, np.float64)
        direct = int(np.argmax(np.abs(h)))
        t0 = direct + int(0.05 * RATE)  # the tail takes over 50 ms after the direct sound
        n = max(len(h), t0 + int(room.rt60 * RATE))
        full = np.zeros(n)
        full[: len(h)] = h
        ref = full[max(direct + 1, t0 - int(0.01 * RATE)) : t0 + int(0.01 * RATE)]
        level = np.sqrt(np.mean(ref**2)) if len(ref) else 0.0
        t = np.arange(n - t0) / RATE
        ramp = np.minimum(1.0, t / 0.01)
        full[t0:] += level * ramp * np.exp(-6.91 * t / room.rt60) * rng.standard_normal(n - t0)
        out.append((full / (np.abs(h[direct]) + 1e-12)).astype(np.float32))
    return out


def _convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    if not np.any(x):
        return x
    return fftconvolve(x, h)[: len(x)].astype(np.float32)


def _delay(x: np.ndarray, seconds: float) -> np.ndarray:
    k = int(round(seconds * RATE))
    return np.concatenate([np.zeros(k, np.float32), x[: len(x) - k]])


def mu_law(x: np.ndarray) -> np.ndarray:
    """Encode and decode with 8-bit mu-law (mu = 255, a mid-tread quantiser: 0 stays 0)."""
    y = np.sign(x) * np.log1p(MU * np.abs(np.clip(x, -1, 1))) / np.log1p(MU)
    q = np.round(y * 127.0) / 127.0
    return (np.sign(q) * np.expm1(np.abs(q) * np.log1p(MU)) / MU).astype(np.float32)


def channel(x: np.ndarray, c: Conditions) -> np.ndarray:
    n = len(x)
    if c.channel == "resampled":
        up = soxr.resample(x, RATE, c.source_rate, quality="HQ")
        x = soxr.resample(up, c.source_rate, RATE, quality=c.soxr_quality)
    elif c.channel == "telephone":
        narrow = soxr.resample(x, RATE, 8_000, quality="HQ")
        sos = butter(6, TELEPHONE_BAND_HZ, btype="bandpass", fs=8_000, output="sos")
        x = soxr.resample(
            mu_law(sosfilt(sos, narrow).astype(np.float32)), 8_000, RATE, quality="HQ"
        )
    out = np.zeros(n, np.float32)
    out[: min(n, len(x))] = x[:n]
    return out


def gate(x: np.ndarray, spans: Sequence[tuple[float, float]], tail_s: float) -> np.ndarray:
    """Exact zeros outside the speech spans: what a client's noise suppression sends."""
    keep = np.zeros(len(x), bool)
    for a, b in spans:
        keep[
            max(0, int((a - GATE_PRE_S) * RATE)) : max(0, int((b + GATE_POST_S + tail_s) * RATE))
        ] = True
    return np.where(keep, x, np.float32(0.0)).astype(np.float32)


def render_mic(
    c: Conditions, tracks: Tracks, rng: np.random.Generator, bank: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """What the microphone sends under `c`: mono float32 at 16 kHz, as long as the tracks."""
    user, other, model = tracks.user, tracks.other, tracks.model
    echo = _delay(model, c.echo_delay_s) * db(c.echo_db) if c.echo_db is not None else None
    if c.room is not None:
        h = rir(c.room, rng)
        user, other = _convolve(user, h[0]), _convolve(other, h[1 % len(h)])
        echo = None if echo is None else _convolve(echo, h[2 % len(h)])
    mix = user + other
    if c.noise != "none":
        n = noise(c.noise, len(mix), rng, bank)
        mix = mix + n * np.float32(
            np.sqrt(active_level(user) / (np.mean(n**2) + 1e-20)) * db(-c.snr_db)
        )
    if echo is not None:
        mix = mix + echo
    peak = float(np.max(np.abs(mix))) if len(mix) else 0.0
    if peak > 0:
        mix = mix * np.float32(db(c.peak_dbfs + c.clip_db) / peak)
    if c.floor_dbfs is not None:
        mix = mix + pink(len(mix), rng) * np.float32(db(c.floor_dbfs))
    mix = np.clip(mix, -1.0, 1.0)  # the converter's full scale
    mix = channel(mix.astype(np.float32), c)
    if c.digital_silence:
        spans = list(tracks.speech)
        if c.echo_db is not None:
            spans += [(a + c.echo_delay_s, b + c.echo_delay_s) for a, b in tracks.model_speech]
        mix = gate(mix, spans, c.room.rt60 if c.room is not None else 0.0)
    return mix.astype(np.float32)
