"""The engine loop: every live conversation advances one micro-turn per tick, in one batch.

asyncio does the I/O; the engine runs on one worker thread, so sockets are served while a
turn computes. Each session buffers its input audio (bounded: a client sending faster than
real time loses the excess, counted, and nobody else notices); at its tick a session takes
one turn of audio, padded with silence if the client is late (late audio goes into the next
turn). Outputs go to a bounded per-session queue; a slow reader drops its own messages.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import soxr

from ..background.agent import BackgroundAgent
from ..background.tasks import BackgroundRunner
from ..engine.engine import Engine
from ..engine.kv import PoolFullError
from ..engine.session import SamplerSettings
from ..runtime.conversation import Conversation
from ..streams.audio import pcm16_to_float
from ..streams.turns import SPEAK, vocode_outputs
from .metrics import Metrics

MAX_BUFFER_S = 2.0  # input audio a session may hold ahead of the clock
OUT_QUEUE = 256  # messages waiting for a slow reader


class ServerFull(Exception):
    """No KV slot (or session allowance) is free."""


@dataclass
class Live:
    id: str
    conv: Conversation
    rate: int
    opened: float
    resampler: soxr.ResampleStream | None
    audio: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.float32)
    )  # at the model's rate
    typed: list[str] = field(default_factory=list)
    frame: np.ndarray | None = None
    out: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(OUT_QUEUE))
    last_input: float = field(default_factory=time.monotonic)
    dropped_s: float = 0.0
    closed: bool = False
    _tasks_seen: int = 0


class Hub:
    def __init__(
        self,
        engine: Engine,
        max_sessions: int,
        agent: Callable[[], BackgroundAgent] | None = None,
        idle_timeout_s: float = 60.0,
        max_session_s: float = 3600.0,
    ) -> None:
        self.engine, self.lay = engine, engine.layout
        self.max_sessions = max_sessions
        self.agent, self.runner = agent, BackgroundRunner() if agent is not None else None
        self.idle_timeout_s, self.max_session_s = idle_timeout_s, max_session_s
        self.live: dict[str, Live] = {}
        self.metrics = Metrics()
        self._ids = itertools.count(1)
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="engine")
        self._task: asyncio.Task | None = None
        self._stepping = False  # the engine thread is inside a step: closes wait for it
        self._closing: list[Live] = []

    # ---- sessions -------------------------------------------------------------------------
    @property
    def occupied(self) -> int:
        """KV slots in use: live sessions and those whose close waits for the step in flight."""
        return len(self.live) + len(self._closing)

    def open(
        self, rate: int, temperature: float, background: bool, text_temperature: float = 0.8
    ) -> Live:
        if self.occupied >= self.max_sessions:
            self.metrics.refused += 1
            raise ServerFull(
                f"server full: {len(self.live)} of {self.max_sessions} sessions live; "
                "try again later"
            )
        try:
            conv = Conversation.open(
                self.engine,
                self.agent() if background and self.agent else None,
                self.runner if background else None,
                SamplerSettings(temperature=temperature, text_temperature=text_temperature),
            )
        except PoolFullError as e:
            self.metrics.refused += 1
            raise ServerFull(f"server full: {e}") from e
        rs = (
            None
            if rate == self.lay.sample_rate
            else soxr.ResampleStream(rate, self.lay.sample_rate, 1, dtype="float32")
        )
        live = Live(f"s{next(self._ids)}", conv, rate, time.monotonic(), rs)
        self.live[live.id] = live
        return live

    def close(self, live: Live) -> None:
        """Leave the loop now; the KV slot is freed at once, or after the step in flight."""
        if live.closed:
            return
        live.closed = True
        self.live.pop(live.id, None)
        if self._stepping:
            self._closing.append(live)
        else:
            live.conv.close()

    def push_audio(self, live: Live, pcm: bytes) -> None:
        x = pcm16_to_float(pcm)
        if live.resampler is not None:
            x = live.resampler.resample_chunk(x)
        live.last_input = time.monotonic()
        self.metrics.input_audio_s += len(x) / self.lay.sample_rate
        room = int(MAX_BUFFER_S * self.lay.sample_rate) - len(live.audio)
        if len(x) > room:  # faster than real time: keep the clock's worth, drop the rest
            live.dropped_s += (len(x) - max(room, 0)) / self.lay.sample_rate
            self.metrics.dropped_audio_s += (len(x) - max(room, 0)) / self.lay.sample_rate
            x = x[: max(room, 0)]
        live.audio = np.concatenate([live.audio, x.astype(np.float32)])

    # ---- the loop -------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._worker.shutdown(
            wait=True
        )  # a step still in flight finishes before its sessions close
        self._stepping = False
        for live in list(self.live.values()) + self._closing:
            live.closed = False
            self.close(live)
        if self.runner is not None:
            self.runner.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.lay.turn_seconds
        deadline = time.monotonic() + period
        while True:
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            self._expire()
            sessions = [s for s in self.live.values() if not s.closed]
            if sessions:
                t0 = time.perf_counter()
                media = [self._take(s) for s in sessions]
                self._stepping = True
                try:
                    results = await loop.run_in_executor(self._worker, self._turn, sessions, media)
                finally:
                    self._stepping = False
                    for s in self._closing:
                        s.conv.close()
                    self._closing.clear()
                ms = (time.perf_counter() - t0) * 1000
                missed = time.monotonic() > deadline + period
                self.metrics.turn(ms, missed, len(sessions))
                for s, (out, events, wav) in zip(sessions, results):
                    if not s.closed:
                        self._deliver(s, out, events, wav, ms, missed)
            deadline += period
            if deadline < time.monotonic() - period:  # far behind (a stall): skip, don't burst
                deadline = time.monotonic() + period

    def _expire(self) -> None:
        now = time.monotonic()
        for s in list(self.live.values()):
            if now - s.last_input > self.idle_timeout_s:
                self._send(
                    s,
                    {
                        "type": "error",
                        "code": "idle_timeout",
                        "message": f"no input for {self.idle_timeout_s:g} s; session closed",
                    },
                )
                self.close(s)
            elif now - s.opened > self.max_session_s:
                self._send(
                    s,
                    {
                        "type": "error",
                        "code": "session_too_long",
                        "message": (
                            f"sessions last at most {self.max_session_s:g} s; session closed"
                        ),
                    },
                )
                self.close(s)

    def _take(self, s: Live) -> tuple:
        """This turn's media of a session (on the loop thread, where the input arrives)."""
        n = self.lay.turn_samples
        chunk = np.zeros(n, np.float32)
        take = min(n, len(s.audio))
        chunk[:take] = s.audio[:take]
        s.audio = s.audio[take:]
        typed, s.typed = s.typed, []
        frame, s.frame = s.frame, None
        return chunk, frame, typed

    def _turn(self, sessions: list[Live], media: list[tuple]) -> list[tuple]:
        """One batched turn on the engine thread: pack, step, unpack and vocode."""
        inputs = [
            s.conv.prepare(chunk, frame, typed) for s, (chunk, frame, typed) in zip(sessions, media)
        ]
        outs = self.engine.step([s.conv.session for s in sessions], inputs).outputs
        wavs = vocode_outputs([s.conv.session.unpacker for s in sessions], outs)  # one batched call
        return [(out, *s.conv.finish(out, wav)) for s, out, wav in zip(sessions, outs, wavs)]

    def _deliver(self, s: Live, out, events: list, wav, ms: float, missed: bool) -> None:
        k = s.conv.session.turn - 1
        if wav is not None:
            pcm = (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()
            self._send(
                s,
                {
                    "type": "output.audio.delta",
                    "turn": k,
                    "pcm": pcm,
                    "speaking": out.control == SPEAK,
                },
            )
        for e in events:
            if e.kind == "model_word":
                self._send(s, {"type": "output.transcript.delta", "t": e.t, "text": e.text + " "})
            elif e.kind == "heard_word":  # the model's listening transcript: the user's words
                self._send(s, {"type": "input.transcript.delta", "t": e.t, "text": e.text + " "})
        for ev in s.conv.task_log[s._tasks_seen :]:
            kind = {
                "created": "created",
                "progress": "progress",
                "done": "done",
                "failed": "failed",
                "cancelled": "cancelled",
            }[ev.kind]
            self._send(
                s, {"type": f"delegation.{kind}", "task_id": ev.task_id, "t": ev.t, "text": ev.text}
            )
        s._tasks_seen = len(s.conv.task_log)
        self._send(
            s,
            {
                "type": "turn.timing",
                "turn": k,
                "compute_ms": round(ms, 2),
                "missed_deadline": missed,
                "speaking": out.control == SPEAK,
            },
        )

    def _send(self, s: Live, msg: dict) -> None:
        try:
            s.out.put_nowait(msg)
        except asyncio.QueueFull:
            self.metrics.dropped_messages += 1
