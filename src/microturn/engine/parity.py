"""Trainer-sampler alignment: the streaming engine against the training forward.

Random turns go through `InteractionModel.hidden` (teacher forcing, whole sequences) and
through `Engine.step` turn by turn with the same tokens forced; every output-slot logit
and flow-head condition is compared. Sessions join at different turns, so one batched
step mixes sequences of different lengths, and runs go past the attention window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import EngineConfig, ModelConfig
from ..model.interaction import PAD, InteractionModel
from ..streams.turns import TurnBatch
from .engine import Engine


def random_batch(
    cfg: ModelConfig, batch: int, turns: int, seed: int = 0, speak: float = 0.5, letters: int = 0
) -> TurnBatch:
    """Random slots in every stream; some turns with no audio or no video, some speaking, and
    a third of the text slots PAD (so byte histories skip gaps, as in real text). `letters` > 0
    draws text from that many letters only, so written pairs of bytes recur in what was read
    (the copy lookup finds them)."""
    g = torch.Generator().manual_seed(seed)
    lay = cfg.layout
    r = lambda *shape: torch.rand(*shape, generator=g)

    def text(slots: int) -> torch.Tensor:
        lo, hi = (ord("a"), ord("a") + letters) if letters else (0, cfg.vocab_size)
        ids = torch.randint(lo, hi, (batch, turns, slots), generator=g)
        return ids.masked_fill(r(batch, turns, slots) < 1 / 3, PAD)

    return TurnBatch(
        turn_index=torch.arange(turns)[None].expand(batch, -1).clone(),
        audio_in=torch.randint(
            0, lay.dmel_levels, (batch, turns, lay.audio_slots, lay.audio_token_dim), generator=g
        ),
        audio_in_mask=r(batch, turns) > 0.2,
        video=torch.randn(batch, turns, lay.video_slots, 3, 40, 40, generator=g),
        video_mask=r(batch, turns) > 0.5,
        user_text=text(lay.user_text_slots),
        background=text(lay.background_slots),
        control=(r(batch, turns) < speak).long(),
        text_out=text(lay.text_out_slots),
        audio_out=torch.randn(batch, turns, lay.audio_slots, lay.audio_token_dim, generator=g),
    )


@dataclass
class ParityReport:
    max_abs_diff: float  # over every compared value; 0.0 is bitwise equality
    control: float
    text: float
    audio_cond: float
    compared: int  # turns compared
    transcript: float = 0.0  # the listening transcript's logits (0 when the model has no head)

    @property
    def bitwise(self) -> bool:
        return self.max_abs_diff == 0.0


@torch.no_grad()
def measure_parity(
    model: InteractionModel,
    starts: list[int],
    turns: int,
    seed: int = 0,
    speak: float = 0.5,
    letters: int = 0,
) -> ParityReport:
    """Sequence b joins the engine at step starts[b] and runs `turns` turns."""
    model.eval()
    batch = random_batch(model.cfg, len(starts), turns, seed, speak, letters)
    ref = model.predict(model.hidden(batch), batch)
    engine = Engine(model, EngineConfig(max_sessions=len(starts)))
    sessions = [engine.open(vocoder=False) for _ in starts]
    worst = {"control": 0.0, "text": 0.0, "audio_cond": 0.0, "transcript": 0.0}
    compared = 0
    for step in range(turns + max(starts)):
        live = [b for b, s0 in enumerate(starts) if 0 <= step - s0 < turns]
        if not live:
            continue
        pairs = [batch.turn(b, step - starts[b]) for b in live]
        res = engine.step(
            [sessions[b] for b in live],
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            predictions=True,
        )
        p = res.predictions
        for j, b in enumerate(live):
            t = step - starts[b]
            for name, got, want in (
                ("control", p.control_logits[j], ref.control_logits[b, t]),
                ("text", p.text_logits[j], ref.text_logits[b, t]),
                ("audio_cond", p.audio_cond[j], ref.audio_cond[b, t]),
            ):
                worst[name] = max(worst[name], (got - want).abs().max().item())
            if ref.transcript_logits is not None:
                got, want = p.transcript_logits[j], ref.transcript_logits[b, t]
                worst["transcript"] = max(worst["transcript"], (got - want).abs().max().item())
            compared += 1
    return ParityReport(
        max(worst.values()),
        worst["control"],
        worst["text"],
        worst["audio_cond"],
        compared,
        worst["transcript"],
    )
