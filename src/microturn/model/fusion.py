"""Encoder-free early fusion: every stream's slots become d_model vectors here.

dMel audio is a bag of per-(frame, channel, level) embeddings; video patches go through
an hMLP stem; text, control and background share one byte embedding; output audio frames
are projected linearly. Each token then gets its slot-type embedding and its turn's time
embedding, always added in the same order so training and streaming agree bitwise.

Byte history (`ModelConfig.byte_history`): each text slot the model reads (typed text,
background results) also carries the two bytes before it in its stream, and each slot it
writes text from (control, text out) the two bytes it last wrote. Copying a result or a
request is then one attention hop, "find where what I just wrote came next", instead of a
two-layer induction circuit the model had not found (docs/design.md, "Byte history").
With `copy_lookup` the writing slots also get the byte that followed those two bytes the
last time they occurred in what it read (`continuation`), one per read stream: the hop done
for it, exactly, so the model need only learn when to trust it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CONTROL_TOKENS, PATCH, ModelConfig
from ..streams.text import ByteTokenizer
from .linear import InvariantLinear
from .trunk import RMSNorm

PAD = ByteTokenizer.PAD
History = tuple[torch.Tensor, ...]  # (last, the one before[, what followed them]) ids; PAD: none
READ_TABLES = ("read_last", "read_before")
WRITE_TABLES = ("wrote_last", "wrote_before")
READ_STREAMS = ("user_text", "background")  # the text streams the model reads
LOOKUP_TABLES = tuple(f"follows_{n}" for n in READ_STREAMS)  # a continuation per read stream


def byte_history(tokens: torch.Tensor, inclusive: bool, depth: int = 2) -> History:
    """tokens [..., N] of one text stream -> the last `depth` non-PAD bytes before each slot (up
    to and including it when `inclusive`), latest first, each [..., N], PAD where the stream
    has none yet."""
    idx = torch.arange(tokens.shape[-1], device=tokens.device).expand_as(tokens)
    at = torch.where(tokens.ne(PAD), idx, -1).cummax(-1).values  # last non-PAD at or before
    before = torch.cat([torch.full_like(at[..., :1], -1), at[..., :-1]], dim=-1)
    picks = [at if inclusive else before]
    for _ in range(depth - 1):
        picks.append(before.gather(-1, picks[-1].clamp(min=0)).masked_fill(picks[-1] < 0, -1))
    return tuple(
        tokens.gather(-1, i.clamp(min=0)).masked_fill(i < 0, PAD) for i in picks
    )  # type: ignore[return-value]


def stream_history(
    tokens: torch.Tensor, inclusive: bool, carried: torch.Tensor | None = None, depth: int = 2
) -> tuple[History, torch.Tensor]:
    """tokens [B, L, S] of a stream over L turns, after `carried` [B, k] (the k >= `depth`
    bytes before them, oldest first; PADs when None) -> the `depth` bytes before each slot
    [B, L, S], latest first, and the new carried k bytes. Training passes whole sequences,
    the engine one turn at a time: the same function, so both see the same bytes."""
    b, turns, slots = tokens.shape
    if carried is None:
        carried = torch.full((b, depth), PAD, dtype=tokens.dtype, device=tokens.device)
    k = carried.shape[-1]
    flat = torch.cat([carried, tokens.reshape(b, turns * slots)], dim=-1)
    end = byte_history(flat, inclusive=True, depth=max(depth, k))
    hist = end[:depth] if inclusive else byte_history(flat, inclusive, depth)
    end = end[:k]
    return (
        tuple(h[:, k:].reshape(tokens.shape) for h in hist),
        torch.stack([e[:, -1] for e in reversed(end)], dim=-1),
    )


def continuation(
    read: torch.Tensor,
    read_history: History,
    read_turn: torch.Tensor,
    wrote: History,
    write_turn: torch.Tensor,
    window: int,
) -> torch.Tensor:
    """For each writing position, the byte that followed its last written bytes the last time
    they occurred in a read stream within `window` turns (PAD if they did not): the last
    three when both histories carry three and those occurred, else the last two.

    read [B, N] slots in arrival order, with their (exclusive) history and turn numbers [B, N];
    wrote: the (inclusive) history of the writing positions [B, M], at turns write_turn [B, M].
    Two bytes are an ambiguous key inside a line: "347 times 29 is 10,063." has "s " twice,
    and after "times " they pointed at "is 1" (docs/design.md, "Three-byte lookup keys").
    """
    age = write_turn[..., None] - read_turn[:, None]
    found = read.ne(PAD)[:, None] & (age >= 0) & (age < window)
    idx = torch.arange(read.shape[-1], device=read.device)
    keys = []  # slots matching the last two written bytes, then the last three
    for i, (r, w) in enumerate(zip(read_history, wrote)):
        found = found & (r[:, None] == w[..., None])
        keys += [found] if i else []
    at = torch.full(found.shape[:-1], -1, dtype=torch.long, device=read.device)
    for same in reversed(keys):  # the longest key that occurred
        at = torch.where(at < 0, torch.where(same, idx, -1).amax(-1), at)
    return read.gather(-1, at.clamp(min=0)).masked_fill(at < 0, PAD)


class DMelEmbedding(nn.Module):
    """[..., frames_per_token * mel] levels -> sum of one embedding per (position, level)."""

    def __init__(self, positions: int, levels: int, dim: int) -> None:
        super().__init__()
        self.levels = levels
        self.bag = nn.EmbeddingBag(positions * levels, dim, mode="sum")
        nn.init.normal_(self.bag.weight, std=0.02 / math.sqrt(positions) * 8)
        self.register_buffer("offsets", torch.arange(positions) * levels, persistent=False)

    def forward(self, levels: torch.Tensor) -> torch.Tensor:
        lead = levels.shape[:-1]
        idx = (levels.reshape(-1, levels.shape[-1]) + self.offsets).long()
        return self.bag(idx).reshape(*lead, -1)


class HMLPStem(nn.Module):
    """40x40 patch -> vector; stride = kernel (10 -> 2 -> 2), so patches never mix.

    Written as linear layers on reshaped pixels (equivalent to the strided convolutions),
    with a per-position RMSNorm: no BatchNorm, nothing pooled over the image.
    """

    def __init__(self, width: int, dim: int, invariant: bool, eps: float) -> None:
        super().__init__()
        q = width // 4
        self.proj1 = InvariantLinear(3 * 10 * 10, q, bias=True, invariant=invariant)
        self.norm1 = RMSNorm(q, eps)
        self.proj2 = InvariantLinear(4 * q, q, bias=True, invariant=invariant)
        self.norm2 = RMSNorm(q, eps)
        self.proj3 = InvariantLinear(4 * q, dim, bias=True, invariant=invariant)

    @staticmethod
    def _group2x2(x: torch.Tensor) -> torch.Tensor:
        """[..., 2g, 2g, c] -> [..., g, g, 4c]: each 2x2 block concatenated."""
        *lead, h, w, c = x.shape
        x = x.reshape(*lead, h // 2, 2, w // 2, 2, c).transpose(-4, -3)
        return x.reshape(*lead, h // 2, w // 2, 4 * c)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        lead = patches.shape[:-3]
        x = patches.reshape(-1, 3, 4, 10, 4, 10).permute(0, 2, 4, 1, 3, 5).reshape(-1, 4, 4, 300)
        x = F.gelu(self.norm1(self.proj1(x)))  # [n, 4, 4, q]
        x = F.gelu(self.norm2(self.proj2(self._group2x2(x))))  # [n, 2, 2, q]
        x = self.proj3(self._group2x2(x))  # [n, 1, 1, dim]
        return x.reshape(*lead, -1)


def time_features(turn: torch.Tensor, dim: int, turn_seconds: float) -> torch.Tensor:
    """Sinusoids of the turn's start time, periods from 0.4 s to about 3 hours."""
    half = dim // 2
    periods = 0.4 * (10_000.0 / 0.4) ** (torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
    angles = (turn.float() * turn_seconds)[..., None] * (2 * math.pi / periods.to(turn.device))
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TurnEmbedder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        lay, d, inv = cfg.layout, cfg.d_model, cfg.batch_invariant
        self.cfg = cfg
        self.dmel = DMelEmbedding(lay.audio_token_dim, lay.dmel_levels, d)
        self.video = HMLPStem(cfg.hmlp_width, d, inv, cfg.norm_eps)
        gh, gw = lay.video_height // PATCH, lay.video_width // PATCH
        self.patch_row = nn.Parameter(torch.randn(gh, d) * 0.02)
        self.patch_col = nn.Parameter(torch.randn(gw, d) * 0.02)
        self.text = nn.Embedding(cfg.vocab_size, d)
        self.control = nn.Embedding(len(CONTROL_TOKENS), d)
        self.audio_out = InvariantLinear(lay.audio_token_dim, d, invariant=inv)
        self.slot_type = nn.Parameter(torch.randn(lay.tokens_per_turn, d) * 0.02)
        self.time_token = nn.Parameter(torch.randn(d) * 0.02)
        self.time_gain = nn.Parameter(torch.full((d,), 0.1))
        self.empty = nn.ParameterDict({s: nn.Parameter(torch.randn(d) * 0.02)
                                       for s in ("audio_in", "video", "audio_out")})
        for emb in (self.text, self.control):
            nn.init.normal_(emb.weight, std=0.02)
        # zero at first, so a model trained without them starts from the same function
        self.sides = {
            "read": READ_TABLES if cfg.byte_history else (),
            "wrote": (WRITE_TABLES if cfg.byte_history else ())
            + (LOOKUP_TABLES if cfg.copy_lookup else ()),
        }
        names = self.sides["read"] + self.sides["wrote"]
        # built from zeros, drawing nothing: every other parameter inits as it did without them
        self.history = nn.ModuleDict(
            {n: nn.Embedding(cfg.vocab_size, d, _weight=torch.zeros(cfg.vocab_size, d))
             for n in names}
        )

    def _with_history(self, x: torch.Tensor, side: str, history: History | None) -> torch.Tensor:
        if history is None:
            return x
        for name, ids in zip(self.sides[side], history, strict=True):
            x = x + self.history[name](ids)
        return x

    def read_text(self, tokens: torch.Tensor, history: History | None) -> torch.Tensor:
        """A text stream the model reads (typed text, background) [..., n] -> [..., n, d]."""
        return self._with_history(self.text(tokens), "read", history)

    def time(self, turn: torch.Tensor) -> torch.Tensor:
        """The time embedding of turns [...] -> [..., d] (the engine computes it once a step)."""
        feats = time_features(turn, self.time_gain.shape[0], self.cfg.layout.turn_seconds)
        return feats.to(self.time_gain.dtype) * self.time_gain  # a bf16 engine's model: bf16 out

    def finish(self, content: torch.Tensor, slot0: int, time: torch.Tensor) -> torch.Tensor:
        """content [..., n, d] in slots slot0.. of a turn with time embedding `time` [..., d]."""
        return content + self.slot_type[slot0:slot0 + content.shape[-2]] + time[..., None, :]

    @staticmethod
    def _or_empty(x: torch.Tensor, present: torch.Tensor, empty: torch.Tensor) -> torch.Tensor:
        return torch.where(present[..., None, None], x, empty)

    def embed_in(
        self,
        turn: torch.Tensor,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        video: torch.Tensor,
        video_mask: torch.Tensor,
        user_text: torch.Tensor,
        background: torch.Tensor,
        user_text_history: History | None = None,
        background_history: History | None = None,
    ) -> torch.Tensor:
        """IN_k slots for turns of shape [...] -> [..., in_tokens, d]."""
        lead = turn.shape
        time = self.time_token.expand(*lead, 1, -1)
        a = self._or_empty(self.dmel(audio), audio_mask, self.empty["audio_in"])
        if video_mask.any():  # the stem only runs when some turn has a frame
            v = self.video(video)  # [..., V, d]
            v = v + (self.patch_row[:, None] + self.patch_col[None]).reshape(-1, v.shape[-1])
            v = self._or_empty(v, video_mask, self.empty["video"])
        else:
            v = self.empty["video"].expand(*video.shape[:-3], -1)
            if (
                torch.is_grad_enabled()
            ):  # every parameter gets a gradient: sharded (FSDP) ranks stay in step
                v = v + 0.0 * (
                    self.video(video.flatten(0, -5)[:1]).sum()
                    + self.patch_row.sum()
                    + self.patch_col.sum()
                )
        typed = self.read_text(user_text, user_text_history)
        content = torch.cat([time, a, v, typed, self.read_text(background, background_history)],
                            dim=-2)
        return self.finish(content, 0, self.time(turn))

    def out_content(
        self,
        stream: str,
        value: torch.Tensor,
        speak: torch.Tensor | None = None,
        history: History | None = None,
    ) -> torch.Tensor:
        """Content vectors of an OUT stream: control [...] -> [..., 1, d]; text [..., n] ->
        [..., n, d]; audio [..., n, token_dim] with speak [...] -> [..., n, d] (the empty vector
        when silent). `history`: the bytes last written, for control and text."""
        if stream == "control":
            return self._with_history(self.control(value), "wrote", history)[..., None, :]
        if stream == "text_out":
            return self._with_history(self.text(value), "wrote", history)
        return self._or_empty(self.audio_out(value), speak, self.empty["audio_out"])

    def embed_out(
        self,
        turn: torch.Tensor,
        control: torch.Tensor,
        text: torch.Tensor,
        audio: torch.Tensor,
        speak: torch.Tensor,
        text_history: History | None = None,
        control_history: History | None = None,
    ) -> torch.Tensor:
        """Every OUT_k slot (teacher forcing) -> [..., out_tokens, d]."""
        content = torch.cat(
            [
                self.out_content("control", control, history=control_history),
                self.out_content("text_out", text, history=text_history),
                self.out_content("audio_out", audio, speak),
            ],
            dim=-2,
        )
        return self.finish(content, self.cfg.layout.in_tokens, self.time(turn))

    def embed_out_slot(self, time: torch.Tensor, slot: int, content: torch.Tensor) -> torch.Tensor:
        """content [..., n, d] placed at OUT slots slot.. (the engine, a few slots at a time)."""
        return self.finish(content, self.cfg.layout.in_tokens + slot, time)
