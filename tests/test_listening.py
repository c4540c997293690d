"""The listening transcript, end to end without training: targets from word times, bytes
back to heard words, the context package, the CER metrics, and held-out instructions."""

from __future__ import annotations

import torch

from microturn.background.context import ContextPackage
from microturn.config import TurnLayout
from microturn.eval.metrics import answer_cer, cer, transcript_cer, Word
from microturn.streams.text import ByteTokenizer
from microturn.streams.timeline import transcript_targets
from microturn.streams.turns import Event, TurnOutput, TurnUnpacker
from microturn.world.families import FAMILY_GENERATORS, generate

LAYOUT = TurnLayout()
PAD = ByteTokenizer.PAD


def test_targets_are_causal_and_spell_the_words():
    words = [Event(0.10, "user_word", "What", 0.33), Event(0.40, "user_word", "time?", 0.72)]
    heard = transcript_targets(words, LAYOUT, n=10).flatten().tolist()
    slot_s = LAYOUT.turn_seconds / LAYOUT.audio_slots
    first = next(i for i, t in enumerate(heard) if t != PAD)
    assert first * slot_s >= 0.33  # nothing is written before the word has ended
    text = bytes(t for t in heard if t != PAD).decode()
    assert text == "what time "  # lower case, punctuation dropped, a space closes each word
    space = heard.index(ord(" "))
    second = next(i for i in range(space + 1, len(heard)) if heard[i] != PAD)
    assert second * slot_s >= 0.72


def test_targets_queue_when_words_come_fast():
    words = [Event(0.05 * i, "user_word", "abcdefgh", 0.05 * i + 0.04) for i in range(6)]
    heard = transcript_targets(words, LAYOUT, n=20).flatten().tolist()
    assert bytes(t for t in heard if t != PAD).decode() == "abcdefgh " * 6  # nothing dropped


def test_unpacker_turns_bytes_into_heard_words():
    un = TurnUnpacker(LAYOUT, vocoder=False)
    ids = list(b"hello wor") + [PAD] * 3 + list(b"ld ")
    events = []
    for k in range(0, len(ids), 4):
        chunk = (ids[k:k + 4] + [PAD] * 4)[:4]
        events += un.unpack(k // 4, TurnOutput(control=0, text=[PAD] * 4, audio=None, heard=chunk))[
            0
        ]
    events += un.flush(len(ids) // 4)
    heard = [e for e in events if e.kind == "heard_word"]
    assert [e.text for e in heard] == ["hello", "world"]
    assert heard[1].t <= heard[1].end


def test_context_package_takes_heard_words_when_none_are_known():
    heard = [
        Event(1.0, "heard_word", "what"),
        Event(1.2, "heard_word", "is"),
        Event(1.4, "heard_word", "2+2"),
    ]
    pkg = ContextPackage.from_events("t1", "what is 2+2", 2.0, heard)
    assert pkg.transcript == [{"t": 1.0, "kind": "user_word", "text": "what is 2+2"}]
    known = [Event(1.0, "user_word", "What"), Event(1.2, "user_word", "is")]
    pkg = ContextPackage.from_events("t1", "x", 2.0, known + heard)
    assert pkg.transcript[0]["text"] == "What is"  # the exact words win; none doubled


def test_character_error_rates():
    assert cer("Paris is the capital of France", "Paris is the capital of France.") == 0.0
    assert cer("", "Paris") == 1.0
    assert 0 < cer("paris is the capitol", "Paris is the capital") < 0.2
    words = [
        Word(5.0, "Paris"),
        Word(5.3, "is"),
        Word(5.5, "the"),
        Word(5.8, "capital."),
        Word(30.0, "x"),
    ]
    assert answer_cer(words, "Paris is the capital.", after=4.6)["answer_cer"] == 0.0
    assert transcript_cer(["what", "tim"], ["What", "time?"])["transcript_cer"] == 1 / 9


def test_no_eval_instruction_is_heard_in_training():
    for family in (
        "timespeak",
        "cuespeak",
        "correction",
        "simultaneous",
        "repcount",
        "startstop",
        "proactive",
        "tool_use",
    ):
        first = lambda split, i: generate(family, i, split).scenario.user[0].text
        train = {first("train", i) for i in range(12)}
        held = {first("eval", i) for i in range(6)}
        assert not train & held, (family, train & held)
    assert len(FAMILY_GENERATORS) == 14


def test_the_transcript_reaches_both_protocols():
    """A model that hears words (its transcript head narrowed to a few bytes) in a real
    server: the native socket gets `input.transcript.delta`, the Realtime socket the user
    item's `input_audio_transcription.delta` events and, after the speech stops, their
    `.completed` with the whole transcript, on the item speech_started opened."""
    import asyncio
    import base64
    import json
    import time

    import numpy as np
    import websockets
    from conftest import serving, tone, writing_model

    from microturn.config import EngineConfig
    from microturn.engine.engine import Engine
    from microturn.server.app import create_app

    def pcm(x: np.ndarray) -> str:
        return base64.b64encode((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()).decode()

    speech = np.concatenate([tone(1.6, 24_000), np.zeros(int(2.4 * 24_000), np.float32)])
    chunks = [speech[i : i + 4800] for i in range(0, len(speech), 4800)]  # 200 ms each

    async def native(addr: str) -> list[dict]:
        async with websockets.connect(f"ws://{addr}/v1/ws") as ws:
            await ws.send(json.dumps({"type": "session.start", "sample_rate": 24_000}))
            got, deadline = [], time.monotonic() + 30
            for c in chunks:
                await ws.send(json.dumps({"type": "input.audio", "audio": pcm(c)}))
            while not got and time.monotonic() < deadline:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if msg["type"] == "input.transcript.delta":
                    got.append(msg)
            return got

    async def realtime(addr: str) -> list[dict]:
        async with websockets.connect(f"ws://{addr}/v1/realtime?model=m") as ws:
            seen, deadline = [], time.monotonic() + 40
            for c in chunks:
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": pcm(c)}))
            while time.monotonic() < deadline:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                seen.append(msg)
                if msg["type"] == "conversation.item.input_audio_transcription.completed":
                    break
            return seen

    app = create_app(Engine(writing_model(), EngineConfig(max_sessions=2)), agent=None)
    with serving(app) as port:
        got = asyncio.run(native(f"127.0.0.1:{port}"))
        seen = asyncio.run(realtime(f"127.0.0.1:{port}"))
    assert got and got[0]["text"].strip() and set(got[0]["text"].strip()) <= set("abc")
    started = [m for m in seen if m["type"] == "input_audio_buffer.speech_started"]
    deltas = [m for m in seen if m["type"] == "conversation.item.input_audio_transcription.delta"]
    done = [m for m in seen if m["type"] == "conversation.item.input_audio_transcription.completed"]
    assert started and deltas and done, sorted({m["type"] for m in seen})
    item = started[0]["item_id"]
    assert all(m["item_id"] == item for m in deltas + done)
    assert done[0]["transcript"] == "".join(m["delta"] for m in deltas).strip()
