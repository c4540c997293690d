"""One micro-turn as slot tensors, and the stateful packers on each side of the model.

`TurnPacker` turns what arrived during turn k (audio, a frame, typed text, background
results) into a `TurnInput`; `TurnUnpacker` turns the model's `TurnOutput` into events
(words, delegations, speech on/off) and waveform. Training data and live sessions go
through these same two classes, so both see identical slots.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import CONTROL_TOKENS, TurnLayout
from ..errors import InputError
from .audio import LOG_FLOOR, AudioFrontend, DMelCodec, MelNorm, StreamingLogMel
from .text import ByteTokenizer
from .video import frame_to_patches

SILENT, SPEAK = (CONTROL_TOKENS.index(n) for n in ("silent", "speak"))
TOKENIZER = ByteTokenizer()


@dataclass
class TurnInput:
    """IN_k of one session. None means the stream had nothing this turn (learned empty)."""

    audio: torch.Tensor | None  # [audio_slots, frames_per_token * mel] dMel levels (long)
    video: torch.Tensor | None  # [video_slots, 3, 40, 40]
    user_text: list[int]  # exactly user_text_slots ids, PAD-filled
    background: list[int]  # exactly background_slots ids


@dataclass
class TurnOutput:
    """OUT_k of one session, played during turn k+1.

    Handed to `Engine.step` as `forced`, it replaces sampling; a field left None there
    (control or text) is still sampled.
    """

    control: int | None
    text: list[int] | None  # exactly text_out_slots ids
    audio: torch.Tensor | None  # [audio_slots, token_dim] normalised mel; None when silent
    heard: list[int] | None = None  # the listening transcript: one byte (or PAD) per audio-in slot


@dataclass
class TurnBatch:
    """A batch of turn sequences, every stream a fixed-shape tensor [B, L, slots, ...]."""

    turn_index: torch.Tensor  # [B, L] long: absolute turn number
    audio_in: torch.Tensor  # [B, L, A, D] long
    audio_in_mask: torch.Tensor  # [B, L] bool
    video: torch.Tensor  # [B, L, V, 3, 40, 40]
    video_mask: torch.Tensor  # [B, L] bool
    user_text: torch.Tensor  # [B, L, Tu] long
    background: torch.Tensor  # [B, L, Bg] long
    control: torch.Tensor  # [B, L] long
    text_out: torch.Tensor  # [B, L, To] long
    audio_out: torch.Tensor  # [B, L, A, D] float (normalised mel)
    heard: torch.Tensor | None = None  # [B, L, A] long: transcript targets at the audio-in slots
    heard_early: torch.Tensor | None = None  # [B, L, A] long: slots before its own a byte may come

    @property
    def audio_out_mask(self) -> torch.Tensor:
        return self.control == SPEAK

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.turn_index.shape)  # type: ignore[return-value]

    @staticmethod
    def stack(inputs: list[TurnInput], outputs: list[TurnOutput], layout: TurnLayout,
              first_turn: int = 0) -> "TurnBatch":
        """One sequence (B = 1) from per-turn inputs and outputs."""
        a, d, v = layout.audio_slots, layout.audio_token_dim, layout.video_slots
        zeros_a = torch.zeros(a, d, dtype=torch.long)
        zeros_v = torch.zeros(v, 3, 40, 40)
        return TurnBatch(
            turn_index=torch.arange(first_turn, first_turn + len(inputs))[None],
            audio_in=torch.stack([i.audio if i.audio is not None else zeros_a for i in inputs])[
                None
            ],
            audio_in_mask=torch.tensor([i.audio is not None for i in inputs])[None],
            video=torch.stack([i.video if i.video is not None else zeros_v for i in inputs])[None],
            video_mask=torch.tensor([i.video is not None for i in inputs])[None],
            user_text=torch.tensor([i.user_text for i in inputs])[None],
            background=torch.tensor([i.background for i in inputs])[None],
            control=torch.tensor([o.control for o in outputs])[None],
            text_out=torch.tensor([o.text for o in outputs])[None],
            audio_out=torch.stack(
                [o.audio if o.audio is not None else torch.zeros(a, d) for o in outputs]
            )[None],
        )

    def turn(self, b: int, k: int) -> tuple[TurnInput, TurnOutput]:
        """Slice one turn back out (used by the parity tests and the offline runner)."""
        inp = TurnInput(
            audio=self.audio_in[b, k] if self.audio_in_mask[b, k] else None,
            video=self.video[b, k] if self.video_mask[b, k] else None,
            user_text=self.user_text[b, k].tolist(),
            background=self.background[b, k].tolist(),
        )
        out = TurnOutput(
            control=int(self.control[b, k]),
            text=self.text_out[b, k].tolist(),
            audio=self.audio_out[b, k] if self.control[b, k] == SPEAK else None,
        )
        return inp, out


class TextQueue:
    """Messages waiting for text slots: a few bytes a turn, each message closed by SEP."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.pending: deque[int] = deque()

    def put(self, text: str) -> None:
        if not text:
            raise InputError("empty text message: expected at least one character")
        self.pending.extend(TOKENIZER.encode(text))
        self.pending.append(TOKENIZER.SEP)

    def put_tokens(self, ids: list[int]) -> None:
        self.pending.extend(ids)

    def take(self) -> list[int]:
        out = [self.pending.popleft() for _ in range(min(self.slots, len(self.pending)))]
        return out + [TOKENIZER.PAD] * (self.slots - len(out))


