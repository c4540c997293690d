"""The listening transcript's aligned loss: each heard byte written once, in order, somewhere
in a window of slots, instead of at exactly one slot.

With slot cross-entropy every byte of "347 " is due at one 50 ms slot after the number ends,
so a slot that is sure the next digit is 4 but one slot late is scored as wrong as one that
writes 9, and a slot must count its place in the queue to know which byte is its own. Here a
byte may come anywhere from the slot after its word starts (a word's closing space: after
it ends; `TurnBatch.heard_early`) to `late` slots after its old due slot, and the loss is
the negative log of the summed probability of every such placement (PAD in every other
slot): a CTC-like forward pass with no merged repeats, since the engine writes every non-PAD
byte it reads off a slot. The fixed schedule is one of the placements, so a model trained on
it starts near where it was.
"""

from __future__ import annotations

import torch

from ..streams.text import ByteTokenizer

PAD = ByteTokenizer.PAD
NEVER = -1e4  # log-probability of a forbidden step: finite, so logaddexp's gradient stays defined


@torch.compiler.disable  # a loop over slots: compiled, it would unroll hundreds of steps
def aligned_transcript_loss(
    logits: torch.Tensor,
    heard: torch.Tensor,
    early: torch.Tensor,
    present: torch.Tensor,
    late: int,
) -> torch.Tensor:
    """Mean negative log-likelihood per heard byte.

    logits [B, L, A, V] of the transcript slots; heard [B, L, A] the fixed schedule's targets
    (PAD: none due); early [B, L, A] how many slots before its due slot each byte may come;
    present [B, L] turns with audio (the others' slots are not scored)."""
    b, n = heard.shape[0], heard[0].numel()
    logp = logits.float().flatten(1, 2).log_softmax(-1)  # [B, S, V]
    scored = present[..., None].expand(heard.shape).flatten(1)
    target, early = heard.flatten(1), early.flatten(1)
    real = target.ne(PAD) & scored
    counts = real.sum(1)
    k = max(int(counts.max()), 1)
    labels = torch.full((b, k), PAD, dtype=torch.long, device=heard.device)
    due = torch.zeros(b, k, dtype=torch.long, device=heard.device)
    first = torch.zeros(b, k, dtype=torch.long, device=heard.device)
    for i in range(b):
        at = real[i].nonzero().flatten()
        labels[i, : len(at)], due[i, : len(at)] = target[i, at], at
        first[i, : len(at)] = at - early[i, at]
    slot = torch.arange(n, device=heard.device)[None, :, None]
    allowed = (
        (slot >= first[:, None]) & (slot <= due[:, None] + late) & scored[..., None]
        & (torch.arange(k, device=heard.device) < counts[:, None])[:, None]
    )  # [B, S, K]
    write = logp.gather(2, labels[:, None].expand(b, n, k)).masked_fill(~allowed, NEVER)
    wait = logp[..., PAD].masked_fill(~scored, 0.0)  # unscored slots pass for free
    # alpha[:, j]: log-probability that the first j bytes are written by the current slot
    alpha = torch.full((b, k + 1), NEVER, device=logp.device)
    alpha[:, 0] = 0.0
    for s in range(n):
        stay = alpha + wait[:, s, None]
        moved = torch.logaddexp(stay[:, 1:], alpha[:, :-1] + write[:, s])
        alpha = torch.cat([stay[:, :1], moved], 1)
    total = alpha.gather(1, counts[:, None]).squeeze(1)
    return -total.sum() / counts.sum().clamp(min=1)
