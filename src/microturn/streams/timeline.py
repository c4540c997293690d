"""Timeline: timestamped events and media on one clock <-> a sequence of micro-turns.

Input events (typed text, background results, user audio, video frames) land in the turn
that contains their time. Output events (model words, delegations, speech intervals) are
stamped with the time a listener hears them: OUT_k plays during turn k+1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import TurnLayout
from .audio import AudioFrontend, DMelCodec, MelNorm
from .text import ByteTokenizer
from .turns import (
    SILENT,
    SPEAK,
    Event,
    TextQueue,
    TurnBatch,
    TurnInput,
    TurnOutput,
    TurnPacker,
    TurnUnpacker,
)

TOKENIZER = ByteTokenizer()
INPUT_TEXT_KINDS = {"user_text": "user_text", "result": "background"}


@dataclass
class Timeline:
    duration: float
    events: list[Event] = field(default_factory=list)
    user_audio: np.ndarray | None = None  # mono at the layout rate, t = 0 at sample 0
    model_audio: np.ndarray | None = None  # as heard
    frames: list[tuple[float, np.ndarray]] = field(default_factory=list)

    def of(self, *kinds: str) -> list[Event]:
        return sorted((e for e in self.events if e.kind in kinds), key=lambda e: (e.t, e.kind))

    def n_turns(self, layout: TurnLayout) -> int:
        return max(1, math.ceil(round(self.duration / layout.turn_seconds, 6)))


def _turn(t: float, layout: TurnLayout) -> int:
    return int(math.floor(round(t / layout.turn_seconds, 6)))


def output_tokens(events: list[Event]) -> list[int]:
    """Model words and delegations of one OUT turn, in time order, as text-stream tokens.

    Each ends with a space, a request too: what the model writes next then starts after
    " ", as a word in a read stream does, so the copy lookup can match from its second byte."""
    ids: list[int] = []
    for e in events:
        if e.kind == "model_word":
            ids += TOKENIZER.encode(e.text) + [ord(" ")]
        elif e.kind == "delegation":
            ids += [TOKENIZER.DELEGATE, *TOKENIZER.encode(e.text), TOKENIZER.DELEGATE_END, ord(" ")]
    return ids


def heard_form(word: str) -> str:
    """A word as the listening transcript writes it: lower case, no punctuation (the audio
    carries the words, not the commas)."""
    return re.sub(r"[^\w' ]+", "", word.lower()).strip()


def transcript_targets(words: list[Event], layout: TurnLayout, n: int) -> torch.Tensor:
    """[n, audio_slots] byte targets of the listening transcript, one per audio-in slot.

    A heard word (and the space after it) is queued at the slot after the one its end falls
    in, so the slot that writes a byte has already heard the whole word (causal), and the
    queue drains a byte a slot (20 bytes/s, faster than people speak)."""
    return transcript_schedule(words, layout, n)[0]


def transcript_schedule(
    words: list[Event], layout: TurnLayout, n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`transcript_targets` and, at each slot that is due a byte, how many slots earlier it
    may be written: back to the slot after the one its word starts in. The aligned loss
    (`model.alignment`) lets a byte fall anywhere in that window, so the digits of "347" may
    come as "three hundred", "forty" and "seven" are heard instead of all after the word.
    The space that closes a word may not come before the word has ended: it says nothing
    more belongs to the word, which no slot knows sooner. Allowed early, a model learned to
    close "3" as soon as it heard "three" and wrote 347 as "3 47"."""
    slot_s = layout.turn_seconds / layout.audio_slots
    out = torch.full((n * layout.audio_slots,), TOKENIZER.PAD, dtype=torch.long)
    early = torch.zeros(n * layout.audio_slots, dtype=torch.long)
    queue: list[tuple[int, int]] = []  # (byte, the first slot it may be written at)
    ready = sorted(
        (math.floor(round(w.end / slot_s, 6)) + 1, math.floor(round(w.t / slot_s, 6)) + 1,
         heard_form(w.text))
        for w in words
        if w.end is not None
    )
    i = 0
    for s in range(len(out)):
        while i < len(ready) and ready[i][0] <= s:
            due, first, text = ready[i]
            if text:
                queue += [(b, min(first, due)) for b in TOKENIZER.encode(text)]
                queue.append((ord(" "), due))
            i += 1
        if queue:
            byte, first = queue.pop(0)
            out[s], early[s] = byte, s - first
    return out.view(n, layout.audio_slots), early.view(n, layout.audio_slots)