def audio_tokens(log_mel: torch.Tensor, layout: TurnLayout) -> torch.Tensor:
    """[frames_per_turn, mel] -> [audio_slots, frames_per_token * mel], frames stacked in order."""
    return log_mel.reshape(layout.audio_slots, layout.audio_token_dim)


class TurnPacker:
    """Raw media of one session -> one `TurnInput` per turn."""

    def __init__(self, layout: TurnLayout, codec: DMelCodec) -> None:
        self.layout, self.codec = layout, codec
        self.log_mel = StreamingLogMel(AudioFrontend(layout))
        self.user_text = TextQueue(layout.user_text_slots)
        self.background = TextQueue(layout.background_slots)

    def pack(self, audio: np.ndarray | None = None, frame: np.ndarray | None = None) -> TurnInput:
        """Audio: exactly one turn of samples at the layout rate, or None (no audio stream)."""
        dmel = None
        if audio is not None:
            audio = np.asarray(audio, dtype=np.float32)
            if audio.ndim != 1 or len(audio) != self.layout.turn_samples:
                raise InputError(
                    f"audio chunk of shape {audio.shape}: "
                    f"expected {self.layout.turn_samples} mono samples "
                    f"({self.layout.turn_ms} ms at {self.layout.sample_rate} Hz)"
                )
            dmel = audio_tokens(self.codec.quantize(self.log_mel.push(audio)), self.layout)
        video = frame_to_patches(frame, self.layout) if frame is not None else None
        return TurnInput(
            audio=dmel,
            video=video,
            user_text=self.user_text.take(),
            background=self.background.take(),
        )


@dataclass
class Event:
    """Something with a time on the conversation's clock (seconds)."""

    t: float
    kind: str  # user_word | user_text | result | model_word | delegation | model_speech
    text: str = ""
    end: float | None = None


@dataclass
class _Pending:
    start: int | None = None
    ids: list[int] = field(default_factory=list)


