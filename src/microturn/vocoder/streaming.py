"""Per-session streaming voices, and one batched call for every session speaking in a turn.

`NeuralVoice` is one session's handle on the shared `Vocoder` (weights loaded once per
process). `vocode_turn` runs every session's turn of frames in one batched call per model;
a session that has been silent for the whole receptive field and stays silent is skipped
(its state is the silent fixed point, so skipping it is exact). Griffin-Lim voices
(`streams.audio.StreamingVocoder`) cannot batch and run one by one.

Which voice a session gets: `MICROTURN_VOCODER` = `vocoder` (default: the trained one; a
missing or broken weights file is a clear `CheckpointError`), `griffin-lim` (no weights),
or `auto` (the trained one if its weights load, else Griffin-Lim with a warning, for a
server that must keep talking). `MICROTURN_VOCODER_PATH` points at other weights.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import TurnLayout
from ..errors import CheckpointError, ConfigError
from ..streams.audio import SILENT_LOG_MEL, AudioFrontend, GriffinLim, StreamingVocoder
from .model import Vocoder, VocoderState
from .weights import load_vocoder

KINDS = ("vocoder", "griffin-lim", "auto")


class NeuralVoice:
    """One session's streaming state on a shared vocoder; `push` = one turn, alone."""

    def __init__(self, model: Vocoder) -> None:
        self.model = model
        self.state: VocoderState = model.initial_state()

    @property
    def lag_samples(self) -> int:
        return self.model.cfg.lag_hops * self.model.cfg.hop

    def push(self, log_mel: torch.Tensor) -> np.ndarray:
        return vocode_turn([self], [log_mel])[0]


@functools.lru_cache(maxsize=4)
def shared_vocoder(path: str | None = None) -> Vocoder:
    """One copy of the weights per process, whatever the number of sessions."""
    return load_vocoder(path)


def vocoder_kind(kind: str | None = None) -> str:
    kind = (kind or os.environ.get("MICROTURN_VOCODER") or "vocoder").lower()
    if kind not in KINDS:
        raise ConfigError(
            f"vocoder {kind!r}: expected one of {', '.join(KINDS)} "
            "(from --vocoder or MICROTURN_VOCODER)"
        )
    return kind


def make_voice(
    layout: TurnLayout, kind: str | None = None, path: str | Path | None = None
) -> NeuralVoice | StreamingVocoder:
    """A session's mel -> waveform streamer of the chosen kind (see the module docstring)."""
    kind = vocoder_kind(kind)
    path = path or os.environ.get("MICROTURN_VOCODER_PATH") or None
    griffin = lambda: StreamingVocoder(GriffinLim(AudioFrontend(layout)))
    if kind == "griffin-lim":
        return griffin()
    try:
        model = shared_vocoder(str(path) if path else None)
    except CheckpointError as e:
        if kind == "vocoder":
            raise
        warnings.warn(
            f"{e}; speaking through Griffin-Lim instead (MICROTURN_VOCODER=auto)", stacklevel=2
        )
        return griffin()
    if model.cfg.hop != layout.hop or model.cfg.mel != layout.mel_channels:
        raise CheckpointError(
            f"vocoder weights are for hop {model.cfg.hop}, {model.cfg.mel} mels; "
            f"the layout has hop {layout.hop}, {layout.mel_channels} mels"
        )
    return NeuralVoice(model)


def vocode_turn(voices: list, log_mels: list[torch.Tensor]) -> list[np.ndarray]:
    """One turn of frames [T, mel] per session -> its samples, one batched call per model.
    `voices` may mix NeuralVoice and Griffin-Lim streamers."""
    out: list[np.ndarray | None] = [None] * len(voices)
    groups: dict[int, list[int]] = {}
    for i, (v, mel) in enumerate(zip(voices, log_mels)):
        if not isinstance(v, NeuralVoice):
            out[i] = v.push(mel)
        elif v.state.silent >= v.model.cfg.receptive_frames and bool((mel <= SILENT_LOG_MEL).all()):
            v.state.silent += mel.shape[0]
            out[i] = np.zeros(mel.shape[0] * v.model.cfg.hop, np.float32)
        else:
            groups.setdefault(id(v.model), []).append(i)
    for idx in groups.values():
        model = voices[idx[0]].model
        sig, states = model.stream(
            torch.stack([log_mels[i] for i in idx]), [voices[i].state for i in idx]
        )
        wav = sig.numpy()
        for j, i in enumerate(idx):
            voices[i].state = states[j]
            out[i] = wav[j].astype(np.float32)
    return out  # type: ignore[return-value]
