"""Audio stream: PCM <-> log-mel <-> dMel, and mel -> waveform (Griffin-Lim).

Frames are causal: frame f is the 50 ms window that ends at sample (f+1)*hop, so a turn's
16 frames depend only on audio up to the end of that turn, and streaming a recording turn
by turn gives exactly the frames of the whole recording.
"""

from __future__ import annotations

import io
import math
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soxr
import torch

from ..config import TurnLayout
from ..errors import InputError

N_FFT = 1024
WIN = 800  # 50 ms at 16 kHz
FMIN, FMAX = 80.0, 7600.0
LOG_FLOOR = 1e-10
SILENT_LOG_MEL = math.log10(LOG_FLOOR) + 1e-3  # a frame at the floor: the model is silent
# no signal within ±1 reaches it: full-scale square and sine waves peak near 1.0
LOG_MEL_CEIL = 1.5
SUPPORTED_RATES = (8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:  # Slaney scale: linear to 1 kHz, log above
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((m - 15.0) * (math.log(6.4) / 27.0)), m * 200.0 / 3)


def mel_filterbank(sr: int, n_mels: int) -> torch.Tensor:
    """Slaney-normalised triangular filters, [n_mels, N_FFT // 2 + 1]."""
    freqs = np.linspace(0, sr / 2, N_FFT // 2 + 1)
    hz = _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX), n_mels + 2))
    lower = (freqs[None, :] - hz[:-2, None]) / (hz[1:-1] - hz[:-2])[:, None]
    upper = (hz[2:, None] - freqs[None, :]) / (hz[2:] - hz[1:-1])[:, None]
    fb = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return torch.from_numpy(fb.astype(np.float32))


