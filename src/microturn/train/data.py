"""Training data: episodes rendered to micro-turn tensors with the inference stream code.

An episode's timeline goes through `streams.timeline.timeline_to_turns`, the same packer
(causal log-mel, dMel, patches, text queues) a live session uses. Each rendered episode is
cached as one safetensors file, so a second run (or a resumed one) renders nothing.
Output audio is cached as raw log-mel; the model's `MelNorm` normalises it at load time,
so the cache does not depend on statistics fitted later.

Real recordings load through the same path: a stereo WAV (user left, model right) and a
word-alignment JSON beside it become a `Timeline`.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from ..config import TrainConfig, TurnLayout
from ..errors import ConfigError, InputError
from ..model.checkpoint import atomic_save
from ..streams.audio import DMelCodec, MelNorm, read_wav
from ..streams.timeline import Timeline, timeline_to_turns
from ..streams.turns import Event, TurnBatch
from ..streams.video import frame_to_patches
from ..world.families import DRILL_GENERATORS, FAMILY_GENERATORS, REVISIONS, generate
from ..world.tts import EspeakTTS

CACHE_VERSION = "9"  # bump when the world or the stream code changes what every episode renders
# to; a change to some families' episodes raises their `world.families.REVISIONS` instead
SPEECH_GAP_S = 0.5  # real data: model words closer than this are one speech segment


def timeline_tensors(tl: Timeline, layout: TurnLayout, codec: DMelCodec) -> dict[str, torch.Tensor]:
    """One episode, compact: dMel levels as uint8, raw frames as uint8, log-mel as float16."""
    raw = MelNorm(layout.mel_channels, mean=0.0, std=1.0)
    b = timeline_to_turns(tl, layout, codec, raw)
    n = b.shape[1]
    frames = np.zeros((n, layout.video_height, layout.video_width, 3), np.uint8)
    for t, f in tl.frames:
        k = int(np.floor(round(t / layout.turn_seconds, 6)))
        if 0 <= k < n:
            frames[k] = f
    return {
        "audio_in": b.audio_in[0].to(torch.uint8),
        "audio_in_mask": b.audio_in_mask[0],
        "frames": torch.from_numpy(frames),
        "video_mask": b.video_mask[0],
        "user_text": b.user_text[0].to(torch.int16),
        "background": b.background[0].to(torch.int16),
        "control": b.control[0].to(torch.uint8),
        "text_out": b.text_out[0].to(torch.int16),
        "audio_out": b.audio_out[0].to(torch.float16),
        "heard": b.heard[0].to(torch.int16),
        "heard_early": b.heard_early[0].to(torch.int16),
    }


def collate(items: list[dict[str, torch.Tensor]], layout: TurnLayout, norm: MelNorm) -> TurnBatch:
    """Cached episodes (equal length) -> one normalised `TurnBatch`."""
    n = items[0]["control"].shape[0]
    if any(it["control"].shape[0] != n for it in items):
        raise InputError("episodes in one batch must have the same number of turns")

    def video(it: dict) -> torch.Tensor:
        out = torch.zeros(n, layout.video_slots, 3, 40, 40)
        for k in it["video_mask"].nonzero().flatten().tolist():
            out[k] = frame_to_patches(it["frames"][k].numpy(), layout)
        return out

    stack = lambda key, dtype: torch.stack([it[key] for it in items]).to(dtype)
    speak = stack("control", torch.long) == 1
    mel = stack("audio_out", torch.float32)
    shape = mel.shape
    mel = norm.normalize(
        mel.reshape(*shape[:3], layout.frames_per_token, layout.mel_channels)
    ).reshape(shape)
    return TurnBatch(
        turn_index=torch.arange(n).expand(len(items), n).clone(),
        audio_in=stack("audio_in", torch.long),
        audio_in_mask=stack("audio_in_mask", torch.bool),
        video=torch.stack([video(it) for it in items]),
        video_mask=stack("video_mask", torch.bool),
        user_text=stack("user_text", torch.long),
        background=stack("background", torch.long),
        control=stack("control", torch.long),
        text_out=stack("text_out", torch.long),
        audio_out=mel * speak[..., None, None],
        heard=stack("heard", torch.long) if all("heard" in it for it in items) else None,
        heard_early=(
            stack("heard_early", torch.long) if all("heard_early" in it for it in items) else None
        ),
    )


class PlainNorm:
    """The mel statistics as CPU tensors, for collating batches before they move to the device."""

    def __init__(self, norm) -> None:
        self.mean, self.std = norm.mean.detach().cpu().clone(), norm.std.detach().cpu().clone()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass
class WorldData:
    """Episodes 0..n-1 of a split, families interleaved, rendered once and cached."""

    layout: TurnLayout
    cfg: TrainConfig
    split: str = "train"

    def __post_init__(self) -> None:
        bad = [f for f in self.cfg.families if f not in FAMILY_GENERATORS]
        if bad:
            raise ConfigError(
                f"train.families: unknown {bad}; expected some of {', '.join(FAMILY_GENERATORS)}"
            )
        self.families = list(self.cfg.families or FAMILY_GENERATORS)
        bad = [f for f in self.cfg.family_weights if f not in self.families]
        if bad:
            raise ConfigError(f"train.family_weights: {bad} are not among the trained families")
        bad = [d for d in self.cfg.drills if d not in DRILL_GENERATORS]
        if bad:
            raise ConfigError(
                f"train.drills: unknown {bad}; expected some of {list(DRILL_GENERATORS)}"
            )
        if self.split == "train":  # drills are training-only: the held-out split is the families
            self.families += list(self.cfg.drills)
            weights = {**self.cfg.family_weights, **self.cfg.drills}
        else:
            weights = {}
        self.cycle = _cycle(self.families, weights)
        key = json.dumps(
            [CACHE_VERSION, self.layout.__dict__, self.cfg.episode_seconds, self.split],
            sort_keys=True,
        )
        self.dir = (
            Path(self.cfg.cache_dir)
            / f"world-{self.split}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
        )
        self.codec = DMelCodec(self.layout.dmel_levels)
        self._tts: EspeakTTS | None = None

    def family_of(self, i: int) -> tuple[str, int]:
        """Episode i -> (family, that family's episode number): families take turns in a
        fixed cycle, each as often as its weight, so any prefix of episodes keeps the mix."""
        c, r = divmod(i, len(self.cycle))
        family = self.cycle[r]
        return family, c * self.cycle.count(family) + self.cycle[:r].count(family)

    def path(self, i: int) -> Path:
        family, j = self.family_of(i)
        rev = f"-r{REVISIONS[family]}" if REVISIONS.get(family) else ""
        return self.dir / f"{family}{rev}-{j:05d}.safetensors"

    def render(self, i: int) -> dict[str, torch.Tensor]:
        family, j = self.family_of(i)
        self._tts = self._tts or EspeakTTS(rate=self.layout.sample_rate)
        ep = generate(family, j, self.split, self.cfg.episode_seconds, self._tts)
        tensors = timeline_tensors(ep.timeline, self.layout, self.codec)
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_save(tensors, self.path(i), {"family": family, "id": ep.scenario.id})
        return tensors

    def ensure(self, indices, progress: bool = True) -> None:
        """Render every missing episode among `indices`, in `render_workers` processes (each
        episode is independent and synthesis is one core's work; 0 means one per core)."""
        self.prune()
        missing = [i for i in indices if not self.path(i).exists()]
        workers = min(self.cfg.render_workers or os.cpu_count() or 1, len(missing))
        bar = tqdm(
            total=len(missing),
            desc=f"rendering {self.split} episodes",
            unit="ep",
            disable=not progress,
        )
        if workers <= 1:
            for i in missing:
                self.render(i)
                bar.update()
        else:
            with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
                for _ in pool.map(self._render_quietly, missing, chunksize=4):
                    bar.update()
        bar.close()

    def prune(self) -> list[Path]:
        """Delete the cached episodes of a family's earlier revisions (`REVISIONS`): nothing
        reads them again, and they add up (a 20,000-episode cache is ~70 GB; stale revisions
        once filled the disk mid-render). Returns what it deleted."""
        if not self.dir.exists():
            return []
        stale = [
            p
            for family, rev in REVISIONS.items()
            for p in self.dir.glob(f"{family}-*.safetensors")
            if not p.name.startswith(f"{family}-r{rev}-")
        ]
        for p in stale:
            p.unlink(missing_ok=True)
        if stale:
            print(f"removed {len(stale)} cached episodes of earlier revisions from {self.dir}")
        return stale

    def _render_quietly(self, i: int) -> None:
        self.render(i)  # in a worker: the tensors go to the cache, not back through a pipe

    def get(self, i: int) -> dict[str, torch.Tensor]:
        p = self.path(i)
        if p.exists():
            try:
                return load_file(str(p))
            except Exception:  # a damaged cache file is re-rendered, not trusted
                p.unlink(missing_ok=True)
        return self.render(i)


def _one_thread() -> None:
    torch.set_num_threads(1)  # a render worker's tensor work is small; the cores are the pool's


def _cycle(families: list[str], weights: dict) -> list[str]:
    """One period of the family schedule: each family weight/min(weight) times (rounded),
    spread out so a family's episodes are not bunched together."""
    low = min([weights.get(f, 1.0) for f in families])
    counts = {f: max(1, round(weights.get(f, 1.0) / low)) for f in families}
    slots = sorted((k / counts[f], j, f) for j, f in enumerate(families) for k in range(counts[f]))
    return [f for _, _, f in slots]


# ---- real recordings ------------------------------------------------------------------------
def load_recording(wav: str | Path, alignment: str | Path, layout: TurnLayout) -> Timeline:
    """A stereo WAV (user left, model right) and its word alignment as a `Timeline`.

    The JSON: {"user": [{"word": "hi", "start": 0.4, "end": 0.6}, ...], "model": [...],
    "typed": [{"t": 2.0, "text": "..."}] (optional)}. Times in seconds from the WAV's start.
    """
    audio = read_wav(wav, layout.sample_rate, mono=False)
    if audio.ndim != 2 or audio.shape[0] != 2:
        raise InputError(f"{wav}: expected a stereo WAV (user left, model right)")
    try:
        spec = json.loads(Path(alignment).read_text())
        user = [
            Event(float(w["start"]), "user_word", str(w["word"]), float(w["end"]))
            for w in spec.get("user", [])
        ]
        model = [
            Event(float(w["start"]), "model_word", str(w["word"]), float(w["end"]))
            for w in spec.get("model", [])
        ]
        typed = [Event(float(x["t"]), "user_text", str(x["text"])) for x in spec.get("typed", [])]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise InputError(
            f"{alignment}: not a word alignment ({e}); see microturn.train.data.load_recording"
        ) from e
    speech: list[Event] = []
    for w in sorted(model, key=lambda w: w.t):
        if speech and w.t - speech[-1].end <= SPEECH_GAP_S:
            speech[-1].end = max(speech[-1].end, w.end)
        else:
            speech.append(Event(w.t, "model_speech", "", w.end))
    duration = audio.shape[1] / layout.sample_rate
    return Timeline(
        duration,
        sorted(user + model + typed + speech, key=lambda e: (e.t, e.kind)),
        user_audio=audio[0],
        model_audio=audio[1],
    )


def crop(tl: Timeline, start: float, seconds: float, rate: int) -> Timeline:
    """The window [start, start + seconds) of a timeline, re-clocked to start at 0."""
    a, b = int(start * rate), int((start + seconds) * rate)
    events = [
        Event(
            round(e.t - start, 6),
            e.kind,
            e.text,
            None if e.end is None else round(min(e.end, start + seconds) - start, 6),
        )
        for e in tl.events
        if start <= e.t < start + seconds
    ]
    cut = lambda x: None if x is None else np.pad(x[a:b], (0, max(0, b - a - len(x[a:b]))))
    return Timeline(
        seconds,
        events,
        cut(tl.user_audio),
        cut(tl.model_audio),
        [(t - start, f) for t, f in tl.frames if start <= t < start + seconds],
    )


@dataclass
class RecordingData:
    """Real conversations cut into episode-length windows, cached like the world's."""

    layout: TurnLayout
    cfg: TrainConfig

    def __post_init__(self) -> None:
        root = Path(self.cfg.data)
        pairs = sorted(
            (w, w.with_suffix(".json"))
            for w in root.glob("*.wav")
            if w.with_suffix(".json").exists()
        )
        if not pairs:
            raise ConfigError(
                f"train.data = {self.cfg.data!r}: no WAV files with an alignment JSON beside them"
            )
        codec, sec, rate = (
            DMelCodec(self.layout.dmel_levels),
            self.cfg.episode_seconds,
            self.layout.sample_rate,
        )
        self.items: list[dict[str, torch.Tensor]] = []
        for wav, js in pairs:
            tl = load_recording(wav, js, self.layout)
            for start in np.arange(0.0, max(tl.duration - sec / 2, 0.0) + 1e-9, sec):
                self.items.append(
                    timeline_tensors(crop(tl, float(start), sec, rate), self.layout, codec)
                )

    def get(self, i: int) -> dict[str, torch.Tensor]:
        return self.items[i % len(self.items)]
