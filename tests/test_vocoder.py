"""The trained vocoder: causal, streams like a whole utterance, batched, loads safely, and
beats Griffin-Lim; the recogniser-based metric on real speech."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from microturn.config import TurnLayout
from microturn.errors import CheckpointError, ConfigError
from microturn.streams.audio import AudioFrontend, GriffinLim, MelNorm, StreamingVocoder
from microturn.streams.turns import TurnUnpacker
from microturn.vocoder.model import Vocoder, VocoderConfig
from microturn.vocoder.streaming import NeuralVoice, make_voice, vocode_turn
from microturn.vocoder.weights import DEFAULT_VOCODER, load_vocoder, save_vocoder

TINY = VocoderConfig(dim=16, hidden=32, blocks=2, kernel=5)
LAYOUT = TurnLayout()
F = LAYOUT.frames_per_turn


def tiny() -> Vocoder:
    torch.manual_seed(0)
    return Vocoder(TINY).eval()


def speechlike(frames: int, seed: int) -> torch.Tensor:
    """Log-mel frames of a noisy chirp: voiced, not at the floor."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames * LAYOUT.hop) / 16_000
    x = 0.3 * np.sin(2 * np.pi * (150 + 300 * t) * t) + 0.02 * rng.standard_normal(len(t))
    return AudioFrontend(LAYOUT).log_mel(x.astype(np.float32))


def test_a_future_sample_changes_no_output_before_the_lookahead():
    m, fe = tiny(), AudioFrontend(LAYOUT)
    rng = np.random.default_rng(1)
    x = (0.2 * rng.standard_normal(40 * LAYOUT.hop)).astype(np.float32)
    s = 25 * LAYOUT.hop + 77  # the perturbed sample
    y = x.copy()
    y[s] += 0.5
    with torch.no_grad():
        a, b = (m(fe.log_mel(z)[None])[0].numpy() for z in (x, y))
    lookahead = TINY.lag_hops * TINY.hop + s % TINY.hop
    changed = np.flatnonzero(a != b)
    assert changed.size and changed.min() >= s - lookahead  # 3 hops = 37.5 ms <= one turn
    assert TINY.lag_hops * TINY.hop <= LAYOUT.turn_samples


def test_a_future_frame_changes_no_earlier_block():
    m = tiny()
    mel = speechlike(48, 2)
    j = 30
    moved = mel.clone()
    moved[j] += 1.0
    with torch.no_grad():
        a, b = m(mel[None])[0], m(moved[None])[0]
    first = (j - TINY.lag_hops) * TINY.hop
    assert torch.equal(a[:first], b[:first]) and not torch.equal(a[first:], b[first:])


def test_streaming_batched_sessions_equal_whole_utterances():
    m = tiny()
    floor = torch.full((F, TINY.mel), -10.0)
    # session 0 speaks from the start; session 1 is silent for 4 turns, then speaks
    mels = [speechlike(6 * F, 3), torch.cat([floor.repeat(4, 1), speechlike(2 * F, 4)])]
    voices = [NeuralVoice(m), NeuralVoice(m)]
    chunks: list[list[np.ndarray]] = [[], []]
    for k in range(6):
        for i, w in enumerate(vocode_turn(voices, [x[k * F : (k + 1) * F] for x in mels])):
            chunks[i].append(w)
    lag = TINY.lag_hops * TINY.hop
    for i, mel in enumerate(mels):
        streamed = np.concatenate(chunks[i])[lag:]
        with torch.no_grad():
            whole = m(mel[None])[0].numpy()[: len(streamed)]
        np.testing.assert_allclose(streamed, whole, atol=1e-5)
    assert not np.any(np.concatenate(chunks[1][:4]))  # silence is digital silence


