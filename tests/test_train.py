"""The trainer on real world episodes: losses fall, torchrun (gloo, FSDP2) matches one
process, a SIGKILLed run resumes with identical losses, bad input is refused cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import BENCHMARKS, benchmark_module

from microturn.config import load_config
from microturn.errors import CheckpointError, ConfigError
from microturn.model.interaction import PAD
from microturn.streams.text import ByteTokenizer
from microturn.train.trainer import Trainer

MODEL = """[model]
d_model = 64
n_layers = 2
n_heads = 2
n_kv_heads = 1
ffn_hidden = 128
window_turns = 12
flow_width = 64
flow_depth = 2
hmlp_width = 64
"""


def write_config(tmp_path: Path, name: str = "t", model: str = MODEL, **train) -> Path:
    base = dict(steps=20, batch_size=2, lr=3e-3, warmup_steps=5, episodes=6, eval_episodes=0,
                episode_seconds=8.0, families=["turn_taking", "not_addressed"], checkpoint_every=5,
                eval_every=10, cache_dir=str(tmp_path.parent / "world-cache"))
    base.update(train)
    lines = [f"{k} = {json.dumps(v)}" for k, v in base.items()]
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n{model}\n[train]\n' + "\n".join(lines) + "\n")
    return path


def losses(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "microturn.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        **kw,
    )


def test_every_stream_loss_falls(tmp_path):
    cfg = load_config(
        write_config(
            tmp_path, steps=200, lr=4e-3, warmup_steps=20, checkpoint_every=200, episode_seconds=6.0
        )
    )
    logs = Trainer(cfg, tmp_path / "run", progress=False).fit()
    assert cfg.train.dtype == "bf16"  # the CPU default: bf16 autocast, fp32 master weights
    first, last = logs[:20], logs[-20:]
    for stream in ("control", "text", "audio", "transcript"):
        before = sum(getattr(x, stream) for x in first) / 20
        after = sum(getattr(x, stream) for x in last) / 20
        assert after < 0.8 * before, (stream, before, after)


def test_the_aligned_transcript_loss_trains(tmp_path):
    """train.transcript_window > 0: the transcript is scored by model.alignment, and the
    transcript as written (free-running, whatever its slots) gets closer to what was said."""
    cfg = load_config(
        write_config(tmp_path, steps=120, lr=4e-3, warmup_steps=10, checkpoint_every=120,
                     episode_seconds=6.0, transcript_window=4, eval_episodes=4, eval_every=60)
    )
    logs = Trainer(cfg, tmp_path / "run", progress=False).fit()
    before = sum(x.transcript for x in logs[:10]) / 10
    after = sum(x.transcript for x in logs[-10:]) / 10
    assert after < 0.8 * before, (before, after)
    evals = [r for r in losses(tmp_path / "run") if "eval_transcript" in r]
    assert [r["step"] for r in evals] == [60, 120]
    cers = [v for r in evals for k, v in r.items() if k.endswith("/transcript_cer")]
    assert cers and all(v >= 0 for v in cers)


def test_sigkill_resumes_with_identical_losses(tmp_path):
    config = write_config(tmp_path, steps=24, checkpoint_every=4)
    ref = cli("train", "--config", str(config), "--out", str(tmp_path / "ref"), "--quiet")
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "microturn.cli",
            "train",
            "--config",
            str(config),
            "--out",
            str(run),
            "--quiet",
        ],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        if (run / "log.jsonl").exists() and len(losses(run)) >= 10:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (
        not list(run.glob("*.tmp")) or True
    )  # a temp file may survive a kill; it is never the checkpoint
    state = run / "train_state.safetensors"
    assert state.exists()
    resumed = cli("train", "--config", str(config), "--out", str(run), "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    a, b = losses(tmp_path / "ref"), losses(run)
    assert [x["step"] for x in b] == list(range(1, 25))
    for x, y in zip(a, b):
        assert x["loss"] == y["loss"], (x["step"], x["loss"], y["loss"])


def test_torchrun_two_processes_match_one(tmp_path):
    config = write_config(tmp_path, steps=6, batch_size=4, dtype="fp32")  # bf16 rounds more
    one = cli("train", "--config", str(config), "--out", str(tmp_path / "one"), "--quiet")
    assert one.returncode == 0, one.stderr
    torchrun = Path(sys.executable).parent / "torchrun"
    two = subprocess.run(
        [
            str(torchrun),
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "microturn.cli",
            "train",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "two"),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert two.returncode == 0, two.stderr[-3000:]
    pairs = list(zip(losses(tmp_path / "one"), losses(tmp_path / "two")))
    assert len(pairs) == 6
    worst = max(abs(x[k] - y[k]) for x, y in pairs for k in ("control", "text", "audio"))
    print(f"largest per-stream loss difference, 1 vs 2 processes over 6 steps: {worst:.2e}")
    assert worst <= 1e-4  # the stated tolerance: float reduction order only


def test_bad_train_config_names_the_key(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + "warmup = 3\n")
    with pytest.raises(ConfigError, match="train.warmup"):
        load_config(path)
    bad = write_config(tmp_path, "fam", families=["turn_taking", "juggling"])
    with pytest.raises(ConfigError, match="juggling"):
        Trainer(load_config(bad), tmp_path / "r", progress=False)
    res = cli("train", "--config", str(write_config(tmp_path, "lr", lr="fast")))
    assert res.returncode == 2 and "train.lr" in res.stderr


def test_mismatched_checkpoint_is_refused_and_kept(tmp_path):
    run = tmp_path / "run"
    Trainer(load_config(write_config(tmp_path, steps=5)), run, progress=False).fit()
    state = run / "train_state.safetensors"
    digest = hashlib.sha256(state.read_bytes()).hexdigest()
    other = write_config(
        tmp_path, "wide", model=MODEL.replace("d_model = 64", "d_model = 96"), steps=5
    )
    with pytest.raises(CheckpointError, match="d_model"):
        Trainer(load_config(other), run, progress=False)
    assert hashlib.sha256(state.read_bytes()).hexdigest() == digest
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="unreadable"):
        Trainer(load_config(write_config(tmp_path, steps=5)), run, progress=False)


def test_missing_espeak_names_the_package(tmp_path):
    config = write_config(tmp_path, cache_dir=str(tmp_path / "fresh-cache"))
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))  # the venv only: no espeak-ng
    res = subprocess.run(
        [sys.executable, "-m", "microturn.cli", "train", "--config", str(config), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert (
        res.returncode == 2
        and "apt-get install espeak-ng" in res.stderr
        and "Traceback" not in res.stderr
    )


def test_init_from_starts_a_run_from_trained_weights(tmp_path):
    first = tmp_path / "first"
    Trainer(load_config(write_config(tmp_path, steps=5)), first, progress=False).fit()
    second = Trainer(
        load_config(
            write_config(tmp_path, "b", steps=5, init_from=str(first / "model.safetensors"))
        ),
        tmp_path / "second",
        progress=False,
    )
    trained = Trainer(
        load_config(write_config(tmp_path, steps=5)), first, progress=False
    ).model.state_dict()
    for k, v in second.model.state_dict().items():  # weights and the voice's mel statistics
        assert torch.equal(v, trained[k]), k
    assert second.step == 0
    wide = write_config(
        tmp_path,
        "w",
        model=MODEL.replace("d_model = 64", "d_model = 96"),
        init_from=str(first / "model.safetensors"),
    )
    with pytest.raises(CheckpointError, match="init_from.*d_model"):
        Trainer(load_config(wide), tmp_path / "third", progress=False)


def test_init_from_a_model_without_byte_history_starts_from_its_function(tmp_path):
    from microturn.model.checkpoint import save_model
    from microturn.model.interaction import InteractionModel

    without = MODEL + "byte_history = false\ncopy_lookup = false\ntranscript_feedback = false\n"
    old_cfg = load_config(write_config(tmp_path, "old", model=without))
    old = InteractionModel(old_cfg.model)
    save_model(old, tmp_path / "old.safetensors")
    new = Trainer(
        load_config(write_config(tmp_path, steps=5, init_from=str(tmp_path / "old.safetensors"))),
        tmp_path / "run",
        progress=False,
    ).model
    state, old_state = new.state_dict(), old.state_dict()
    history = [k for k in state if k.startswith(("embed.history.", "heard_before."))]
    assert len(history) == 7 and all(state[k].eq(0).all() for k in history)
    assert set(state) - set(history) == set(old_state)
    assert all(torch.equal(v, state[k]) for k, v in old_state.items()), "weights differ"


def test_lr_scales_give_matching_parameters_a_multiple_of_the_lr(tmp_path):
    path = write_config(tmp_path, steps=2)
    path.write_text(path.read_text() + 'lr_scales = { "embed.history." = 10.0 }\n')
    trainer = Trainer(load_config(path), tmp_path / "run", progress=False)
    trainer.train_step()
    scaled = {id(p) for g in trainer.opt.param_groups if g["lr_scale"] == 10.0 for p in g["params"]}
    history = {id(p) for n, p in trainer.model.named_parameters() if n.startswith("embed.history.")}
    assert scaled == history and len(history) == 6
    lrs = {g["lr_scale"]: g["lr"] for g in trainer.opt.param_groups}
    assert lrs[10.0] == pytest.approx(10 * lrs[1.0]) and lrs[1.0] > 0


def test_render_workers_cache_what_one_process_renders(tmp_path):
    """Episodes rendered in a pool of processes are the ones a single process renders."""
    from safetensors.torch import load_file

    from microturn.config import TrainConfig, named_config
    from microturn.train.data import WorldData

    layout = named_config("tiny").model.layout
    pooled = WorldData(
        layout, TrainConfig(episodes=3, cache_dir=str(tmp_path / "a"), render_workers=2)
    )
    pooled.ensure(range(3), progress=False)
    single = WorldData(
        layout, TrainConfig(episodes=3, cache_dir=str(tmp_path / "b"), render_workers=1)
    )
    for i in range(3):
        got, want = load_file(str(pooled.path(i))), single.render(i)
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want), pooled.path(i)


@pytest.mark.skipif(
    os.environ.get("MICROTURN_TEST_COMPILE") != "1",
    reason="compiling takes minutes on 2 cores; MICROTURN_TEST_COMPILE=1 runs it",
)
def test_compiled_training_steps_match_eager_ones(tmp_path):
    """`train.compile` changes the speed of a step, not what it computes (passed here in
    209 s on 2 busy cores)."""
    eager = Trainer(
        load_config(write_config(tmp_path, steps=2, episodes=2)), tmp_path / "a", progress=False
    ).fit()
    compiled = Trainer(
        load_config(write_config(tmp_path, "c", steps=2, episodes=2, compile=True)),
        tmp_path / "b",
        progress=False,
    ).fit()
    for e, c in zip(eager, compiled):
        assert abs(e.loss - c.loss) < 0.02 * abs(e.loss), (e.loss, c.loss)


def test_periodic_eval_writes_family_scores_curves_and_keeps_each_model(tmp_path):
    cfg = load_config(
        write_config(tmp_path, steps=4, eval_every=2, eval_episodes=2, checkpoint_every=4)
    )
    Trainer(cfg, tmp_path / "run", progress=False).fit()
    rows = losses(tmp_path / "run")
    evaluated = [r for r in rows if "eval_text" in r]
    assert [r["step"] for r in evaluated] == [2, 4]
    for r in evaluated:  # held-out losses per stream and teacher-forced scores per family
        assert all(f"eval_{s}" in r for s in ("control", "text", "audio", "transcript"))
        assert any(k.startswith("fam/turn_taking/") for k in r)
        assert "fam/turn_taking/onset_acc" in r  # where the model chooses what to say
    assert (tmp_path / "run" / "curves.png").stat().st_size > 10_000
    for step in (2, 4):
        kept = tmp_path / "run" / f"model-{step:05d}.safetensors"
        assert kept.exists()
    # the last one kept is the final model
    assert (tmp_path / "run" / "model-00004.safetensors").read_bytes() == (
        tmp_path / "run" / "model.safetensors"
    ).read_bytes()


def test_compute_to_target_extrapolates_a_power_law(tmp_path):
    """benchmarks/compute_to_target.py stitches stages on one token axis and finds where a
    family's error (here exactly 0.5 * (tokens / 1e6) ** -0.5) reaches the target."""
    for stage, steps in (("s1", range(1, 51)), ("s2", range(51, 101))):
        rows = []
        for step in steps:
            row = {"step": step, "tokens": 100_000, "tokens_per_s": 1000.0}
            if step % 10 == 0:
                err = 0.5 * (step * 100_000 / 1e6) ** -0.5
                row |= {"eval_text": err, "fam/pause/text_acc": 1 - err}
            rows.append(json.dumps(row))
        (tmp_path / stage).mkdir()
        (tmp_path / stage / "log.jsonl").write_text("\n".join(rows) + "\n")
    script = BENCHMARKS / "compute_to_target.py"
    out = tmp_path / "t.json"
    args = [str(tmp_path / "s1"), str(tmp_path / "s2"), "--target", "0.95", "--json", str(out)]
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True)
    fam = json.loads(out.read_text())["families"]["pause"]
    assert fam["slope"] == pytest.approx(-0.5, abs=1e-6)
    assert fam["tokens_to_target"] == pytest.approx(100e6, rel=1e-4)  # 0.5 * 100 ** -0.5 = 0.05
    assert fam["more_tokens"] == pytest.approx(90e6, rel=1e-3)
    assert fam["hours"] == pytest.approx(90e6 / 1000 / 3600, rel=1e-3)