def timeline_to_turns(
    tl: Timeline, layout: TurnLayout, codec: DMelCodec, norm: MelNorm
) -> TurnBatch:
    n = tl.n_turns(layout)
    packer = TurnPacker(layout, codec)
    by_turn: dict[int, list[Event]] = {}
    for e in tl.of("user_text", "result", "model_word", "delegation"):
        k = _turn(e.t, layout) - (1 if e.kind in ("model_word", "delegation") else 0)
        by_turn.setdefault(k, []).append(e)
    frames = {_turn(t, layout): f for t, f in sorted(tl.frames, key=lambda x: x[0])}
    audio = None
    if tl.user_audio is not None:
        audio = np.zeros(n * layout.turn_samples, dtype=np.float32)
        audio[: min(len(audio), len(tl.user_audio))] = tl.user_audio[: len(audio)]
    speaking = np.zeros(n + 1, dtype=bool)  # by playback turn
    for e in tl.of("model_speech"):
        lo, hi = _turn(e.t, layout), math.ceil(round(e.end / layout.turn_seconds, 6))
        speaking[max(lo, 0) : max(hi, 0)] = True
    target_mel = None
    if tl.model_audio is not None:
        wav = np.zeros((n + 1) * layout.turn_samples, dtype=np.float32)
        wav[: min(len(wav), len(tl.model_audio))] = tl.model_audio[: len(wav)]
        target_mel = norm.normalize(AudioFrontend(layout).log_mel(wav))
    out_text = TextQueue(layout.text_out_slots)
    inputs: list[TurnInput] = []
    outputs: list[TurnOutput] = []
    for k in range(n):
        events = by_turn.get(k, [])
        for e in events:
            if e.kind in INPUT_TEXT_KINDS:
                getattr(packer, INPUT_TEXT_KINDS[e.kind]).put(e.text)
        chunk = (
            audio[k * layout.turn_samples : (k + 1) * layout.turn_samples]
            if audio is not None
            else None
        )
        inputs.append(packer.pack(chunk, frames.get(k)))
        out_text.put_tokens(output_tokens(events))
        speak = bool(speaking[k + 1])
        mel = None
        if speak:
            f = layout.frames_per_turn
            mel = (
                target_mel[(k + 1) * f : (k + 2) * f]
                if target_mel is not None
                else torch.zeros(f, layout.mel_channels)
            ).reshape(layout.audio_slots, layout.audio_token_dim)
        outputs.append(
            TurnOutput(control=SPEAK if speak else SILENT, text=out_text.take(), audio=mel)
        )
    batch = TurnBatch.stack(inputs, outputs, layout)
    heard, early = transcript_schedule(tl.of("user_word"), layout, n)
    batch.heard, batch.heard_early = heard[None], early[None]
    return batch


def input_text_events(batch: TurnBatch, layout: TurnLayout, b: int = 0) -> list[Event]:
    """Typed text and background results back out of the input slots (closed by SEP)."""
    events = []
    for kind, stream in INPUT_TEXT_KINDS.items():
        ids: list[int] = []
        start = None
        for k, row in enumerate(getattr(batch, stream)[b].tolist()):
            for tok in row:
                if tok == TOKENIZER.SEP and start is not None:
                    events.append(
                        Event(round(start * layout.turn_seconds, 6), kind, TOKENIZER.decode(ids))
                    )
                    ids, start = [], None
                elif tok < 256:
                    start = k if start is None else start
                    ids.append(tok)
    return events


def turns_to_timeline(
    batch: TurnBatch,
    layout: TurnLayout,
    norm: MelNorm | None = None,
    b: int = 0,
    vocoder: bool = False,
) -> Timeline:
    """Events (and, with `vocoder`, the model's waveform) of sequence b of a `TurnBatch`."""
    unpacker = TurnUnpacker(layout, norm, vocoder=vocoder)
    n = batch.shape[1]
    events = input_text_events(batch, layout, b)
    for k in range(n):
        events += unpacker.unpack(k, batch.turn(b, k)[1])[0]
    events += unpacker.flush(n - 1)
    events.sort(key=lambda e: (e.t, e.kind))
    return Timeline(
        duration=n * layout.turn_seconds, events=events, model_audio=unpacker.waveform(n)
    )
