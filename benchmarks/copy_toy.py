"""Does the byte history make copying learnable? A toy, both ways, in one process.

    python benchmarks/copy_toy.py [--steps 400] [--every 50] [--json F] [--png F]

Each sequence streams a line of digits and words into the background slots, four bytes a
turn ("t1: 347 times 29 is 10,063."-like, numbers at random), and after a pause the model
must write the same line in its text slots at speech pace (three bytes and a PAD a turn),
as it says a background result back. A distractor line streams first, so "the most recent
digits" is not enough. The small test model (2 layers, d 128) trains on the same fresh
batches, interleaved, three ways: plain, with `byte_history`, and with the history and the
`copy_lookup`; the score is held-out accuracy of the line's digits (teacher-forced argmax),
which a model that writes digits but not *these* digits keeps near 10%.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from microturn.config import ModelConfig  # noqa: E402
from microturn.model.interaction import PAD, InteractionModel  # noqa: E402
from microturn.streams.turns import SILENT, TurnBatch  # noqa: E402

SMALL = dict(n_layers=2, window_turns=24, d_model=128, n_heads=4, n_kv_heads=2, ffn_hidden=256,
             flow_width=64, flow_depth=2, hmlp_width=64)
TURNS = 26
ARMS = (("plain", False, False), ("byte history", True, False), ("history + lookup", True, True))
OPS = ("times", "plus", "minus")


def line(g: torch.Generator) -> str:
    r = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))
    x, y, op = r(10, 1000), r(10, 100), OPS[r(0, 3)]
    return f"{x} {op} {y} is {x * y if op == 'times' else x + y if op == 'plus' else x - y}."


def place(row: torch.Tensor, text: str, first_turn: int, per_turn: int) -> int:
    """Write `text` into row [L, S] from `first_turn`, `per_turn` bytes a turn; the next turn."""
    data = text.encode()
    for k in range(0, len(data), per_turn):
        turn = first_turn + k // per_turn
        chunk = data[k : k + per_turn]
        row[turn, : len(chunk)] = torch.tensor(list(chunk))
    return first_turn + -(-len(data) // per_turn)


def toy_batch(cfg: ModelConfig, batch: int, g: torch.Generator) -> TurnBatch:
    lay = cfg.layout
    bg = torch.full((batch, TURNS, lay.background_slots), PAD)
    out = torch.full((batch, TURNS, lay.text_out_slots), PAD)
    for b in range(batch):
        t = place(bg[b], "t1: " + line(g), 0, 4)
        target = line(g)
        t = place(bg[b], "t2: " + target, t, 4)
        place(out[b], target, t + 1, 3)  # three bytes and a PAD a turn: speech pace
    zeros = lambda *s, **k: torch.zeros(batch, TURNS, *s, **k)
    return TurnBatch(
        turn_index=torch.arange(TURNS)[None].expand(batch, -1).clone(),
        audio_in=zeros(lay.audio_slots, lay.audio_token_dim, dtype=torch.long),
        audio_in_mask=zeros(dtype=torch.bool),
        video=zeros(lay.video_slots, 3, 40, 40),
        video_mask=zeros(dtype=torch.bool),
        user_text=torch.full((batch, TURNS, lay.user_text_slots), PAD),
        background=bg,
        control=torch.full((batch, TURNS), SILENT),
        text_out=out,
        audio_out=zeros(lay.audio_slots, lay.audio_token_dim),
    )


@torch.no_grad()
def digit_accuracy(model: InteractionModel, batch: TurnBatch) -> float:
    pred = model.predict(model.hidden(batch), batch).text_logits.argmax(-1)
    digit = (batch.text_out >= ord("0")) & (batch.text_out <= ord("9"))
    return ((pred == batch.text_out) & digit).sum().item() / digit.sum().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", help="write the curves here")
    ap.add_argument("--png", help="plot the curves here")
    args = ap.parse_args()
    held_out_cfg = ModelConfig(**SMALL)
    held_out = toy_batch(held_out_cfg, 64, torch.Generator().manual_seed(1))
    arms = {}
    for name, history, lookup in ARMS:
        torch.manual_seed(0)
        cfg = ModelConfig(**SMALL, byte_history=history, copy_lookup=lookup, batch_invariant=False)
        model = InteractionModel(cfg)
        arms[name] = (model, torch.optim.AdamW(model.parameters(), lr=2e-3))
    weights = {"control": 0.0, "audio": 0.0, "transcript": 0.0}
    curves: dict[str, list] = {"step": [], **{name: [] for name in arms}}
    data = torch.Generator().manual_seed(0)
    for step in range(1, args.steps + 1):
        batch = toy_batch(held_out_cfg, args.batch, data)  # both arms see the same batches
        for model, opt in arms.values():
            model.train()
            opt.zero_grad()
            model(batch, weights=weights)["loss"].backward()
            opt.step()
        if step % args.every == 0 or step == args.steps:
            curves["step"].append(step)
            for name, (model, _) in arms.items():
                curves[name].append(digit_accuracy(model.eval(), held_out))
            shown = ", ".join(f"{name} {curves[name][-1]:.3f}" for name in arms)
            print(f"step {step:4d}  held-out digits right: {shown}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(curves, indent=2))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name in arms:
            ax.plot(curves["step"], curves[name], marker="o", label=name)
        ax.set(xlabel="step", ylabel="held-out digits right", ylim=(0, 1),
               title="Copying a background line, toy")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


if __name__ == "__main__":
    main()
