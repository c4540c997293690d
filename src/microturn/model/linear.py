"""Batch-invariant linear layer.

MKL picks a different GEMM kernel (and reduction order) depending on how many rows it
gets, so `linear(x[:m])` differs from `linear(x)[:m]` in the last bits. Computing every
product in fixed 8-row tiles (one batched GEMM) makes each row's result independent of
how many rows share the call: a 1-token decode step and a 10k-token training forward
produce bitwise the same numbers. A batch of one tile takes yet another MKL path for some
inner sizes (300, 320, 704, 1408 measured): each weight shape is probed once, and where a
one-tile GEMM disagrees with the batched kernel, small calls are padded to two tiles.
With fewer than 4 outputs MKL vectorises across rows, so a row's result depends on its
place in the tile: narrow weights are padded to 8 outputs.
Measured on 2 CPU cores: about 2x a plain GEMM for large batches, and a few tens of
microseconds for a decode step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TILE = 8
_ONE_TILE_OK: dict[tuple[int, int, torch.dtype], bool] = {}


def _batched(x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    tiles = x2.shape[0] // TILE
    k, n = weight.shape[1], weight.shape[0]
    return torch.bmm(x2.view(tiles, TILE, k), weight.t().unsqueeze(0).expand(tiles, k, n)).reshape(
        -1, n
    )


def _one_tile_ok(k: int, n: int, dtype: torch.dtype) -> bool:
    """Does a plain 8-row GEMM give the batched kernel's bits for this shape? (Probed once.)"""
    key = (k, n, dtype)
    if key not in _ONE_TILE_OK:
        g = torch.Generator().manual_seed(k * 7919 + n)
        x = torch.randn(3 * TILE, k, generator=g, dtype=dtype)
        w = torch.randn(n, k, generator=g, dtype=dtype)
        _ONE_TILE_OK[key] = torch.equal(torch.mm(x[:TILE], w.t()), _batched(x, w)[:TILE])
    return _ONE_TILE_OK[key]


def _tiled(x2: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    n = weight.shape[0]
    if n < TILE:
        return _tiled(x2, torch.cat([weight, weight.new_zeros(TILE - n, weight.shape[1])]))[:, :n]
    m, k = x2.shape
    one = m <= TILE and _one_tile_ok(k, n, x2.dtype)
    pad = TILE - m if one else max((-m) % TILE, 2 * TILE - m)
    if pad:
        x2 = torch.cat([x2, x2.new_zeros(pad, k)])
    return (torch.mm(x2, weight.t()) if one else _batched(x2, weight))[:m]


class _TiledLinear(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx, x2: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(x2, weight)
        return _tiled(x2, weight)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x2, weight = ctx.saved_tensors  # the backward needs no invariance: plain GEMMs
        return grad @ weight, grad.t() @ x2


def tiled_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad):
        y = _TiledLinear.apply(x2, weight)
    else:
        y = _tiled(x2, weight)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0])


class InvariantLinear(nn.Linear):
    """nn.Linear whose rows do not depend on the batch (when `invariant`)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, invariant: bool = True
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.invariant = invariant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.invariant and x.device.type == "cpu" and x.dtype == torch.float32:
            return tiled_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)
