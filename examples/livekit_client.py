"""LiveKit Agents' OpenAI realtime model, with its base URL pointed at `microturn serve`.

The plugin's `RealtimeModel` speaks the OpenAI Realtime protocol over its own WebSocket; an
`AgentSession` would feed it a LiveKit room's audio and play its generations into the room.
Here the plugin's `RealtimeSession` is driven directly, the way `AgentSession` drives it
(`update_instructions`, `push_audio` with `rtc.AudioFrame`s, the `generation_created` event
and its message and audio streams, the input speech and transcription events), so no LiveKit
server or room is needed.

    microturn serve --port 8000 &
    pip install livekit-agents livekit-plugins-openai
    python examples/livekit_client.py --base-url http://127.0.0.1:8000/v1 \
        --say "what is the capital of france"

Prints one JSON line of what the session saw and exits 0 when audio went in and the model's
audio came back as `rtc.AudioFrame`s of a generation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field

import aiohttp
import numpy as np
from _speech import client_args, report, speech
from livekit import rtc
from livekit.agents import llm
from livekit.plugins import openai

RATE = 24_000  # the plugin's own rate; it resamples anything else
CHUNK_MS = 20


@dataclass
class Seen:
    audio_in_s: float = 0.0
    audio_out_s: float = 0.0
    generations: int = 0  # generation_created: the model started a response
    speech_started: int = 0
    speech_stopped: int = 0
    heard: list[str] = field(default_factory=list)  # input_audio_transcription_completed
    said: list[str] = field(default_factory=list)  # a generation's text stream
    errors: list[str] = field(default_factory=list)


async def consume(gen: llm.GenerationCreatedEvent, seen: Seen) -> None:
    """Read a generation as AgentSession does: each message's audio and text streams."""
    seen.generations += 1
    async for msg in gen.message_stream:
        async def audio(m=msg) -> None:
            async for frame in m.audio_stream:
                seen.audio_out_s += frame.samples_per_channel / frame.sample_rate

        async def text(m=msg) -> None:
            async for piece in m.text_stream:
                seen.said.append(piece)

        await asyncio.gather(audio(), text())


async def run(base_url: str, token: str, say: str, silence_s: float) -> Seen:
    seen = Seen()
    tasks: list[asyncio.Task] = []
    async with aiohttp.ClientSession() as http:
        model = openai.realtime.RealtimeModel(model="microturn", base_url=base_url, api_key=token,
                                              http_session=http)
        session = model.session()

        def count(name: str):
            return lambda _ev: setattr(seen, name, getattr(seen, name) + 1)

        session.on("generation_created",
                   lambda ev: tasks.append(asyncio.create_task(consume(ev, seen))))
        session.on("input_speech_started", count("speech_started"))
        session.on("input_speech_stopped", count("speech_stopped"))
        session.on("input_audio_transcription_completed",
                   lambda ev: seen.heard.append(ev.transcript))
        session.on("error", lambda ev: seen.errors.append(str(getattr(ev, "error", ev))))
        await session.update_instructions("You are a helpful voice assistant.")

        pcm = np.concatenate([speech(say, RATE), np.zeros(int(silence_s * RATE), "<i2")])
        n = RATE * CHUNK_MS // 1000
        start = time.monotonic()
        for i, at in enumerate(range(0, len(pcm), n)):
            chunk = pcm[at:at + n]
            session.push_audio(rtc.AudioFrame(chunk.tobytes(), RATE, 1, len(chunk)))
            seen.audio_in_s += len(chunk) / RATE
            await asyncio.sleep(max(0.0, start + (i + 1) * CHUNK_MS / 1000 - time.monotonic()))
        await session.aclose()
        for t in tasks:
            t.cancel()
        await model.aclose()
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1",
                    help="microturn's /v1 (the plugin adds /realtime)")
    args = client_args(ap)
    seen = asyncio.run(run(args.base_url, args.token, args.say, args.silence))
    return report(seen)


if __name__ == "__main__":
    sys.exit(main())
