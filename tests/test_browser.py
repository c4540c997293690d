"""The browser client in real headless Chromium (Debian's `chromium`, driven by Playwright):
espeak-ng speech as the fake microphone, each connection state a user can meet, the lanes,
meters and latencies filling from the server's events, the recording it downloads, and
screenshots at desktop and phone width (written to the test's tmp folder and /tmp/client_shots)."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from conftest import writing_model

from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.server.app import create_app
from microturn.server.drain import Drain, DrainingServer
from microturn.streams.audio import wav_bytes
from microturn.world.tts import EspeakTTS, Voice

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = Path("/tmp/client_shots")
TOKEN = "s3cret"


class Served:
    """A uvicorn server on a fixed loopback port that a test can stop and start again (the
    page must see the server go away and come back at the same address)."""

    def __init__(self, app, port: int) -> None:
        import uvicorn

        self.app = app
        cfg = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.srv = DrainingServer(cfg, app.state.hub, app.state.drain)  # as `microturn serve`
        self.thread = threading.Thread(target=self.srv.run, daemon=True)
        self.thread.start()
        while not self.srv.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self.srv.should_exit = True
        self.thread.join(10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory) -> Path:
    """Two sentences with pauses: the fake microphone loops it, so you talk, pause, talk."""
    speech = EspeakTTS().speak("Hello there. What is the capital of France?", Voice("en-us"))
    gap = np.zeros(12_000, np.float32)
    wav = tmp_path_factory.mktemp("mic") / "mic.wav"
    audio = np.concatenate([speech.audio, gap, speech.audio[:16_000], gap])
    wav.write_bytes(wav_bytes([audio], 16_000))
    return wav


@pytest.fixture(scope="module")
def browser(mic_wav):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "Debian's chromium is required (apt-get install chromium); .ci/run installs it"
    with sync_playwright() as pw:  # no fake UI: each context's permissions decide, as a user would
        b = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic_wav}",
            "--autoplay-policy=no-user-gesture-required"])
        yield b
        b.close()


def open_page(browser, url: str, width: int, height: int, mic: bool = True):
    ctx = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True,
                              permissions=["microphone", "camera"] if mic else [])
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return page, errors


SUMMARY = ("(m => ({state: m.state, states: m.states, events: m.events, played: m.played,"
           " said: m.said, heard: m.heard, latency: m.latency,"
           " frames: m.rec && m.rec.frames.length,"
           " turns: m.rec && m.rec.turns}))(window.microturn)")


def wait_for(page, condition: str, timeout_s: float = 20) -> None:
    """Wait for a JS condition; on timeout say what the page had got so far."""
    from playwright.sync_api import TimeoutError

    try:
        page.wait_for_function(condition, timeout=timeout_s * 1000)
    except TimeoutError:
        got = page.evaluate(SUMMARY)
        raise AssertionError(f"{condition} not reached in {timeout_s} s: {got}") from None


def wait_state(page, name: str, timeout_s: float = 20) -> None:
    wait_for(page, f"window.microturn.state === '{name}'", timeout_s)


def shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    SHOTS.mkdir(exist_ok=True)
    shutil.copy(path, SHOTS / name)
    print(f"screenshot: {path} (copied to {SHOTS / name})")
    return path


def test_client_states_lanes_meters_latencies_and_recording(browser, tmp_path):
    engine = Engine(writing_model(), EngineConfig(max_sessions=2))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = Served(create_app(engine, max_sessions=1, token=TOKEN), port)
    try:
        page, errors = open_page(browser, url, 1280, 900)
        page.wait_for_selector("#token-row:not([hidden])")  # /healthz says a token is needed
        page.click("#start")
        wait_state(page, "badtoken")
        page.fill("#token", TOKEN)
        page.select_option("#camera", index=1)  # the fake camera
        page.focus("#start")
        page.keyboard.press("Enter")
        wait_state(page, "live")
        page.wait_for_function("document.getElementById('in-meter').value > -45", timeout=10_000)
        wait_for(page, "(m => m.rec.turns >= 30 && m.played > 0 && m.rec.frames.length > 5"
                 " && m.heard.trim() && m.said.trim()"
                 " && m.latency.answers.length + m.latency.stops.length > 0)(window.microturn)", 30)
        wait_for(page, "document.getElementById('out-meter').value > -60", 10)  # the model is heard

        second, second_errors = open_page(browser, url + f"?token={TOKEN}", 1280, 900)
        second.click("#start")  # one slot, taken by the first page
        wait_state(second, "full")
        full_text = second.inner_text("#status")
        shot(second, tmp_path, "client_full.png")
        second.context.close()

        page.fill("#typed", "hello from the keyboard")
        page.press("#typed", "Enter")
        page.wait_for_timeout(400)
        desktop = shot(page, tmp_path, "client_desktop.png")

        server.stop()  # the server goes away mid-conversation ...
        wait_state(page, "reconnecting")
        reconnect_text = page.inner_text("#status")
        shot(page, tmp_path, "client_reconnecting.png")
        server = Served(create_app(engine, max_sessions=1, token=TOKEN, drain=Drain(0.5)), port)
        wait_state(page, "live")
        page.wait_for_function("window.microturn.events['session.started'] === 2", timeout=20_000)
        page.select_option("#camera", "")  # the camera off while live: same session, no frames
        wait_for(page, "document.getElementById('camera-box').hidden", 5)
        frames_off = page.evaluate("window.microturn.rec.frames.length")
        page.wait_for_timeout(1000)

        server.app.state.drain.begin()  # SIGTERM: after the 0.5 s grace, server_shutdown, exit
        wait_state(page, "reconnecting")
        drain_text = page.inner_text("#status")
        server.thread.join(10)
        server = Served(create_app(engine, max_sessions=1, token=TOKEN), port)
        wait_for(page, "window.microturn.events['session.started'] === 3")
        st = page.evaluate("(m => ({states: m.states, events: m.events, played: m.played,"
                           " said: m.said, heard: m.heard, latency: m.latency,"
                           " frames: m.rec.frames.length,"
                           " answer: document.getElementById('answer-latency').textContent,"
                           " stop: document.getElementById('stop-latency').textContent,"
                           " lag: document.getElementById('lag').textContent}))(window.microturn)")
        page.click("#stop")
        with page.expect_download() as got:
            page.click("#save-wav")
        wav_path = tmp_path / got.value.suggested_filename
        got.value.save_as(wav_path)
        with page.expect_download() as got:
            page.click("#save-json")
        json_path = tmp_path / got.value.suggested_filename
        got.value.save_as(json_path)
        timeline = json.loads(json_path.read_text())
        print(f"recording: {wav_path} and {json_path}")
        page.context.close()
    finally:
        server.stop()
    assert not errors and not second_errors, errors + second_errors
    assert st["states"][:4] == ["idle", "connecting", "badtoken", "connecting"]
    i = st["states"].index("live")
    want = ["live", "reconnecting", "live", "reconnecting", "live"]
    assert st["states"][i:] == want, st["states"]
    assert "slot" in full_text and "Reconnecting" in reconnect_text
    assert st["events"]["error"] == 1 and "shutting down" in drain_text  # server_shutdown
    assert st["played"] > 1600  # > 0.1 s of non-silent model audio came out of the speakers
    assert st["events"]["session.started"] == 3 and st["frames"] == frames_off  # no new session
    assert st["frames"] > 5 and st["heard"].strip() and st["said"].strip()
    n_lat = len(st["latency"]["answers"]) + len(st["latency"]["stops"])
    assert n_lat > 0 and (st["answer"] != "–" or st["stop"] != "–")
    assert re.fullmatch(r"\d+\.\d s", st["lag"])  # how far the model's clock is behind the mic
    assert desktop.stat().st_size > 20_000

    with wave.open(io.BytesIO(wav_path.read_bytes())) as w:  # RIFF, stereo, 16 kHz PCM16
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 16_000)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert wav_path.read_bytes()[:4] == b"RIFF"
    assert np.abs(pcm[:, 0]).max() > 3000  # your espeak-ng speech on the left ...
    assert np.abs(pcm[:, 1]).max() > 30  # ... the model's audio on the right
    assert abs(timeline["duration"] - len(pcm) / 16_000) < 0.01
    kinds = {e["kind"] for e in timeline["events"]}
    assert {"model_word", "heard_word", "user_text", "model_speech"} <= kinds
    assert all(
        set(e) == {"t", "kind", "text", "end"} and 0 <= e["t"] <= timeline["duration"]
        for e in timeline["events"]
    )


def test_client_on_a_phone_mic_denied_then_live(browser, tmp_path):
    engine = Engine(writing_model(), EngineConfig(max_sessions=1))
    port = free_port()
    server = Served(create_app(engine), port)
    try:
        page, errors = open_page(browser, f"http://127.0.0.1:{port}/", 390, 844, mic=False)
        unlabelled = page.evaluate(
            "[...document.querySelectorAll('input, select, button')]"
            ".filter(e => !e.hidden && !(e.labels && e.labels.length)"
            " && !e.textContent.trim()).map(e => e.id)"
        )
        tabs = 0  # keyboard only: Tab to Start, Enter
        while page.evaluate("document.activeElement.id") != "start" and tabs < 10:
            page.keyboard.press("Tab")
            tabs += 1
        page.keyboard.press("Enter")
        wait_state(page, "micdenied")
        denied = page.inner_text("#status")
        assert page.is_hidden("#token-row")  # no --token: no token field
        shot(page, tmp_path, "client_phone_denied.png")
        page.context.close()

        page, errors2 = open_page(browser, f"http://127.0.0.1:{port}/", 390, 844)
        page.click("#start")
        wait_state(page, "live")
        page.wait_for_function("window.microturn.rec.turns >= 25", timeout=20_000)
        width = page.evaluate("document.documentElement.scrollWidth")
        phone = shot(page, tmp_path, "client_phone.png")
        # the latency rule on a hand-made grid: you talk in turns 0-2, the model starts at 5;
        # it talks 8-14, you cut in at 10, it stops at 12 (speaks through 11)
        lat = page.evaluate("""import('./record.js').then(r => {
            const loud = Array(16).fill(false), speaking = Array(16).fill(false);
            [0, 1, 2, 10, 11].forEach(k => { loud[k] = true; });
            [5, 6, 8, 9, 10, 11].forEach(k => { speaking[k] = true; });
            return r.latencies(loud, speaking); })""")
        page.click("#stop")
        page.context.close()
    finally:
        server.stop()
    assert not errors and not errors2, errors + errors2
    assert "Microphone blocked" in denied and "Allow" in denied
    assert not unlabelled and tabs < 10  # every control named; Start reached by Tab
    assert width <= 390  # nothing wider than the phone: no sideways scrolling
    assert phone.stat().st_size > 10_000
    assert [a["s"] for a in lat["answers"]] == [0.4] and [a["at"] for a in lat["answers"]] == [1.0]
    assert [s["s"] for s in lat["stops"]] == [0.4] and [s["at"] for s in lat["stops"]] == [2.0]


def test_timeline_page_renders_in_chromium(browser, tmp_path):
    """The HTML timeline of `microturn bench --timeline` and `microturn demo` as a person sees it:
    every lane drawn, spans where the speech was, words under them, nothing broken."""
    from microturn.viz import Lane, write_html

    lanes = [
        Lane("user", [(0.0, 1.5), (4.0, 5.0)], [(0.0, "what"), (0.6, "is"), (4.0, "stop")]),
        Lane("microturn", [(1.8, 4.2)], [(1.8, "Paris <b>")]),
        Lane("vad_harness", [(2.1, 4.1)], [(2.1, "Paris")]),
        Lane("background", [], [(2.5, "delegation: 2**32")]),
    ]
    page_path = write_html(
        tmp_path / "t.html", "turn_taking_capital — turn_taking", 6.0, lanes, ["scores: {}"]
    )
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(page_path.as_uri())
    rects = page.evaluate(
        "[...document.querySelectorAll('svg rect')].map(r => {const b ="
        " r.getBoundingClientRect(); return [b.x, b.width, b.height]; })"
    )
    labels = page.evaluate("[...document.querySelectorAll('svg text')].map(t => t.textContent)")
    shot = page.screenshot(full_page=True)
    page.close()
    assert not errors
    assert len(rects) == 4 and all(w > 0 and h > 0 for _, w, h in rects)
    (ux, uw, _), _, (mx, mw, _), _ = rects
    assert ux < mx < ux + uw + mw  # the model's span starts after the user's first, same axis
    assert abs(uw / 1.5 - mw / 2.4) < 1.0  # one time scale for every lane
    assert {"user", "microturn", "vad_harness", "background"} <= set(labels)
    assert any("Paris <b>" in t for t in labels)  # escaped, shown as text
    assert len(shot) > 5000
