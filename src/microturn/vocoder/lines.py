"""What the vocoder learns from: lines the model says in the world, and varied sentences.

The model's own lines (world/phrases.py) come first: they are what the vocoder voices in
the engine. Varied sentences (the user's lines, the knowledge base, numbers and sums)
widen the phone coverage. One line in `HELD_OUT_ONE_IN` (by a hash of its text) is held
out: `vocoder-eval` scores only those, so no scored line was ever heard in training.
"""

from __future__ import annotations

import re
import zlib
from importlib import resources

import numpy as np

from ..world import phrases as fam

HELD_OUT_ONE_IN = 8


def model_lines() -> list[str]:
    """Every fixed line the world's model says, and the templated ones drawn over their slots."""
    lines = [a for _, a in fam.QA] + [p[2] for p in fam.PAUSED] + list(fam.STORY_ENDS)
    lines += (
        [a for _, a in fam.LONG_ASKS] + [a for _, a in fam.CUT_INS] + [a for _, a in fam.BENIGN]
    )
    lines += (
        list(fam.ACKS)
        + list(fam.BACKCHANNELS)
        + [fam.REFUSAL, fam.ACK, "Start.", "Stop."]
    )
    lines += [w.capitalize() + "." for w in fam.NUMBERS + fam.SPANISH]
    lines += [w.capitalize() + "!" for w in fam.CUE_SAYS] + [
        f"You skipped {n}!" for n in fam.NUMBERS[1:]
    ]
    for color in ("red", "green", "blue", "yellow"):
        lines += [f"There, a {color} {shape}." for shape in ("circle", "square", "triangle")]
    return lines


def varied_lines(seed: int = 0, sums: int = 120, templates: int = 260) -> list[str]:
    """Sentences beyond the model's script: the user's side, the knowledge base, arithmetic."""
    lines = (
        [q for q, _ in fam.QA]
        + [p[0] + " " + p[1] for p in fam.PAUSED]
        + [" ".join(s) for s in fam.STORIES]
    )
    lines += [q for q, _ in fam.LONG_ASKS] + [q for q, _ in fam.CUT_INS] + list(fam.OTHER_LINES)
    lines += [f"Hey {n}, {a}" for n, a in zip(fam.NAMES, fam.ASIDES)] + list(
        fam.CUE_SENTENCES.values()
    )
    lines += list(fam.CHATTER) + list(fam.HARMFUL) + [q for q, _ in fam.BENIGN]
    for doc in sorted(
        resources.files("microturn.background").joinpath("knowledge").iterdir(), key=str
    ):
        if doc.name.endswith(".md"):
            text = " ".join(x for x in doc.read_text().splitlines() if not x.startswith("#"))
            lines += [s.strip() for s in re.split(r"(?<=[.;])\s+", text) if len(s.split()) >= 3]
    rng = np.random.default_rng(seed)
    ops = {"plus": lambda x, y: x + y, "minus": lambda x, y: x - y, "times": lambda x, y: x * y}
    lines += template_lines(templates, seed + 1)
    for _ in range(sums):
        x, y = (int(v) for v in rng.integers(2, 99, 2))
        op = str(rng.choice(list(ops)))
        lines.append(f"{x} {op} {y} is {ops[op](x, y)}.")
    return lines


SUBJECTS = (
    "my brother",
    "the old teacher",
    "a small dog",
    "our neighbour",
    "the train driver",
    "every child",
    "the quiet girl",
    "a tall man",
    "the chef",
    "her grandmother",
    "the pilot",
    "a young fox",
)
VERBS = (
    "found",
    "painted",
    "carried",
    "wanted",
    "remembered",
    "pushed",
    "watched",
    "borrowed",
    "fixed",
    "cooked",
    "described",
    "measured",
    "dropped",
    "followed",
    "thanked",
    "visited",
)
OBJECTS = (
    "a yellow umbrella",
    "the broken clock",
    "three green bottles",
    "a thick blanket",
    "the village church",
    "a jar of honey",
    "seven purple grapes",
    "the frozen river",
    "a leather wallet",
    "the shiny violin",
    "a huge pumpkin",
    "the wooden bridge",
    "two quick zebras",
    "a bowl of soup",
    "the judge's jacket",
)
PLACES = (
    "near the harbour",
    "before breakfast",
    "under the bridge",
    "in the garden",
    "after the storm",
    "during the match",
    "at the station",
    "behind the museum",
    "on Thursday",
    "without a word",
)


def template_lines(n: int, seed: int = 1) -> list[str]:
    """Simple sentences over a varied vocabulary (fricatives, plosives, vowels of English)."""
    rng = np.random.default_rng(seed)
    pick = lambda xs: xs[int(rng.integers(len(xs)))]
    forms = (
        "{s} {v} {o} {p}.",
        "Did {s} really say that {o} was {p}?",
        "{S} {v} {o}, and then {s2} {v2} it.",
        "Yesterday {s} {v} {o}.",
        "Why has {s} never {v} {o}?",
    )
    out = []
    for _ in range(n):
        s = pick(SUBJECTS)
        line = pick(forms).format(
            s=s,
            S=s.capitalize(),
            v=pick(VERBS),
            o=pick(OBJECTS),
            p=pick(PLACES),
            s2=pick(SUBJECTS),
            v2=pick(VERBS),
        )
        out.append(line[0].upper() + line[1:])
    return out


def held_out(line: str) -> bool:
    return zlib.crc32(line.encode()) % HELD_OUT_ONE_IN == 0


def split_lines() -> tuple[list[str], list[str]]:
    """(train, held-out), each without repeats, in a fixed order."""
    seen: dict[str, None] = dict.fromkeys(model_lines() + varied_lines())
    lines = list(seen)
    return [x for x in lines if not held_out(x)], [x for x in lines if held_out(x)]
