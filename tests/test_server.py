"""`microturn serve` over real sockets: a uvicorn server in a thread, `websockets` clients."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.request

import numpy as np
import pytest
import websockets
from conftest import BENCHMARKS, serving, tiny_server_model

from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.server.app import create_app


@pytest.fixture(scope="module")
def server():
    app = create_app(
        Engine(tiny_server_model(), EngineConfig(max_sessions=2)),
        token="secret",
        idle_timeout_s=3.0,
    )
    with serving(app) as port:
        yield f"127.0.0.1:{port}", app.state.hub


# Generous: on a loaded 2-core CI machine a turn can stall for seconds; a healthy run never
# waits this long.
RECV_S = 20.0


def pcm(seconds: float, rate: int) -> str:
    t = np.arange(int(seconds * rate)) / rate
    return base64.b64encode(
        (0.2 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()
    ).decode()


def idle(hub, timeout: float = 5.0) -> None:
    """Wait until earlier tests' sessions have gone (their sockets close asynchronously)."""
    deadline = time.monotonic() + timeout
    while hub.occupied and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not hub.occupied


async def session(addr: str, **start):
    ws = await websockets.connect(f"ws://{addr}/v1/ws?token=secret")
    await ws.send(json.dumps({"type": "session.start", **start}))
    started = json.loads(await ws.recv())
    return ws, started


def test_a_session_streams_audio_in_and_gets_turns_back(server):
    addr, hub = server
    idle(hub)

    async def go():
        ws, started = await session(addr, sample_rate=24_000)
        assert started["type"] == "session.started" and started["turn_ms"] == 200
        kinds: dict[str, int] = {}
        for _ in range(10):  # 2 s of 24 kHz audio, sent in real time
            await ws.send(json.dumps({"type": "input.audio", "audio": pcm(0.2, 24_000)}))
            await asyncio.sleep(0.2)
        await ws.send(json.dumps({"type": "input.text", "text": "hello"}))
        deadline = time.monotonic() + RECV_S
        while kinds.get("turn.timing", 0) < 12 and time.monotonic() < deadline:
            msg = json.loads(await asyncio.wait_for(ws.recv(), RECV_S))
            kinds[msg["type"]] = kinds.get(msg["type"], 0) + 1
            if msg["type"] == "output.audio.delta":
                assert len(base64.b64decode(msg["audio"])) == 2 * 3200
        await ws.send(json.dumps({"type": "session.end"}))
        await ws.close()
        return kinds

    kinds = asyncio.run(go())
    assert kinds["turn.timing"] >= 12 and kinds["output.audio.delta"] >= 12
    idle(hub)  # the slot was freed


def test_bad_messages_get_errors_and_the_session_goes_on(server):
    addr, hub = server
    idle(hub)

    async def go():
        ws, _ = await session(addr)
        errors = []
        for bad in (
            "{not json",
            json.dumps({"type": "input.audio", "audio": "@@@"}),
            json.dumps({"type": "input.audio", "audio": base64.b64encode(b"abc").decode()}),
            json.dumps({"type": "nope"}),
            json.dumps({"type": "session.start"}),
            json.dumps({"type": "input.video", "jpeg": base64.b64encode(b"not a jpeg").decode()}),
        ):
            await ws.send(bad)
        while len(errors) < 6:
            msg = json.loads(await asyncio.wait_for(ws.recv(), RECV_S))
            if msg["type"] == "error":
                errors.append(msg)
        await ws.send(json.dumps({"type": "input.audio", "audio": pcm(0.2, 16_000)}))
        msg = json.loads(await asyncio.wait_for(ws.recv(), RECV_S))
        await ws.close()
        return errors, msg

    errors, after = asyncio.run(go())
    assert all(e["code"] == "bad_message" and e["message"] for e in errors)
    assert after["type"] in ("turn.timing", "output.audio.delta", "output.transcript.delta")


