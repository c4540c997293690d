"""Real agent frameworks against `microturn serve` (examples/): Pipecat's OpenAI Realtime LLM
service and LiveKit Agents' OpenAI realtime model, each on its own socket to a real server.

Skipped unless the framework is installed (`pip install -e ".[frameworks]"`; CI does not
install it). docs/deploy.md has the commands and the output they gave."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from conftest import serving, tiny_server_model

from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.server.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))


@pytest.fixture(scope="module")
def server():
    app = create_app(Engine(tiny_server_model(), EngineConfig(max_sessions=2)), token="secret")
    with serving(app) as port:
        yield f"127.0.0.1:{port}"


def test_pipecat_pipeline_talks_to_the_server(server):
    pytest.importorskip("pipecat", reason="pipecat-ai is not installed (the frameworks extra)")
    import pipecat_client

    seen = asyncio.run(pipecat_client.run(f"ws://{server}/v1/realtime", "secret",
                                          "what is the capital of france", 4.0))
    assert seen.errors == [], seen.errors
    assert seen.audio_in_s > 4 and seen.audio_out_s > 0  # the random model speaks at random
    assert seen.responses >= 1  # Pipecat's TTSStartedFrame: it saw a response begin


def test_livekit_realtime_session_talks_to_the_server(server):
    pytest.importorskip("livekit.plugins.openai",
                        reason="livekit-plugins-openai is not installed (the frameworks extra)")
    import livekit_client

    seen = asyncio.run(livekit_client.run(f"http://{server}/v1", "secret",
                                          "what is the capital of france", 4.0))
    assert seen.errors == [], seen.errors
    assert seen.speech_started >= 1 and seen.speech_stopped >= 1
    # audio reaches the generation's stream only when its message item was announced
    assert seen.generations >= 1 and seen.audio_out_s > 0
