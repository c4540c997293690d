"""The browser client in real headless Chromium (Debian's `chromium`, driven by Playwright):
espeak-ng speech as the fake microphone, model audio and transcript events back, and
audio actually played by the page's jitter-buffered player."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import serving, tiny_server_model

from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.server.app import create_app
from microturn.streams.audio import wav_bytes
from microturn.world.tts import EspeakTTS, Voice

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture()
def served():
    app = create_app(Engine(tiny_server_model(), EngineConfig(max_sessions=2)))
    with serving(app) as port:
        yield f"http://127.0.0.1:{port}", app.state.hub


def test_browser_talks_to_the_model_through_a_fake_microphone(served, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Debian's chromium is required (apt-get install chromium); .ci/run installs it"
    url, hub = served
    speech = EspeakTTS().speak("Hello there. What is the capital of France? Tell me a story.", Voice("en-us"))
    wav = tmp_path / "mic.wav"
    wav.write_bytes(wav_bytes([np.concatenate([speech.audio, np.zeros(8000, np.float32)])], 16_000))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        assert page.title() == "microturn"
        page.click("#start")
        page.wait_for_function("window.microturn.events['turn.timing'] >= 20 && window.microturn.played > 0",
                               timeout=60_000)
        page.fill("#typed", "hello from the keyboard")
        page.press("#typed", "Enter")
        page.wait_for_timeout(600)
        st = page.evaluate("window.microturn")
        loud = page.evaluate("document.querySelectorAll('#lane-user span.on').length")
        page.click("#stop")
        browser.close()
    assert not errors, errors
    assert st["events"]["session.started"] == 1 and st["events"]["output.audio.delta"] >= 20
    assert st["played"] > 1600  # > 0.1 s of non-silent model audio came out of the speakers
    assert loud >= 3  # the page heard the espeak-ng speech on its microphone ...
    assert hub.metrics.input_audio_s >= 3.0  # ... and streamed it to the server
    words = st["events"].get("output.transcript.delta", 0)
    assert words == 0 or st["said"].strip()


def test_timeline_page_renders_in_chromium(tmp_path):
    """The HTML timeline of `microturn bench --timeline` and `microturn demo` as a person sees it:
    every lane drawn, spans where the speech was, words under them, nothing broken."""
    from playwright.sync_api import sync_playwright

    from microturn.viz import Lane, write_html

    assert CHROMIUM, "Debian's chromium is required (apt-get install chromium); .ci/run installs it"
    lanes = [Lane("user", [(0.0, 1.5), (4.0, 5.0)], [(0.0, "what"), (0.6, "is"), (4.0, "stop")]),
             Lane("microturn", [(1.8, 4.2)], [(1.8, "Paris <b>")]),
             Lane("vad_harness", [(2.1, 4.1)], [(2.1, "Paris")]),
             Lane("background", [], [(2.5, "delegation: 2**32")])]
    page_path = write_html(tmp_path / "t.html", "turn_taking_capital — turn_taking", 6.0, lanes, ["scores: {}"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_path.as_uri())
        rects = page.evaluate("[...document.querySelectorAll('svg rect')].map(r => {"
                              "const b = r.getBoundingClientRect(); return [b.x, b.width, b.height]; })")
        labels = page.evaluate("[...document.querySelectorAll('svg text')].map(t => t.textContent)")
        shot = page.screenshot(full_page=True)
        browser.close()
    assert not errors
    assert len(rects) == 4 and all(w > 0 and h > 0 for _, w, h in rects)
    (ux, uw, _), _, (mx, mw, _), _ = rects
    assert ux < mx < ux + uw + mw  # the model's span starts after the user's first one, on the same axis
    assert abs(uw / 1.5 - mw / 2.4) < 1.0  # one time scale for every lane
    assert {"user", "microturn", "vad_harness", "background"} <= set(labels)
    assert any("Paris <b>" in t for t in labels)  # escaped, shown as text
    assert len(shot) > 5000
