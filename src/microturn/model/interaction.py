"""The interaction model: fusion -> trunk -> heads over the micro-turn sequence.

`forward` is the teacher-forced training pass over [IN_0][OUT_0][IN_1][OUT_1]...; it
returns one loss per output stream. The engine drives the same modules one append at a
time (`embed`, `trunk.step`, the heads), and the parity tests hold the two to bitwise
equality.

Inside OUT_k the hidden state at the previous position predicts each slot: the last IN_k
token predicts the control slot, the control slot predicts text 0, and so on to the last
text slot. Its state then conditions the flow head for all of the turn's audio slots,
which chain inside the head: slot i's condition adds the frame of slot i-1 (the previous
turn's last frame for slot 0) and a slot embedding. The audio slots are still trunk
inputs, so the model hears its own voice from the next turn on (see docs/design.md).

The listening transcript is read off the IN side: each audio-in slot's state predicts one
byte of what the user has said so far (`transcript_head`), so the words heard in turn k
cost no extra trunk appends and are written as they are heard (docs/design.md). With
`transcript_feedback` each slot also sees the byte the slot before it wrote, so a slot
knows its place in the word it is writing instead of counting slots since the word ended.

Text-like targets are mostly PAD ("nothing now"). In their losses a PAD slot counts
`pad_weight` of a real token, so the few tokens that carry the words are not drowned by
the many that say nothing. Of the words, the byte that starts writing after a quiet turn
(`text_onsets`) is where the model chooses *what* to say; the bytes after it follow from
the line (stage 6, held-out, teacher-forced: 97% of those bytes right, 73% of the
onsets); the training curves score the onsets apart (`train.scores`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CONTROL_TOKENS, ModelConfig
from ..errors import InputError
from ..streams.audio import DMelCodec, MelNorm
from ..streams.text import ByteTokenizer
from ..streams.turns import TurnBatch
from .alignment import aligned_transcript_loss
from .fusion import READ_STREAMS, History, TurnEmbedder, continuation, stream_history
from .heads import FlowHead
from .linear import InvariantLinear
from .moe import MoEFeedForward
from .trunk import Trunk

MOE_AUX_WEIGHT = 0.01
PAD = ByteTokenizer.PAD


@dataclass
class Predictions:
    control_logits: torch.Tensor  # [B, L, controls]
    text_logits: torch.Tensor  # [B, L, text_out_slots, vocab]
    audio_cond: torch.Tensor  # [B, L, audio_slots, d_model]: flow-head conditions
    transcript_logits: torch.Tensor | None = None  # [B, L, audio_slots, vocab]


class InteractionModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        lay, d, inv = cfg.layout, cfg.d_model, cfg.batch_invariant
        self.embed = TurnEmbedder(cfg)
        self.trunk = Trunk(cfg)
        self.control_head = InvariantLinear(d, len(CONTROL_TOKENS), invariant=inv)
        self.text_head = InvariantLinear(d, cfg.vocab_size, invariant=inv)
        self.flow = FlowHead(lay.audio_token_dim, d, cfg.flow_width, cfg.flow_depth)
        self.prev_frame = InvariantLinear(lay.audio_token_dim, d, invariant=inv)
        self.audio_slot = nn.Parameter(torch.randn(lay.audio_slots, d) * 0.02)
        self.transcript_head = (
            InvariantLinear(d, cfg.vocab_size, invariant=inv) if cfg.transcript_head else None
        )
        self.heard_before = (  # zero at first: a model without it starts as its function
            nn.Embedding(cfg.vocab_size, d) if cfg.transcript_feedback else None
        )
        self.codec = DMelCodec(lay.dmel_levels)
        self.mel_norm = MelNorm(lay.mel_channels)
        self._init_weights()

    def _init_weights(self) -> None:
        for name, p in self.trunk.named_parameters():
            if p.dim() == 2:
                std = (
                    0.02 / (2 * self.cfg.n_layers) ** 0.5
                    if name.endswith(("out.weight", "down.weight"))
                    else 0.02
                )
                nn.init.normal_(p, std=std)
        for head in (self.control_head, self.text_head, self.transcript_head):
            if head is not None:
                nn.init.normal_(head.weight, std=0.02)
        if self.heard_before is not None:
            nn.init.zeros_(self.heard_before.weight)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- training ---------------------------------------------------------------------
    def histories(self, batch: TurnBatch) -> dict[str, History | None]:
        """The byte history of every text-like slot, and with `copy_lookup` each writing slot's
        continuations (model.fusion); all None when off."""
        if not self.cfg.byte_history:
            return dict.fromkeys(("user_text", "background", "text_out", "control"))
        lookup = self.cfg.copy_lookup
        d = self.cfg.lookup_bytes if lookup else 2  # the embeddings read two; the lookup d
        keys = {n: stream_history(getattr(batch, n), False, depth=d)[0] for n in READ_STREAMS}
        before_text, _ = stream_history(batch.text_out, False, depth=d)  # what control sees
        text = stream_history(batch.text_out, True, depth=d)[0]
        control = tuple(b[..., 0] for b in before_text)
        read = {n: k[:2] for n, k in keys.items()}
        if not lookup:
            return {**read, "text_out": text, "control": control}
        # a turn's writing positions: its control slot, then its text
        wrote = [torch.cat([c[..., None], t], dim=-1) for c, t in zip(control, text)]
        follows = [self._continuations(batch, n, keys[n], wrote) for n in READ_STREAMS]
        return {
            **read,
            "text_out": text[:2] + tuple(f[..., 1:] for f in follows),
            "control": control[:2] + tuple(f[..., 0] for f in follows),
        }

    def _continuations(
        self, batch: TurnBatch, stream: str, read: History, wrote: list[torch.Tensor]
    ) -> torch.Tensor:
        """fusion.continuation over whole sequences: [B, L, writing positions]."""
        tokens = getattr(batch, stream)
        b, turns, m = wrote[0].shape
        turn = lambda n: batch.turn_index[..., None].expand(b, turns, n).reshape(b, -1)
        flat = lambda x: x.reshape(b, -1)
        return continuation(
            flat(tokens),
            tuple(flat(h) for h in read),
            turn(tokens.shape[-1]),
            tuple(flat(w) for w in wrote),
            turn(m),
            self.cfg.window_turns,
        ).view(b, turns, m)

    def hidden(self, batch: TurnBatch) -> torch.Tensor:
        """Trunk output for every token, [B, L, tokens_per_turn, d]."""
        hist = self.histories(batch)
        x_in = self.embed.embed_in(
            batch.turn_index,
            batch.audio_in,
            batch.audio_in_mask,
            batch.video,
            batch.video_mask,
            batch.user_text,
            batch.background,
            hist["user_text"],
            hist["background"],
        )
        x_out = self.embed.embed_out(
            batch.turn_index, batch.control, batch.text_out, batch.audio_out,
            batch.audio_out_mask, hist["text_out"], hist["control"],
        )
        x = torch.cat([x_in, x_out], dim=-2)
        b, turns, tpt, d = x.shape
        if batch.turn_index[:, 0].ne(0).any():
            raise ValueError("training sequences must start at turn 0 (the attention sink)")
        return self.trunk(x.reshape(b, turns * tpt, d)).view(b, turns, tpt, d)

    def flow_condition(self, h: torch.Tensor, prev: torch.Tensor, first: int = 0) -> torch.Tensor:
        """h [..., d] (state at the last text slot), prev [..., n, token_dim] (the frame before
        each of audio slots first .. first + n - 1) -> [..., n, d]."""
        return (
            h[..., None, :]
            + self.prev_frame(prev)
            + self.audio_slot[first : first + prev.shape[-2]]
        )

    @staticmethod
    def previous_frames(batch: TurnBatch) -> torch.Tensor:
        """[B, L, A, D]: for slot i the frame of slot i-1, for slot 0 the previous turn's last
        frame; zeros where the turn before was silent."""
        frames = batch.audio_out * batch.audio_out_mask[..., None, None]
        last = torch.cat([torch.zeros_like(frames[:, :1, -1]), frames[:, :-1, -1]], dim=1)
        return torch.cat([last[:, :, None], frames[:, :, :-1]], dim=2)

    def predict(
        self, h: torch.Tensor, batch: TurnBatch, own_transcript: bool = False
    ) -> Predictions:
        """Every head's output. The transcript's feedback is the target (`batch.heard`, teacher
        forcing) unless `own_transcript` or there is none: then its own greedy bytes, as live."""
        lay = self.cfg.layout
        n_in, n_text = lay.in_tokens, lay.text_out_slots
        return Predictions(
            control_logits=self.control_head(h[..., n_in - 1, :]),
            text_logits=self.text_head(h[..., n_in : n_in + n_text, :]),
            audio_cond=self.flow_condition(h[..., n_in + n_text, :], self.previous_frames(batch)),
            transcript_logits=self.transcript(
                h[..., lay.offset("audio_in") :, :][..., : lay.audio_slots, :],
                heard=None if own_transcript else batch.heard,
            ),
        )

    def transcript(
        self,
        h_audio_in: torch.Tensor,
        heard: torch.Tensor | None = None,
        last: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """[B, (L,) audio_slots, d] states of the audio-in slots -> transcript logits (or None).

        With feedback each slot adds an embedding of the byte written one slot before it (the
        turn's last slot for the next turn's first): the target bytes `heard` [B, L, A] when
        given (teacher forcing), else its own greedy bytes slot by slot, from `last` [B] (PAD
        at a session's start; the engine carries it from turn to turn)."""
        if self.transcript_head is None:
            return None
        if self.heard_before is None:
            return self.transcript_head(h_audio_in)
        if heard is not None:
            flat = heard.flatten(1)
            before = torch.cat([torch.full_like(flat[:, :1], PAD), flat[:, :-1]], 1)
            return self.transcript_head(h_audio_in + self.heard_before(before.view_as(heard)))
        slots = h_audio_in.flatten(1, -2)  # [B, S, d], slots in time order
        prev = last if last is not None else torch.full(
            slots.shape[:1], PAD, dtype=torch.long, device=slots.device
        )
        out = []
        for s in range(slots.shape[1]):
            out.append(self.transcript_head(slots[:, s] + self.heard_before(prev)))
            prev = out[-1].argmax(-1)
        return torch.stack(out, 1).view(*h_audio_in.shape[:-1], -1)

    def forward(
        self,
        batch: TurnBatch,
        noise: tuple[torch.Tensor, torch.Tensor] | None = None,
        audio_count: float | None = None,
        pad_weight: float = 1.0,
        weights: dict[str, float] | None = None,
        own_voice: torch.Tensor | None = None,
        transcript_window: int = 0,
        own_text: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Losses per stream. `noise` = (t [B, L, A, draws], eps [B, L, A, draws, D]) fixes the
        flow head's draws; `audio_count` is the speaking-slot count the audio loss averages
        over (default: this batch's), so shards of one batch add up to the whole. `weights`
        scale each stream's share of the total (1 when absent). `own_voice` [B, L, A, D] replaces
        the frames the trunk hears of its own voice (the targets stay `batch.audio_out`), and
        `own_text` [B, L, text_out_slots] the bytes it reads back of its own words (the targets
        stay `batch.text_out`). `transcript_window` > 0 scores the transcript with the aligned
        loss (`alignment`)."""
        own = {"audio_out": own_voice, "text_out": own_text}
        inputs = dataclasses.replace(batch, **{k: v for k, v in own.items() if v is not None})
        pred = self.predict(self.hidden(inputs), batch)
        losses = {
            "control": F.cross_entropy(
                pred.control_logits.flatten(0, -2).float(), batch.control.flatten()
            ),
            "text": token_loss(pred.text_logits, batch.text_out, pad_weight),
        }
        if pred.transcript_logits is not None and batch.heard is not None:
            if transcript_window:
                if batch.heard_early is None:
                    raise InputError(
                        "train.transcript_window needs each heard byte's window "
                        "(TurnBatch.heard_early, from streams.timeline.transcript_schedule)"
                    )
                losses["transcript"] = aligned_transcript_loss(
                    pred.transcript_logits, batch.heard, batch.heard_early,
                    batch.audio_in_mask, transcript_window,
                )
            else:
                heard = batch.heard.masked_fill(~batch.audio_in_mask[..., None], -100)
                losses["transcript"] = token_loss(pred.transcript_logits, heard, pad_weight)
        speak = batch.audio_out_mask
        if speak.any():
            cond = pred.audio_cond[speak].flatten(0, -2)
            target = batch.audio_out[speak].flatten(0, -2)
            t, eps = (
                (None, None)
                if noise is None
                else (noise[0][speak].flatten(0, -2), noise[1][speak].flatten(0, -3))
            )
            losses["audio"] = self.flow.loss(target, cond, self.cfg.flow_draws, t, eps, audio_count)
        else:  # no speech in this batch: a zero-weight pass still gives every parameter a gradient
            cond = pred.audio_cond[:1, :1, 0].flatten(0, 1)
            target = torch.zeros(1, self.cfg.layout.audio_token_dim, device=cond.device)
            losses["audio"] = 0.0 * self.flow.loss(target, cond, 1)
        weights = weights or {}
        total = sum(weights.get(k, 1.0) * v for k, v in losses.items())
        if self.cfg.moe_experts:
            aux = sum(
                b.ffn.aux_loss for b in self.trunk.blocks if isinstance(b.ffn, MoEFeedForward)
            )
            losses["moe_aux"] = aux
            total = total + MOE_AUX_WEIGHT * aux
        losses["loss"] = total
        return losses


def token_loss(logits: torch.Tensor, target: torch.Tensor, pad_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy over token slots, a PAD slot counting `pad_weight` of a real token
    (targets of -100 are ignored). At 1 it is the plain mean over every slot."""
    ce = F.cross_entropy(
        logits.flatten(0, -2).float(), target.flatten(), ignore_index=-100, reduction="none"
    )
    t = target.flatten()
    w = torch.where(t == PAD, pad_weight, 1.0) * t.ne(-100)
    return (ce * w).sum() / w.sum().clamp(min=1e-6)


def text_onsets(text: torch.Tensor) -> torch.Tensor:
    """[B, L, T] True at the first token the model writes after a turn with no text: a line's
    first byte, the next word's after a gap, a delegation's start. Here it chooses what to
    say; within a word the bytes follow."""
    real = text.ne(PAD)
    quiet_before = torch.ones_like(real[..., 0])
    quiet_before[:, 1:] = ~real[:, :-1].any(-1)
    return real & real.cumsum(-1).eq(1) & quiet_before[..., None]
