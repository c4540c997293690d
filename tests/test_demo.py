"""`microturn demo`: the scripted conversation runs end to end and writes what it promises."""

from __future__ import annotations

import io
import json
import wave

from microturn.cli import main
from microturn.demo import DURATION_S, LiveTimeline, describe, moments, script
from microturn.model.checkpoint import DEFAULT_CHECKPOINT, load_default, save_model
from microturn.model.interaction import InteractionModel
from microturn.runtime.offline import OfflineResult
from microturn.streams.timeline import Timeline
from microturn.streams.turns import Event
from microturn.world.tts import EspeakTTS


def test_script_covers_the_families_it_promises():
    ep = script(EspeakTTS())
    text = " ".join(w.text for w in ep.rendered.user_words)
    for phrase in (
        "capital of France",
        "what I really want",
        "long story",
        "Hey Sam",
        "say now in five",
        "27 times 14",
        "whenever I say apple",
        "green circle",
    ):
        assert phrase.lower() in text.lower(), phrase
    assert ep.rendered.recording.frames and ep.scenario.duration == DURATION_S
    assert max(w.end for w in ep.rendered.user_words) < DURATION_S - 10


def test_demo_writes_wav_png_html_with_a_live_timeline(tmp_path, small_cfg, capsys):
    ckpt = tmp_path / "m.safetensors"
    save_model(InteractionModel(small_cfg), ckpt, half=True)
    out = tmp_path / "demo"
    assert main(["demo", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "│" in ln]
    assert len(lines) == int(DURATION_S)  # one line a second
    assert "capital" in "".join(lines)
    with wave.open(io.BytesIO((out / "demo.wav").read_bytes())) as w:
        assert w.getnchannels() == 2 and abs(w.getnframes() / w.getframerate() - DURATION_S) < 0.01
    assert (out / "demo_timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "demo_timeline.html").read_text()
    assert all(lane in page for lane in (">user<", ">model<", ">background<"))
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["seconds"] == DURATION_S and summary["wall_s"] > 0
    assert [m["moment"] for m in summary["moments"]] == [
        "turn-taking",
        "pause",
        "interruption",
        "not addressed",
        "TimeSpeak",
        "delegation",
        "CueSpeak",
        "visual",
    ]


def test_moments_report_what_a_listener_hears():
    ep = script(EspeakTTS())
    turns = ep.rendered.turns
    apples = [
        w.t
        for w in ep.rendered.user_words
        if w.text.lower().startswith("apple") and w.t >= turns[10][0]
    ]
    appears = ep.rendered.truth["appears"]
    said = [
        (turns[0][1] + 0.4, "Paris."),  # answers 0.4 s after the question
        (turns[1][1] - 0.2, "Bingo!"),  # over the user's last word,
        (turns[1][1] + 0.5, "um"),  # and into the pause
        (turns[3][1] + 0.3, "Once"),
        (turns[3][1] + 0.6, "upon"),
        (turns[6][1] + 5.2, "now."),  # 0.2 s late
        (turns[7][1] + 3.0, "378."),
        (apples[0] + 0.5, "beep"),  # one apple of two
        (appears + 0.8, "there"),
    ]
    events = [Event(t, "model_word", w, t + 0.2) for t, w in said]
    events += [
        Event(turns[3][1] + 0.3, "model_speech", "", turns[4][0] + 0.35)
    ]  # cut 0.35 s after "Wait"
    events += [Event(turns[7][1] + 0.2, "delegation", "27*14")]
    got = {
        m["moment"]: m for m in moments(ep, OfflineResult(Timeline(DURATION_S, events), [], b""))
    }
    assert got["turn-taking"]["heard"] == "Paris." and got["turn-taking"]["latency_s"] == 0.4
    assert (
        got["pause"]["heard_before_user_resumed"] == "Bingo! um"
        and got["pause"]["answer_heard"] == ""
    )
    assert got["interruption"]["talking_when_cut"] and got["interruption"]["stop_latency_s"] == 0.35
    assert got["not addressed"]["heard"] == ""
    assert got["TimeSpeak"]["now_at_s"] == 5.2
    assert got["delegation"] == {**got["delegation"], "tasks": 1, "answer_at_s": 3.0}
    assert got["CueSpeak"] == {**got["CueSpeak"], "apples": 2, "beeps": 1, "beeps_within_1_5_s": 1}
    assert got["visual"]["latency_s"] == 0.8 and got["visual"]["heard"] == "there"
    assert not got["visual"]["talking_when_it_appeared"]
    assert "stop_latency_s=0.35" in describe(got["interruption"])


def test_live_timeline_prints_one_line_per_second():
    buf = io.StringIO()
    view = LiveTimeline(stream=buf)
    view.flush(1.0)
    assert buf.getvalue() == ""


def test_the_default_model_ships_small_and_loads():
    assert DEFAULT_CHECKPOINT.stat().st_size <= 20 * 1024 * 1024
    model = load_default()
    assert model.num_params() > 1_000_000
