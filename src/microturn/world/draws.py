"""How a family draws an episode's content, and keeps eval instructions out of training.

Held-out combinations: the instructions (what to say, when, on which cue, which numbers,
in which phrasing) are drawn as combinations, and one combination in four belongs to the
eval split only (`_draw`); an instruction that is only a phrasing has an eval-only
phrasing (`_form`). So no eval instruction is heard verbatim in training. Facts
(the question bank) are shared: a small model cannot answer what it never learned.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from ..errors import ConfigError
from .episode import EpisodeBuilder

SPLITS = {"train": 1, "eval": 2}
HELD_OUT_ONE_IN = 4


def _held_out(family: str, combo) -> bool:
    return zlib.crc32(repr((family, combo)).encode()) % HELD_OUT_ONE_IN == 0


def _draw(b: EpisodeBuilder, draw: Callable[[], tuple]) -> tuple:
    """A combination from `draw()` that belongs to this episode's split: eval episodes use
    only held-out combinations, training episodes never do."""
    want = b.split == "eval"
    for _ in range(500):
        combo = draw()
        if _held_out(b.family, combo) == want:
            return combo
    raise ConfigError(f"{b.family}: no {b.split} combination among 500 draws")


def _form(b: EpisodeBuilder, forms: tuple[str, ...]) -> str:
    """An instruction that is only a phrasing: its last phrasing is the eval split's alone."""
    return forms[-1] if b.split == "eval" else _pick(b, forms[:-1])


def _pick(b: EpisodeBuilder, items):
    return items[int(b.rng.integers(len(items)))]
