"""World generators: every family renders, splits never share an episode, the model's
lines survive the trip to micro-turn tensors, and real recordings load the same way."""

from __future__ import annotations

import json

import numpy as np
import pytest

from microturn.config import TurnLayout
from microturn.errors import ConfigError, InputError
from microturn.eval import metrics as M
from microturn.eval.scenario import score
from microturn.streams.audio import DMelCodec, MelNorm, wav_bytes
from microturn.streams.timeline import timeline_to_turns, turns_to_timeline
from microturn.train.data import crop, load_recording, timeline_tensors
from microturn.world.families import FAMILY_GENERATORS, generate
from microturn.world.tts import EspeakTTS
from microturn.world.voices import model_voice

LAYOUT = TurnLayout()


@pytest.fixture(scope="module")
def tts():
    return EspeakTTS()


@pytest.mark.parametrize("family", sorted(FAMILY_GENERATORS))
def test_family_episode_is_consistent_and_the_ideal_model_scores_well(family, tts):
    ep = generate(family, 3, "eval", tts=tts)
    tl = ep.timeline
    assert ep.scenario.family == family and len(tl.user_audio) == int(16.0 * 16_000)
    assert ep.rendered.user_words, "every family has the user speaking"
    said = tl.of("model_word")
    speech = tl.of("model_speech")
    for w in said:  # every model word lies inside one of its speech segments
        assert any(s.t - 1e-6 <= w.t <= s.end for s in speech), (w.t, w.text)
    if family == "not_addressed":
        assert not said
    else:
        assert said and np.abs(tl.model_audio).max() > 0.01
    # the ideal model's own lines, through the same scorer the bench uses
    words, spans = M.heard(tl.events)
    scores = score(ep.rendered, words, spans)
    for key, good in {
        "turn_taking_tor": 1.0,
        "pause_tor": 0.0,
        "interruption_tor": 1.0,
        "timespeak_acc": 1.0,
        "cuespeak_acc": 1.0,
        "repcount_acc": 1.0,
        "proactive_score": 0.5,
        "tool_pass1": 1.0,
        "not_addressed_response_rate": 0.0,
        "refusal_rate": 1.0,
        "over_refusal_rate": 0.0,
    }.items():
        if key in scores:
            assert scores[key] <= good if good == 0.0 else scores[key] >= good, (key, scores)
    if "startstop_miou" in scores:
        assert scores["startstop_miou"] > 0.8
    if "talking_when_cut" in scores:  # the world's line is always cut in on, and stops
        assert scores["talking_when_cut"] == 1.0 and scores["stop_latency_s"] <= 0.4


def test_splits_and_indices_give_different_episodes_and_the_same_index_repeats(tts):
    a, b = generate("turn_taking", 0, "train", tts=tts), generate("turn_taking", 0, "eval", tts=tts)
    assert not np.array_equal(a.timeline.user_audio, b.timeline.user_audio)
    again = generate("turn_taking", 0, "train", tts=tts)
    assert np.array_equal(a.timeline.user_audio, again.timeline.user_audio)
    with pytest.raises(ConfigError, match="juggling"):
        generate("juggling", 0)
    with pytest.raises(ConfigError, match="split"):
        generate("pause", 0, "test")


def test_model_words_survive_the_trip_through_turn_tensors(tts):
    ep = generate("tool_use", 1, tts=tts)
    codec, norm = DMelCodec(LAYOUT.dmel_levels), MelNorm(LAYOUT.mel_channels)
    batch = timeline_to_turns(ep.timeline, LAYOUT, codec, norm)
    back = turns_to_timeline(batch, LAYOUT, norm)
    want = [(round(e.t, 1), e.text) for e in ep.timeline.of("model_word")]
    got = [(e.t, e.text) for e in back.of("model_word")]
    assert [t for _, t in got] == [t for _, t in want]
    for (tg, _), (tw, _) in zip(
        got, want
    ):  # heard at the turn boundary at or before, or one turn later
        assert -0.21 <= tg - tw <= 0.21
    assert [e.text for e in back.of("delegation")] == [e.text for e in ep.timeline.of("delegation")]
    assert any(e.text.startswith("t1: ") for e in back.of("result"))
    cached = timeline_tensors(ep.timeline, LAYOUT, codec)
    assert cached["audio_in"].dtype.itemsize == 1 and cached["control"].sum() == batch.control.sum()