def test_own_voice_noise_reaches_the_chosen_share_of_turns_and_repeats(tmp_path):
    """Training can hear its own voice with noise (served, it hears its flow head's frames,
    not the TTS voice it learned from); the draw is fixed per sample position, so a resumed
    or sharded run hears the same."""
    cfg = load_config(write_config(tmp_path, own_voice_noise=0.5))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    audio = torch.randn(2, 400, 4, 320)
    batch = type("B", (), {"audio_out": audio, "audio_out_mask": torch.ones(2, 400, dtype=bool)})()
    heard = trainer.own_voice(batch, [0, 1])
    changed = (heard != audio).flatten(2).any(-1).float().mean()
    assert 0.4 < float(changed) < 0.6
    assert torch.equal(heard, trainer.own_voice(batch, [0, 1]))
    assert not torch.equal(heard[1], trainer.own_voice(batch, [2, 1])[0])
    plain = load_config(write_config(tmp_path, name="plain"))
    assert Trainer(plain, tmp_path / "run2", progress=False).own_voice(batch, [0, 1]) is None


def test_own_voice_lag_hears_a_share_of_sequences_late_never_early(tmp_path):
    """Served, the flow head's voice need not keep the TTS voice's timing; `own_voice_lag`
    has a share of sequences hear the whole voice 1..max slots late (silence first, only
    while speaking), the same per sample position."""
    cfg = load_config(write_config(tmp_path, own_voice_lag=0.5, own_voice_max_lag=3))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    audio = torch.randn(40, 50, 4, 8)
    speak = torch.ones(40, 50, dtype=bool)
    speak[:, 40:] = False
    batch = type("B", (), {"audio_out": audio, "audio_out_mask": speak})()
    heard = trainer.own_voice(batch, list(range(40)))
    assert torch.equal(heard, trainer.own_voice(batch, list(range(40))))
    lags = []
    for b in range(40):
        flat, heard_flat = audio[b, :40].flatten(0, 1), heard[b, :40].flatten(0, 1)
        lag = next(d for d in range(4) if torch.equal(heard_flat[d:], flat[: 160 - d]))
        assert not heard_flat[:lag].any()  # silence before the voice starts
        assert not heard[b, 40:].any()  # nothing heard once it stops speaking, late or not
        lags.append(lag)
    assert 0.3 < sum(d > 0 for d in lags) / 40 < 0.7
    assert set(lags) - {0} == {1, 2, 3}
    with pytest.raises(ConfigError, match="own_voice_max_lag"):
        load_config(write_config(tmp_path, name="bad", own_voice_max_lag=0))


