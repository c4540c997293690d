"""bf16 inference: what is bf16 and what stays fp32, what it costs in accuracy, bad input."""

import numpy as np
import pytest
import torch

from conftest import tone
from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.engine.precision import parse_device, parse_dtype
from microturn.engine.session import SamplerSettings
from microturn.errors import ConfigError
from microturn.streams.turns import SPEAK, TurnOutput


def _inputs(session, k):
    frame = np.full((80, 80, 3), 7 * k % 255, np.uint8)
    return session.packer.pack(tone(0.2, freq=180 + 15 * (k % 5)), frame)


def test_bf16_engine_runs_the_trunk_in_bf16_and_draws_frames_in_fp32(small_model):
    before = {k: v.clone() for k, v in small_model.state_dict().items()}
    engine = Engine(small_model, EngineConfig(max_sessions=2), dtype="bf16")
    m = engine.model
    assert not engine.parity and m is not small_model
    assert m.trunk.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert m.text_head.weight.dtype == torch.bfloat16 and engine.pool.k[0].dtype == torch.bfloat16
    for module in (m.flow, m.prev_frame, m.mel_norm, m.codec):
        tensors = list(module.parameters()) + list(module.buffers())
        assert all(t.dtype == torch.float32 for t in tensors)
    # the fp32 buffers are the originals, not a bf16 round trip of them
    assert torch.equal(m.mel_norm.mean, small_model.mel_norm.mean)
    # the caller's model is untouched: fp32 and the same values
    after = small_model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    s = engine.open(vocoder=False)
    speak = TurnOutput(control=SPEAK, text=None, audio=None)
    for k in range(8):  # past the 4-turn window
        out = engine.step([s], [_inputs(s, k)], [speak]).outputs[0]
        assert out.audio.dtype == torch.float32 and torch.isfinite(out.audio).all()


def test_bf16_stays_close_to_fp32_under_teacher_forcing(small_model):
    """Same forced tokens and frames: the flow-head conditions and logits of a bf16 engine
    are within bf16's rounding of the fp32 engine's, turn after turn past the window."""
    from microturn.engine.parity import random_batch

    batch = random_batch(small_model.cfg, 1, 10, seed=2)
    got = {}
    for dtype in ("fp32", "bf16"):
        engine = Engine(small_model, EngineConfig(max_sessions=1), dtype=dtype)
        s = engine.open(vocoder=False)
        conds = []
        for k in range(10):
            inp, forced = batch.turn(0, k)
            conds.append(engine.step([s], [inp], [forced], predictions=True).predictions.audio_cond)
        got[dtype] = torch.cat(conds)
    ref, low = got["fp32"], got["bf16"]
    rel = ((low - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.03, rel


def test_same_seed_same_bf16_conversation(small_model):
    runs = []
    for _ in range(2):
        engine = Engine(small_model, EngineConfig(max_sessions=1), dtype="bf16")
        s = engine.open(SamplerSettings(seed=5), vocoder=False)
        runs.append([engine.step([s], [_inputs(s, k)]).outputs[0] for k in range(6)])
    for a, b in zip(*runs):
        assert a.control == b.control and a.text == b.text
        assert (a.audio is None) == (b.audio is None)
        assert a.audio is None or torch.equal(a.audio, b.audio)


def test_fp32_is_still_the_parity_mode(small_model):
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    assert engine.parity and engine.model is small_model and engine.dtype == torch.float32


def test_flow_head_keeps_its_adaln_weights_until_they_change(small_model):
    """The inference draw caches the adaLN concatenation; an in-place weight update (an
    optimiser step) must be seen by the next draw."""
    flow = small_model.flow
    torch.nn.init.normal_(flow.blocks[0].ada.weight, std=0.1)
    torch.nn.init.normal_(flow.final_ada.weight, std=0.1)
    torch.nn.init.normal_(flow.out.weight, std=0.1)
    cond, x0 = torch.randn(3, small_model.cfg.d_model), torch.randn(3, flow.out.out_features)
    with torch.no_grad():
        a = flow.sample(cond, 4, x0)
        assert torch.equal(a, flow.sample(cond, 4, x0))
        flow.blocks[0].ada.weight.mul_(2.0)
        b = flow.sample(cond, 4, x0)
    assert not torch.equal(a, b)
    with torch.no_grad():
        flow.blocks[0].ada.weight.mul_(0.5)
        assert torch.equal(a, flow.sample(cond, 4, x0))


def test_bad_dtype_and_device_are_clear_errors(small_model):
    assert parse_dtype("bf16") == torch.bfloat16 and parse_dtype(torch.float32) == torch.float32
    with pytest.raises(ConfigError, match="expected one of fp32, bf16"):
        parse_dtype("fp8")
    with pytest.raises(ConfigError, match="expected one of fp32, bf16"):
        Engine(small_model, dtype=torch.float16)
    with pytest.raises(ConfigError, match="expected >= 1 Euler steps"):
        Engine(small_model, flow_steps=0)
    with pytest.raises(ConfigError, match="expected cpu or cuda"):
        parse_device("meta", small_model)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            Engine(small_model, device="cuda")


def test_serve_perf_and_bench_take_the_engine_options():
    from microturn.cli import SERVE_DTYPE, _engine_kwargs, build_parser

    p = build_parser()
    for cmd in ("serve", "perf", "bench"):
        args = p.parse_args([cmd, "--dtype", "bf16", "--device", "cpu", "--flow-steps", "4"])
        assert _engine_kwargs(args) == {"dtype": "bf16", "device": "cpu", "flow_steps": 4}
    assert p.parse_args(["serve"]).dtype == SERVE_DTYPE
    assert p.parse_args(["bench"]).dtype == "fp32"  # the reference unless asked
    with pytest.raises(SystemExit):
        p.parse_args(["serve", "--dtype", "fp16"])
