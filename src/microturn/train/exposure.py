"""What the trunk hears and reads of its own output while training (exposure).

Teacher-forced, the trunk hears the TTS voice it learns to speak and reads back the bytes it
should have written; served, it hears its flow head's frames and reads what it wrote. These
corrupt the fed-back inputs, never the targets, with draws fixed per sample position (`rng`:
the trainer's per-position generators), so a resumed or sharded run sees the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..config import TrainConfig
from ..streams.turns import TurnBatch

Rng = Callable[[str, int], torch.Generator]  # (stream, sample position) -> its generator


def misread(text: torch.Tensor, share: float, g: torch.Generator) -> torch.Tensor:
    """`text` (bytes) with a `share` of its printable bytes replaced by a random letter;
    PAD and the special tokens stay."""
    letter = (text >= 32) & (text < 127)
    swap = letter & (torch.rand(text.shape, generator=g) < share)
    return torch.where(swap, torch.randint(ord("a"), ord("z") + 1, text.shape, generator=g), text)


def delayed(frames: torch.Tensor, slots: int) -> torch.Tensor:
    """[L, A, D] frames heard `slots` audio slots later, in time order across turns; silence
    before the first."""
    flat = frames.flatten(0, 1)
    late = torch.cat([torch.zeros_like(flat[:slots]), flat[: flat.shape[0] - slots]])
    return late.view_as(frames)


def own_voice(
    tc: TrainConfig, batch: TurnBatch, positions: list[int], rng: Rng
) -> torch.Tensor | None:
    """The frames the model hears of its own voice. Served, it hears what its flow head
    drew, not the TTS voice it learned from; without help its words lean on that voice
    (teacher-forced held-out text accuracy 97% with the TTS voice, 93% with its own for
    one turn, 45% with none), and drift once it derails. Two shares help:
    `own_voice_noise` of the speaking turns carry noise of a random level (0-2 std), and
    `own_voice_lag` of the sequences hear the whole voice 1 to `own_voice_max_lag` audio
    slots late (stage 29 writes 98% of the bytes inside lines right on time, 90% with its
    voice 2 slots late: it kept its place in a line by the voice's timing, which its own
    voice need not keep). Only late, never early: an early voice would tell it the words
    it is about to write."""
    noisy, late = tc.own_voice_noise, tc.own_voice_lag
    if noisy == 0 and late == 0:
        return None
    out = []
    heard = batch.audio_out * batch.audio_out_mask[..., None, None]
    for b, pos in enumerate(positions):
        frames = heard[b]
        if noisy:
            g, turns = rng("voice", pos), frames.shape[0]
            level = torch.rand(turns, generator=g) * 2.0 * (torch.rand(turns, generator=g) < noisy)
            noise = torch.randn(frames.shape, generator=g) * level[:, None, None]
            frames = frames + noise.to(frames)
        g = rng("lag", pos)
        if late and float(torch.rand((), generator=g)) < late:
            lag = int(torch.randint(1, tc.own_voice_max_lag + 1, (), generator=g))
            frames = delayed(frames, lag) * batch.audio_out_mask[b, :, None, None]
        out.append(frames)
    return torch.stack(out)


def own_text(
    tc: TrainConfig, batch: TurnBatch, positions: list[int], rng: Rng
) -> torch.Tensor | None:
    """The bytes the model reads back of its own words: a share `text_noise` of the
    letters it wrote replaced by a random letter, the targets unchanged. Teacher-forced it
    writes 98.5% of an answer's bytes right, but served one wrong byte is read back as
    written, a history training never showed it, and the line derails ("The eppoos
    sixt."); with this it learns to go on with the line it meant."""
    p = tc.text_noise
    if p == 0:
        return None
    rngs = [rng("text", pos) for pos in positions]
    read = [misread(t.cpu(), p, g) for t, g in zip(batch.text_out, rngs)]
    return torch.stack(read).to(batch.text_out)
