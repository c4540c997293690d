"""A small causal Vocos-style vocoder: log-mel frames -> STFT magnitude and phase -> iSTFT.

Frame j of the model's log-mel describes the 50 ms window that ends at sample (j+1)*hop
(streams/audio.py); the vocoder predicts the complex spectrum of that same window, and an
overlap-add of hann windows (4x overlap) gives the waveform. Every convolution is causal
(left context only), so the only look-ahead is the overlap-add's: a hop block is final once
the three frames after it exist, 3 hops = 37.5 ms, the same lag as the Griffin-Lim fallback.

`forward` runs whole utterances (training, tests); `stream` runs one turn for a batch of
sessions, each carrying its own `VocoderState` (conv caches and the overlap-add tail), and
equals `forward` sample for sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..streams.audio import SILENT_LOG_MEL, WIN

LOG_MEL_MIN = -6.0  # quieter than any speech bin: the floor (-10) is clamped up to here
IN_CENTER, IN_SCALE = -2.5, 1.5
OLA_NORM = 1.5  # sum of squared periodic hann windows at 4x overlap


@dataclass(frozen=True)
class VocoderConfig:
    mel: int = 80
    hop: int = 200
    win: int = WIN
    dim: int = 128  # sized for 1 CPU thread of training and <= 3 ms a session-turn
    hidden: int = 384
    blocks: int = 6
    kernel: int = 7
    in_kernel: int = 3
    envelope: bool = True  # a linear path from the log-mel to the log-magnitude (see Vocoder)

    @property
    def bins(self) -> int:
        return self.win // 2 + 1

    @property
    def lag_hops(self) -> int:
        """Hops between a frame's arrival and its last sample becoming final."""
        return self.win // self.hop - 1

    @property
    def receptive_frames(self) -> int:
        return self.in_kernel + self.blocks * (self.kernel - 1)


@dataclass
class VocoderState:
    """One session's streaming state: each causal conv's last inputs, and the overlap-add
    tail (samples still waiting for later frames). `silent` counts trailing floor frames."""

    caches: list[torch.Tensor]  # [channels, kernel - 1] per conv, input conv first
    tail: torch.Tensor  # [win - hop] samples
    silent: int = 0


def envelope_init(cfg: VocoderConfig, sr: int = 16_000) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [bins, mel], bias [bins]): each linear bin's log-magnitude as the filter-weighted
    mean of the log-mels covering it. A Slaney filter's area is 1/bin width, so a flat
    spectrum |X| gives mel = |X| / (sr / N_FFT): hence the bias."""
    from ..streams.audio import N_FFT, mel_filterbank

    fb = mel_filterbank(sr, cfg.mel)  # [mel, N_FFT // 2 + 1]
    grid = torch.arange(N_FFT // 2 + 1) * (sr / N_FFT)
    ours = torch.arange(cfg.bins) * (sr / cfg.win)
    idx = torch.searchsorted(grid, ours).clamp(1, len(grid) - 1)
    frac = ((ours - grid[idx - 1]) / (grid[idx] - grid[idx - 1]))[None]
    fb_ours = fb[:, idx - 1] * (1 - frac) + fb[:, idx] * frac  # the filters on our bins
    w = fb_ours.T / fb_ours.T.sum(1, keepdim=True).clamp_min(1e-8)
    nearest = (fb_ours.T.sum(1) == 0).nonzero().flatten()  # outside the filters' range
    for k in nearest.tolist():
        w[k, 0 if ours[k] < 1000 else cfg.mel - 1] = 1.0
    return w * math.log(10), torch.full((cfg.bins,), math.log(sr / N_FFT))


class CausalBlock(nn.Module):
    """ConvNeXt block with a left-padded depthwise conv."""

    def __init__(self, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.kernel = kernel
        self.dw = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.scale = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x: torch.Tensor, cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, T], cache [B, C, kernel - 1] -> (out [B, C, T], new cache)."""
        full = torch.cat([cache, x], dim=2)
        y = self.dw(full).transpose(1, 2)
        y = self.down(nn.functional.gelu(self.up(self.norm(y))))
        return x + (self.scale * y).transpose(1, 2), full[:, :, -(self.kernel - 1) :]


