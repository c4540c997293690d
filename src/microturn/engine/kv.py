"""The KV pool: one preallocated slot per live session, in the attention window's layout.

Per layer the pool is [slots, kv_heads, (sink + window turns) * tokens_per_turn, head_dim]
and never grows: a turn's keys overwrite the turn that just left the window.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import torch

from ..config import ModelConfig
from ..errors import PoolFullError
from ..model.trunk import KVStep, mask_bias, rope_angles
from ..model.window import AttentionWindow


@dataclass
class TurnPlan:
    """What every append of one turn shares, computed once per engine step."""

    slots: torch.Tensor  # [B]
    first_slot: int | None
    base: torch.Tensor  # [B] absolute position of the turn's first token
    cache_base: torch.Tensor  # [B] its key slot in the window layout
    bias: torch.Tensor  # [B, tokens_per_turn, keys] attention bias of a query at each index
    cos: torch.Tensor  # [B, tokens_per_turn, 1, head_dim / 2]
    sin: torch.Tensor


class KVPool:
    def __init__(self, cfg: ModelConfig, slots: int, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu", extra: int = 0) -> None:
        """`extra` slots past `slots` are never handed out: CUDA-graph padding rows read them,
        and the last one takes writes that must land nowhere (see engine.graphs)."""
        self.window = AttentionWindow(cfg.layout.tokens_per_turn, cfg.sink_turns, cfg.window_turns)
        self.slots, self.dtype, self.device = slots, dtype, torch.device(device)
        self.groups, self.head_dim = cfg.n_heads // cfg.n_kv_heads, cfg.head_dim
        self.rope_base = cfg.rope_base
        shape = (slots + extra, cfg.n_kv_heads, self.window.keys, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self._free = list(range(slots))

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    @property
    def bytes_per_session(self) -> int:
        return sum(t[0].numel() * t.element_size() for t in self.k + self.v)

    @property
    def scratch_slot(self) -> int:
        return self.k[0].shape[0] - 1

    def acquire(self) -> int:
        """The lowest free slot, so live sessions stay packed and a step reads one view."""
        if not self._free:
            raise PoolFullError(
                f"all {self.slots} KV slots are in use; close a session or raise max_sessions"
            )
        return heapq.heappop(self._free)

    def release(self, slot: int) -> None:
        if not 0 <= slot < self.slots or slot in self._free:
            raise ValueError(f"KV slot {slot} is not in use")
        for t in self.k + self.v:
            t[slot].zero_()
        heapq.heappush(self._free, slot)

    @staticmethod
    def _first(slots: list[int]) -> int | None:
        return slots[0] if slots == list(range(slots[0], slots[0] + len(slots))) else None

    def _grouped(self, bias: torch.Tensor) -> torch.Tensor:
        """[B, M, keys] -> [B, 1, groups * M, keys], the row order of the grouped queries."""
        b, m, keys = bias.shape
        return (
            bias[:, None, None]
            .expand(-1, 1, self.groups, -1, -1)
            .reshape(b, 1, self.groups * m, keys)
        )

    def step(self, slots: list[int], positions: torch.Tensor, valid: torch.Tensor) -> KVStep:
        """Everything the attention layers need to append `positions` [B, M] (`valid` rows only)."""
        write_b, write_m = valid.nonzero(as_tuple=True)
        cos, sin = self._angles(positions)
        return KVStep(
            k=self.k,
            v=self.v,
            slots=self._tensor(slots),
            first_slot=self._first(slots),
            positions=positions,
            write_b=write_b,
            write_m=write_m,
            write_index=self.window.cache_index(positions[write_b, write_m]),
            bias=self._grouped(self._bias(positions)),
            cos=cos,
            sin=sin,
        )

    def _tensor(self, slots: list[int]) -> torch.Tensor:
        return torch.tensor(slots, device=self.device)

    def _angles(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary angles in the pool's dtype (a no-op in fp32), so rotated keys store as is."""
        cos, sin = rope_angles(positions, self.head_dim, self.rope_base)
        return cos.to(self.dtype), sin.to(self.dtype)

    def _bias(self, positions: torch.Tensor) -> torch.Tensor:
        return mask_bias(self.window.key_mask(positions)).to(self.dtype)

    def plan(self, slots: list[int], turns: torch.Tensor) -> TurnPlan:
        tpt = self.window.tokens_per_turn
        base = turns * tpt
        positions = base[:, None] + torch.arange(tpt, device=base.device)
        cos, sin = self._angles(positions)
        return TurnPlan(
            self._tensor(slots),
            self._first(slots),
            base,
            self.window.cache_index(base),
            self._bias(positions),
            cos,
            sin,
        )

    def rows(self, plan: TurnPlan, first: int, count: int, pad: int = 0) -> KVStep:
        """Append tokens first .. first + count - 1 of the planned turn for every session;
        `pad` extra rows repeat the last token and write nothing."""
        dev = plan.base.device
        idx = torch.arange(first, first + count, device=dev)
        if pad:
            idx = torch.cat([idx, idx[-1:].expand(pad)])
        b = plan.slots.numel()
        write_b = torch.arange(b, device=dev).repeat_interleave(count)
        write_m = torch.arange(count, device=dev).repeat(b)
        return KVStep(
            k=self.k,
            v=self.v,
            slots=plan.slots,
            first_slot=plan.first_slot,
            positions=plan.base[:, None] + idx,
            write_b=write_b,
            write_m=write_m,
            write_index=plan.cache_base[write_b] + write_m + first,
            bias=self._grouped(plan.bias[:, idx]),
            cos=plan.cos[:, idx],
            sin=plan.sin[:, idx],
        )
