"""The KV pool: one preallocated slot per live session, in the attention window's layout.

Per layer the pool is [slots, kv_heads, (sink + window turns) * tokens_per_turn, head_dim]
and never grows: a turn's keys overwrite the turn that just left the window.
"""

from __future__ import annotations

import heapq

import torch

from ..config import ModelConfig
from ..errors import PoolFullError
from ..model.trunk import KVStep, mask_bias, rope_angles
from ..model.window import AttentionWindow


class KVPool:
    def __init__(self, cfg: ModelConfig, slots: int, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu") -> None:
        self.window = AttentionWindow(cfg.layout.tokens_per_turn, cfg.sink_turns, cfg.window_turns)
        self.slots = slots
        self.groups, self.head_dim, self.rope_base = cfg.n_heads // cfg.n_kv_heads, cfg.head_dim, cfg.rope_base
        shape = (slots, cfg.n_kv_heads, self.window.keys, cfg.head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)]
        self._free = list(range(slots))

    @property
    def free(self) -> int:
        return len(self._free)

    @property
    def in_use(self) -> int:
        return self.slots - len(self._free)

    @property
    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def acquire(self) -> int:
        """The lowest free slot, so live sessions stay packed and a step reads one view."""
        if not self._free:
            raise PoolFullError(f"all {self.slots} KV slots are in use; close a session or raise max_sessions")
        return heapq.heappop(self._free)

    def release(self, slot: int) -> None:
        if not 0 <= slot < self.slots or slot in self._free:
            raise ValueError(f"KV slot {slot} is not in use")
        for t in self.k + self.v:
            t[slot].zero_()
        heapq.heappush(self._free, slot)

    def step(self, slots: list[int], positions: torch.Tensor, valid: torch.Tensor,
             held: torch.Tensor | None = None) -> KVStep:
        """Everything the attention layers need to append `positions` [B, M] (`valid` rows only).

        `held` [B, M, chunks]: `window.chunk_turns` of each row's turn, if already known.
        """
        first = slots[0] if slots == list(range(slots[0], slots[0] + len(slots))) else None
        write_b, write_m = valid.nonzero(as_tuple=True)
        b, m = positions.shape
        tpt = self.window.tokens_per_turn
        turn = positions // tpt
        held = self.window.chunk_turns(turn) if held is None else held
        mask = self.window.mask_from(held, turn, positions % tpt)
        mask = mask[:, None, None].expand(-1, 1, self.groups, -1, -1)
        cos, sin = rope_angles(positions, self.head_dim, self.rope_base)
        return KVStep(
            k=self.k, v=self.v, slots=torch.tensor(slots), first_slot=first, positions=positions,
            write_b=write_b, write_m=write_m, write_index=self.window.cache_index(positions[write_b, write_m]),
            bias=mask_bias(mask.reshape(b, 1, self.groups * m, -1)), cos=cos, sin=sin)