def test_a_line_cut_by_an_interruption_stops_at_a_turns_end_with_its_text(tts):
    """A cut line sounds to the end of the turn the cut falls in (a turn's sound is drawn the
    turn before it plays), 0.1-0.3 s after the user cuts in, and its text keeps every word
    that starts before then. A stop mid-turn in its voice, or text ended at the cut, would
    tell the model to stop before the user's voice could, and it would learn to stop when
    its own voice or text does."""
    codec, norm = DMelCodec(LAYOUT.dmel_levels), MelNorm(LAYOUT.mel_channels)
    turn = LAYOUT.turn_seconds
    for i in range(8):
        ep = generate("interruption", i, tts=tts)
        line, barge = ep.timeline.of("model_speech")[0], ep.rendered.turns[1][0]
        assert abs(line.end / turn - round(line.end / turn)) < 0.01  # on a turn's end
        assert 0.1 - 1e-3 <= line.end - barge < 0.3 + 1e-3
        words = [e for e in ep.timeline.of("model_word") if line.t <= e.t < line.end + turn]
        full = model_voice().speak(line.text, tts.rate).shifted(line.t)
        assert [w.text for w in words] == [w.text for w in full if w.t < line.end]
        control = timeline_to_turns(ep.timeline, LAYOUT, codec, norm).control[0].tolist()
        stop = next(k for k in range(int(line.t / turn) + 1, len(control)) if control[k] == 0)
        assert stop == round(line.end / turn) - 1  # OUT_k plays in turn k + 1
        assert int(words[-1].t // turn) - 1 < stop  # its text turn is one the model speaks in


def test_real_recording_loads_as_a_timeline(tmp_path):
    rate = 16_000
    user = (0.1 * np.sin(np.arange(rate * 4) / 7)).astype(np.float32)
    model = np.zeros(rate * 4, np.float32)
    model[rate * 2 : rate * 3] = 0.1
    (tmp_path / "a.wav").write_bytes(wav_bytes([user, model], rate))
    (tmp_path / "a.json").write_text(
        json.dumps(
            {
                "user": [{"word": "hello", "start": 0.2, "end": 0.6}],
                "model": [
                    {"word": "hi", "start": 2.0, "end": 2.3},
                    {"word": "there", "start": 2.4, "end": 2.9},
                ],
            }
        )
    )
    tl = load_recording(tmp_path / "a.wav", tmp_path / "a.json", LAYOUT)
    assert tl.duration == pytest.approx(4.0) and [e.text for e in tl.of("model_word")] == [
        "hi",
        "there",
    ]
    assert [(e.t, e.end) for e in tl.of("model_speech")] == [(2.0, 2.9)]
    part = crop(tl, 2.0, 2.0, rate)
    assert part.of("model_word")[0].t == 0.0 and len(part.user_audio) == 2 * rate
    (tmp_path / "b.wav").write_bytes(wav_bytes([user], rate))
    with pytest.raises(InputError, match="stereo"):
        load_recording(tmp_path / "b.wav", tmp_path / "a.json", LAYOUT)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="alignment"):
        load_recording(tmp_path / "a.wav", tmp_path / "bad.json", LAYOUT)


def test_readback_drill_copies_a_typed_request_and_its_streamed_result(tts):
    """The training-only drills. readback: each typed request is delegated ("calculate"), and
    the line that says its result starts only once the result has streamed into the background
    slots (4 bytes a 200 ms turn). dictation: spoken sums the transcript writes as digits. They
    have no held-out split, and WorldData adds them to training only."""
    from microturn.config import TrainConfig
    from microturn.train.data import WorldData
    from microturn.world.families import ACK, DRILL_GENERATORS, REQUEST

    ep = generate("readback", 2, "train", tts=tts)
    tl = ep.timeline
    typed, asks, results = tl.of("user_text"), tl.of("delegation"), tl.of("result")
    assert len(typed) == len(asks) == len(results) >= 1
    lines = [e for e in tl.of("model_speech") if e.text != ACK]
    for q, ask, res, line in zip(typed, asks, results, lines):
        assert ask.text == REQUEST and q.text.startswith("What is ")
        value = res.text.split(" is ")[-1]
        assert line.text.endswith(f" is {value}") and line.t >= res.t + (len(res.text) + 1) / 20
    with pytest.raises(ConfigError, match="training drill"):
        generate("readback", 0, "eval", tts=tts)
    # dictation: spoken sums, which the listening transcript writes as digits
    ep = generate("dictation", 0, "train", tts=tts)
    sums = [u.text for u in ep.scenario.user]
    assert len(sums) >= 3 and all(any(c.isdigit() for c in u) for u in sums)
    codec, norm = DMelCodec(LAYOUT.dmel_levels), MelNorm(LAYOUT.mel_channels)
    heard = timeline_to_turns(ep.timeline, LAYOUT, codec, norm).heard
    written = bytes(t for t in heard.flatten().tolist() if t < 256).decode()
    assert written.split() == [w.lower().rstrip(".") for u in sums for w in u.split()]
    cfg = TrainConfig(drills={"readback": 2}, family_weights={"pause": 2})
    train, held_out = WorldData(LAYOUT, cfg), WorldData(LAYOUT, cfg, "eval")
    assert train.cycle.count("readback") == 2 and "readback" not in held_out.cycle
    assert set(DRILL_GENERATORS).isdisjoint(FAMILY_GENERATORS)
    with pytest.raises(ConfigError, match="train.drills"):
        WorldData(LAYOUT, TrainConfig(drills={"juggling": 1}))