class TurnUnpacker:
    """`TurnOutput`s of one session -> events and waveform, with times as a listener hears them.

    OUT_k is played during turn k+1, so its events are stamped (k + 1) * turn_seconds.
    """

    def __init__(
        self, layout: TurnLayout, norm: MelNorm | None = None, vocoder: bool | str = True
    ) -> None:
        """`vocoder`: True for the configured voice (MICROTURN_VOCODER, default the trained
        vocoder), a kind by name ("vocoder", "griffin-lim", "auto"), or False for no audio."""
        self.layout, self.norm = layout, norm
        self.word = _Pending()
        self.heard = _Pending()  # the listening transcript's word in progress
        self.request: _Pending | None = None
        self.speech_start: int | None = None
        self.vocoder = None
        if vocoder and norm is not None:
            from ..vocoder.streaming import make_voice  # lazily: the vocoder imports streams/

            self.vocoder = make_voice(layout, vocoder if isinstance(vocoder, str) else None)
        self._wavs: list[np.ndarray] = []

    def _t(self, k: int) -> float:
        return round((k + 1) * self.layout.turn_seconds, 6)

    def log_mel(self, out: TurnOutput) -> torch.Tensor:
        """The turn's frames for the vocoder: drawn ones when speaking, the floor otherwise."""
        frames = self.layout.frames_per_turn
        if out.audio is not None and out.control == SPEAK and self.norm is not None:
            drawn = out.audio.reshape(frames, self.layout.mel_channels).float()
            return self.norm.denormalize(drawn)
        return torch.full((frames, self.layout.mel_channels), float(np.log10(LOG_FLOOR)))

    def unpack(
        self, k: int, out: TurnOutput, wav: np.ndarray | None = None
    ) -> tuple[list[Event], np.ndarray | None]:
        """Events of OUT_k and its samples; `wav` is them when `vocode_outputs` already ran
        this session in a batch with others."""
        events: list[Event] = []
        if out.control == SPEAK and self.speech_start is None:
            self.speech_start = k
        elif out.control != SPEAK and self.speech_start is not None:
            events.append(Event(self._t(self.speech_start), "model_speech", end=self._t(k)))
            self.speech_start = None
        for tok in out.text:
            events.extend(self._text_token(k, tok))
        for tok in out.heard or ():
            events.extend(self._heard_token(k, tok))
        if self.vocoder is not None:
            if wav is None:
                wav = self.vocoder.push(self.log_mel(out))
            self._wavs.append(wav)
        return events, wav

    def waveform(self, n_turns: int) -> np.ndarray | None:
        """The model's audio so far on the conversation clock: OUT_0 plays during turn 1, and
        the vocoder adds its fixed lag."""
        if self.vocoder is None:
            return None
        lead = np.zeros(self.layout.turn_samples + self.vocoder.lag_samples, dtype=np.float32)
        return np.concatenate([lead] + self._wavs)[: n_turns * self.layout.turn_samples]

    def _text_token(self, k: int, tok: int) -> list[Event]:
        if self.request is not None:
            if tok == TOKENIZER.DELEGATE:  # a new request replaces an unfinished one
                self.request = _Pending(start=k)
                return []
            if tok == TOKENIZER.DELEGATE_END:
                ev = Event(
                    self._t(self.request.start), "delegation", TOKENIZER.decode(self.request.ids)
                )
                self.request = None
                return [ev]
            if tok < 256:
                self.request.ids.append(tok)
            return []
        if tok == TOKENIZER.DELEGATE:
            self.request = _Pending(start=k)
            return self._end_word()
        if tok == TOKENIZER.PAD or tok >= 256:
            return []
        if tok == ord(" "):
            return self._end_word()
        if self.word.start is None:
            self.word.start = k
        self.word.ids.append(tok)
        return []

    def _heard_token(self, k: int, tok: int) -> list[Event]:
        """Listening transcript bytes -> a "heard_word" each time a space closes a word; its
        time is when the model had written it (the end of turn k), its start the first byte's."""
        if 0 <= tok < 256 and tok != ord(" "):
            self.heard.start = k if self.heard.start is None else self.heard.start
            self.heard.ids.append(tok)
            return []
        if tok != ord(" ") or not self.heard.ids:
            return []
        ev = Event(
            self._t(self.heard.start), "heard_word", TOKENIZER.decode(self.heard.ids), self._t(k)
        )
        self.heard = _Pending()
        return [ev]

    def _end_word(self) -> list[Event]:
        if not self.word.ids:
            return []
        ev = Event(self._t(self.word.start), "model_word", TOKENIZER.decode(self.word.ids))
        self.word = _Pending()
        return [ev]

    def flush(self, k: int) -> list[Event]:
        """Close what is still open after the last turn k."""
        events = self._end_word() + self._heard_token(k, ord(" "))
        if self.speech_start is not None:
            events.append(Event(self._t(self.speech_start), "model_speech", end=self._t(k + 1)))
            self.speech_start = None
        return events


def vocode_outputs(
    unpackers: list[TurnUnpacker], outs: list[TurnOutput]
) -> list[np.ndarray | None]:
    """Every session's samples for this turn in one batched vocoder call (None where a
    session has no audio); hand each to its `unpack(k, out, wav)`."""
    from ..vocoder.streaming import vocode_turn

    idx = [i for i, u in enumerate(unpackers) if u.vocoder is not None]
    wavs = vocode_turn(
        [unpackers[i].vocoder for i in idx], [unpackers[i].log_mel(outs[i]) for i in idx]
    )
    out: list[np.ndarray | None] = [None] * len(unpackers)
    for i, w in zip(idx, wavs):
        out[i] = w
    return out