def test_full_server_refuses_and_bad_token_is_closed(server):
    addr, hub = server
    idle(hub)
    refused_before = hub.metrics.refused

    async def go():
        a, _ = await session(addr)
        b, _ = await session(addr)
        c, refused = await session(addr)
        await a.close(), await b.close()
        with pytest.raises(websockets.exceptions.InvalidStatus):
            await websockets.connect(f"ws://{addr}/v1/ws?token=wrong")
        return refused

    refused = asyncio.run(go())
    assert refused["type"] == "error" and refused["code"] == "server_full"
    health = json.loads(urllib.request.urlopen(f"http://{addr}/healthz").read())
    assert health["status"] == "ok" and 0 <= health["free_slots"] <= health["max_sessions"] == 2
    metrics = urllib.request.urlopen(f"http://{addr}/metrics").read().decode()
    assert (
        f"microturn_sessions_refused_total {refused_before + 1}" in metrics
        and "microturn_turn_compute_ms_bucket" in metrics
    )


def test_flooding_client_is_throttled_and_idle_sessions_close(server):
    addr, hub = server
    idle(hub)
    before = hub.metrics.dropped_audio_s

    async def go():
        flood, _ = await session(addr)
        calm, _ = await session(addr)
        for _ in range(5):  # 10 s of audio in an instant: only MAX_BUFFER_S is kept
            await flood.send(json.dumps({"type": "input.audio", "audio": pcm(2.0, 16_000)}))
        turns: list[int] = []
        while len(turns) < 5:
            msg = json.loads(await asyncio.wait_for(calm.recv(), RECV_S))
            if msg["type"] == "turn.timing":
                turns.append(msg["turn"])
        await flood.close()
        codes = []
        while True:  # calm now sends nothing: closed after the 3 s idle timeout
            try:
                msg = json.loads(await asyncio.wait_for(calm.recv(), 6))
            except websockets.exceptions.ConnectionClosed:
                break
            if msg["type"] == "error":
                codes.append(msg["code"])
        return turns, codes

    turns, codes = asyncio.run(go())
    assert (
        hub.metrics.dropped_audio_s - before >= 7.5
    )  # 10 s sent, 2 s buffered, a turn or two consumed
    assert turns == list(
        range(turns[0], turns[0] + 5)
    )  # the calm session kept its pace: no turn skipped
    assert codes == ["idle_timeout"]
    idle(hub)


def test_openai_sdk_realtime_client_talks_to_the_server(server):
    """The real `openai` SDK's realtime client: session, audio in, model-started responses out."""
    from openai import AsyncOpenAI

    addr, hub = server
    idle(hub)

    async def go():
        client = AsyncOpenAI(api_key="secret", base_url=f"http://{addr}/v1")
        seen: list[str] = []
        async with client.realtime.connect(model="microturn") as conn:
            first = await conn.recv()
            assert first.type == "session.created"
            await conn.session.update(session={"type": "realtime", "instructions": "be brief"})
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                }
            )
            for _ in range(8):
                await conn.input_audio_buffer.append(audio=pcm(0.2, 24_000))
                await asyncio.sleep(0.2)
            await conn.input_audio_buffer.commit()
            await conn.send({"type": "bogus.event"})
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and not ("response.done" in seen and "error" in seen):
                try:
                    ev = await asyncio.wait_for(conn.recv(), 2)
                except asyncio.TimeoutError:
                    await conn.input_audio_buffer.append(audio=pcm(0.2, 24_000))
                    continue
                seen.append(ev.type)
                if ev.type == "response.output_audio.delta":
                    n = len(
                        base64.b64decode(ev.delta)
                    )  # ~200 ms at 24 kHz (the resampler's latency varies it)
                    assert n % 2 == 0 and 0 < n <= 2 * 6000
        return seen

    seen = asyncio.run(go())
    for kind in (
        "session.updated",
        "conversation.item.added",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.committed",
        "error",
    ):
        assert kind in seen, (kind, seen[:20])
    # an untrained model speaks at random: when it did, the response events are well formed
    if "response.created" in seen:
        assert seen.index("response.created") < seen.index("response.output_audio.delta")


