"""Acoustic conditions, each checked on real espeak-ng speech, and the robustness bench."""

import json
from dataclasses import replace

import numpy as np
import pyroomacoustics as pra
import pytest

from microturn.errors import ConfigError
from microturn.world import acoustics as A
from microturn.world.tts import EspeakTTS, Voice

R = A.RATE
USER_AT, MODEL_AT, USER2_AT, SECONDS = 1.0, 4.0, 7.0, 10.0


@pytest.fixture(scope="module")
def tts() -> EspeakTTS:
    return EspeakTTS()


@pytest.fixture(scope="module")
def tracks(tts) -> A.Tracks:
    """The user asks at 1 s and 7 s; the model (another voice) answers at 4 s, alone."""
    user, model = np.zeros(int(SECONDS * R), np.float32), np.zeros(int(SECONDS * R), np.float32)
    spans, model_spans = [], []
    for t, text in (
        (USER_AT, "What is the capital of France?"),
        (USER2_AT, "And how far is the moon?"),
    ):
        a = tts.speak(text, Voice("en-us")).audio
        user[int(t * R) : int(t * R) + len(a)] = a
        spans.append((t, t + len(a) / R))
    m = tts.speak("Paris is the capital of France.", Voice("en-gb-x-rp")).audio
    model[int(MODEL_AT * R) : int(MODEL_AT * R) + len(m)] = m
    model_spans.append((MODEL_AT, MODEL_AT + len(m) / R))
    assert spans[0][1] < MODEL_AT and model_spans[0][1] + 0.2 < USER2_AT
    return A.Tracks(user, np.zeros_like(user), model, spans, model_spans)


def mic(c: A.Conditions, tracks: A.Tracks, seed: int = 0, bank=()) -> np.ndarray:
    return A.render_mic(c, tracks, np.random.default_rng(seed), bank)


def dbfs_peak(x: np.ndarray) -> float:
    return 20 * np.log10(np.max(np.abs(x)))


def fit(x: np.ndarray, ref: np.ndarray) -> float:
    """Least-squares scale of `ref` in `x`."""
    return float(np.dot(x, ref) / np.dot(ref, ref))


@pytest.mark.parametrize(
    "kind,snr", [("white", 0.0), ("pink", 12.0), ("babble", 25.0), ("noisy", None)]
)
def test_noise_is_at_the_stated_snr(tts, tracks, kind, snr):
    c = (
        A.preset("noisy")
        if kind == "noisy"
        else A.Conditions("t", floor_dbfs=-100.0, noise=kind, snr_db=snr)
    )
    bank = []
    if kind == "babble":
        voices = [Voice("en-us", "f2"), Voice("en-gb"), Voice("en-029"), Voice("en-gb-scotland")]
        bank = A.babble_bank("test", lambda text, i: tts.speak(text, voices[i]).audio)
    x = mic(c, tracks, bank=bank)
    speech = fit(x, tracks.user) * tracks.user  # the user's part of the mic signal
    rest = x - speech  # the noise (and a floor far below it)
    measured = 10 * np.log10(A.active_level(speech) / np.mean(rest**2))
    assert A.SNR_RANGE_DB[0] - 0.5 <= measured <= A.SNR_RANGE_DB[1] + 0.5
    assert abs(measured - c.snr_db) < 0.5, (kind, measured, c.snr_db)


def test_gain_sets_the_peak_and_hot_gain_clips(tracks):
    assert abs(dbfs_peak(mic(A.preset("low_gain"), tracks)) - -30.0) < 0.5
    hot = mic(A.preset("hot_gain"), tracks)
    clipped = np.mean(np.abs(hot) >= 0.999)
    assert np.max(np.abs(hot)) == pytest.approx(1.0) and 0 < clipped < 0.05
    rng = np.random.default_rng(1)
    for _ in range(30):  # the drawn gains, through the native channel (a filter moves peaks)
        c = replace(A.sample(rng), channel="native", noise="none")
        peak = dbfs_peak(mic(c, tracks))
        assert A.GAIN_RANGE_DBFS[0] - 0.5 <= peak <= 1e-4, (c, peak)
        assert (peak > -0.01) == (c.clip_db > 0) or c.peak_dbfs > -0.01


def test_digital_silence_is_exactly_zero_between_utterances(tracks):
    for c in (
        A.preset("digital_silence"),
        A.Conditions("gated", floor_dbfs=None, noise="pink", snr_db=10.0),
    ):
        x = mic(c, tracks)
        (a0, a1), (b0, b1) = tracks.speech
        gaps = [
            x[: int((a0 - A.GATE_PRE_S) * R)],
            x[int((a1 + A.GATE_POST_S) * R) : int((b0 - A.GATE_PRE_S) * R)],
            x[int((b1 + A.GATE_POST_S) * R) :],
        ]
        assert all(np.all(g == 0.0) for g in gaps) and sum(map(len, gaps)) > 4 * R
        assert np.count_nonzero(x[int(a0 * R) : int(a1 * R)]) > 0.5 * (a1 - a0) * R
    # elsewhere the quiet is room tone, never exact zeros
    assert np.count_nonzero(mic(A.preset("clean"), tracks)[: int(0.9 * R)]) == int(0.9 * R)


def test_the_world_draws_digital_silence_and_clean_episodes_often():
    rng = np.random.default_rng(0)
    drawn = [A.sample(rng) for _ in range(2000)]
    silent = np.mean([c.digital_silence for c in drawn])
    clean = np.mean(
        [
            c.noise == "none" and c.room is None and c.channel == "native" and c.echo_db is None
            for c in drawn
        ]
    )
    assert 0.35 < silent < 0.45 and 0.3 < clean < 0.4
    assert {c.noise for c in drawn} == set(A.NOISES) and {c.channel for c in drawn} == set(
        A.CHANNELS
    )


