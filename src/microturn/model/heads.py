"""Output heads. Text and control are linear; audio is a rectified-flow head.

FlowHead is the MAR / Pocket-TTS "SimpleMLPAdaLN" shape: the noisy target goes in, the
flow time and the trunk's hidden state condition every residual block through adaLN
(shift, scale, gate), and the adaLN and output layers start at zero.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_features(t: torch.Tensor, dim: int = 256) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    args = t[..., None].float() * 1000.0 * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.ada = nn.Linear(width, 3 * width)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)


class FlowHead(nn.Module):
    def __init__(self, target_dim: int, cond_dim: int, width: int, depth: int) -> None:
        super().__init__()
        self.inp = nn.Linear(target_dim, width)
        self.time = nn.Sequential(nn.Linear(256, width), nn.SiLU(), nn.Linear(width, width))
        self.cond = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(_ResBlock(width) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, target_dim)
        for layer in (self.final_ada, self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _modulations(self, c: torch.Tensor) -> list[tuple[torch.Tensor, ...]]:
        """(shift, 1 + scale, gate) per block and (shift, 1 + scale) for the output, from
        silu(c)."""
        ada_w, ada_b = self._ada()
        sizes = [b.ada.out_features for b in self.blocks] + [self.final_ada.out_features]
        mods = []
        for m in F.linear(F.silu(c), ada_w, ada_b).split(sizes, dim=-1):
            parts = list(m.chunk(m.shape[-1] // c.shape[-1], dim=-1))
            parts[1] = parts[1] + 1
            mods.append(tuple(parts))
        return mods

    def _ada(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every adaLN layer's weight and bias, concatenated. Without grad the concatenation
        is kept (it was ~3 MB of copying per draw) until a weight changes in place (an
        optimiser step bumps its version) or moves (.to())."""
        layers = [b.ada for b in self.blocks] + [self.final_ada]
        params = [p for layer in layers for p in (layer.weight, layer.bias)]
        if torch.is_grad_enabled():
            return torch.cat(params[0::2]), torch.cat(params[1::2])
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        if getattr(self, "_ada_key", None) != key:
            self._ada_cache = (torch.cat(params[0::2]), torch.cat(params[1::2]))
            self._ada_key = key
        return self._ada_cache

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self._run(x_t, self._modulations(self.time(timestep_features(t)) + self.cond(cond)))

    def _run(self, x_t: torch.Tensor, mods: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        # functional calls: this runs 32 times a speaking turn, and module dispatch adds up
        width = (self.inp.out_features,)
        h = F.linear(x_t, self.inp.weight, self.inp.bias)
        for block, (shift, scale, gate) in zip(self.blocks, mods):
            lin1, lin2 = block.mlp[0], block.mlp[2]
            y = torch.addcmul(shift, F.layer_norm(h, width, eps=1e-6), scale)
            y = F.linear(F.silu(F.linear(y, lin1.weight, lin1.bias)), lin2.weight, lin2.bias)
            h = torch.addcmul(h, gate, y)
        shift, scale = mods[-1]
        return F.linear(
            torch.addcmul(shift, F.layer_norm(h, width, eps=1e-6), scale),
            self.out.weight,
            self.out.bias,
        )

    def loss(
        self,
        target: torch.Tensor,
        cond: torch.Tensor,
        draws: int,
        t: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
        count: float | None = None,
    ) -> torch.Tensor:
        """Rectified flow: x_t = t x + (1 - t) eps, regress v = x - eps; `draws` (t, eps) per
        target.

        `t` [N, draws] and `eps` [N, draws, D] may be given (the trainer draws them per
        sequence, so a sharded batch sees the same noise); `count` replaces N in the mean
        (the number of targets in the whole, unsharded batch).
        """
        n, d = target.shape
        t = torch.rand(draws, n, device=target.device) if t is None else t.T
        eps = torch.randn(draws, n, d, device=target.device) if eps is None else eps.transpose(0, 1)
        x = target[None].expand(draws, n, d)
        x_t = t[..., None] * x + (1 - t[..., None]) * eps
        v = self.velocity(x_t.reshape(-1, d), t.reshape(-1), cond.repeat(draws, 1))
        sq = (v - (x - eps).reshape(-1, d)).square()
        return sq.mean() if count is None else sq.sum() / (count * draws * d)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, steps: int, x0: torch.Tensor) -> torch.Tensor:
        """Euler integration from the scaled noise x0 (t = 0) to a frame (t = 1).

        The adaLN modulations depend only on the condition and the step's time, so those of
        every step and block come from one GEMM up front; an Euler step is then just the MLP,
        whose weights stay in cache.
        """
        grid = torch.arange(steps, device=cond.device, dtype=torch.float32) / steps
        c = self.cond(cond)[None] + self.time(timestep_features(grid))[:, None]  # [steps, B, W]
        mods = self._modulations(c)
        per_step = [[tuple(p[i] for p in m) for m in mods] for i in range(steps)]
        x = x0
        for i in range(steps):
            x = torch.add(x, self._run(x, per_step[i]), alpha=1.0 / steps)
        return x
