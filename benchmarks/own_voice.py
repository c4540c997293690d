"""How much the model's words lean on hearing its own voice, and on reading back its own words.

The trunk hears the model's own voice from the next turn on. In training that voice is the
TTS line it learns from; served, it is what the flow head drew. This scores the held-out
text teacher-forced three ways, changing only the voice the trunk hears: the TTS voice (as
trained), the flow head's frames drawn from this pass's conditions (one pass of its own
voice, the first step of what a served session compounds), and silence (zeros). It reports
the byte accuracy inside lines and at the onsets (`model.interaction.text_onsets`: where the
model chooses what to say) and the control accuracy. A model whose words survive its own
voice scores close to the first column in the second. Two more rows keep the TTS voice and
read back 3% / 10% of the model's written letters as random ones (served, a wrong byte is
read back as written; `train.text_noise` trains for it): a model that goes on with the line
it meant scores close to the first row there too. The last two rows hear the TTS voice 2 / 5
audio slots (100 / 250 ms) late, as a flow head that speaks a little behind its words would
be heard (`train.own_voice_lag` trains for it): a model that keeps its place in a line by
what it wrote, not by its voice's timing, scores close to the first row there.

    python benchmarks/own_voice.py runs/default_stage8/model.safetensors --episodes 56
"""

from __future__ import annotations

import dataclasses
import json

import torch
from tqdm import tqdm

from microturn.model.interaction import PAD, InteractionModel, Predictions, text_onsets
from microturn.streams.turns import TurnBatch
from microturn.train.data import WorldData
from microturn.train.scores import held_out_batch, held_out_command
from microturn.train.exposure import delayed, misread

VOICES = ("tts", "own", "silent", "misread 3%", "misread 10%", "late 2 slots", "late 5 slots")


def own_frames(
    model: InteractionModel, batch: TurnBatch, pred: Predictions, g: torch.Generator
) -> torch.Tensor:
    """`batch.audio_out` with every speaking slot replaced by the flow head's draw from the
    conditions of `pred` (the pass that heard the TTS voice)."""
    speak = batch.audio_out_mask
    cond = pred.audio_cond[speak].flatten(0, -2).float()
    x0 = torch.randn(cond.shape[0], batch.audio_out.shape[-1], generator=g)
    drawn = model.mel_norm.bound(model.flow.sample(cond, model.cfg.flow_steps, x0))
    own = batch.audio_out.clone()
    own[speak] = drawn.view(-1, *own.shape[2:]).to(own.dtype)
    return own


def late(batch: TurnBatch, slots: int) -> torch.Tensor:
    """`batch.audio_out` heard `slots` audio slots late in every sequence."""
    heard = batch.audio_out * batch.audio_out_mask[..., None, None]
    return torch.stack([delayed(frames, slots) for frames in heard])


@torch.no_grad()
def score(model: InteractionModel, data: WorldData, episodes: int, bf16: bool) -> dict:
    counts = {(v, k): [0, 0] for v in VOICES for k in ("inside", "onset", "control")}
    g = torch.Generator().manual_seed(0)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    for i in tqdm(range(0, episodes, 4), desc="held-out batches", unit="batch"):
        batch = held_out_batch(model, data, list(range(i, min(episodes, i + 4))))
        onset, real = text_onsets(batch.text_out), batch.text_out != PAD
        with amp:
            preds = {"tts": model.predict(model.hidden(batch), batch)}
            for voice, heard in (
                ("own", {"audio_out": own_frames(model, batch, preds["tts"], g)}),
                ("silent", {"audio_out": torch.zeros_like(batch.audio_out)}),
                ("misread 3%", {"text_out": misread(batch.text_out, 0.03, g)}),
                ("misread 10%", {"text_out": misread(batch.text_out, 0.10, g)}),
                ("late 2 slots", {"audio_out": late(batch, 2)}),
                ("late 5 slots", {"audio_out": late(batch, 5)}),
            ):
                heard = dataclasses.replace(batch, **heard)
                preds[voice] = model.predict(model.hidden(heard), batch)
            for voice, pred in preds.items():
                hit = pred.text_logits.argmax(-1) == batch.text_out
                ctl = pred.control_logits.argmax(-1) == batch.control
                for key, h, n in (
                    ("inside", hit & real & ~onset, real & ~onset),
                    ("onset", hit & onset, onset),
                    ("control", ctl, torch.ones_like(ctl)),
                ):
                    counts[(voice, key)][0] += int(h.sum())
                    counts[(voice, key)][1] += int(n.sum())
    return {f"{v}/{k}": h / max(n, 1) for (v, k), (h, n) in counts.items()}


def main() -> None:
    args, model, data = held_out_command(__doc__, 56, "held-out episodes (eval split)")
    data.ensure(range(args.episodes), True)
    scores = score(model, data, args.episodes, not args.fp32)
    print(f"{'voice heard':13s} {'inside lines':>12s} {'onsets':>8s} {'control':>8s}")
    for v in VOICES:
        row = [scores[f"{v}/{k}"] for k in ("inside", "onset", "control")]
        print(f"{v:13s} {row[0]:12.3f} {row[1]:8.3f} {row[2]:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(scores, f, indent=2)


if __name__ == "__main__":
    main()