def _decay_s(x: np.ndarray, end: float, level: float, drop_db: float = 40.0) -> float:
    """Seconds after `end` until the 10 ms frame power stays `drop_db` below `level`."""
    hop = R // 100
    seg = x[int(end * R) : int((end + 1.0) * R)]
    p = np.mean(seg[: len(seg) // hop * hop].reshape(-1, hop) ** 2, axis=1)
    loud = np.nonzero(p > level * 10 ** (-drop_db / 10))[0]
    return (loud[-1] + 1) * hop / R if len(loud) else 0.0


def test_reverb_lengthens_the_energy_decay(tracks):
    end = tracks.speech[0][1]
    decay = {}
    for name in ("clean", "reverberant"):
        x = mic(A.preset(name), tracks)
        decay[name] = _decay_s(x, end, A.active_level(x[int(USER_AT * R) : int(end * R)]))
    assert decay["clean"] < 0.05 and decay["reverberant"] > 0.2, decay
    room = A.preset("reverberant").room
    for h in A.rir(room, np.random.default_rng(0)):  # the hybrid RIR decays at the room's RT60
        assert abs(pra.experimental.measure_rt60(h, fs=R) - room.rt60) < 0.15 * room.rt60


def _share_above(x: np.ndarray, hz: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    return float(spec[np.fft.rfftfreq(len(x), 1 / R) > hz].sum() / spec.sum())


def test_every_drawn_room_can_ring_as_drawn():
    """A large room at a short RT60 needs walls that absorb more than everything, which
    pyroomacoustics refuses (it stopped a 20,000-episode render); the draw never asks for it."""
    assert A.shortest_rt60((10.0, 8.0, 4.0)) > A.RT60_RANGE_S[0]  # the case that failed
    rng = np.random.default_rng(7)
    for _ in range(3000):
        room = A.sample_room(rng)
        pra.inverse_sabine(room.rt60, list(room.dims))  # raises if the walls cannot do it
        assert A.RT60_RANGE_S[0] <= room.rt60 <= A.RT60_RANGE_S[1]


def test_telephone_removes_energy_above_4_khz(tracks):
    a, b = (int(t * R) for t in tracks.speech[0])
    assert _share_above(mic(A.preset("clean"), tracks)[a:b], 4000) > 1e-3  # espeak-ng has some
    tel = mic(A.preset("telephone"), tracks)[a:b]
    assert _share_above(tel, 4000) < 1e-5 and np.max(np.abs(tel)) > 0.05


def test_echo_leak_adds_the_models_voice_at_its_level_and_delay(tracks):
    c = A.preset("echo_leak")
    x = mic(c, tracks)
    g = fit(x[: int(MODEL_AT * R)], tracks.user[: int(MODEL_AT * R)])  # the user's gain
    m0, m1 = (int(t * R) for t in tracks.model_speech[0])
    window = slice(m0, m1 + int(0.2 * R))  # the model alone speaks here
    lags = np.arange(int(0.15 * R))
    corr = [np.dot(x[window], np.roll(tracks.model, k)[window]) for k in lags]
    lag = int(lags[int(np.argmax(corr))])
    assert abs(lag / R - c.echo_delay_s) < 1.5 / R
    level = 20 * np.log10(fit(x[window], np.roll(tracks.model, lag)[window]) / g)
    assert abs(level - c.echo_db) < 0.5, level
    assert A.ECHO_RANGE_DB[0] <= level <= A.ECHO_RANGE_DB[1]


def test_bad_conditions_are_named():
    with pytest.raises(ConfigError, match="noise 'rain'"):
        A.Conditions("x", noise="rain")
    with pytest.raises(ConfigError, match="snr_db = 40"):
        A.Conditions("x", noise="white", snr_db=40.0)
    with pytest.raises(ConfigError, match="unknown acoustic preset 'loud'"):
        A.preset("loud")


@pytest.mark.slow
def test_bench_conditions_smoke(small_model, tmp_path, monkeypatch):
    """The CLI end to end on one short (6 s) turn-taking episode under every preset, with a
    random model: eight bench runs, the fewest that cover every preset."""
    from microturn.cli import main
    from microturn.eval import conditions
    from microturn.eval.bench import METRICS
    from microturn.model.checkpoint import save_model

    monkeypatch.setenv("MICROTURN_VOCODER", "auto")  # Griffin-Lim if no vocoder ships
    monkeypatch.setattr(conditions, "ROBUSTNESS_FAMILIES", ("turn_taking",))
    monkeypatch.setattr(conditions, "EPISODE_S", 6.0)
    save_model(small_model, tmp_path / "m.safetensors")
    out = tmp_path / "c.json"
    args = [
        "bench",
        "--suite",
        "eval",
        "--conditions",
        "--per-family",
        "1",
        "--checkpoint",
        str(tmp_path / "m.safetensors"),
        "--json",
        str(out),
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert main(args) == 0
    got = json.loads(out.read_text())["conditions"]
    assert set(got) == set(A.PRESETS)
    for systems in got.values():
        assert set(systems) == {"microturn", "vad_harness"}
        assert all(set(METRICS) <= set(s) for s in systems.values())
        assert systems["vad_harness"]["turn_taking_tor"] is not None
        # the recogniser's intelligibility check is the plain bench's, not the table's
        assert all("audio_text_agreement" not in s for s in systems.values())
    assert (tmp_path / "conditions.png").stat().st_size > 10_000
    assert main(args[:2] + ["dev"] + args[3:]) == 2  # --conditions needs the eval split
