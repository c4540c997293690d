"""The turn-based harness behaves as harnesses do (real espeak-ng speech, real Silero VAD)."""

import numpy as np
import pytest

from microturn.eval.baseline import PIPECAT, SERVER_VAD, TurnBasedHarness, detect_turns
from microturn.eval.metrics import backchannel, interruption, pause_handling, turn_taking
from microturn.world.tts import EspeakTTS, Voice

RATE = 16_000


@pytest.fixture(scope="module")
def tts():
    return EspeakTTS()


def place(length_s, *parts):
    """Silence of length_s with speech placed at given times: parts = (t, Speech)."""
    audio = np.zeros(int(length_s * RATE), np.float32)
    for t, sp in parts:
        a = int(t * RATE)
        audio[a:a + len(sp.audio)] = sp.audio[: len(audio) - a]
    return audio


def test_silence_is_no_turn():
    assert detect_turns(np.zeros(RATE * 3, np.float32)).commits == []


@pytest.mark.parametrize("settings", [SERVER_VAD, PIPECAT])
def test_turn_taking_latency_is_at_least_the_silence_window(tts, settings):
    q = tts.speak("What is the capital of France?", Voice(variant="f2"))
    audio = place(7.0, (1.0, q))
    out = TurnBasedHarness(settings, tts).run(audio, lambda c: "Paris is the capital.")
    user_end = 1.0 + q.words[-1].end
    r = turn_taking(out.words, out.speech, user_end)
    assert r["turn_taking_tor"] == 1.0
    assert r["turn_taking_latency_s"] >= settings.silence_duration_ms / 1000


def test_it_takes_the_turn_in_a_long_pause(tts):
    """'Let me think, what is' ... 2 s ... 'the capital of Spain?': the harness answers the
    fragment. (In a 1.2 s pause it starts too, but the user's return cuts it below FD-bench's
    one-second rule.)"""
    a = tts.speak("Let me think, what is", Voice(variant="f2"))
    b = tts.speak("the capital of Spain?", Voice(variant="f2"))
    pause = (1.0 + a.duration, 1.0 + a.duration + 2.0)
    audio = place(9.0, (1.0, a), (pause[1], b))
    out = TurnBasedHarness(SERVER_VAD, tts).run(audio, lambda c: "Sorry, what was the question?")
    assert pause_handling(out.words, out.speech, pause)["pause_tor"] == 1.0


def test_it_never_backchannels_or_speaks_unprompted(tts):
    story = tts.speak(
        "Yesterday I went to the market, and I bought apples, pears, bread and a lot of cheese "
        "for the party on Sunday, because my whole family is coming over.",
        Voice(variant="f2"),
    )
    audio = place(1.0 + story.duration + 0.3, (1.0, story))  # ends before any commit
    out = TurnBasedHarness(SERVER_VAD, tts).run(audio, lambda c: "Mm hm.")
    assert out.words == [] and out.speech == []
    assert (
        backchannel(out.words, out.speech, (1.0, 1.0 + story.duration))["backchannel_freq"] == 0.0
    )
    quiet = TurnBasedHarness(SERVER_VAD, tts).run(
        np.zeros(RATE * 8, np.float32), lambda c: "Say it now."
    )
    assert quiet.words == []  # no TimeSpeak, no cue, nothing without a commit


def test_barge_in_cuts_playback(tts):
    q = tts.speak("Tell me a long story.", Voice(variant="f2"))
    cut = tts.speak("Stop, stop.", Voice(variant="f2"))
    audio = place(12.0, (1.0, q), (4.0, cut))
    story = (
        "Once upon a time there was a king who lived in a castle by the sea, "
        "and every morning he walked."
    )
    out = TurnBasedHarness(SERVER_VAD, tts).run(audio, lambda c: story if c < 4.0 else None)
    r = interruption(out.words, out.speech, (4.0, 4.0 + cut.duration))
    assert out.speech and out.speech[0][1] < 4.5  # playback cancelled when the VAD heard the user
    assert 0 < r["stop_latency_s"] < 0.3
    assert len(out.words) < len(story.split())