class Vocoder(nn.Module):
    def __init__(self, cfg: VocoderConfig = VocoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.inp = nn.Conv1d(cfg.mel, cfg.dim, cfg.in_kernel)
        self.blocks = nn.ModuleList(
            CausalBlock(cfg.dim, cfg.hidden, cfg.kernel) for _ in range(cfg.blocks)
        )
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = nn.Linear(cfg.dim, 2 * cfg.bins)
        self.register_buffer("window", torch.hann_window(cfg.win, periodic=True), persistent=False)
        # The spectral envelope is nearly a linear map of the log-mel, but the trunk's LayerNorms
        # hide the level from the head; this path carries it, started at the mel filters'
        # inverse, so the trunk learns only the fine structure and the phase.
        self.envelope = nn.Linear(cfg.mel, cfg.bins) if cfg.envelope else None
        if self.envelope is not None:
            w, b = envelope_init(cfg)
            with torch.no_grad():
                self.envelope.weight.copy_(w)
                self.envelope.bias.copy_(b)
                self.head.weight[: cfg.bins] *= 0.1

    # ---- state --------------------------------------------------------------------------
    def initial_state(self) -> VocoderState:
        """As if the session had been silent forever: every cache holds what a long run of
        floor frames leaves in it (reached after `receptive_frames` of them, whatever came
        before). So a silent turn of a long-silent session changes nothing and can be skipped."""
        c = self.cfg
        caches = [torch.full((1, c.mel, c.in_kernel - 1), LOG_MEL_MIN)] + [
            torch.zeros(1, c.dim, c.kernel - 1) for _ in self.blocks
        ]
        floor = torch.full((1, c.receptive_frames, c.mel), LOG_MEL_MIN)
        with torch.no_grad():
            caches = self.spectra(floor, caches)[2]
        return VocoderState([x[0] for x in caches], torch.zeros(c.win - c.hop), c.receptive_frames)

    # ---- network ------------------------------------------------------------------------
    def spectra(
        self, log_mel: torch.Tensor, caches: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """log_mel [B, T, mel], caches batched [B, C, k-1] -> (log-magnitude, phase [B, T, bins],
        new caches)."""
        k = self.cfg.in_kernel - 1
        x = log_mel.clamp_min(LOG_MEL_MIN).transpose(1, 2)
        full = torch.cat([caches[0], x], dim=2)
        new = [full[:, :, full.shape[2] - k :]]
        h = self.inp((full - IN_CENTER) / IN_SCALE)
        for block, cache in zip(self.blocks, caches[1:]):
            h, c = block(h, cache)
            new.append(c)
        out = self.head(self.norm(h.transpose(1, 2))).float()
        log_mag, phase = out.split(self.cfg.bins, dim=-1)
        if self.envelope is not None:
            log_mag = log_mag + self.envelope(log_mel.clamp_min(LOG_MEL_MIN))
        return log_mag.clamp(max=6.0), phase, new

    def frames(
        self, log_mag: torch.Tensor, phase: torch.Tensor, log_mel: torch.Tensor
    ) -> torch.Tensor:
        """Windowed time frames [B, T, win] of the predicted spectra; a frame at the silence
        floor (the model is not speaking) sounds as digital silence, not as the net's hiss."""
        spec = torch.polar(log_mag.exp(), phase)
        voiced = (log_mel > SILENT_LOG_MEL).any(dim=-1, keepdim=True)
        return torch.fft.irfft(spec, n=self.cfg.win) * self.window / OLA_NORM * voiced

    def overlap_add(self, frames: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        """frames [B, T, win] added onto tail [B, win - hop]: [B, win - hop + T * hop]."""
        b, t, w = frames.shape
        hop = self.cfg.hop
        fold = nn.functional.fold(
            frames.transpose(1, 2), (1, (t - 1) * hop + w), (1, w), stride=(1, hop)
        )
        out = fold.reshape(b, -1)
        return torch.cat([out[:, : w - hop] + tail, out[:, w - hop :]], dim=1)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Whole utterances [B, T, mel] -> waveform [B, T * hop], aligned like the causal frames
        (sample s belongs to the hop block that frame s // hop ends). Frames past the end are
        absent, so the last 3 blocks miss their later overlaps, as in a stream cut there."""
        return self.forward_spectra(log_mel)[0]

    def forward_spectra(
        self, log_mel: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`forward`, also returning the predicted log-magnitude and phase (training)."""
        s0 = self.initial_state()
        b = log_mel.shape[0]
        caches = [c.expand(b, -1, -1) for c in s0.caches]
        log_mag, phase, _ = self.spectra(log_mel, caches)
        sig = self.overlap_add(self.frames(log_mag, phase, log_mel), s0.tail.expand(b, -1))
        return sig[:, self.cfg.win - self.cfg.hop :], log_mag, phase

    @torch.no_grad()
    def stream(
        self, log_mel: torch.Tensor, states: list[VocoderState]
    ) -> tuple[torch.Tensor, list[VocoderState]]:
        """One chunk [B, T, mel] for B sessions -> ([B, T * hop] samples, lag_hops late; states)."""
        caches = [torch.stack(cs) for cs in zip(*(s.caches for s in states))]
        tails = torch.stack([s.tail for s in states])
        log_mag, phase, new = self.spectra(log_mel, caches)
        sig = self.overlap_add(self.frames(log_mag, phase, log_mel), tails)
        n = log_mel.shape[1] * self.cfg.hop
        floor = log_mel <= SILENT_LOG_MEL
        out_states = []
        for i, s in enumerate(states):
            quiet = floor[i].all(dim=1)
            run = int(quiet.flip(0).cumprod(0).sum())
            silent = s.silent + run if run == len(quiet) else run
            out_states.append(VocoderState([c[i].clone() for c in new], sig[i, n:].clone(), silent))
        return sig[:, :n], out_states
