"""Token sampling with per-session settings and generators (reproducible per session)."""

from __future__ import annotations

import torch


def sample_tokens(logits: torch.Tensor, samplers: list, rngs: list[torch.Generator]) -> torch.Tensor:
    """logits [B, V] -> [B] ids. Temperature 0 is greedy; top_k <= 0 keeps every token."""
    out = torch.empty(logits.shape[0], dtype=torch.long)
    greedy = logits.argmax(-1)
    for b, (s, g) in enumerate(zip(samplers, rngs)):
        if s.temperature <= 0:
            out[b] = greedy[b]
            continue
        row = logits[b].float() / s.temperature
        if 0 < s.top_k < row.numel():
            kth = row.topk(s.top_k).values[-1]
            row = row.masked_fill(row < kth, float("-inf"))
        out[b] = torch.multinomial(row.softmax(-1), 1, generator=g)[0]
    return out
