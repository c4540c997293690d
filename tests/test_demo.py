"""`microturn demo`: the scripted conversation runs end to end and writes what it promises."""

from __future__ import annotations

import io
import json
import wave

from microturn.cli import main
from microturn.demo import DURATION_S, LiveTimeline, script
from microturn.model.checkpoint import DEFAULT_CHECKPOINT, load_default, save_model
from microturn.model.interaction import InteractionModel
from microturn.world.tts import EspeakTTS


def test_script_covers_the_families_it_promises():
    ep = script(EspeakTTS())
    text = " ".join(w.text for w in ep.rendered.user_words)
    for phrase in ("capital of France", "what I really want", "long story", "Hey Sam", "say now in five",
                   "27 times 14", "whenever I say apple", "green circle"):
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


def test_live_timeline_prints_one_line_per_second():
    buf = io.StringIO()
    view = LiveTimeline(stream=buf)
    view.flush(1.0)
    assert buf.getvalue() == ""


def test_the_default_model_ships_small_and_loads():
    assert DEFAULT_CHECKPOINT.stat().st_size <= 20 * 1024 * 1024
    model = load_default()
    assert model.num_params() > 1_000_000
