"""Which keys a query may see: the sink turns plus a sliding window of turns.

Keys are stored in fixed chunks of one turn each: sink turns in chunks [0, S), and turn
t >= S in chunk S + (t - S) mod (W + 1), a ring. Training builds, for every query turn,
exactly this chunk layout, and the engine's KV cache *is* this layout, so both paths
reduce over identical rows in identical order (the condition for bitwise parity).

The ring has one chunk more than the window: the engine appends turn k's last output
slot together with IN_{k+1}, and IN_{k+1} must not overwrite a turn that the late slot
of turn k still sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionWindow:
    tokens_per_turn: int
    sink_turns: int
    window_turns: int

    @property
    def ring(self) -> int:
        return self.window_turns + 1

    @property
    def chunks(self) -> int:
        return self.sink_turns + self.ring

    @property
    def keys(self) -> int:
        return self.chunks * self.tokens_per_turn

    def chunk_of_turn(self, turn: torch.Tensor) -> torch.Tensor:
        s, w = self.sink_turns, self.window_turns
        return torch.where(turn < s, turn, s + (turn - s) % (w + 1))

    def cache_index(self, position: torch.Tensor) -> torch.Tensor:
        t = self.tokens_per_turn
        return self.chunk_of_turn(position // t) * t + position % t

    def chunk_turns(self, query_turn: torch.Tensor) -> torch.Tensor:
        """[..., chunks]: the turn held in each chunk as seen from `query_turn`, or -1."""
        s, w = self.sink_turns, self.window_turns
        t = query_turn[..., None]
        c = torch.arange(self.chunks, device=query_turn.device)
        sink = torch.where(c <= t, c, -1)
        j = c - s
        ring = t - (t - s - j) % (w + 1)
        ring = torch.where((t >= s) & (ring >= s) & (t - ring < w), ring, -1)
        return torch.where(c < s, sink, ring)

    def key_mask(self, position: torch.Tensor) -> torch.Tensor:
        """[..., keys] bool: the key slots a query at `position` attends to (causal in its turn)."""
        tpt = self.tokens_per_turn
        t, i = position // tpt, position % tpt
        u = self.chunk_turns(t)[..., None]  # [..., C, 1]
        j = torch.arange(tpt, device=position.device)
        ok = (u >= 0) & ((u < t[..., None, None]) | (j <= i[..., None, None]))
        return ok.flatten(-2)