def test_missing_and_mismatched_weights_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file.*griffin-lim"):
        load_vocoder(tmp_path / "absent.safetensors")
    path = tmp_path / "v.safetensors"
    save_vocoder(tiny(), path)
    assert load_vocoder(path).cfg == TINY
    state = {k: v.half() for k, v in tiny().state_dict().items()}
    state["head.weight"] = state["head.weight"][:, :5].contiguous()
    save_file(
        state,
        str(path),
        metadata={
            "format": "microturn-vocoder/1",
            "config": '{"dim": 16, "hidden": 32, "blocks": 2, "kernel": 5}',
        },
    )
    with pytest.raises(CheckpointError, match="wrong shapes.*head.weight"):
        load_vocoder(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_vocoder(path)


def test_voice_choice_and_fallback(tmp_path, monkeypatch):
    assert isinstance(make_voice(LAYOUT, "griffin-lim"), StreamingVocoder)
    with pytest.raises(ConfigError, match="griffin-lim"):
        make_voice(LAYOUT, "wavenet")
    missing = tmp_path / "none.safetensors"
    with pytest.raises(CheckpointError):
        make_voice(LAYOUT, "vocoder", missing)
    with pytest.warns(UserWarning, match="Griffin-Lim instead"):
        assert isinstance(make_voice(LAYOUT, "auto", missing), StreamingVocoder)
    monkeypatch.setenv("MICROTURN_VOCODER", "griffin-lim")
    assert isinstance(make_voice(LAYOUT), StreamingVocoder)
    assert isinstance(TurnUnpacker(LAYOUT, MelNorm(80), vocoder=True).vocoder, StreamingVocoder)
    named = TurnUnpacker(LAYOUT, MelNorm(80), vocoder="vocoder").vocoder  # a session's own choice
    assert isinstance(named, NeuralVoice)


def test_recogniser_metric_on_real_speech():
    from microturn.vocoder.asr import audio_text_agreement, transcribe, word_error_rate
    from microturn.world.voices import model_voice

    text = "The weather is nice today, so we can go for a walk in the park."
    audio = model_voice().speak(text, 16_000, kind="model_word").audio  # the world's joe
    wer = word_error_rate(transcribe(audio), text)
    assert wer <= 0.2, transcribe(audio)  # common words, clean speech: pocketsphinx's own model
    assert audio_text_agreement(audio, text) == pytest.approx(1 - wer)
    assert audio_text_agreement(np.zeros(16_000, np.float32), text) < 0.5
    assert word_error_rate("forty two apples", "42 apples!") == 0.0


def test_shipped_weights_load_and_beat_griffin_lim_on_drawn_like_frames():
    """A held-out line in the world's joe. On its clean log-mel the vocoder is close to the
    streaming Griffin-Lim fallback (0.954 vs 0.967 STOI when written); on frames blurred
    and noised as the flow head draws them (train.degrade, two fixed seeds) it is ahead."""
    from pystoi import stoi

    from microturn.vocoder.evaluate import streamed_griffin_lim
    from microturn.vocoder.lines import held_out
    from microturn.vocoder.train import degrade
    from microturn.world.voices import model_voice

    text = "Our neighbour visited two quick zebras behind the museum."
    assert held_out(text)  # never trained on
    assert DEFAULT_VOCODER.stat().st_size <= 10 * 2**20
    pad = np.zeros(2400, np.float32)
    audio = np.concatenate([pad, model_voice().speak(text, 16_000, kind="model_word").audio, pad])
    x = audio[: len(audio) // LAYOUT.hop * LAYOUT.hop]
    fe, gl, ours = AudioFrontend(LAYOUT), GriffinLim(AudioFrontend(LAYOUT)), load_vocoder()
    mels = [fe.log_mel(x)] + [
        degrade(fe.log_mel(x)[None], torch.Generator().manual_seed(s))[0] for s in range(2)
    ]
    scores = []
    for mel in mels:
        with torch.no_grad():
            y = ours(mel[None])[0].numpy()
        g = streamed_griffin_lim(mel, gl, F)  # the fallback as a session plays it
        scores.append((stoi(x, y, 16_000), stoi(x, g, 16_000)))
    print("STOI vocoder vs Griffin-Lim, clean then drawn-like:", np.round(scores, 3).tolist())
    (clean_ours, clean_gl), drawn = scores[0], np.array(scores[1:])
    assert clean_ours >= 0.93 and clean_ours >= clean_gl - 0.03
    assert drawn[:, 0].mean() > drawn[:, 1].mean() + 0.02