@dataclass
class AudioFrontend:
    """PCM at the layout's rate -> causal log10-mel frames [N, mel_channels]."""

    layout: TurnLayout
    fb: torch.Tensor = field(init=False)
    window: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.fb = mel_filterbank(self.layout.sample_rate, self.layout.mel_channels)
        self.window = torch.hann_window(WIN, periodic=True)

    def magnitudes(self, padded: torch.Tensor) -> torch.Tensor:
        """|STFT| of a signal that already carries WIN - hop samples of left context."""
        frames = padded.unfold(0, WIN, self.layout.hop) * self.window
        return torch.fft.rfft(frames, n=N_FFT).abs()

    def log_mel(self, audio: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
        if x.ndim != 1 or x.numel() % self.layout.hop:
            raise InputError(
                f"audio of shape {tuple(x.shape)}: expected mono samples, "
                f"a multiple of hop {self.layout.hop}"
            )
        padded = torch.cat([x.new_zeros(WIN - self.layout.hop), x])
        mel = self.magnitudes(padded) @ self.fb.T
        return torch.log10(mel.clamp_min(LOG_FLOOR))


class StreamingLogMel:
    """Turn-by-turn log-mel that equals `AudioFrontend.log_mel` of the whole recording."""

    def __init__(self, frontend: AudioFrontend) -> None:
        self.frontend = frontend
        self.history = np.zeros(WIN - frontend.layout.hop, dtype=np.float32)

    def push(self, chunk: np.ndarray) -> torch.Tensor:
        chunk = np.asarray(chunk, dtype=np.float32)
        both = np.concatenate([self.history, chunk])
        self.history = both[len(both) - len(self.history) :]
        mel = self.frontend.magnitudes(torch.from_numpy(both)) @ self.frontend.fb.T
        return torch.log10(mel.clamp_min(LOG_FLOOR))


class DMelCodec(torch.nn.Module):
    """dMel: each log-mel value quantised to one of `levels` bin centres over [lo, hi].

    The range comes from data (`fit`) and is stored with the model as buffers.
    """

    def __init__(self, levels: int = 16, lo: float = -5.0, hi: float = -0.1) -> None:
        super().__init__()
        self.levels = levels
        self.register_buffer("range", torch.tensor([lo, hi], dtype=torch.float32))

    def fit(self, log_mels: torch.Tensor, pct: tuple[float, float] = (1.0, 99.0)) -> None:
        lo, hi = np.percentile(log_mels.flatten().numpy(), pct)
        if not hi > lo:
            raise InputError(f"dMel range from data is empty: [{lo}, {hi}]")
        self.range.copy_(torch.tensor([lo, hi]))

    def quantize(self, log_mel: torch.Tensor) -> torch.Tensor:
        lo, hi = self.range.tolist()
        step = (hi - lo) / (self.levels - 1)
        return ((log_mel - lo) / step).round().clamp(0, self.levels - 1).long()

    def dequantize(self, levels: torch.Tensor) -> torch.Tensor:
        lo, hi = self.range.tolist()
        return lo + levels.float() * ((hi - lo) / (self.levels - 1))


class MelNorm(torch.nn.Module):
    """Per-channel normalisation of output log-mel frames (the flow head's target space)."""

    def __init__(self, channels: int, mean: float = -2.5, std: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.full((channels,), mean))
        self.register_buffer("std", torch.full((channels,), std))

    def fit(self, log_mels: torch.Tensor) -> None:
        flat = log_mels.reshape(-1, self.mean.numel())
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-3))

    def normalize(self, log_mel: torch.Tensor) -> torch.Tensor:
        return (log_mel - self.mean) / self.std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised frames [..., k * channels] held to what a log10-mel can be: no quieter
        than the floor, no louder than full scale. Drawn frames feed back into the model, so
        one out-of-range draw would otherwise lead the next further out, turn after turn."""
        lo = (math.log10(LOG_FLOOR) - self.mean) / self.std
        hi = (LOG_MEL_CEIL - self.mean) / self.std
        per_channel = z.reshape(*z.shape[:-1], -1, self.mean.numel())
        return torch.maximum(torch.minimum(per_channel, hi), lo).reshape(z.shape)


class GriffinLim:
    """Waveform from log10-mel with no trained weights (fast Griffin-Lim, causal frames)."""

    def __init__(self, frontend: AudioFrontend, iters: int = 32, momentum: float = 0.99) -> None:
        self.frontend, self.iters, self.momentum = frontend, iters, momentum
        self.mel_pinv = torch.linalg.pinv(frontend.fb)
        self.hop = frontend.layout.hop

    def _istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Overlap-add of windowed frames; output covers the frames' full span."""
        n = spec.shape[0]
        frames = torch.fft.irfft(spec, n=N_FFT)[:, :WIN] * self.frontend.window
        length = (n - 1) * self.hop + WIN
        out = torch.zeros(length)
        norm = torch.zeros(length)
        idx = (torch.arange(n)[:, None] * self.hop + torch.arange(WIN)[None, :]).flatten()
        out.index_add_(0, idx, frames.flatten())
        norm.index_add_(0, idx, (self.frontend.window**2).repeat(n))
        return out / norm.clamp_min(1e-3)

    def magnitudes(self, log_mel: torch.Tensor, iters: int = 30) -> torch.Tensor:
        """Non-negative linear magnitudes whose mel matches: pseudo-inverse, then
        multiplicative (NMF-style) updates, which keep every bin >= 0."""
        fb = self.frontend.fb
        mel = torch.pow(10.0, log_mel)
        mag = (mel @ self.mel_pinv.T).clamp_min(1e-6)
        for _ in range(iters):
            mag = mag * (mel @ fb) / ((mag @ fb.T) @ fb).clamp_min(1e-10)
        return mag

    def run(
        self, mag: torch.Tensor, phase: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Griffin-Lim over [n, bins] magnitudes; returns (signal over the frames' span, phase)."""
        gen = torch.Generator().manual_seed(0)
        angle = phase if phase is not None else torch.rand(mag.shape, generator=gen) * 2 * math.pi
        spec = mag * torch.exp(1j * angle)
        prev = spec
        for _ in range(self.iters):
            sig = self._istft(spec)
            est = torch.fft.rfft(sig.unfold(0, WIN, self.hop) * self.frontend.window, n=N_FFT)
            accel = est + self.momentum * (est - prev)
            prev = est
            spec = mag * torch.exp(1j * torch.angle(accel))
        return self._istft(spec), torch.angle(spec)

    def synthesize(self, log_mel: torch.Tensor) -> np.ndarray:
        """Whole-utterance waveform, aligned like the causal frames (frame f ends at (f+1)*hop)."""
        n = log_mel.shape[0]
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        sig, _ = self.run(self.magnitudes(log_mel))
        return sig[WIN - self.hop :].numpy().astype(np.float32)[: n * self.hop]


class StreamingVocoder:
    """Turn-by-turn Griffin-Lim. Emits one turn of samples per push, LAG samples late.

    A hop block is final once the three frames after it exist, so each push re-runs
    Griffin-Lim over a short context and emits the blocks that have become final.
    """

    CONTEXT = 12  # frames of earlier turns re-optimised with the new ones

    def __init__(self, gl: GriffinLim) -> None:
        self.gl = gl
        self.lag_blocks = WIN // gl.hop - 1
        self.mel = torch.zeros(0, gl.frontend.layout.mel_channels)
        self.phase: torch.Tensor | None = None

    @property
    def lag_samples(self) -> int:
        return self.lag_blocks * self.gl.hop

    def push(self, log_mel: torch.Tensor) -> np.ndarray:
        new = log_mel.shape[0]
        ctx = self.mel[-self.CONTEXT :]
        frames = torch.cat([ctx, log_mel])
        if bool((frames <= SILENT_LOG_MEL).all()):
            # Silence all through the context: Griffin-Lim would return ~1e-6, below one PCM16
            # step, at the cost of a speaking turn. Most turns of a listening model are these.
            self.mel = frames
            self.phase = torch.zeros(frames.shape[0], N_FFT // 2 + 1)
            return np.zeros(new * self.gl.hop, dtype=np.float32)
        mag = self.gl.magnitudes(frames)
        phase = None
        if self.phase is not None:
            gen = torch.Generator().manual_seed(len(self.mel))
            phase = torch.cat(
                [
                    self.phase[-len(ctx) :],
                    torch.rand(new, mag.shape[1], generator=gen) * 2 * math.pi,
                ]
            )
        sig, ph = self.gl.run(mag, phase)
        self.mel, self.phase = frames, ph
        # The span starts WIN - hop samples before frame 0 ends: span block b holds the
        # samples that frames b - 3 .. b cover, and is final once all four exist.
        n = frames.shape[0]
        last = n - 1
        hop = self.gl.hop
        out = np.zeros(new * hop, dtype=np.float32)
        have = sig.numpy()
        for i, b in enumerate(range(last - new + 1, last + 1)):
            if b >= 0:
                out[i * hop : (i + 1) * hop] = have[b * hop : (b + 1) * hop]
        return out


def resample(audio: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    if from_rate not in SUPPORTED_RATES:
        raise InputError(f"sample rate {from_rate} Hz: expected one of {SUPPORTED_RATES}")
    audio = np.asarray(audio, dtype=np.float32)
    if from_rate == to_rate:
        return audio
    return soxr.resample(audio, from_rate, to_rate).astype(np.float32)


def pcm16_to_float(data: bytes) -> np.ndarray:
    if len(data) % 2:
        raise InputError(f"PCM16 chunk of {len(data)} bytes: expected an even number of bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def read_wav(path: str | Path, rate: int, mono: bool = True) -> np.ndarray:
    """Float samples at `rate` from a PCM16 WAV: mono (channels averaged) or [channels, n]."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise InputError(f"{path}: {8 * w.getsampwidth()}-bit WAV; expected 16-bit PCM")
            x = pcm16_to_float(w.readframes(w.getnframes()))
            channels, sr = w.getnchannels(), w.getframerate()
    except (wave.Error, EOFError) as e:
        raise InputError(f"{path}: not a readable WAV file ({e})") from e
    x = x.reshape(-1, channels).T
    if mono:
        return resample(x.mean(0), sr, rate)
    return np.stack([resample(np.ascontiguousarray(c), sr, rate) for c in x])


def wav_bytes(channels: list[np.ndarray], rate: int) -> bytes:
    n = max(len(c) for c in channels)
    data = np.zeros((n, len(channels)), dtype=np.float32)
    for i, c in enumerate(channels):
        data[: len(c), i] = c
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(float_to_pcm16(data.reshape(-1)))
    return buf.getvalue()
