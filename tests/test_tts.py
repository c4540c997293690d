"""Real espeak-ng speech with exact word times (the Debian package is installed by .ci/run)."""

import numpy as np
import pytest
import torch

from microturn.config import TurnLayout
from microturn.streams.audio import AudioFrontend, DMelCodec, GriffinLim
from microturn.world.tts import EspeakTTS, TTSUnavailable, Voice

LAY = TurnLayout()


@pytest.fixture(scope="module")
def tts():
    return EspeakTTS()


def level(x):
    return 20 * np.log10(np.sqrt(np.mean(x ** 2)) + 1e-10)


def test_words_have_exact_times(tts):
    sp = tts.speak("Hello there, how are you today?", Voice(variant="f2"))
    assert [w.text for w in sp.words] == ["Hello", "there,", "how", "are", "you", "today?"]
    assert sp.words[0].t == 0.0 and sp.words[-1].end == pytest.approx(sp.duration)
    for a, b in zip(sp.words, sp.words[1:]):
        assert a.t < a.end <= b.t  # ordered, never overlapping
        gap = sp.audio[int(a.end * 16000):int(b.t * 16000)]
        assert len(gap) == 0 or np.abs(gap).max() == 0  # silence between words
    for w in sp.words:
        assert level(sp.audio[int(w.t * 16000):int(w.end * 16000)]) > -35  # speech inside each word
    assert (
        sp.words[2].t - sp.words[1].end > sp.words[3].t - sp.words[2].end
    )  # a comma pauses longer
    placed = sp.shifted(10.0)
    assert placed[0].t == 10.0 and placed[0].kind == "user_word"


def test_voices_differ(tts):
    a = tts.speak("seven", Voice(variant="f2")).audio
    b = tts.speak("seven", Voice(variant="m3", pitch=30)).audio
    c = tts.speak("seven", Voice(speed=260)).audio
    assert len(c) < len(tts.speak("seven", Voice(speed=120)).audio)
    assert len(a) != len(b) or not np.array_equal(a, b)


def test_missing_program_names_the_package():
    with pytest.raises(TTSUnavailable, match="install the Debian package 'espeak-ng'"):
        EspeakTTS(binary="espeak-ng-not-installed")
    with pytest.raises(ValueError, match="no words"):
        EspeakTTS().speak("   ")


def test_dmel_griffin_lim_round_trip_on_real_speech(tts):
    """Measured on espeak-ng speech: mean |delta log10 mel| 0.2-0.3 on bins within 30 dB of the
    peak."""
    sp = tts.speak("The quick brown fox jumps over the lazy dog.", Voice())
    x = np.concatenate([sp.audio, np.zeros(-len(sp.audio) % 200, np.float32)])
    fe = AudioFrontend(LAY)
    lm = fe.log_mel(x)
    codec = DMelCodec(16)  # the default range, (-5, -0.1), was measured on espeak-ng speech
    dq = codec.dequantize(codec.quantize(lm))
    wav = GriffinLim(fe).synthesize(dq)
    back = fe.log_mel(wav[: len(x)])
    mask = dq > dq.max() - 3
    assert (back - dq)[mask].abs().mean().item() < 0.4
    speech = lm[lm > -9]
    assert (
        torch.quantile(speech, 0.99) < 0.5 and torch.quantile(speech, 0.05) > -7
    )  # the range fits
