"""Teacher-forced scores per held-out sequence: what the model gets right, slot by slot.

Losses fall mostly on the easy slots (PAD, "still silent"); these scores look only where
something happens, so a learning curve shows when a family's events start to be learned:

* `text_acc`: the model's next byte is right, over the bytes of its lines (not PAD);
* `onset_acc`: the same over the text onsets only (`text_onsets`: the first byte after a
  quiet turn, where the model chooses what to say);
* `switch_acc`: the control is right at the turns where it changes (starting and stopping
  to speak), the moments timing is about;
* `control_acc`: the control is right over every turn;
* `transcript_acc`: the listening transcript's byte is right, over the heard bytes;
* `transcript_cer`: the character error rate of the transcript as written, whatever its slots
  (the aligned loss, `model.alignment`, lets a byte come early or late: its slot may differ).

A sequence with no such slot scores NaN for that key (the caller skips it).
"""

from __future__ import annotations

import argparse

import torch

from ..config import TrainConfig
from ..eval.metrics import cer
from ..model.checkpoint import load_default, load_model
from ..model.interaction import PAD, InteractionModel, text_onsets
from ..streams.turns import TurnBatch
from .data import PlainNorm, WorldData, collate


def _acc(logits: torch.Tensor, target: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """[B] accuracy of argmax over the slots in `where` (NaN where a row has none)."""
    hit = (logits.argmax(-1) == target) & where
    dims = tuple(range(1, where.dim()))
    count = where.sum(dims)
    return torch.where(count > 0, hit.sum(dims) / count.clamp(min=1), torch.nan)


def _transcript_cer(written: torch.Tensor, batch: TurnBatch, heard: torch.Tensor) -> torch.Tensor:
    """[B] CER of the bytes written in the slots that heard audio against the bytes due."""
    present = batch.audio_in_mask[..., None].expand_as(heard)
    out = []
    for b in range(written.shape[0]):
        due = batch.heard[b][heard[b]].tolist()
        wrote = [t for t in written[b][present[b]].tolist() if t < 256]
        out.append(cer(bytes(wrote).decode(errors="replace"), bytes(due).decode()) if due
                   else float("nan"))
    return torch.tensor(out)


@torch.no_grad()
def sequence_scores(model: InteractionModel, batch: TurnBatch) -> dict[str, torch.Tensor]:
    # the transcript as written live (its own bytes fed back), the other streams teacher-forced
    pred = model.predict(model.hidden(batch), batch, own_transcript=True)
    ctl = batch.control
    switch = torch.zeros_like(ctl, dtype=torch.bool)
    switch[:, 1:] = ctl[:, 1:] != ctl[:, :-1]
    out = {
        "text_acc": _acc(pred.text_logits, batch.text_out, batch.text_out != PAD),
        "onset_acc": _acc(pred.text_logits, batch.text_out, text_onsets(batch.text_out)),
        "switch_acc": _acc(pred.control_logits, ctl, switch),
        "control_acc": _acc(pred.control_logits, ctl, torch.ones_like(switch)),
    }
    if pred.transcript_logits is not None and batch.heard is not None:
        heard = (batch.heard != PAD) & batch.audio_in_mask[..., None]
        out["transcript_acc"] = _acc(pred.transcript_logits, batch.heard, heard)
        out["transcript_cer"] = _transcript_cer(pred.transcript_logits.argmax(-1), batch, heard)
    return {k: v.float().cpu() for k, v in out.items()}


# ---- the teacher-forced benchmarks' shared edge (benchmarks/own_voice.py, readback.py) -----
def held_out_command(
    doc: str, episodes: int, episodes_help: str
) -> tuple[argparse.Namespace, InteractionModel, WorldData]:
    """Parse CHECKPOINT ('default': the shipped model), --episodes, --fp32 and --json; return
    them with the model (eval mode) and the eval split's episodes."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("checkpoint", help="a model checkpoint, or 'default' (the shipped model)")
    ap.add_argument("--episodes", type=int, default=episodes, help=episodes_help)
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--json", help="write the scores here")
    args = ap.parse_args()
    model = load_default() if args.checkpoint == "default" else load_model(args.checkpoint)
    return args, model.eval(), WorldData(model.cfg.layout, TrainConfig(), "eval")


def held_out_batch(model: InteractionModel, data: WorldData, indices: list[int]) -> TurnBatch:
    """Episodes `indices` of `data` as one batch, normalised with the model's statistics."""
    return collate([data.get(i) for i in indices], model.cfg.layout, PlainNorm(model.mel_norm))