def test_text_noise_reads_back_a_share_of_its_letters_wrong_and_keeps_the_targets(tmp_path):
    """Served, one wrong byte is read back as written; training with `text_noise` shows the
    trunk such histories (letters only: PAD and the delegation markers stay), the same draw
    per sample position, while the loss still scores the bytes it should have written."""
    cfg = load_config(write_config(tmp_path, text_noise=0.2, steps=3))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    text = torch.full((2, 400, 4), PAD)
    text[:, ::2] = ord("e")
    text[:, 1::4] = ByteTokenizer.DELEGATE
    batch = type("B", (), {"text_out": text})()
    read = trainer.own_text(batch, [0, 1])
    letters = text == ord("e")
    share = (read != text)[letters].float().mean()
    assert 0.15 < float(share) < 0.25  # a few land on "e" itself
    assert torch.equal(read[~letters], text[~letters])
    assert ((read[letters] >= ord("a")) & (read[letters] <= ord("z"))).all()
    assert torch.equal(read, trainer.own_text(batch, [0, 1]))
    plain = load_config(write_config(tmp_path, name="plain"))
    assert Trainer(plain, tmp_path / "run2", progress=False).own_text(batch, [0, 1]) is None
    with pytest.raises(ConfigError, match="text_noise"):
        load_config(write_config(tmp_path, name="bad", text_noise=1.5))
    assert trainer.train_step().text > 0  # a step trains with it