@pytest.mark.parametrize("family", ["tool_use", "readback"])
def test_a_delegation_comes_before_the_acknowledgement_and_its_result_after_it(family, tts):
    """The request is the turn's first writing, ends with a space like a word, and the
    acknowledgement's first word comes next, written the turn before it is heard; the result
    arrives only after the request has been sent."""
    from microturn.config import TrainConfig
    from microturn.streams.text import ByteTokenizer
    from microturn.train.data import WorldData
    from microturn.world.families import REVISIONS

    tok = ByteTokenizer()
    ep = generate(family, 1, "train", tts=tts)
    b = timeline_to_turns(ep.timeline, LAYOUT, DMelCodec(LAYOUT.dmel_levels), MelNorm(80))
    flat = b.text_out[0].reshape(-1).tolist()
    written = [t for t in flat if t != tok.PAD]
    starts = [i for i, t in enumerate(written) if t == tok.DELEGATE]
    assert starts and len(starts) == len(ep.timeline.of("result"))
    for i in starts:
        assert i == 0 or bytes(written[i - 2 : i]) == b". "  # after a line, not inside one
        end = written.index(tok.DELEGATE_END, i)
        assert bytes(written[end + 1 : end + 6]) == b" Let "
    heard = [w.t for w in ep.timeline.of("model_word") if w.text == "Let"]
    lets = [i for i in range(len(flat) - 3) if flat[i : i + 4] == list(b"Let ")]
    assert [i // LAYOUT.text_out_slots + 1 for i in lets] == [int(t / 0.2) for t in heard]
    sent = [i // LAYOUT.text_out_slots for i, t in enumerate(flat) if t == tok.DELEGATE_END]
    rows = b.background[0].tolist()
    arrived = [k for k, r in enumerate(rows) if r[0] == ord("t") and chr(r[1]).isdigit()]
    assert len(arrived) == len(sent) and all(k > s for s, k in zip(sent, arrived))
    # the cache keeps a revised family's episodes apart from those rendered before
    data = WorldData(LAYOUT, TrainConfig())
    i = next(i for i in range(100) if data.family_of(i)[0] == "tool_use")
    assert f"tool_use-r{REVISIONS['tool_use']}-" in data.path(i).name


def test_a_result_can_stream_in_the_turn_after_its_request_is_sent(tts):
    """A local agent answers as soon as the request is written (live, the embedded agent's
    result comes the next turn, while the acknowledgement is said); a remote one seconds later.
    tool_use episodes show both."""
    from microturn.streams.text import ByteTokenizer
    from microturn.world.families import FIRST_RESULT_S

    gaps = []
    for i in range(12):
        tl = generate("tool_use", i, "train", tts=tts).timeline
        (asked,), (result,) = tl.of("delegation"), tl.of("result")
        gaps.append(result.t - asked.t)
        b = timeline_to_turns(tl, LAYOUT, DMelCodec(LAYOUT.dmel_levels), MelNorm(80))
        flat = b.text_out[0].reshape(-1).tolist()
        sent = flat.index(ByteTokenizer.DELEGATE_END) // LAYOUT.text_out_slots
        rows = b.background[0].tolist()
        arrived = next(k for k, r in enumerate(rows) if r[0] != ByteTokenizer.PAD)
        assert arrived > sent
    assert FIRST_RESULT_S <= min(gaps) < 0.6 and max(gaps) > 1.5
