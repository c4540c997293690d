"""`microturn vocoder-eval`: Griffin-Lim against the trained vocoder, scored from audio.

Two sets, never trained on:
* reference mels: the held-out lines (lines.py) spoken by joe; each system voices the
  log-mel of the recording, scored against the recording;
* drawn frames (suffix `_drawn`): held-out lines the model says in eval episodes of the
  world. The shipped default model is teacher-forced on the episode (its true context and
  earlier frames, as in training) and its flow head draws each speaking turn's frames with
  the engine's noise scale and step count; each system voices those, scored against the
  episode's own recording of the line.

STOI (pystoi), wide-band PESQ (`pesq`), MCD, and the recogniser's WER (asr.py) of the
system's audio against the line's text, beside its WER on the recording itself.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from pesq import pesq
from pesq.cypesq import NoUtterancesError
from pystoi import stoi
from tqdm import tqdm

from ..config import TurnLayout
from ..streams.audio import LOG_FLOOR, AudioFrontend, GriffinLim, StreamingVocoder
from .asr import transcribe, word_error_rate
from .lines import held_out
from .model import Vocoder

RATE = 16_000
MCD_COEFFS = 24  # cepstra c1..c24 (c0, the level, is left out as usual)
STOI_TOO_SHORT = 1e-4  # pystoi returns 1e-5 when a signal has too few speech segments
SYSTEMS = ("griffin_lim", "vocoder")  # both as they stream in a session, turn by turn
OFFLINE = "griffin_lim_offline"  # whole-utterance Griffin-Lim: no streaming, quality only


@dataclass
class Line:
    text: str
    audio: np.ndarray  # the recording, 16 kHz
    log_mel: torch.Tensor  # [T, mel] what the systems voice (the recording's, or drawn)


def mcd_db(ref: np.ndarray, syn: np.ndarray, frontend: AudioFrontend) -> float:
    """Mel-cepstral distortion (dB) between two time-aligned signals over the reference's
    speech frames: DCT-II cepstra of the natural-log mel energies (the repo's front end)."""
    n = min(len(ref), len(syn)) // frontend.layout.hop * frontend.layout.hop
    a, b = (frontend.log_mel(x[:n]) * math.log(10) for x in (ref, syn))
    m = a.shape[1]
    k = torch.arange(1, MCD_COEFFS + 1, dtype=torch.float32)[:, None]
    dct = torch.cos(math.pi / m * (torch.arange(m) + 0.5)[None] * k) * math.sqrt(2 / m)
    speech = a.max(dim=1).values > a.max() - math.log(10) * 4  # within 40 dB of the loudest
    diff = (a[speech] - b[speech]) @ dct.T
    return float((10 / math.log(10) * torch.sqrt(2 * diff.square().sum(1))).mean())


def quality(ref: np.ndarray, syn: np.ndarray, frontend: AudioFrontend) -> dict[str, float | None]:
    n = min(len(ref), len(syn))
    ref, syn = ref[:n], syn[:n]
    try:
        p = float(pesq(RATE, ref, syn, "wb"))
    except NoUtterancesError:
        p = None
    with warnings.catch_warnings():  # a line too short for STOI's 384 ms segments: None
        warnings.simplefilter("ignore", RuntimeWarning)
        st = float(stoi(ref, syn, RATE, extended=False))
    return {
        "stoi": st if st > STOI_TOO_SHORT else None,
        "pesq": p,
        "mcd_db": mcd_db(ref, syn, frontend),
    }


def streamed_griffin_lim(log_mel: torch.Tensor, gl: GriffinLim, turn_frames: int) -> np.ndarray:
    """What the Griffin-Lim fallback plays in a session, turn by turn, with its lag removed."""
    voc = StreamingVocoder(gl)
    n = log_mel.shape[0]
    turns = -(-n // turn_frames) + 1  # one more turn flushes the lag
    mel = torch.full((turns * turn_frames, log_mel.shape[1]), math.log10(LOG_FLOOR))
    mel[:n] = log_mel
    wav = np.concatenate(
        [voc.push(mel[k * turn_frames : (k + 1) * turn_frames]) for k in range(turns)]
    )
    return wav[voc.lag_samples : voc.lag_samples + n * gl.hop]


def voice_all(lines: list[Line], vocoder: Vocoder, gl: GriffinLim) -> dict[str, list[np.ndarray]]:
    """Each system's waveform of each line (the vocoder whole-utterance: equal to streaming)."""
    out = {s: [] for s in (*SYSTEMS, OFFLINE)}
    turn_frames = gl.frontend.layout.frames_per_turn
    for ln in lines:
        with torch.no_grad():
            out["vocoder"].append(vocoder(ln.log_mel[None])[0].numpy())
        out["griffin_lim"].append(streamed_griffin_lim(ln.log_mel, gl, turn_frames))
        out[OFFLINE].append(gl.synthesize(ln.log_mel))
    return out


def score_lines(
    lines: list[Line],
    vocoder: Vocoder,
    frontend: AudioFrontend,
    asr_lines: int,
    suffix: str = "",
    progress: bool = True,
) -> dict[str, dict]:
    """Means over lines per system; ASR on the first `asr_lines` lines."""
    waves = voice_all(lines, vocoder, GriffinLim(frontend))
    rows: dict[str, list[dict]] = {s: [] for s in (*SYSTEMS, OFFLINE)}
    ref_wer = []
    for i, ln in enumerate(
        tqdm(lines, desc=f"scoring{suffix or '_reference'}", disable=not progress)
    ):
        asr = i < asr_lines
        if asr:
            ref_wer.append(word_error_rate(transcribe(ln.audio), ln.text))
        for s in SYSTEMS:
            row = quality(ln.audio, waves[s][i], frontend)
            if asr:
                row["asr_wer_audio_vs_text"] = word_error_rate(transcribe(waves[s][i]), ln.text)
            rows[s].append(row)
        rows[OFFLINE].append(quality(ln.audio, waves[OFFLINE][i], frontend))
    out = {}
    for s in (*SYSTEMS, OFFLINE):
        keys = rows[s][0].keys() if rows[s] else ()
        mean = {k: _mean([r.get(k) for r in rows[s]]) for k in keys}
        if s != OFFLINE:
            mean["asr_wer_reference"] = _mean(ref_wer)
        out[s] = {f"{k}{suffix}": v for k, v in mean.items()}
    return out


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return round(float(np.mean(xs)), 4) if xs else None


def reference_lines(utterances: list, frontend: AudioFrontend) -> list[Line]:
    hop = frontend.layout.hop
    out = []
    for u in utterances:
        x = u.audio[: len(u.audio) // hop * hop]
        out.append(Line(u.text, x, frontend.log_mel(x)))
    return out


def drawn_lines(n: int, max_episodes: int = 80, seed: int = 0, progress: bool = True) -> list[Line]:
    """Held-out lines the shipped default model says in eval episodes, with the frames its
    flow head draws when teacher-forced on the episode (see the module docstring)."""
    from ..config import EngineConfig
    from ..model.checkpoint import load_default
    from ..streams.timeline import timeline_to_turns
    from ..world.families import FAMILY_GENERATORS, generate

    model = load_default()
    lay: TurnLayout = model.cfg.layout
    eng = EngineConfig()
    gen = torch.Generator().manual_seed(seed)
    fams = list(FAMILY_GENERATORS)
    out: list[Line] = []
    bar = tqdm(total=n, desc="drawn lines", disable=not progress)
    for i in range(max_episodes):
        if len(out) >= n:
            break
        ep = generate(fams[i % len(fams)], i // len(fams), "eval")
        tl = ep.timeline
        segs = [(e.t, e.end) for e in tl.of("model_speech")]
        words = tl.of("model_word")
        texts = [" ".join(w.text for w in words if a <= w.t < b) for a, b in segs]
        keep = [(a, b, t) for (a, b), t in zip(segs, texts) if t and held_out(_line_of(tl, a))]
        if not keep:
            continue
        batch = timeline_to_turns(tl, lay, model.codec, model.mel_norm)
        with torch.no_grad():
            pred = model.predict(model.hidden(batch), batch)
            speak = batch.audio_out_mask[0]
            cond = pred.audio_cond[0][speak].flatten(0, -2)
            x0 = torch.randn(cond.shape[0], lay.audio_token_dim, generator=gen) * eng.flow_noise
            drawn = model.mel_norm.bound(model.flow.sample(cond, model.cfg.flow_steps, x0))
        f = lay.frames_per_turn
        turns = batch.shape[1]
        mel = torch.full(((turns + 1) * f, lay.mel_channels), math.log10(1e-10))
        frames = model.mel_norm.denormalize(drawn.view(-1, f, lay.mel_channels))
        for j, k in enumerate(torch.nonzero(speak).flatten().tolist()):
            mel[(k + 1) * f : (k + 2) * f] = frames[j]  # OUT_k plays during turn k + 1
        wav = np.zeros(mel.shape[0] * lay.hop, np.float32)
        wav[: min(len(wav), len(tl.model_audio))] = tl.model_audio[: len(wav)]
        for a, b, text in keep:
            lo, hi = int(a / lay.turn_seconds) * f, math.ceil(b / lay.turn_seconds) * f
            out.append(Line(text, wav[lo * lay.hop : hi * lay.hop], mel[lo:hi]))
            bar.update(1)
    bar.close()
    return out[:n]


def _line_of(tl, t: float) -> str:
    """The full text of the line the model starts at `t` (its model_speech event's)."""
    return next((e.text for e in tl.of("model_speech") if e.t == t), "")


def run_vocoder_eval(
    weights: str | None = None,
    corpus: str = "runs/vocoder/corpus",
    lines: int = 70,
    asr_lines: int = 24,
    drawn: int = 12,
    progress: bool = True,
) -> dict:
    """{"griffin_lim": {...}, "vocoder": {...}, "setup": {...}} as `vocoder-eval` writes it."""
    from .data import load_corpus
    from .weights import load_vocoder

    torch.manual_seed(0)
    frontend = AudioFrontend(TurnLayout())
    vocoder = load_vocoder(weights)
    ref = reference_lines(load_corpus(corpus, "eval")[:lines], frontend)
    result = score_lines(ref, vocoder, frontend, asr_lines, "", progress)
    setup = {
        "reference_lines": len(ref),
        "asr_lines": min(asr_lines, len(ref)),
        "recogniser": "pocketsphinx en-us (bundled)",
        "drawn_lines": 0,
        "drawn_from": "shipped default model, flow head teacher-forced on eval episodes",
    }
    if drawn:
        dl = drawn_lines(drawn, progress=progress)
        setup["drawn_lines"] = len(dl)
        if dl:
            for s, row in score_lines(dl, vocoder, frontend, len(dl), "_drawn", progress).items():
                result[s] |= row
    return result | {"setup": setup}