def test_own_voice_benchmark_scores_what_the_model_hears_of_itself(tmp_path):
    """benchmarks/own_voice.py changes only the model's own voice in the trunk's input: a
    model deaf to its own voice scores the same with the TTS voice, its own, and silence."""
    from microturn.model.checkpoint import save_model
    from microturn.model.interaction import InteractionModel

    model = InteractionModel(load_config(write_config(tmp_path)).model)
    with torch.no_grad():
        model.embed.audio_out.weight.zero_()  # its own voice reaches the trunk as nothing
    save_model(model, tmp_path / "deaf.safetensors")
    script = BENCHMARKS / "own_voice.py"
    out = tmp_path / "own.json"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "deaf.safetensors"), "--episodes", "2",
         "--fp32", "--json", str(out)],
        check=True, capture_output=True, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    scores = json.loads(out.read_text())
    for key in ("inside", "onset", "control"):
        assert 0 <= scores[f"tts/{key}"] <= 1
        assert scores[f"tts/{key}"] == scores[f"own/{key}"] == scores[f"silent/{key}"]
        assert all(0 <= scores[f"misread {p}/{key}"] <= 1 for p in ("3%", "10%"))


def _run_benchmark(name: str, tmp_path) -> dict:
    """Run benchmarks/<name>.py on one held-out episode of a random checkpoint; its JSON."""
    from microturn.model.checkpoint import save_model
    from microturn.model.interaction import InteractionModel

    model = InteractionModel(load_config(write_config(tmp_path)).model)
    save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / f"{name}.json"
    script = BENCHMARKS / f"{name}.py"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "m.safetensors"), "--episodes", "1", "--fp32",
         "--json", str(out)],
        check=True, capture_output=True, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    return json.loads(out.read_text())


