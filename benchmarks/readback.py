"""Where tool use breaks: hearing the request, or reading the result back.

In a held-out tool_use episode the model writes three things: the delegation
(`<delegate>calculate</delegate>`; before stage 11 it restated the heard question, "what is
434 minus 39"), the acknowledgement ("Let me work that out."; before stage 28 it came
first), and the result line ("434 minus 39 is 395."), whose words sit in its background
slots when it says them; its listening transcript writes the user's words ("what is 434
minus 39"). Teacher-forced, this scores each part's bytes, and their digits apart: a model
that hears numbers writes the transcript's digits; one that copies from its slots writes the
result's. The row "lookup" scores the copy lookup itself (`model.fusion.continuation` over the
background slots, with the model's key length): the share of the result line's bytes for
which it points at the byte the line needs, the model's input and not its output.

    python benchmarks/readback.py default --episodes 20
"""

from __future__ import annotations

import json

import torch
from tqdm import tqdm

from microturn.model.interaction import PAD
from microturn.streams.text import ByteTokenizer
from microturn.train.data import WorldData
from microturn.train.scores import held_out_batch, held_out_command

PARTS = ("ack", "request", "result", "heard", "lookup")
TOK = ByteTokenizer()


def parts(text: list[int]) -> list[str | None]:
    """The part each slot of a flattened text stream belongs to (None for PAD): the request
    (`<delegate>`, `</delegate>` and the space after it), then the acknowledgement up to the
    space after its full stop, then the result line. Before stage 28 the acknowledgement
    came first; on episodes of that layout, its bytes count as the result's."""
    part, out, closed, ended = "result", [], False, False
    for t in text:
        if t == PAD:
            out.append(None)
            continue
        if t == TOK.DELEGATE:
            part, closed = "request", False
        elif part == "request" and closed and t != ord(" "):
            part, ended = "ack", False
        elif part == "ack" and ended and t == ord(" "):
            out.append("ack")
            part = "result"
            continue
        out.append(part)
        closed = closed or t == TOK.DELEGATE_END
        ended = t == ord(".")
    return out


def lookup(model, batch) -> torch.Tensor:
    """[B, L, text slots]: for each text slot, the background lookup's byte at the position
    that predicts it (the control slot for slot 0, else the text slot before)."""
    hist = model.histories(batch)
    follows = hist["control"][-1][..., None], hist["text_out"][-1]  # background: the last table
    return torch.cat([follows[0], follows[1][..., :-1]], dim=-1)


@torch.no_grad()
def score(model, data: WorldData, episodes: list[int], bf16: bool) -> dict[str, float]:
    counts = {f"{p}/{k}": [0, 0] for p in PARTS for k in ("bytes", "digits")}
    for i in tqdm(episodes, desc="held-out tool_use", unit="ep"):
        batch = held_out_batch(model, data, [i])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model.predict(model.hidden(batch), batch)
        text = batch.text_out[0].flatten().tolist()
        hits = (pred.text_logits.argmax(-1) == batch.text_out)[0].flatten().tolist()
        labels = parts(text)
        if model.cfg.copy_lookup:  # the result's bytes again, scored on what the lookup gave
            pointed = (lookup(model, batch) == batch.text_out)[0].flatten().tolist()
            labels += ["lookup" if p == "result" else None for p in labels]
            text, hits = text + text, hits + pointed
        if pred.transcript_logits is not None:  # what it wrote of the user's words, as heard
            heard = batch.heard[0].flatten().tolist()
            text += heard
            hits += (pred.transcript_logits.argmax(-1) == batch.heard)[0].flatten().tolist()
            labels += [None if t == PAD else "heard" for t in heard]
        for t, hit, part in zip(text, hits, labels):
            if part is None:
                continue
            keys = [f"{part}/bytes"] + ([f"{part}/digits"] if chr(t).isdigit() else [])
            for key in keys:
                counts[key][0] += hit
                counts[key][1] += 1
    return {k: h / n for k, (h, n) in counts.items() if n}


def main() -> None:
    args, model, data = held_out_command(__doc__, 20, "held-out tool_use episodes")
    picked, i = [], 0
    while len(picked) < args.episodes:
        picked += [i] if data.family_of(i)[0] == "tool_use" else []
        i += 1
    data.ensure(picked, True)
    scores = score(model, data, picked, not args.fp32)
    print(f"{'part':8s} {'bytes':>6s} {'digits':>7s}")
    show = lambda key: f"{scores[key]:.3f}" if key in scores else "-"
    for p in PARTS:
        print(f"{p:8s} {show(f'{p}/bytes'):>6s} {show(f'{p}/digits'):>7s}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(scores, f, indent=2)


if __name__ == "__main__":
    main()
