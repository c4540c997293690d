import numpy as np
import pytest
import torch

from conftest import tone
from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.runtime.offline import RecordedInput, run_offline
from microturn.engine.session import SamplerSettings
from microturn.errors import CheckpointError, ConfigError, InputError, PoolFullError
from microturn.streams.turns import SPEAK, TurnOutput


def _turn_inputs(session, k):
    return session.packer.pack(
        tone(0.2, freq=200 + 10 * (k % 7)), np.full((80, 80, 3), k % 255, np.uint8)
    )


def test_full_pool_refuses_with_a_clear_error_and_frees_on_close(small_model):
    engine = Engine(small_model, EngineConfig(max_sessions=2))
    a, b = engine.open(), engine.open()
    with pytest.raises(PoolFullError, match="all 2 KV slots are in use"):
        engine.open()
    engine.step([a, b], [_turn_inputs(a, 0), _turn_inputs(b, 0)])  # live sessions unaffected
    engine.close(a)
    c = engine.open()
    assert c.slot == a.slot and engine.pool.free == 0
    assert all(t[c.slot].abs().sum() == 0 for t in engine.pool.k)  # a's keys are gone


def test_a_session_that_fails_to_build_holds_no_slot(small_model, monkeypatch):
    """Opening fails after the slot is taken (say, vocoder weights are missing): the slot is
    free again, so the server does not read full after a failed open."""
    from microturn.engine import session as session_mod

    engine = Engine(small_model, EngineConfig(max_sessions=1))

    def broken(*args, **kwargs):
        raise CheckpointError("vocoder weights missing")

    monkeypatch.setattr(session_mod.Session, "create", staticmethod(broken))
    with pytest.raises(CheckpointError):
        engine.open()
    monkeypatch.undo()
    assert engine.pool.free == 1 and engine.open().slot == 0


def test_no_reallocation_and_flat_state_over_a_long_session(small_model):
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    s = engine.open(vocoder=False)
    ptrs = [t.data_ptr() for t in engine.pool.k + engine.pool.v]
    size = engine.pool.bytes
    for k in range(3 * small_model.cfg.window_turns + 5):  # well past the window
        engine.step([s], [_turn_inputs(s, k)])
    assert [
        t.data_ptr() for t in engine.pool.k + engine.pool.v
    ] == ptrs and engine.pool.bytes == size
    assert s.turn == 3 * small_model.cfg.window_turns + 5


def test_same_seed_same_conversation(small_model):
    def run(seed):
        engine = Engine(small_model, EngineConfig(max_sessions=1))
        s = engine.open(SamplerSettings(temperature=1.0, seed=seed), vocoder=False)
        outs = [
            engine.step([s], [_turn_inputs(s, k)], [TurnOutput(SPEAK, None, None)]).outputs[0]
            for k in range(6)
        ]
        return [o.text for o in outs], torch.stack([o.audio for o in outs])

    t1, a1 = run(1)
    t2, a2 = run(1)
    t3, a3 = run(2)
    assert t1 == t2 and torch.equal(a1, a2)
    assert t1 != t3 or not torch.equal(a1, a3)


def test_sessions_in_a_batch_do_not_affect_each_other(small_model):
    """A session's outputs are the same whether it is stepped alone or with others."""
    greedy = SamplerSettings(temperature=0.0, text_temperature=0.0)
    alone_engine = Engine(small_model, EngineConfig(max_sessions=3))
    alone = alone_engine.open(greedy, vocoder=False)
    together_engine = Engine(small_model, EngineConfig(max_sessions=3))
    others = [
        together_engine.open(SamplerSettings(temperature=1.0, seed=9), vocoder=False)
        for _ in range(2)
    ]
    mine = together_engine.open(greedy, vocoder=False)
    for k in range(8):
        a = alone_engine.step([alone], [_turn_inputs(alone, k)]).outputs[0]
        batch = [others[0], mine, others[1]]
        b = together_engine.step(
            batch, [_turn_inputs(s, k + 3) if s is not mine else _turn_inputs(s, k) for s in batch]
        ).outputs[1]
        assert a.control == b.control and a.text == b.text


