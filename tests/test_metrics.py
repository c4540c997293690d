"""Every metric on hand-built timelines with known answers, edge cases included."""

import pytest

from microturn.eval.metrics import (
    Word,
    backchannel,
    cue_targets,
    heard,
    interruption,
    norm,
    not_addressed,
    pause_handling,
    proactive,
    refusal,
    repetition_count,
    start_stop,
    summarize,
    timed_targets,
    took_turn,
    tool_use,
    turn_taking,
)
from microturn.streams.turns import Event


def say(t0, text, gap=0.3):
    return [Word(round(t0 + i * gap, 3), w) for i, w in enumerate(text.split())]


def test_heard_merges_overlapping_segments_and_sorts_words():
    events = [
        Event(2.0, "model_speech", end=3.0),
        Event(0.0, "model_speech", end=1.0),
        Event(0.8, "model_speech", end=1.5),
        Event(0.2, "model_word", "b"),
        Event(0.0, "model_word", "a"),
        Event(1.0, "user_text", "x"),
    ]
    words, speech = heard(events)
    assert [w.text for w in words] == ["a", "b"] and speech == [(0.0, 1.5), (2.0, 3.0)]
    assert heard([]) == ([], [])


def test_took_turn_follows_fd_bench():
    assert not took_turn([], [], 0, 10)  # no speech at all
    assert not took_turn(say(1.0, "mm hm"), [(1.0, 1.6)], 0, 10)  # short, few words: a backchannel
    assert took_turn(say(1.0, "sure here it is"), [(1.0, 1.9)], 0, 10)  # four words
    assert took_turn(
        say(0.0, "okay then"), [(0.0, 1.2)], 0, 10
    )  # speech at t = 0 that spans over a second


def test_norm_numbers_and_punctuation():
    assert norm("¡Seven, THREE!") == "7 3" and norm("twenty-one") == "20 1"


def test_pause_and_turn_taking():
    assert pause_handling(say(3.1, "let me answer that now"), [(3.1, 4.5)], (3.0, 5.0)) == {
        "pause_tor": 1.0
    }
    # three words in 0.9 s of the pause is not taking the turn (FD-bench's rule)
    assert pause_handling(say(3.1, "let me answer that now"), [(3.1, 4.5)], (3.0, 4.0)) == {
        "pause_tor": 0.0
    }
    assert pause_handling([], [], (3.0, 4.0)) == {"pause_tor": 0.0}
    r = turn_taking(say(5.4, "the answer is four"), [(5.4, 6.6)], user_end=5.0)
    assert r["turn_taking_tor"] == 1.0 and r["turn_taking_latency_s"] == pytest.approx(0.4)
    assert turn_taking([], [], user_end=5.0) == {
        "turn_taking_tor": 0.0,
        "turn_taking_latency_s": None,
    }


def test_interruption_stop_latency_and_response():
    speech = [(0.0, 3.4), (4.6, 6.0)]  # talking when the user cuts in at 3.0, stops at 3.4
    words = say(0.0, "once upon a time there") + say(4.6, "okay what should I do")
    r = interruption(words, speech, user=(3.0, 4.0))
    assert r["stop_latency_s"] == pytest.approx(0.4) and r["interruption_tor"] == 1.0
    assert r["interruption_latency_s"] == pytest.approx(0.6) and r["talking_when_cut"] == 1.0
    silent = interruption([], [], user=(3.0, 4.0))
    assert silent == {  # silent when cut in on: no stop to time (0 s would reward silence)
        "talking_when_cut": 0.0,
        "stop_latency_s": None,
        "interruption_tor": 0.0,
        "interruption_latency_s": None,
    }


def test_backchannels_and_not_addressed():
    speech = [(2.0, 2.4), (5.0, 5.5), (8.0, 12.0)]  # two short backchannels, one long segment after
    words = [Word(2.0, "mm"), Word(5.0, "yeah")] + say(8.0, "so what you are saying")
    r = backchannel(words, speech, user=(0.0, 7.0))
    assert r == {"backchannel_freq": pytest.approx(2 / 7.0), "backchannel_tor": 0.0}
    assert not_addressed(say(1.0, "yes I can help with that"), [(1.0, 2.5)], (0.5, 4.0)) == {
        "not_addressed_response_rate": 1.0
    }


def test_timespeak_needs_content_and_time():
    words = say(7.1, "turn left") + say(14.0, "turn right")
    r = timed_targets(
        words, [(7.0, "turn left"), (12.0, "turn right"), (20.0, "stop")], tolerance_s=0.5
    )
    assert r["timespeak_acc"] == pytest.approx(1 / 3)
    assert timed_targets(words, [], 0.5) == {"timespeak_acc": None}  # a scenario with no target


def test_cuespeak_and_correction_latency():
    words = [Word(2.4, "beep"), Word(9.0, "beep"), Word(6.5, "no,"), Word(6.7, "seven")]
    r = cue_targets(words, [(2.0, "beep"), (5.0, "beep")], window_s=1.5)
    assert r == {"cuespeak_acc": 0.5}
    r = cue_targets(words, [(6.0, "seven")], window_s=2.0, correction=True)
    assert r["cuespeak_acc"] == 1.0 and r["correction_latency_s"] == pytest.approx(0.7)


def test_visual_tasks():
    words = say(10.0, "it bounced seven times")
    assert repetition_count(words, 8) == {"repcount_acc": 1.0}
    assert repetition_count(words, 5) == {"repcount_acc": 0.0}
    assert repetition_count([], 5) == {"repcount_acc": 0.0}
    r = start_stop([Word(2.0, "start"), Word(6.0, "stop")], truth=(1.0, 5.0))
    assert r["startstop_miou"] == pytest.approx(3.0 / 5.0)
    assert start_stop([Word(6.0, "stop")], truth=(1.0, 5.0)) == {"startstop_miou": 0.0}
    assert proactive(say(4.0, "a green circle"), "green circle", (4.0, 8.0)) == {
        "proactive_score": pytest.approx(1 - 0.5 * 0.3 / 4)
    }
    assert proactive(say(9.0, "a green circle"), "green circle", (4.0, 8.0)) == {
        "proactive_score": 0.0
    }


def test_tool_use_pass_and_responsiveness():
    words = say(2.0, "let me check") + say(6.0, "okay sure") + say(9.0, "it is 391")
    r = tool_use(words, "391", asked_at=1.5, user_turns=[5.5, 6.9])
    assert r["tool_pass1"] == 1.0 and r["tool_answer_latency_s"] == pytest.approx(8.1)
    assert (
        r["tool_responsiveness"] == 0.5
    )  # answered the 5.5 s turn, not the 6.9 s one (2.1 s later)
    assert tool_use(words, "392", asked_at=1.5)["tool_pass1"] == 0.0


def test_refusals():
    assert refusal(say(1.0, "Sorry, I can't help with that."), harmful=True) == {
        "refusal_rate": 1.0
    }
    assert refusal(say(1.0, "Sure, here is how to kill a Python process"), harmful=False) == {
        "over_refusal_rate": 0.0
    }


def test_summarize_averages_and_scales():
    rows = [
        {"timespeak_acc": 1.0, "turn_taking_latency_s": 0.4},
        {"timespeak_acc": 0.0, "turn_taking_latency_s": None},
        {"timespeak_acc": None},
    ]
    assert summarize(rows) == {"timespeak_acc": 50.0, "turn_taking_latency_s": 0.4}
    assert summarize([]) == {}
