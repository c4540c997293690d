"""Decoder-only trunk: RMSNorm, RoPE, grouped-query attention over the turn window,
SwiGLU (or mixture-of-experts) feed-forward.

Two entry points compute the same function: `forward` (training, whole sequences from
turn 0) and `step` (the engine appending a few tokens per session into the KV pool).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .linear import InvariantLinear
from .moe import MoEFeedForward
from .window import AttentionWindow

FUSED_BLOCK_TURNS = 8  # query turns per fused-attention block in training
QUERY_BLOCK_TURNS = 32  # training attention is computed this many query turns at a time


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # under autocast x may be bf16: a weight of the same dtype keeps the fused kernel
        return F.rms_norm(x, self.weight.shape, self.weight.to(x.dtype), self.eps)


def rope_angles(
    positions: torch.Tensor, head_dim: int, base: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin for absolute `positions` [..., n] -> [..., n, 1, head_dim], shared by
    all layers."""
    half = head_dim // 2
    inv_freq = 1.0 / (
        base ** (torch.arange(0, half, device=positions.device, dtype=torch.float32) / half)
    )
    angles = positions[..., None].float() * inv_freq
    cos, sin = angles.cos(), angles.sin()
    return torch.cat([cos, cos], -1)[..., None, :], torch.cat([-sin, sin], -1)[..., None, :]


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [..., n, heads, head_dim] (rotate-half form): x cos + [x2, x1] (-sin, sin)."""
    half = x.shape[-1] // 2
    return torch.addcmul(x * cos, torch.cat([x[..., half:], x[..., :half]], dim=-1), sin)


def mask_bias(mask: torch.Tensor) -> torch.Tensor:
    """0 where a key is visible, -inf where not: adding it equals masked_fill, bit for bit."""
    return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, float("-inf"))


@dataclass
class KVStep:
    """What one engine step tells every attention layer about the KV pool."""

    k: list[torch.Tensor]  # per layer: [pool_slots, kv_heads, window keys, head_dim]
    v: list[torch.Tensor]
    slots: torch.Tensor  # [B] pool slot of each row of the batch
    first_slot: int | None  # slots are first_slot .. first_slot + B - 1: read a view, not a copy
    positions: torch.Tensor  # [B, M] absolute token positions of the appended tokens
    write_b: torch.Tensor  # [n] batch row and token of each real (not padding) token
    write_m: torch.Tensor
    write_index: torch.Tensor  # [n] its key slot in the window layout
    bias: torch.Tensor  # [B, 1, G*M, keys]: 0 for visible keys, -inf for the rest
    cos: torch.Tensor  # [B, M, 1, head_dim / 2] rotary angles of the appended tokens
    sin: torch.Tensor
    write_slot: torch.Tensor | None = None  # [n] pool slot of each write (default: slots[write_b])

    def read(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.k[layer], self.v[layer]
        if self.first_slot is not None:
            b = self.slots.numel()
            return k[self.first_slot : self.first_slot + b], v[
                self.first_slot : self.first_slot + b
            ]
        return k[self.slots], v[self.slots]

    def write(self, layer: int, k_new: torch.Tensor, v_new: torch.Tensor) -> None:
        """k_new, v_new: [B, M, kv_heads, head_dim]."""
        slot = self.slots[self.write_b] if self.write_slot is None else self.write_slot
        self.k[layer][slot, :, self.write_index] = k_new[self.write_b, self.write_m]
        self.v[layer][slot, :, self.write_index] = v_new[self.write_b, self.write_m]


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, window: AttentionWindow) -> None:
        super().__init__()
        self.cfg, self.window = cfg, window
        self.h, self.kvh, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        inv = cfg.batch_invariant
        self.qkv = InvariantLinear(cfg.d_model, (self.h + 2 * self.kvh) * self.hd, invariant=inv)
        self.out = InvariantLinear(self.h * self.hd, cfg.d_model, invariant=inv)
        self.scale = self.hd**-0.5

    def _project(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        qk, v = self.qkv(x).split([(self.h + self.kvh) * self.hd, self.kvh * self.hd], dim=-1)
        q, k = rope(qk.unflatten(-1, (self.h + self.kvh, self.hd)), cos, sin).split(
            [self.h, self.kvh], dim=-2
        )
        return q * self.scale, k, v.unflatten(-1, (self.kvh, self.hd))

    @staticmethod
    def _attend(
        q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor
    ) -> torch.Tensor:
        scores = torch.baddbmm(
            bias.expand(*q.shape[:-1], k.shape[-2]).flatten(0, -3),
            q.flatten(0, -3),
            k.transpose(-1, -2).flatten(0, -3),
        )
        return (scores.softmax(-1) @ v.flatten(0, -3)).view(*q.shape[:-1], v.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Training: x [B, L*T, d], sequences starting at turn 0."""
        b, n, _ = x.shape
        tpt, g = self.window.tokens_per_turn, self.h // self.kvh
        turns = n // tpt
        q, k, v = self._project(
            x, *rope_angles(torch.arange(n, device=x.device), self.hd, self.cfg.rope_base)
        )
        if not self.cfg.batch_invariant:
            return self.out(self._fused(q, k, v).reshape(b, n, self.h * self.hd))
        # queries grouped per kv head: [B, kvh, L, G*T, hd]
        q = (
            q.view(b, turns, tpt, self.kvh, g, self.hd)
            .permute(0, 3, 1, 4, 2, 5)
            .reshape(b, self.kvh, turns, g * tpt, self.hd)
        )
        k = k.view(b, turns, tpt, self.kvh, self.hd).permute(0, 3, 1, 2, 4)  # [B, kvh, L, T, hd]
        v = v.view(b, turns, tpt, self.kvh, self.hd).permute(0, 3, 1, 2, 4)
        outs = []
        for t0 in range(0, turns, QUERY_BLOCK_TURNS):
            qt = torch.arange(t0, min(turns, t0 + QUERY_BLOCK_TURNS), device=x.device)
            held = self.window.chunk_turns(qt).clamp_min(0)  # [Lq, C]
            kb = k[:, :, held].flatten(3, 4)  # [B, kvh, Lq, C*T, hd]: the engine's cache layout
            vb = v[:, :, held].flatten(3, 4)
            pos = qt[:, None] * tpt + torch.arange(tpt, device=x.device)
            mask = self.window.key_mask(pos)  # [Lq, T, keys]
            bias = mask_bias(mask[:, None].expand(-1, g, -1, -1).reshape(len(qt), g * tpt, -1))
            outs.append(self._attend(q[:, :, t0 : t0 + len(qt)], kb, vb, bias))
        o = torch.cat(outs, dim=2).view(b, self.kvh, turns, g, tpt, self.hd)
        return self.out(o.permute(0, 2, 4, 1, 3, 5).reshape(b, n, self.h * self.hd))

    def _fused(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """The same keys as `forward`'s chunk layout, through the fused SDPA kernel, one block
        of query turns at a time over only the keys that block can see (sink + window).
        Faster for training; rows differ from the engine's in the last bits."""
        n, tpt, s = q.shape[1], self.window.tokens_per_turn, self.window.sink_turns
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, heads, n, hd]
        pos = torch.arange(n, device=q.device)
        outs = []
        step = FUSED_BLOCK_TURNS * tpt
        for a in range(0, n, step):
            e = min(n, a + step)
            lo = max(s * tpt, (a // tpt - self.window.window_turns + 1) * tpt)
            keys = torch.cat([pos[: min(s * tpt, lo)], pos[lo:e]])
            tq, tk = pos[a:e, None] // tpt, keys[None] // tpt
            mask = (keys[None] <= pos[a:e, None]) & (
                (tk < s) | (tq - tk < self.window.window_turns)
            )
            outs.append(
                F.scaled_dot_product_attention(
                    q[:, :, a:e],
                    k[:, :, keys],
                    v[:, :, keys],
                    attn_mask=mask,
                    scale=1.0,
                    enable_gqa=True,
                )
            )
        return torch.cat(outs, dim=2).transpose(1, 2)

    def step(self, x: torch.Tensor, kv: KVStep, layer: int) -> torch.Tensor:
        """Streaming: x [B, M, d] appended at kv.positions; K/V land in the pool first."""
        b, m, _ = x.shape
        g = self.h // self.kvh
        q, k, v = self._project(x, kv.cos, kv.sin)
        kv.write(layer, k, v)
        kc, vc = kv.read(layer)  # [B, kvh, keys, hd]
        q = (
            q.view(b, m, self.kvh, g, self.hd)
            .permute(0, 2, 3, 1, 4)
            .reshape(b, self.kvh, g * m, self.hd)
        )
        o = self._attend(q, kc, vc, kv.bias).view(b, self.kvh, g, m, self.hd)
        return self.out(o.permute(0, 3, 1, 2, 4).reshape(b, m, self.h * self.hd))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, invariant: bool) -> None:
        super().__init__()
        self.gate_up = InvariantLinear(dim, 2 * hidden, invariant=invariant)
        self.down = InvariantLinear(hidden, dim, invariant=invariant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, window: AttentionWindow) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, window)
        self.ffn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.ffn: nn.Module = (
            MoEFeedForward(cfg)
            if cfg.moe_experts
            else SwiGLU(cfg.d_model, cfg.ffn_hidden, cfg.batch_invariant)
        )

    def forward(self, x: torch.Tensor, kv: KVStep | None = None, layer: int = 0) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + (self.attn(h) if kv is None else self.attn.step(h, kv, layer))
        return x + self.ffn(self.ffn_norm(x))


class Trunk(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.window = AttentionWindow(cfg.layout.tokens_per_turn, cfg.sink_turns, cfg.window_turns)
        self.blocks = nn.ModuleList(Block(cfg, self.window) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def step(self, x: torch.Tensor, kv: KVStep) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, kv, i)
        return self.norm(x)