def test_sessions_survive_a_storm_of_bad_messages(server):
    """300 random and mutated messages on each protocol's live socket: errors, then turns as
    usual."""
    import random

    addr, hub = server
    idle(hub)
    rng = random.Random(0)
    junk = lambda: rng.choice(
        [
            "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(60))),
            json.dumps(
                {
                    "type": rng.choice(
                        ["input.audio", "input.text", "input_audio_buffer.append", "x", 3]
                    ),
                    rng.choice(["audio", "text", "jpeg", "zz"]): rng.choice(
                        [None, 5, "%%%", [1], "A" * 7]
                    ),
                }
            ),
            json.dumps(rng.choice([[], 1, "s", None, {"type": None}])),
        ]
    )

    async def storm(path: str, first: str | None):
        ws = await websockets.connect(
            f"ws://{addr}{path}", additional_headers={"Authorization": "Bearer secret"}
        )
        if first:
            await ws.send(first)
        for _ in range(300):
            await ws.send(junk())
        errors, turns = 0, 0
        deadline = time.monotonic() + 20
        while (errors < 300 or turns < 3) and time.monotonic() < deadline:
            msg = json.loads(await asyncio.wait_for(ws.recv(), RECV_S))
            errors += msg["type"] == "error"
            turns += msg["type"] in ("turn.timing", "input_audio_buffer.speech_started")
            if errors >= 300 and path.endswith("realtime") and turns < 3:
                await ws.send(
                    json.dumps({"type": "input_audio_buffer.append", "audio": pcm(0.2, 24_000)})
                )
        await ws.close()
        return errors, turns

    errors, turns = asyncio.run(storm("/v1/ws", json.dumps({"type": "session.start"})))
    assert errors >= 300 and turns >= 3
    idle(hub)
    errors, heard = asyncio.run(storm("/v1/realtime", None))
    assert errors >= 300 and heard >= 1


def test_a_thousand_connects_and_disconnects_leak_nothing(server):
    """Sessions opened and dropped (some mid-turn, some without a goodbye): every KV slot
    comes back and memory stays flat."""
    import resource

    addr, hub = server
    idle(hub)
    pool = hub.engine.pool

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20

    async def cycles(n: int, offset: int):
        for i in range(n):
            ws = await websockets.connect(f"ws://{addr}/v1/ws?token=secret")
            await ws.send(json.dumps({"type": "session.start"}))
            await ws.recv()
            if (i + offset) % 3 == 0:
                await ws.send(json.dumps({"type": "input.audio", "audio": pcm(0.05, 16_000)}))
            if (i + offset) % 20 == 0:
                await asyncio.sleep(
                    0.21
                )  # across a tick: the close lands while a step may be running
            if (i + offset) % 5 == 0:
                ws.transport.abort()  # no close frame
            else:
                await ws.close()
            while hub.occupied >= hub.max_sessions:
                await asyncio.sleep(0.01)

    asyncio.run(cycles(200, 0))
    idle(hub)
    before = rss_mb()
    asyncio.run(cycles(800, 200))
    idle(hub)
    assert pool.free == pool.slots
    assert rss_mb() - before < 25, (before, rss_mb())


