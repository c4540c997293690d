"""Targets and losses: the exact STFT of the window each log-mel frame describes.

Because the vocoder's frames are the analysis frames (same window, same hop, same causal
alignment), the true complex spectrum is a per-frame target: log-magnitude L1 and the
anti-wrapped phase losses of APNet (instantaneous phase, group delay, instantaneous
frequency). A multi-resolution STFT loss and a log-mel loss on the overlap-added waveform
keep neighbouring frames consistent; no discriminator (CPU budget).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..streams.audio import LOG_FLOOR, N_FFT, WIN, AudioFrontend

RESOLUTIONS = ((256, 64), (1024, 256))  # the 800/200 analysis frames are scored apart


@dataclass
class Targets:
    log_mel: torch.Tensor  # [B, T, mel], as streams.AudioFrontend computes it
    spec: torch.Tensor  # [B, T, bins] complex: the STFT of the same windows
    wave: torch.Tensor  # [B, T * hop]


def targets(padded: torch.Tensor, frontend: AudioFrontend, win: int) -> Targets:
    """padded [B, win - hop + T * hop]: each segment with its true left context."""
    hop = frontend.layout.hop
    frames = padded.unfold(1, win, hop) * frontend.window
    mel = torch.fft.rfft(frames, n=N_FFT).abs() @ frontend.fb.T
    spec = torch.fft.rfft(frames, n=win)
    return Targets(torch.log10(mel.clamp_min(LOG_FLOOR)), spec, padded[:, win - hop :])


def _wrap(x: torch.Tensor) -> torch.Tensor:
    return (x - 2 * math.pi * torch.round(x / (2 * math.pi))).abs()


def phase_loss(pred: torch.Tensor, true: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted anti-wrapped errors of phase, its frequency and its time differences."""
    w = weight / weight.mean().clamp_min(1e-8)
    ip = (_wrap(pred - true) * w).mean()
    gd = (_wrap(pred.diff(dim=2) - true.diff(dim=2)) * w[:, :, 1:]).mean()
    iaf = (_wrap(pred.diff(dim=1) - true.diff(dim=1)) * w[:, 1:]).mean()
    return ip + gd + iaf


def stft_mag(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=x.device)
    return torch.stft(x, n_fft, hop, window=win, return_complex=True, center=False).abs()


def multires_loss(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    total = y.new_zeros(())
    for n_fft, hop in RESOLUTIONS:
        a, b = stft_mag(y, n_fft, hop), stft_mag(x, n_fft, hop)
        sc = torch.linalg.norm(a - b) / torch.linalg.norm(b).clamp_min(1e-6)
        total = (
            total + sc + (torch.log(a.clamp_min(1e-5)) - torch.log(b.clamp_min(1e-5))).abs().mean()
        )
    return total / len(RESOLUTIONS)


@dataclass(frozen=True)
class LossWeights:
    mag: float = 1.0
    phase: float = 0.3
    multires: float = 1.0
    mel: float = 2.0


def vocoder_loss(
    log_mag: torch.Tensor,
    phase: torch.Tensor,
    y: torch.Tensor,
    t: Targets,
    frontend: AudioFrontend,
    lag: int,
    w: LossWeights = LossWeights(),
) -> dict[str, torch.Tensor]:
    """Losses of one batch; the waveform's last `lag` hops lack later frames and are left out."""
    hop = frontend.layout.hop
    mag = t.spec.abs()
    losses = {
        "mag": (log_mag - torch.log(mag.clamp_min(1e-5))).abs().mean(),
        "phase": phase_loss(phase, torch.angle(t.spec), mag.sqrt()),
    }
    keep = y.shape[1] - lag * hop
    yy, xx = y[:, :keep], t.wave[:, :keep]
    losses["multires"] = multires_loss(yy, xx)
    ctx = yy.new_zeros(yy.shape[0], WIN - hop)  # both sides get the same (silent) left context
    ym = targets(torch.cat([ctx, yy], 1), frontend, WIN).log_mel
    xm = targets(torch.cat([ctx, xx], 1), frontend, WIN).log_mel
    losses["mel"] = (ym - xm).abs().clamp_max(3.0).mean()
    losses["total"] = (
        w.mag * losses["mag"]
        + w.phase * losses["phase"]
        + w.multires * losses["multires"]
        + w.mel * losses["mel"]
    )
    return losses
