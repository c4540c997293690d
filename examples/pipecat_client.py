"""A Pipecat pipeline whose speech-to-speech model is `microturn serve`.

Pipecat's own `OpenAIRealtimeLLMService` is pointed at microturn's OpenAI Realtime-compatible
endpoint (`/v1/realtime`); the pipeline is the one Pipecat's realtime examples use (user and
assistant context aggregators around the service), with the transport replaced by frames fed
in at the real-time pace and a recorder of what comes out, so no audio device or WebRTC room
is needed.

    microturn serve --port 8000 &
    pip install "pipecat-ai[openai]"
    python examples/pipecat_client.py --url ws://127.0.0.1:8000/v1/realtime \
        --say "what is the capital of france"

Prints one JSON line of what the pipeline saw and exits 0 when the session came up, audio went
in and the model's audio came back through Pipecat's frames.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from _speech import client_args, report, speech
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    LLMRunFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSStartedFrame,
    TTSTextFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

RATE = 16_000  # what we feed; Pipecat resamples to the Realtime API's 24 kHz
CHUNK_MS = 20  # a transport's usual frame


@dataclass
class Seen:
    audio_in_s: float = 0.0
    audio_out_s: float = 0.0
    responses: int = 0  # TTSStartedFrame: the model started speaking
    first_audio_after_s: float | None = None  # from the end of the user's speech
    said: list[str] = field(default_factory=list)  # the model's words (TTSTextFrame)
    heard: list[str] = field(default_factory=list)  # the user's words, as the model heard them
    errors: list[str] = field(default_factory=list)
    speech_end: float | None = None


class Recorder(FrameProcessor):
    """Counts the frames that pass, in both directions, and passes them on."""

    def __init__(self, seen: Seen) -> None:
        super().__init__()
        self.seen = seen

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        s = self.seen
        if isinstance(frame, TTSAudioRawFrame):
            s.audio_out_s += len(frame.audio) / 2 / frame.sample_rate
            if s.first_audio_after_s is None and s.speech_end is not None:
                s.first_audio_after_s = round(time.monotonic() - s.speech_end, 3)
        elif isinstance(frame, TTSStartedFrame):
            s.responses += 1
        elif isinstance(frame, TTSTextFrame):
            s.said.append(frame.text)
        elif isinstance(frame, (TranscriptionFrame, InterimTranscriptionFrame)):
            s.heard.append(frame.text)
        elif isinstance(frame, ErrorFrame):
            s.errors.append(frame.error)
        await self.push_frame(frame, direction)


async def feed(worker: PipelineWorker, pcm: np.ndarray, seen: Seen, silence_s: float) -> None:
    """The user's speech, then silence, at the real-time pace a transport would deliver it."""
    n = RATE * CHUNK_MS // 1000
    pcm = np.concatenate([pcm, np.zeros(int(silence_s * RATE), "<i2")])
    spoken = len(pcm) - int(silence_s * RATE)
    start = time.monotonic()
    for i, at in enumerate(range(0, len(pcm), n)):
        if at >= spoken and seen.speech_end is None:
            seen.speech_end = time.monotonic()
        chunk = pcm[at:at + n]
        await worker.queue_frame(InputAudioRawFrame(audio=chunk.tobytes(), sample_rate=RATE,
                                                    num_channels=1))
        seen.audio_in_s += len(chunk) / RATE
        await asyncio.sleep(max(0.0, start + (i + 1) * CHUNK_MS / 1000 - time.monotonic()))
    await worker.queue_frame(EndFrame())


async def run(url: str, token: str, say: str, silence_s: float) -> Seen:
    seen = Seen()
    settings = OpenAIRealtimeLLMService.Settings(
        model="microturn", system_instruction="You are a helpful voice assistant.")
    llm = OpenAIRealtimeLLMService(api_key=token, base_url=url, settings=settings)
    pair = LLMContextAggregatorPair(LLMContext())
    pipeline = Pipeline([pair.user(), Recorder(seen), llm, Recorder(seen), pair.assistant()])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=RATE))
    await worker.queue_frame(LLMRunFrame())  # what Pipecat's realtime examples send on connect
    feeder = asyncio.create_task(feed(worker, speech(say, RATE), seen, silence_s))
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    await feeder
    return seen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime",
                    help="microturn's /v1/realtime")
    args = client_args(ap)
    return report(asyncio.run(run(args.url, args.token, args.say, args.silence)))


if __name__ == "__main__":
    sys.exit(main())
