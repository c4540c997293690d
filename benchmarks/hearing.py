"""Which numbers the listening transcript hears: the first link of spoken tool use.

A spoken "What is 347 times 29?" is computed from the user's words as the model heard them
(the context package carries its transcript), so a misheard number is a wrong answer however
well the rest goes. This renders held-out tool_use episodes (unseen combinations; some in
never-trained voices), runs the model over them and reads its transcript greedily, as a live
session does (each slot's byte from its hidden state and, with `transcript_feedback`, the
byte written one slot before: what the engine writes turn by turn). Each number said is
scored heard or not (exactly, in order), overall, by voice split, by how the line was said
(connected, or word by word: `world.libespeak`), and by its tens word: a
model that never learned "forty" hears 347 as 377. And each slot due to write a digit is
classed by what it wrote: a word's bytes drain a slot each after the word ends, so a slot
that loses count of its place writes its neighbour's byte (347 -> 377 again, by another
road). A model trained with the aligned loss (`train.transcript_window`) may write a byte a
slot or more off the fixed schedule and still be right: for it, read the numbers heard,
not the digit slots.

    python benchmarks/hearing.py default --episodes 40
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter

import torch
from tqdm import tqdm

from microturn.model.interaction import PAD
from microturn.streams.audio import DMelCodec
from microturn.train.data import PlainNorm, collate, timeline_tensors
from microturn.train.scores import held_out_command
from microturn.world.families import generate
from microturn.world.tts import EspeakTTS

TENS = ("", "teen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def tens_word(n: int) -> str:
    """The word that says n's tens ("forty" for 347), "teen" for 10-19, "-" for none."""
    return TENS[n % 100 // 10] or "-"


def numbers(ids: list[int]) -> list[int]:
    """The numbers written in a byte stream (PAD and special tokens are not text)."""
    text = bytes(b for b in ids if b < 256).decode("utf-8", "replace")
    return [int(m) for m in re.findall(r"\d+", text)]


def heard_numbers(true: list[int], heard: list[int]) -> list[bool]:
    """Per number said, whether the transcript has it in the same place of the sequence."""
    hit = [False] * len(true)
    for block in difflib.SequenceMatcher(None, true, heard, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            hit[block.a + k] = True
    return hit


@torch.no_grad()
def score(model, episodes: list, bf16: bool) -> tuple[dict[str, list[int]], Counter]:
    """(key -> [heard, said] over the numbers said, keyed all, voice/<split>, said/<how the
    lines were said: connected or word by word> and tens/<word>; how many digit slots wrote
    each `digit_slots` kind)."""
    layout, counts, slots = model.cfg.layout, {}, Counter()
    codec, norm = DMelCodec(layout.dmel_levels), PlainNorm(model.mel_norm)
    for ep in tqdm(episodes, desc="hearing", unit="ep"):
        batch = collate([timeline_tensors(ep.timeline, layout, codec)], layout, norm)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model.predict(model.hidden(batch), batch, own_transcript=True)
        target = batch.heard[0].flatten().tolist()
        wrote = pred.transcript_logits.argmax(-1)[0].flatten().tolist()
        true = numbers(target)
        for n, hit in zip(true, heard_numbers(true, numbers(wrote))):
            said = "connected" if ep.scenario.user[0].connected else "words"
            keys = ("all", f"voice/{ep.voice_split}", f"said/{said}", f"tens/{tens_word(n)}")
            for key in keys:
                c = counts.setdefault(key, [0, 0])
                c[0] += hit
                c[1] += 1
        slots.update(digit_slots(target, wrote))
    return counts, slots


def digit_slots(target: list[int], wrote: list[int]) -> list[str]:
    """Per transcript slot due to write a digit, what it wrote: "right", "shifted" (the byte
    due one slot before or after: it lost count of its place in the queue), "nothing" (PAD)
    or "other"."""
    kinds = []
    for s, (t, w) in enumerate(zip(target, wrote)):
        if t >= 256 or not chr(t).isdigit():
            continue
        near = target[max(s - 1, 0) : s + 2]
        kinds.append(
            "right" if w == t else "shifted" if w in near else "nothing" if w == PAD else "other"
        )
    return kinds


def main() -> None:
    args, model, _ = held_out_command(__doc__, 40, "held-out tool_use episodes")
    if model.transcript_head is None:
        raise SystemExit("this model has no listening transcript")
    tts = EspeakTTS()  # the bench's held-out tool_use episodes, as eval_split renders them
    episodes = [generate("tool_use", i, "eval", 16.0, tts)
                for i in tqdm(range(args.episodes), desc="rendering", unit="ep")]
    counts, slots = score(model, episodes, not args.fp32)
    print(f"{'numbers':16s} {'heard':>6s} {'said':>5s}")
    for key in sorted(counts, key=lambda k: (k != "all", k)):
        h, n = counts[key]
        print(f"{key:16s} {h / n:6.3f} {n:5d}")
    total = sum(slots.values())
    print(f"digit slots ({total}): " + ", ".join(f"{k} {v / total:.3f}" for k, v in
                                                  slots.most_common()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"numbers": counts, "digit_slots": dict(slots)}, f, indent=2)


if __name__ == "__main__":
    main()
