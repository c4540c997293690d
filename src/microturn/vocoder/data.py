"""The vocoder's corpus: joe speaking the train (or held-out) lines, cached as shards.

A shard holds `SHARD` lines (float16 samples at 16 kHz, their texts); a build that stops
resumes at the first missing shard. Generated data stays under runs/ and is never committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .joe import JoeVoice
from .lines import split_lines

SHARD = 32
RATES = (0.85, 0.92, 1.08, 1.18)  # length scales of the extra takes: slower and faster speech
EXTRA_ONE_IN = 3  # one train line in three is also spoken at another rate


@dataclass
class Utterance:
    text: str
    audio: np.ndarray  # float32, 16 kHz


def takes(split: str) -> list[tuple[str, float]]:
    """(line, length scale) for every take of a split; held-out lines are spoken once."""
    train, held = split_lines()
    if split == "eval":
        return [(x, 1.0) for x in held]
    extra = [(x, RATES[i % len(RATES)]) for i, x in enumerate(train) if i % EXTRA_ONE_IN == 0]
    return [(x, 1.0) for x in train] + extra


def build_corpus(root: str | Path, split: str, progress: bool = True) -> Path:
    """Synthesise the split's takes into root/split/shard_*.npz (resumable)."""
    out = Path(root) / split
    out.mkdir(parents=True, exist_ok=True)
    items = takes(split)
    shards = [items[i : i + SHARD] for i in range(0, len(items), SHARD)]
    bar = tqdm(total=len(items), desc=f"joe {split}", unit="line", disable=not progress)
    for i, shard in enumerate(shards):
        path = out / f"shard_{i:03d}.npz"
        if not path.exists():
            audio = [JoeVoice(length_scale=s).speak(t) for t, s in shard]
            tmp = path.with_suffix(".tmp.npz")
            np.savez(
                tmp,
                audio=np.concatenate(audio).astype(np.float16),
                lengths=np.array([len(a) for a in audio]),
                texts=json.dumps([t for t, _ in shard]),
            )
            tmp.rename(path)
        bar.update(len(shard))
    bar.close()
    (out / "done.json").write_text(json.dumps({"takes": len(items), "shards": len(shards)}))
    return out


def load_corpus(root: str | Path, split: str) -> list[Utterance]:
    path = Path(root) / split
    if not (path / "done.json").exists():
        build_corpus(root, split)
    out = []
    for shard in sorted(path.glob("shard_*.npz")):
        z = np.load(shard)
        texts = json.loads(str(z["texts"]))
        audio = z["audio"].astype(np.float32)
        starts = np.concatenate([[0], np.cumsum(z["lengths"])])
        out += [Utterance(t, audio[a:b]) for t, a, b in zip(texts, starts[:-1], starts[1:])]
    return out