def test_the_words_have_their_own_temperature(small_model):
    """Greedy words under a sampled control: each text byte is its logits' argmax, while the
    control still draws from its distribution (two seeds, different controls)."""
    engine = Engine(small_model, EngineConfig(max_sessions=2))
    sessions = [
        engine.open(SamplerSettings(temperature=5.0, seed=i, text_temperature=0.0), vocoder=False)
        for i in range(2)
    ]
    controls = []
    for k in range(8):
        res = engine.step(sessions, [_turn_inputs(s, k) for s in sessions], predictions=True)
        greedy = res.predictions.text_logits.argmax(-1)  # [B, text_out_slots]
        assert [o.text for o in res.outputs] == greedy.tolist()
        controls.append([o.control for o in res.outputs])
    assert [c[0] for c in controls] != [c[1] for c in controls]
    assert EngineConfig(text_temperature=0.3).text_temperature == 0.3
    with pytest.raises(ConfigError, match="text_temperature"):
        EngineConfig(text_temperature=-1.0)


def test_step_rejects_mismatched_and_closed_sessions(small_model):
    engine = Engine(small_model, EngineConfig(max_sessions=2))
    s = engine.open()
    with pytest.raises(ValueError, match="expected one input each"):
        engine.step([s], [])
    with pytest.raises(ValueError, match="once per step"):
        engine.step([s, s], [_turn_inputs(s, 0)] * 2)
    engine.close(s)
    with pytest.raises(ValueError, match="only while open"):
        engine.step([s], [_turn_inputs(s, 0)])


def test_offline_runner_writes_a_stereo_timeline(small_model):
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    rec = RecordedInput(
        audio=tone(3.0),
        frames=[(0.5, np.zeros((80, 80, 3), np.uint8))],
        typed=[(1.0, "what time is it?")],
    )
    res = run_offline(engine, rec, SamplerSettings(temperature=1.0, seed=3))
    assert len(res.outputs) == 15 and engine.pool.free == 1
    assert res.stereo_wav[:4] == b"RIFF" and len(res.stereo_wav) == 44 + 15 * 3200 * 2 * 2
    assert res.timeline.of("user_text")[0].text == "what time is it?"
    assert all(0 <= e.t <= 3.2 for e in res.timeline.events)
    speaking = [o for o in res.outputs if o.control == SPEAK]
    if speaking:  # the model's audio lands in the right channel
        assert np.abs(res.timeline.model_audio).max() > 0
    with pytest.raises(InputError, match="recorded input is empty"):
        run_offline(engine, RecordedInput())


def test_perf_reports_the_speaking_path_with_the_vocoder(small_model):
    from microturn.config import Config
    from microturn.perf import PerfOptions, run_perf

    opts = PerfOptions(
        turns=20,
        window=5,
        batch_sizes=(1, 2),
        batch_turns=10,
        reprefill_runs=1,
        dtype="bf16",
        speaking_turns=6,
        flow_steps=4,
    )
    r = run_perf(
        Config(model=small_model.cfg), small_model, opts, progress=False, speaking_model=small_model
    )
    assert set(r["speaking_turn_ms"]) == {"1", "2"} and r["speaking_flow_steps"] == 4
    assert r["speaking_turn_ms_p99"] == r["speaking_turn_ms"]["1"]["p99"] > 0
    assert r["dtype"] == "bf16" and r["parity_max_abs_diff"] == 0.0  # parity: the fp32 engine's
    assert r["machine"]["cores"] >= 1 and "load_avg_1m" in r["machine"]


def test_batched_sampling_draws_each_row_as_if_alone():
    from microturn.engine.sampling import sample_tokens

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(12, 272, generator=g) * 3
    samplers = [
        SamplerSettings(temperature=(0.7, 1.0, 0.0)[b % 3], top_k=(40, 0, 5)[b % 3])
        for b in range(12)
    ]
    together = sample_tokens(
        logits, samplers, [torch.Generator().manual_seed(b) for b in range(12)]
    )
    alone = [
        sample_tokens(logits[b : b + 1], samplers[b : b + 1], [torch.Generator().manual_seed(b)])
        for b in range(12)
    ]
    assert together.tolist() == [int(a[0]) for a in alone]
    assert together[2] == logits[2].argmax()  # temperature 0: greedy
