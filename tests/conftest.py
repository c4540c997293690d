import contextlib
import importlib.util
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from microturn.config import ModelConfig
from microturn.model.interaction import InteractionModel


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


# 2 layers and a 4-turn window: quick, and tests cross the window early
SMALL = dict(n_layers=2, window_turns=4, d_model=128, n_heads=4, n_kv_heads=2, ffn_hidden=256,
             flow_width=128, flow_depth=2, hmlp_width=64)


@pytest.fixture
def small_cfg() -> ModelConfig:
    """A quick model: 2 layers and a 4-turn window, so tests cross the window early."""
    return ModelConfig(**SMALL, sink_turns=1)


@pytest.fixture
def small_model(small_cfg) -> InteractionModel:
    """Its byte-history and transcript-feedback tables (zero at init) made random, so parity
    tests exercise them."""
    model = InteractionModel(small_cfg).eval()
    for emb in [*model.embed.history.values(), model.heard_before]:
        torch.nn.init.normal_(emb.weight, std=0.02)
    return model


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_module(name: str):
    """benchmarks/<name>.py as a module (the folder is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def tone(seconds: float, rate: int = 16_000, freq: float = 220.0) -> np.ndarray:
    """A harmonic tone with a syllable-like envelope: speech-shaped energy without a TTS."""
    t = np.arange(int(seconds * rate)) / rate
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))
    sig = sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, 8))
    return (0.2 * env * sig).astype(np.float32)


def tiny_server_model() -> InteractionModel:
    """A small random model: servers in tests need turns, not good ones."""
    return InteractionModel(ModelConfig(**SMALL)).eval()


def writing_model():
    """The tiny random model with its text and transcript heads narrowed to a few tokens, so
    it writes words, hears words and delegates sums through the real engine and server (a
    random head almost never closes a word). Which token wins still depends on the state."""
    import torch

    from microturn.model.linear import InvariantLinear
    from microturn.streams.text import ByteTokenizer as T

    model = tiny_server_model()
    gen = torch.Generator().manual_seed(0)

    def narrowed(head, bias: dict[int, float]):
        out = InvariantLinear(head.in_features, head.out_features, bias=True)
        with torch.no_grad():
            out.weight.zero_()
            out.bias.fill_(-30.0)
            for tok, b in bias.items():
                w = torch.randn(head.in_features, generator=gen)
                out.weight[tok] = w / head.in_features**0.5
                out.bias[tok] = b
        return out

    model.text_head = narrowed(
        model.text_head,
        {
            T.PAD: 2.0,
            ord("1"): 1.0,
            ord("2"): 1.0,
            ord("+"): 0.5,
            ord(" "): 1.0,
            T.DELEGATE: -1.0,
            T.DELEGATE_END: 0.0,
        },
    )
    model.transcript_head = narrowed(
        model.transcript_head, {ord(c): 0.0 for c in "abc"} | {ord(" "): -0.3}
    )
    return model


@contextlib.contextmanager
def serving(app):
    """A real uvicorn server for `app` on a free loopback port, run in a thread; yields the port."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(10)
