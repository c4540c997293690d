import contextlib
import socket
import threading
import time

import numpy as np
import pytest
import torch

from microturn.config import ModelConfig
from microturn.model.interaction import InteractionModel


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def small_cfg() -> ModelConfig:
    """A quick model: 2 layers and a 4-turn window, so tests cross the window early."""
    return ModelConfig(n_layers=2, window_turns=4, sink_turns=1, d_model=128, n_heads=4, n_kv_heads=2,
                       ffn_hidden=256, flow_width=128, flow_depth=2, hmlp_width=64)


@pytest.fixture
def small_model(small_cfg) -> InteractionModel:
    return InteractionModel(small_cfg).eval()


def tone(seconds: float, rate: int = 16_000, freq: float = 220.0) -> np.ndarray:
    """A harmonic tone with a syllable-like envelope: speech-shaped energy without a TTS."""
    t = np.arange(int(seconds * rate)) / rate
    env = 0.5 * (1 + np.sin(2 * np.pi * 4 * t))
    sig = sum(np.sin(2 * np.pi * freq * h * t) / h for h in range(1, 8))
    return (0.2 * env * sig).astype(np.float32)


def tiny_server_model() -> InteractionModel:
    """A small random model: servers in tests need turns, not good ones."""
    return InteractionModel(ModelConfig(n_layers=2, window_turns=4, d_model=128, n_heads=4, n_kv_heads=2,
                                        ffn_hidden=256, flow_width=128, flow_depth=2, hmlp_width=64)).eval()


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
