"""`microturn train-vocoder`: fit the vocoder to joe's speech, time-boxed, resumable.

Inputs are log-mels from the repo's own front end (streams/audio.py, via losses.targets),
so they are what the flow head learns to draw. Drawn frames are smoother and noisier than
analysis frames, so half of each batch is degraded (`degrade`) while the targets stay the
clean recording's spectrum. The checkpoint with the best held-out STOI is kept.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from pystoi import stoi
from tqdm import tqdm

from ..config import TurnLayout
from ..streams.audio import WIN, AudioFrontend
from .data import load_corpus
from .losses import targets, vocoder_loss
from .model import Vocoder, VocoderConfig
from .weights import save_vocoder


@dataclass
class TrainVocoderConfig:
    out: str = "runs/vocoder"
    minutes: float = 40.0  # wall-clock budget; the learning rate decays over it
    batch: int = 8
    frames: int = 48  # frames a segment is scored on
    warmup_frames: int = 16  # earlier frames the causal convs see first (not scored)
    lr: float = 1e-3
    lr_min: float = 5e-5
    degrade_p: float = 0.5
    eval_every: int = 150
    eval_lines: int = 24
    seed: int = 0
    threads: int = 1  # the interaction model trains on the other core


def degrade(log_mel: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What a few Euler steps of the flow head do to a frame: blur across time and channels,
    and add smooth noise; each example gets its own random strength."""
    b = log_mel.shape[0]
    u = torch.rand(b, 3, generator=gen)
    x = log_mel
    a = (0.3 * u[:, 0])[:, None, None]  # time blur [a, 1 - 2a, a]
    x = (
        a * torch.cat([x[:, :1], x[:, :-1]], 1)
        + (1 - 2 * a) * x
        + a * torch.cat([x[:, 1:], x[:, -1:]], 1)
    )
    f = (0.25 * u[:, 1])[:, None, None]  # channel blur
    x = (
        f * torch.cat([x[:, :, :1], x[:, :, :-1]], 2)
        + (1 - 2 * f) * x
        + f * torch.cat([x[:, :, 1:], x[:, :, -1:]], 2)
    )
    noise = torch.randn(x.shape, generator=gen)
    noise = (noise + torch.roll(noise, 1, 2) + torch.roll(noise, -1, 2)) / math.sqrt(3)
    return x + (0.25 * u[:, 2])[:, None, None] * noise


class Segments:
    """Random crops of the corpus with their true left context, as padded waveforms."""

    def __init__(self, utterances: list, hop: int, frames: int, seed: int) -> None:
        self.audio = [u.audio for u in utterances]
        self.hop, self.frames = hop, frames
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        ctx = WIN - self.hop
        need = ctx + self.frames * self.hop
        out = np.zeros((n, need), np.float32)
        for i in range(n):
            x = self.audio[int(self.rng.integers(len(self.audio)))]
            x = np.concatenate([np.zeros(ctx, np.float32), x])
            start = int(self.rng.integers(0, max(1, len(x) - need)))
            seg = x[start : start + need]
            out[i, : len(seg)] = seg * float(
                self.rng.uniform(0.35, 1.0)
            )  # level varies in the world
        return torch.from_numpy(out)


def synthesize(
    model: Vocoder, frontend: AudioFrontend, audio: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(vocoded, reference) of one recording, trimmed to whole hops."""
    hop = frontend.layout.hop
    x = audio[: len(audio) // hop * hop]
    with torch.no_grad():
        y = model(frontend.log_mel(x)[None])[0].numpy()
    return y, x


def heldout_stoi(model: Vocoder, frontend: AudioFrontend, utterances: list) -> float:
    model.eval()
    scores = [
        stoi(*synthesize(model, frontend, u.audio)[::-1], 16_000, extended=False)
        for u in utterances
    ]
    model.train()
    return float(np.mean(scores))


def train_vocoder(
    cfg: TrainVocoderConfig | None = None,
    vcfg: VocoderConfig | None = None,
    progress: bool = True,
) -> dict:
    """Train until the wall-clock budget is spent (counting earlier runs), then return the log."""
    cfg, vcfg = cfg or TrainVocoderConfig(), vcfg or VocoderConfig()
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    layout = TurnLayout()
    frontend = AudioFrontend(layout)
    train = load_corpus(out / "corpus", "train")
    held = load_corpus(out / "corpus", "eval")[: cfg.eval_lines]
    torch.manual_seed(cfg.seed)
    model = Vocoder(vcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.8, 0.99), weight_decay=0.01)
    state = {"step": 0, "elapsed_s": 0.0, "best_stoi": -1.0, "log": []}
    last = out / "last.pt"
    if last.exists():  # our own file (optimizer state has no safetensors form)
        ck = torch.load(last, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
    seg = Segments(train, layout.hop, cfg.warmup_frames + cfg.frames, cfg.seed + state["step"])
    gen = torch.Generator().manual_seed(cfg.seed + state["step"])
    budget = cfg.minutes * 60
    bar = tqdm(desc="vocoder", unit="step", initial=state["step"], disable=not progress)
    hop, warm = layout.hop, cfg.warmup_frames
    model.train()
    while state["elapsed_s"] < budget:
        t0 = time.perf_counter()
        frac = state["elapsed_s"] / budget
        for g in opt.param_groups:
            g["lr"] = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * frac))
        t = targets(seg.batch(cfg.batch), frontend, WIN)
        mel = t.log_mel
        pick = torch.rand(cfg.batch, generator=gen) < cfg.degrade_p
        mel = torch.where(pick[:, None, None], degrade(mel, gen), mel)
        y, log_mag, phase = model.forward_spectra(mel)  # scored: the frames after the warm-up
        scored = type(t)(t.log_mel[:, warm:], t.spec[:, warm:], t.wave[:, warm * hop :])
        losses = vocoder_loss(
            log_mag[:, warm:], phase[:, warm:], y[:, warm * hop :], scored, frontend, vcfg.lag_hops
        )
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state["step"] += 1
        state["elapsed_s"] += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        done = state["elapsed_s"] >= budget
        if state["step"] % cfg.eval_every == 0 or done:
            score = heldout_stoi(model, frontend, held)
            row = {
                "step": state["step"],
                "elapsed_s": round(state["elapsed_s"], 1),
                "stoi": round(score, 4),
                **{k: round(v.item(), 4) for k, v in losses.items()},
            }
            state["log"].append(row)
            tqdm.write(json.dumps(row))
            if score > state["best_stoi"]:
                state["best_stoi"] = score
                save_vocoder(
                    model,
                    out / "best.safetensors",
                    {"step": str(state["step"]), "heldout_stoi": f"{score:.4f}"},
                )
            tmp = out / "last.pt.tmp"
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state}, tmp)
            tmp.replace(last)
    bar.close()
    (out / "train_log.json").write_text(
        json.dumps({"config": asdict(cfg), "vocoder": asdict(vcfg), **state}, indent=1)
    )
    return state