def test_readback_benchmark_splits_tool_use_text_into_its_three_parts(tmp_path):
    """benchmarks/readback.py labels the delegated request, the acknowledgement and the result
    line, and scores a checkpoint's held-out bytes in each."""
    from microturn.streams.text import ByteTokenizer

    bench = benchmark_module("readback")
    tok, pad = ByteTokenizer(), ByteTokenizer.PAD
    text = [tok.DELEGATE] + tok.encode("7") + [tok.DELEGATE_END, pad] + tok.encode(" Ok. ")
    text += [pad] + tok.encode("7 is 7. ")
    assert bench.parts(text) == (
        ["request"] * 3 + [None] + ["request"] + ["ack"] * 4 + [None] + ["result"] * 8
    )
    scores = _run_benchmark("readback", tmp_path)
    parts = {"ack/bytes", "request/bytes", "result/digits", "heard/bytes", "heard/digits"}
    assert parts <= set(scores)
    assert all(0 <= v <= 1 for v in scores.values())


def test_hearing_benchmark_scores_each_number_said_in_order(tmp_path):
    """benchmarks/hearing.py counts a number heard only in its place among the numbers said,
    names each by its tens word, and scores a checkpoint's held-out transcript by voice split."""
    from microturn.model.interaction import PAD

    bench = benchmark_module("hearing")
    assert bench.numbers(list(b"what is 347 times 29")) == [347, 29]
    assert bench.heard_numbers([347, 29], [377, 29]) == [False, True]
    assert bench.heard_numbers([347, 29], [29, 347]) == [True, False]  # order counts
    tens = [bench.tens_word(n) for n in (347, 29, 13, 7, 100)]
    assert tens == ["forty", "twenty", "teen", "-", "-"]
    assert bench.digit_slots(list(b"a 37 "), [PAD, 97, 55, 55, 32]) == ["shifted", "right"]
    assert bench.digit_slots(list(b"37"), [PAD, 56]) == ["nothing", "other"]
    scores = _run_benchmark("hearing", tmp_path)
    counts = scores["numbers"]
    heard, said = counts["all"]
    assert said >= 2 and 0 <= heard <= said  # "What is x op y?": two numbers at least
    for by in ("voice/", "said/", "tens/"):
        assert sum(n for k, (_, n) in counts.items() if k.startswith(by)) == said
    assert sum(scores["digit_slots"].values()) >= 3


def test_the_cache_drops_episodes_of_earlier_revisions(tmp_path, monkeypatch):
    """A family whose episodes changed (a raised REVISIONS) re-renders under a new name; its
    old files are deleted when the cache is next used, and nothing else is."""
    from microturn.config import TrainConfig, named_config
    from microturn.train import data as data_module
    from microturn.train.data import WorldData

    monkeypatch.setattr(data_module, "REVISIONS", {"tool_use": 3})
    world = WorldData(named_config("tiny").model.layout, TrainConfig(cache_dir=str(tmp_path)))
    world.dir.mkdir(parents=True)
    names = ["tool_use-00001", "tool_use-r2-00001", "tool_use-r3-00001", "turn_taking-00001"]
    for name in names:
        (world.dir / f"{name}.safetensors").write_bytes(b"x")
    world.ensure([])
    kept = sorted(p.stem for p in world.dir.iterdir())
    assert kept == ["tool_use-r3-00001", "turn_taking-00001"]
