"""A live conversation: its KV slot, clock, sampler, and stream state on both sides."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field, replace

import torch

from ..config import EngineConfig, TurnLayout
from ..model.fusion import PAD, READ_STREAMS
from ..streams.audio import DMelCodec, MelNorm
from ..streams.turns import TurnPacker, TurnUnpacker

TEXT_STREAMS = (*READ_STREAMS, "text_out")


def no_history() -> dict[str, torch.Tensor]:
    """Each text stream's last three bytes (oldest first), PAD before any: model.fusion (the
    embeddings read two, a three-byte copy lookup three)."""
    return {n: torch.full((3,), PAD, dtype=torch.long) for n in TEXT_STREAMS}


@dataclass
class SamplerSettings:
    temperature: float = 0.8  # the control (when to speak); 0: greedy
    top_k: int = 40
    flow_noise: float = 0.8
    flow_steps: int | None = None  # None: the model config's
    seed: int = 0
    text_temperature: float = 0.8  # the words the model writes (and so speaks); 0: greedy

    @staticmethod
    def from_engine(cfg: EngineConfig, seed: int = 0) -> "SamplerSettings":
        return SamplerSettings(
            cfg.temperature, cfg.top_k, cfg.flow_noise, None, seed, cfg.text_temperature
        )

    def for_text(self) -> "SamplerSettings":
        """The settings the text slots are drawn with."""
        return replace(self, temperature=self.text_temperature)


@dataclass
class Session:
    """Owns one KV slot. `turn` counts micro-turns stepped so far (its clock)."""

    slot: int
    sampler: SamplerSettings
    packer: TurnPacker
    unpacker: TurnUnpacker
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    turn: int = 0
    deferred: torch.Tensor | None = (
        None  # [audio_slots, d]: last turn's audio slots, appended with the next IN
    )
    last_frame: torch.Tensor | None = None  # the last audio frame it spoke (zeros after silence)
    rng: torch.Generator = field(default_factory=torch.Generator)
    history: dict[str, torch.Tensor] = field(default_factory=no_history)  # byte history carried
    # copy lookup: per read stream, the window's turns of [slots, (byte, last, before, turn)]
    reads: dict[str, deque] = field(default_factory=dict)
    heard_last: int = PAD  # the listening transcript's last byte: its next slot's feedback
    closed: bool = False

    def __post_init__(self) -> None:
        self.rng.manual_seed(self.sampler.seed)

    @staticmethod
    def create(
        slot: int,
        layout: TurnLayout,
        codec: DMelCodec,
        norm: MelNorm,
        sampler: SamplerSettings,
        vocoder: bool = True,
        session_id: str | None = None,
    ) -> "Session":
        s = Session(
            slot=slot,
            sampler=sampler,
            packer=TurnPacker(layout, codec),
            unpacker=TurnUnpacker(layout, norm, vocoder=vocoder),
            last_frame=torch.zeros(layout.audio_token_dim),
        )
        if session_id:
            s.id = session_id
        return s

    def push_background(self, text: str) -> None:
        """A background result, entered a few tokens a turn into the background slots."""
        self.packer.background.put(text)

    def push_text(self, text: str) -> None:
        """Typed user text, entered a few bytes a turn into the user-text slots."""
        self.packer.user_text.put(text)