def test_load_benchmark_reports_its_figures(tmp_path):
    """benchmarks/load.py against a real `microturn serve` subprocess (small and short here)."""
    import subprocess
    import sys

    out = tmp_path / "load.json"
    script = BENCHMARKS / "load.py"
    p = subprocess.run(
        [
            sys.executable,
            str(script),
            "--sessions",
            "1,2",
            "--seconds",
            "2",
            "--config",
            "tiny",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert [r["sessions"] for r in rows] == [1, 2]
    for r in rows:
        assert 0 < r["p50_ms"] <= r["p99_ms"] and 0 <= r["miss_rate"] <= 1
        assert r["dropped_messages"] == 0 and r["missed"] >= 0
    assert report["max_realtime_sessions"] in (None, 1, 2)
    assert "max_realtime_sessions (largest N with no missed turn)" in p.stdout


def test_realtime_beta_clients_get_beta_event_names(server):
    addr, hub = server
    idle(hub)

    async def go():
        ws = await websockets.connect(
            f"ws://{addr}/v1/realtime?model=m",
            additional_headers={"Authorization": "Bearer secret", "OpenAI-Beta": "realtime=v1"},
        )
        assert json.loads(await ws.recv())["type"] == "session.created"
        kinds = set()
        deadline = time.monotonic() + 10
        while "response.audio.delta" not in kinds and time.monotonic() < deadline:
            await ws.send(
                json.dumps({"type": "input_audio_buffer.append", "audio": pcm(0.2, 24_000)})
            )
            try:
                kinds.add(json.loads(await asyncio.wait_for(ws.recv(), 0.3))["type"])
            except asyncio.TimeoutError:
                pass
        await ws.close()
        return kinds

    kinds = asyncio.run(go())
    assert "response.audio.delta" in kinds and "response.output_audio.delta" not in kinds


def test_realtime_items_are_acknowledged_and_responses_carry_their_item(server):
    """What Pipecat and LiveKit Agents need (examples/): every item a client creates is echoed
    with its id rather than refused, and a response announces its message item before the
    audio (LiveKit drops audio deltas of an item it was not told of)."""
    addr, hub = server
    idle(hub)

    def item(id_: str, role: str, text: str) -> str:
        content = [{"type": "input_text", "text": text}]
        new = {"id": id_, "type": "message", "role": role, "content": content}
        return json.dumps({"type": "conversation.item.create", "item": new})

    async def go():
        ws = await websockets.connect(
            f"ws://{addr}/v1/realtime", additional_headers={"Authorization": "Bearer secret"}
        )
        assert json.loads(await ws.recv())["type"] == "session.created"
        for msg in (
            item("sys_1", "system", "be brief"),
            item("u_1", "user", "hello"),
            json.dumps(
                {
                    "type": "conversation.item.truncate",
                    "item_id": "u_1",
                    "content_index": 0,
                    "audio_end_ms": 100,
                }
            ),
            json.dumps({"type": "conversation.item.delete", "item_id": "sys_1"}),
        ):
            await ws.send(msg)
        events: list[dict] = []
        deadline = time.monotonic() + 20
        while not any(e["type"] == "response.done" for e in events) and time.monotonic() < deadline:
            audio = pcm(0.2, 24_000)
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            try:
                while True:
                    events.append(json.loads(await asyncio.wait_for(ws.recv(), 0.2)))
            except asyncio.TimeoutError:
                pass
        await ws.close()
        return events

    events = asyncio.run(go())
    kinds = [e["type"] for e in events]
    assert "error" not in kinds, [e for e in events if e["type"] == "error"]
    added = [e["item"]["id"] for e in events if e["type"] == "conversation.item.added"]
    assert added[:2] == ["sys_1", "u_1"]
    assert {"type": "conversation.item.truncated", "item_id": "u_1"}.items() <= events[
        kinds.index("conversation.item.truncated")
    ].items()
    assert events[kinds.index("conversation.item.deleted")]["item_id"] == "sys_1"
    # the first response, whole: its item announced before its audio, closed before response.done
    start = kinds.index("response.created")
    rid = events[start]["response"]["id"]
    mine = [
        e
        for e in events[start:]
        if rid in (e.get("response_id"), e.get("response", {}).get("id"))
        or e["type"] in ("conversation.item.added", "conversation.item.done")
    ]
    order = [e["type"] for e in mine]
    expected = [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert [k for k in dict.fromkeys(order) if k in expected] == expected, order
    item_id = mine[1]["item"]["id"]
    assert all(e["item_id"] == item_id for e in mine if "item_id" in e)
    done = next(e for e in mine if e["type"] == "response.done")["response"]
    assert done["status"] == "completed" and done["output"][0]["id"] == item_id
    assert done["output"][0]["content"][0]["type"] == "output_audio"


def test_realtime_only_user_text_reaches_the_model():
    from microturn.server.realtime import _input_text

    def msg(role: str) -> dict:
        return {"type": "message", "role": role, "content": [{"type": "input_text", "text": "hi"}]}

    assert _input_text(msg("user")) == "hi"
    assert _input_text(msg("system")) is None and _input_text(msg("assistant")) is None
    assert _input_text({"type": "function_call_output", "output": "{}"}) is None
