"""Token sampling with per-session settings and generators (reproducible per session)."""

from __future__ import annotations

import torch


def sample_tokens(
    logits: torch.Tensor, samplers: list, rngs: list[torch.Generator]
) -> torch.Tensor:
    """logits [B, V] -> [B] ids. Temperature 0 is greedy; top_k <= 0 keeps every token.

    Rows with the same settings are filtered and normalised together; only the draw is per
    row, from that session's generator (what keeps a session's tokens independent of what
    it is batched with). Each row's numbers are those of filtering it alone."""
    out = logits.argmax(-1)
    groups: dict[tuple[float, int], list[int]] = {}
    for b, s in enumerate(samplers):
        if s.temperature > 0:
            groups.setdefault((s.temperature, s.top_k), []).append(b)
    for (temperature, top_k), rows in groups.items():
        x = logits[rows].float() / temperature
        if 0 < top_k < x.shape[-1]:
            kth = x.topk(top_k, dim=-1).values[:, -1:]
            x = x.masked_fill(x < kth, float("-inf"))
        probs = x.softmax(-1)
        for i, b in enumerate(rows):
            out[b] = torch.multinomial(probs[i], 1, generator=rngs[b])[0]
    return out
