"""The GPU path: graph buckets and padding checked on CPU with an eager runner; the real
CUDA engine where a GPU exists (skipped cleanly without one)."""

import numpy as np
import pytest
import torch

from conftest import tone
from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.engine.graphs import EagerRunner, bucket_for, buckets
from microturn.engine.session import SamplerSettings

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def _inputs(session, k):
    freq = 170 + 11 * (k % 6) + 5 * session.slot
    return session.packer.pack(tone(0.2, freq=freq), np.full((80, 80, 3), 3 * k % 255, np.uint8))


def _conversation(model, dtype, graphs=None, device=None, turns=11):
    """Five sessions; the second leaves at turn 5, so the rest sit in slots 0, 2, 3, 4."""
    engine = Engine(model, EngineConfig(max_sessions=5), dtype=dtype, device=device, graphs=graphs)
    sessions = [engine.open(SamplerSettings(seed=i, temperature=1.0), vocoder=False)
                for i in range(5)]
    results = []
    for k in range(turns):
        if k == 5:
            engine.close(sessions.pop(1))
        results.append(engine.step(sessions, [_inputs(s, k) for s in sessions], predictions=True))
    return engine, results


def test_buckets_cover_every_batch_with_few_graphs():
    assert buckets(1) == (1,) and buckets(5) == (1, 2, 4, 8) and buckets(16) == (1, 2, 4, 8, 16)
    sizes = buckets(24)
    assert [bucket_for(n, sizes) for n in (1, 2, 3, 5, 9, 17, 24)] == [1, 2, 4, 8, 16, 32, 32]
    with pytest.raises(ValueError, match="largest graph bucket"):
        bucket_for(33, sizes)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_bucketed_replays_equal_the_plain_engine(small_model, dtype):
    """Padding 3 or 5 sessions to buckets of 4 or 8, with the pool read as a view (slots
    0..n-1) and as a gather (after a session left), gives the plain engine's numbers and
    tokens exactly; padding rows write nowhere but the scratch slot."""
    _, plain = _conversation(small_model, dtype)
    runner = EagerRunner()
    engine, graphed = _conversation(small_model, dtype, graphs=runner)
    for a, b in zip(plain, graphed):
        for name in ("control_logits", "text_logits", "audio_cond", "transcript_logits"):
            assert torch.equal(getattr(a.predictions, name), getattr(b.predictions, name)), name
        for x, y in zip(a.outputs, b.outputs):
            assert (x.control, x.text) == (y.control, y.text)
            assert (x.audio is None) == (y.audio is None)
            assert x.audio is None or torch.equal(x.audio, y.audio)
    assert any(o.audio is not None for r in graphed for o in r.outputs)  # the flow graphs ran
    # one capture per shape: prefill with and without last turn's audio, decode, flow; for
    # the view (bucket 8) and the gather (bucket 4) read
    assert runner.captures == len(engine.graphs) <= 10
    # the pool's spare slots (read by padding rows) hold nothing: writes went to scratch
    spare = range(engine.cfg.max_sessions, engine.pool.scratch_slot)
    assert all(t[list(spare)].abs().sum() == 0 for t in engine.pool.k + engine.pool.v)
    assert engine.pool.free == 1 and engine.pool.k[0].shape[0] == 8 + 1


def test_mixture_of_experts_runs_without_graphs(small_cfg):
    import dataclasses

    from microturn.model.interaction import InteractionModel

    model = InteractionModel(dataclasses.replace(small_cfg, moe_experts=4, moe_top_k=2)).eval()
    engine = Engine(model, EngineConfig(max_sessions=2), graphs=EagerRunner())
    assert engine.graphs is None and engine.pool.k[0].shape[0] == 2


@cuda
def test_cuda_engine_bf16_graphs_match_cpu(small_model):  # pragma: no cover - needs a GPU
    """Teacher-forced (so both see the same tokens): CUDA bf16 with graphs against CPU bf16."""
    from microturn.engine.parity import random_batch

    batch = random_batch(small_model.cfg, 3, 9, seed=1, speak=0.7)
    conds = {}
    for device in ("cuda", "cpu"):
        engine = Engine(small_model, EngineConfig(max_sessions=3), dtype="bf16", device=device)
        sessions = [engine.open(vocoder=False) for _ in range(3)]
        got = []
        for k in range(9):
            pairs = [batch.turn(b, k) for b in range(3)]
            res = engine.step(sessions, [p[0] for p in pairs], [p[1] for p in pairs],
                              predictions=True)
            got.append(res.predictions.audio_cond.float().cpu())
            assert all(o.audio is None or o.audio.device.type == "cpu" for o in res.outputs)
        if device == "cuda":
            assert engine.pool.k[0].is_cuda and len(engine.graphs) > 0
        conds[device] = torch.cat(got)
    a, b = conds["cuda"], conds["cpu"]
    assert ((a - b).norm() / b.norm()).item() < 0.05
