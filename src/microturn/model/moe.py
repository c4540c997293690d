"""Mixture-of-experts SwiGLU feed-forward with top-k routing.

Two ways to run the experts, bitwise equal to each other:
* grouped: tokens sorted by expert, each expert one tiled GEMM (training, prefill);
* gather: each token's chosen expert weights are gathered and multiplied in place
  (decode: no host sync on the routing, fixed shapes, CUDA-graph friendly).
Both compute every token-expert product as one row of an 8-row tile, so a token's result
does not depend on which path ran or on what else was in the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .linear import TILE, InvariantLinear, tiled_linear

GATHER_MAX_PAIRS = (
    64  # above this many token-expert pairs gathering weights costs more than grouping
)


class MoEFeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        e, d, f = cfg.moe_experts, cfg.d_model, cfg.ffn_hidden
        self.k = cfg.moe_top_k
        self.router = InvariantLinear(d, e, invariant=cfg.batch_invariant)
        self.gate_up = nn.Parameter(torch.randn(e, 2 * f, d) * d**-0.5)
        self.down = nn.Parameter(torch.randn(e, d, f) * f**-0.5)
        self.aux_loss = torch.zeros(())

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = self.router(x).softmax(-1)
        weight, expert = probs.topk(self.k, dim=-1)
        if self.training:  # Switch-style balance loss: fraction routed x mean probability
            frac = F.one_hot(expert, probs.shape[-1]).float().sum(-2).mean(0)
            self.aux_loss = probs.shape[-1] * (frac * probs.mean(0)).sum() / self.k
        return weight / weight.sum(-1, keepdim=True), expert

    def forward(self, x: torch.Tensor, gather: bool | None = None) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        weight, expert = self.route(x)
        pairs = expert.numel()
        if gather is None:
            gather = pairs <= GATHER_MAX_PAIRS and not torch.is_grad_enabled()
        y = self._gather(x, expert) if gather else self._grouped(x, expert)  # [N, k, d]
        out = (y * weight[..., None]).sum(1)
        return out.reshape(shape)

    def _expert(self, h: torch.Tensor, gu: torch.Tensor, dn: torch.Tensor) -> torch.Tensor:
        gate, up = tiled_linear(h, gu).chunk(2, dim=-1)
        return tiled_linear(F.silu(gate) * up, dn)

    def _grouped(self, x: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        y = x.new_zeros(*expert.shape, x.shape[-1])
        flat = expert.flatten()
        order = flat.argsort(stable=True)
        counts = torch.bincount(flat, minlength=self.gate_up.shape[0]).tolist()
        start = 0
        y_flat = y.view(-1, x.shape[-1])
        for e, c in enumerate(counts):
            if c:
                idx = order[start : start + c]
                y_flat = y_flat.index_put(
                    (idx,), self._expert(x[idx // self.k], self.gate_up[e], self.down[e])
                )
            start += c
        return y_flat.view_as(y)

    def _gather(self, x: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        n, k = expert.shape
        flat = expert.flatten()
        h = x.repeat_interleave(k, dim=0)  # [n*k, d], row i -> token i // k
        tile = h.new_zeros(n * k, TILE, h.shape[-1])
        tile[:, 0] = h  # each pair alone in its own 8-row tile, like a tiled GEMM row
        gu = torch.bmm(tile, self.gate_up[flat].transpose(1, 2))[:, 0]
        gate, up = gu.chunk(2, dim=-1)
        tile2 = h.new_zeros(n * k, TILE, gate.shape[-1])
        tile2[:, 0] = F.silu(gate) * up
        out = torch.bmm(tile2, self.down[flat].transpose(1, 2))[:, 0]
        return out.view(n, k, -1)
