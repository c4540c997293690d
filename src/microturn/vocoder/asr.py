"""Intelligibility from the waveform: pocketsphinx's own US-English model (inside its wheel,
nothing downloaded) transcribes audio, scored as a word error rate against a text.

Both sides are normalised the same way (lower case, no punctuation, digits spelled out, as a
listener hears them), so WER counts only what the audio gets wrong, or the recogniser does:
`asr_wer_reference` (its WER on the original recording) is the floor a system is judged by.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from ..errors import MicroturnError
from ..eval.metrics import edit_distance

RATE = 16_000
SPAN_PAD_S, SPAN_GAP_S = 0.15, 0.3  # kept around each speech span; silence put between spans
ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


class RecognizerUnavailable(MicroturnError, RuntimeError):
    """pocketsphinx (or its bundled English model) is not installed."""


def number_words(n: int) -> str:
    """0 <= n < 1e6 in words ("forty two"), as text-to-speech voices read digits."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def normalise(text: str) -> list[str]:
    text = re.sub(
        r"\d+",
        lambda m: f" {number_words(int(m.group()))} " if len(m.group()) < 7 else m.group(),
        text.lower(),
    )
    return re.sub(r"[^a-z' ]", " ", text.replace("-", " ")).split()


def word_error_rate(hypothesis: str, reference: str) -> float:
    """Word-level Levenshtein distance over the reference's word count (can pass 1)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    return edit_distance(hyp, ref) / max(len(ref), 1)


@functools.lru_cache(maxsize=1)
def _decoder():
    try:
        from pocketsphinx import Decoder
    except ImportError as e:
        raise RecognizerUnavailable(
            f"{e}: install pocketsphinx (pip install -e .); its wheel carries the English model"
        ) from e
    return Decoder(samprate=RATE, loglevel="FATAL")


def transcribe(audio: np.ndarray) -> str:
    """Words pocketsphinx hears in mono float audio at 16 kHz ('' for none)."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio of shape {x.shape}: expected mono samples")
    d = _decoder()
    d.start_utt()
    d.process_raw((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes(), full_utt=True)
    d.end_utt()
    hyp = d.hyp()
    return hyp.hypstr if hyp is not None else ""


def audio_text_agreement(
    audio: np.ndarray | None, text: str, spans: list[tuple[float, float]] | None = None
) -> float | None:
    """1 - WER of what the audio says against the text it should say (None without text or
    audio: nothing was said, or nothing could be heard). `spans` (seconds) keep only the
    system's speech, joined by short pauses: the recogniser then skips the silences."""
    if audio is None or not normalise(text):
        return None
    if spans:
        pad, gap = int(SPAN_PAD_S * RATE), np.zeros(int(SPAN_GAP_S * RATE), np.float32)
        parts = [audio[max(0, int(a * RATE) - pad) : int(b * RATE) + pad] for a, b in spans]
        audio = np.concatenate([x for p in parts for x in (p, gap)])
    return max(0.0, 1.0 - word_error_rate(transcribe(audio), text))
