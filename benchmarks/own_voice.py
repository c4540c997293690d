"""How much the model's words lean on hearing its own voice.

The trunk hears the model's own voice from the next turn on. In training that voice is the
TTS line it learns from; served, it is what the flow head drew. This scores the held-out
text teacher-forced three ways, changing only the voice the trunk hears: the TTS voice (as
trained), the flow head's frames drawn from this pass's conditions (one pass of its own
voice, the first step of what a served session compounds), and silence (zeros). It reports
the byte accuracy inside lines and at the onsets (`model.interaction.text_onsets`: where the
model chooses what to say) and the control accuracy. A model whose words survive its own
voice scores close to the first column in the second.

    python benchmarks/own_voice.py runs/default_stage8/model.safetensors --episodes 56
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import torch
from tqdm import tqdm

from microturn.config import TrainConfig
from microturn.model.checkpoint import load_default, load_model
from microturn.model.interaction import PAD, InteractionModel, Predictions, text_onsets
from microturn.streams.turns import TurnBatch
from microturn.train.data import WorldData, collate
from microturn.train.trainer import _PlainNorm

VOICES = ("tts", "own", "silent")


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


@torch.no_grad()
def score(model: InteractionModel, data: WorldData, episodes: int, bf16: bool) -> dict:
    counts = {(v, k): [0, 0] for v in VOICES for k in ("inside", "onset", "control")}
    g = torch.Generator().manual_seed(0)
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    for i in tqdm(range(0, episodes, 4), desc="held-out batches", unit="batch"):
        batch = collate(
            [data.get(j) for j in range(i, min(episodes, i + 4))],
            model.cfg.layout,
            _PlainNorm(model.mel_norm),
        )
        onset, real = text_onsets(batch.text_out), batch.text_out != PAD
        with amp:
            preds = {"tts": model.predict(model.hidden(batch), batch)}
            for voice, audio in (
                ("own", own_frames(model, batch, preds["tts"], g)),
                ("silent", torch.zeros_like(batch.audio_out)),
            ):
                heard = dataclasses.replace(batch, audio_out=audio)
                preds[voice] = model.predict(model.hidden(heard), heard)
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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="a model checkpoint, or 'default' (the shipped model)")
    ap.add_argument("--episodes", type=int, default=56, help="held-out episodes (eval split)")
    ap.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    ap.add_argument("--json", help="write the scores here")
    args = ap.parse_args()
    model = (load_default() if args.checkpoint == "default" else load_model(args.checkpoint)).eval()
    data = WorldData(model.cfg.layout, TrainConfig(), "eval")
    data.ensure(range(args.episodes), True)
    scores = score(model, data, args.episodes, not args.fp32)
    print(f"{'voice heard':12s} {'inside lines':>12s} {'onsets':>8s} {'control':>8s}")
    for v in VOICES:
        row = [scores[f"{v}/{k}"] for k in ("inside", "onset", "control")]
        print(f"{v:12s} {row[0]:12.3f} {row[1]:8.3f} {row[2]:8.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(scores, f, indent=2)


if __name__ == "__main__":
    main()
