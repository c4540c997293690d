"""Both protocols' parsers under hypothesis: random and mutated messages never crash them,
every bad one is answered with an error, and a live session stays usable afterwards."""

from __future__ import annotations

import asyncio
import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microturn.config import EngineConfig, ModelConfig
from microturn.engine.engine import Engine
from microturn.model.interaction import InteractionModel
from microturn.server import protocol as P
from microturn.server.hub import Hub
from microturn.server.realtime import RealtimeSession

AUDIO = base64.b64encode(b"\x00\x01" * 800).decode()
NATIVE = [
    {"type": "session.start", "sample_rate": 24000, "temperature": 0.7, "text_temperature": 0},
    {"type": "input.audio", "audio": AUDIO},
    {"type": "input.text", "text": "hello"},
    {"type": "input.video", "jpeg": base64.b64encode(b"\xff\xd8\xff").decode()},
    {"type": "session.end"},
]
REALTIME = [
    {"type": "input_audio_buffer.append", "audio": AUDIO},
    {"type": "session.update", "session": {}},
    {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
        },
    },
    {"type": "input_audio_buffer.commit"},
    {"type": "input_audio_buffer.clear"},
    {"type": "response.create"},
]
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=40),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=12,
)


def mutated(valid: list[dict]):
    """A valid message with one field dropped, retyped or replaced, or a key added."""

    def mutate(args):
        base, key, value, op = args
        msg = dict(base)
        keys = sorted(msg)
        k = keys[key % len(keys)]
        if op == 0:
            msg.pop(k)
        elif op == 1:
            msg[k] = value
        elif op == 2:
            msg[f"x{key}"] = value
        else:
            msg[k] = str(msg[k])[::-1] + "!"
        return json.dumps(msg)

    return st.tuples(st.sampled_from(valid), st.integers(0, 9), JSONISH, st.integers(0, 3)).map(
        mutate
    )


def messages(valid: list[dict]):
    return st.one_of(
        st.text(max_size=200),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        JSONISH.map(json.dumps),
        mutated(valid),
        st.sampled_from(valid).map(json.dumps),
    )


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages(NATIVE))
def test_native_parser_accepts_or_explains(raw):
    try:
        msg = P.parse_client(raw)
    except ValueError as e:
        assert str(e)
        return
    if isinstance(msg, P.InputAudio):
        try:
            msg.pcm()
        except ValueError as e:
            assert "input.audio" in str(e)


class Recorder:
    """Stands in for the socket: what the handler sends."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send_text(self, text: str) -> None:
        self.sent.append(json.loads(text))


def small_hub() -> Hub:
    cfg = ModelConfig(
        n_layers=1,
        window_turns=2,
        d_model=64,
        n_heads=2,
        n_kv_heads=1,
        ffn_hidden=128,
        flow_width=64,
        flow_depth=1,
        hmlp_width=64,
    )
    return Hub(Engine(InteractionModel(cfg).eval(), EngineConfig(max_sessions=1)), 1, agent=None)


HUB = small_hub()
LIVE = HUB.open(24_000, 0.8, False)
KNOWN = {e["type"] for e in REALTIME} | {"response.cancel"}


@settings(max_examples=2500, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages(REALTIME))
def test_realtime_handler_never_crashes_and_answers_bad_events(raw):
    ws = Recorder()
    rt = RealtimeSession(ws, HUB, "microturn")
    rt.live = LIVE
    asyncio.run(rt.handle(raw))
    errors = [m for m in ws.sent if m["type"] == "error"]
    try:
        event = json.loads(raw)
    except ValueError:
        event = None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("type"), str)
        or event["type"] not in KNOWN
    ):
        assert errors and errors[0]["error"]["message"]
    for m in errors:
        assert m["error"]["type"] == "invalid_request_error"
    LIVE.audio = LIVE.audio[:0]  # keep the session's buffer small across examples
    LIVE.typed.clear()
