"""OpenAI Realtime-compatible endpoint (`/v1/realtime`), GA event names.

The same live session as the native protocol, spoken in Realtime's terms. The difference
that matters: a response starts when the model decides to speak, not on a commit. So
`input_audio_buffer.commit`, `input_audio_buffer.clear`, `response.create` and
`response.cancel` are accepted and acknowledged but do not start or stop anything;
`conversation.item.create` of a user message with `input_text` content becomes typed text,
and any other item (system or assistant messages, function outputs) is acknowledged
(`conversation.item.added`, with the client's item id) but not acted on: the model keeps its
own context. `conversation.item.truncate` and `conversation.item.delete` are acknowledged the
same way. Audio is PCM16 at 24 kHz both ways (resampled to and from the model's 16 kHz with
soxr). A response carries the full item lifecycle (`response.output_item.added`,
`conversation.item.added`, `response.content_part.added`, the audio and transcript deltas and
their `.done`s, `response.output_item.done`, `conversation.item.done`, `response.done` with
the item): agent frameworks route audio by those items (LiveKit drops audio whose item it was
not told of; Pipecat starts its assistant turn on `conversation.item.added`).

Clients of the beta API (header `OpenAI-Beta: realtime=v1`) get the beta names of the
output events (`response.audio.delta`, ...); client event names are the same in both.

`input_audio_buffer.speech_started` / `speech_stopped` come from the runtime's input level
(the -40 dBFS rule the background-result delivery uses), not from a separate VAD model.
They open and close a user item; the model's listening transcript of it streams as
`conversation.item.input_audio_transcription.delta` and ends with `.completed` a few turns
after the speech stops (the transcript runs a word behind the audio).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json

import numpy as np
import soxr
from fastapi import WebSocket, WebSocketDisconnect

from ..streams.audio import pcm16_to_float
from .hub import Hub, Live, ServerFull
from .protocol import MAX_AUDIO_B64, MAX_TEXT

RATE = 24_000
SPEECH_DBFS = -40.0
QUIET_TURNS_TO_STOP = 3
TRANSCRIPT_SETTLE_TURNS = 3  # after speech_stopped: the last words are still being written
BETA_NAMES = {
    # for clients sending OpenAI-Beta: realtime=v1
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}
BETA_ABSENT = {"conversation.item.done"}  # GA-only events, not sent to beta clients
ACCEPTED_NOOPS = {
    "input_audio_buffer.commit": "input_audio_buffer.committed",
    "input_audio_buffer.clear": "input_audio_buffer.cleared",
    "conversation.item.truncate": "conversation.item.truncated",
    "conversation.item.delete": "conversation.item.deleted",
    "response.create": None,
    "response.cancel": None,
}


class RealtimeSession:
    """One `/v1/realtime` socket: client events in, Realtime server events out."""

    def __init__(self, ws: WebSocket, hub: Hub, model: str, beta: bool = False) -> None:
        self.ws, self.hub, self.model = ws, hub, model
        self.live: Live | None = None
        self.ids = itertools.count(1)
        self.response: str | None = None
        self.item: str | None = None
        self.said: list[str] = []  # the response's transcript so far
        self.out_rs = soxr.ResampleStream(hub.lay.sample_rate, RATE, 1, dtype="float32")
        self.user_speaking, self.quiet = False, 0
        self.heard_ms = 0
        self.input_item: str | None = None  # the user item being spoken (and transcribed)
        self.heard: list[str] = []  # its transcript so far
        self.settle: int | None = None  # turns left before its transcription completes
        self.beta = beta

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids)}"

    async def send(self, type_: str, **fields) -> None:
        if self.beta and type_ in BETA_ABSENT:
            return
        type_ = BETA_NAMES.get(type_, type_) if self.beta else type_
        await self.ws.send_text(
            json.dumps({"type": type_, "event_id": self._id("event"), **fields})
        )

    async def error(
        self, message: str, code: str = "invalid_request_error", event_id: str | None = None
    ) -> None:
        self.hub.metrics.bad_messages += 1
        await self.send(
            "error",
            error={
                "type": "invalid_request_error",
                "code": code,
                "message": message,
                "param": None,
                "event_id": event_id,
            },
        )

    def session_object(self) -> dict:
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": self.live.id if self.live else "",
            "model": self.model,
            "output_modalities": ["audio"],
            "audio": {
                "input": {"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": None},
                "output": {"format": {"type": "audio/pcm", "rate": RATE}},
            },
        }

    # ---- in ---------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            self.live = self.hub.open(RATE, 0.8, True)
        except ServerFull as e:
            await self.error(str(e), "server_full")
            await self.ws.close(code=1013)
            return
        await self.send("session.created", session=self.session_object())
        pump = asyncio.create_task(self._pump())
        try:
            while not self.live.closed:
                msg = await self.ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                await self.handle(
                    msg.get("text") if msg.get("text") is not None else msg.get("bytes") or b""
                )
        except WebSocketDisconnect:
            pass
        finally:
            self.hub.close(self.live)
            pump.cancel()

    async def handle(self, raw: str | bytes) -> None:
        if len(raw) > 1024 * 1024:
            return await self.error("messages are limited to 1 MiB", "message_too_large")
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return await self.error(f"not JSON: {e}", "invalid_json")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return await self.error("an event is a JSON object with a string 'type'")
        kind, eid = (
            event["type"],
            event.get("event_id") if isinstance(event.get("event_id"), str) else None,
        )
        if kind == "input_audio_buffer.append":
            audio = event.get("audio")
            if not isinstance(audio, str) or len(audio) > MAX_AUDIO_B64:
                return await self.error(
                    f"'audio' must be base64 PCM16 of at most {MAX_AUDIO_B64} characters",
                    event_id=eid,
                )
            try:
                pcm = base64.b64decode(audio, validate=True)
            except (binascii.Error, ValueError) as e:
                return await self.error(f"'audio' is not valid base64: {e}", event_id=eid)
            if len(pcm) % 2:
                return await self.error(
                    "'audio': PCM16 needs an even number of bytes", event_id=eid
                )
            self.hub.push_audio(self.live, pcm)
            await self._level(pcm16_to_float(pcm))
        elif kind == "session.update":
            if not isinstance(event.get("session", {}), dict):
                return await self.error("'session' must be an object", event_id=eid)
            await self.send("session.updated", session=self.session_object())
        elif kind == "conversation.item.create":
            item = event.get("item")
            if not isinstance(item, dict) or not isinstance(item.get("type", "message"), str):
                return await self.error(
                    "'item' must be an object with a string 'type'", event_id=eid
                )
            text = _input_text(item)
            if text is not None:  # only the user's text reaches the model; the rest is acknowledged
                self.live.typed.append(text[:MAX_TEXT])
            given = item.get("id")
            added = {
                **item,
                "id": given if isinstance(given, str) and given else self._id("item"),
                "object": "realtime.item",
                "status": "completed",
            }
            after = event.get("previous_item_id")
            await self.send("conversation.item.added", previous_item_id=after, item=added)
            await self.send("conversation.item.done", previous_item_id=after, item=added)
        elif kind in ACCEPTED_NOOPS:
            if kind == "input_audio_buffer.clear":
                self.live.audio = self.live.audio[:0]
            if ACCEPTED_NOOPS[kind]:
                await self.send(ACCEPTED_NOOPS[kind], **_ack_fields(kind, event, self._id("item")))
        else:
            await self.error(f"unknown or unsupported event type {kind!r}", "unknown_event", eid)

    async def _level(self, x: np.ndarray) -> None:
        """speech_started / speech_stopped from the input level, 200 ms at a time."""
        if not len(x):
            return
        loud = 20 * np.log10(np.sqrt(np.mean(np.square(x, dtype=np.float64))) + 1e-10) > SPEECH_DBFS
        self.heard_ms += int(1000 * len(x) / RATE)
        if loud and not self.user_speaking:
            if self.settle is not None:  # speaking again before the last item's words settled
                await self._transcription_done()
            self.user_speaking, self.quiet = True, 0
            self.input_item = self.input_item or self._id("item")
            await self.send(
                "input_audio_buffer.speech_started",
                audio_start_ms=self.heard_ms,
                item_id=self.input_item,
            )
        elif not loud and self.user_speaking:
            self.quiet += 1
            if self.quiet >= QUIET_TURNS_TO_STOP:
                self.user_speaking = False
                self.settle = TRANSCRIPT_SETTLE_TURNS
                await self.send(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=self.heard_ms,
                    item_id=self.input_item,
                )

    # ---- out --------------------------------------------------------------------------------
    async def _pump(self) -> None:
        while True:
            msg = await self.live.out.get()
            try:
                await self._out(msg)
            except Exception:  # the socket went away; the receive side closes the session
                return

    async def _out(self, msg: dict) -> None:
        kind = msg["type"]
        if kind == "output.audio.delta":
            if msg["speaking"] and self.response is None:
                await self._begin()
            if not msg["speaking"] and self.response is not None:
                await self._finish()
            if self.response is not None:
                wav = self.out_rs.resample_chunk(pcm16_to_float(msg["pcm"]))
                delta = base64.b64encode(
                    (np.clip(wav, -1, 1) * 32767).astype("<i2").tobytes()
                ).decode()
                await self.send("response.output_audio.delta", delta=delta, **self._where())
        elif kind == "output.transcript.delta" and self.response is not None:
            self.said.append(msg["text"])
            await self.send(
                "response.output_audio_transcript.delta", delta=msg["text"], **self._where()
            )
        elif kind == "input.transcript.delta":
            self.input_item = self.input_item or self._id("item")
            self.heard.append(msg["text"])
            await self.send(
                "conversation.item.input_audio_transcription.delta",
                item_id=self.input_item,
                content_index=0,
                delta=msg["text"],
            )
        elif kind == "turn.timing" and self.settle is not None:
            self.settle -= 1
            if self.settle <= 0:
                await self._transcription_done()
        elif kind == "error":
            await self.error(msg["message"], msg["code"])

    async def _transcription_done(self) -> None:
        """Close the user item's transcription (only if the model wrote any of it)."""
        if self.heard and self.input_item:
            await self.send(
                "conversation.item.input_audio_transcription.completed",
                item_id=self.input_item,
                content_index=0,
                transcript="".join(self.heard).strip(),
            )
        self.heard, self.settle = [], None
        if not self.user_speaking:
            self.input_item = None

    def _where(self) -> dict:
        return {
            "response_id": self.response,
            "item_id": self.item,
            "output_index": 0,
            "content_index": 0,
        }

    def _response(self, status: str, output: list) -> dict:
        return {
            "id": self.response,
            "object": "realtime.response",
            "status": status,
            "output": output,
            "output_modalities": ["audio"],
        }

    def _item(self, status: str, content: list) -> dict:
        return {
            "id": self.item,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": status,
            "content": content,
        }

    async def _begin(self) -> None:
        """The model started speaking: a response with one assistant message item of audio."""
        self.response, self.item, self.said = self._id("resp"), self._id("item"), []
        await self.send("response.created", response=self._response("in_progress", []))
        item = self._item("in_progress", [])
        await self.send(
            "response.output_item.added", response_id=self.response, output_index=0, item=item
        )
        await self.send("conversation.item.added", previous_item_id=None, item=item)
        await self.send(
            "response.content_part.added", part={"type": "audio", "transcript": ""}, **self._where()
        )

    async def _finish(self) -> None:
        said = "".join(self.said).strip()
        part = {"type": "audio", "transcript": said}
        await self.send("response.output_audio.done", **self._where())
        await self.send("response.output_audio_transcript.done", transcript=said, **self._where())
        await self.send("response.content_part.done", part=part, **self._where())
        item = self._item("completed", [{"type": "output_audio", "transcript": said}])
        await self.send(
            "response.output_item.done", response_id=self.response, output_index=0, item=item
        )
        await self.send("conversation.item.done", previous_item_id=None, item=item)
        await self.send("response.done", response=self._response("completed", [item]))
        self.response = self.item = None


def _ack_fields(kind: str, event: dict, new_id: str) -> dict:
    """The acknowledgement's fields: the client's item id where it named one."""
    item_id = event.get("item_id") if isinstance(event.get("item_id"), str) else new_id
    if kind == "conversation.item.truncate":
        return {
            "item_id": item_id,
            "content_index": event.get("content_index", 0),
            "audio_end_ms": event.get("audio_end_ms", 0),
        }
    if kind == "input_audio_buffer.commit":
        return {"item_id": item_id, "previous_item_id": None}
    return {"item_id": item_id}


def _input_text(item) -> str | None:
    """The text of a user message item's input_text parts (None for any other item)."""
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        return None
    if item.get("role", "user") != "user":
        return None
    parts = [
        c.get("text")
        for c in item.get("content", [])
        if isinstance(c, dict) and c.get("type") == "input_text"
    ]
    text = " ".join(p for p in parts if isinstance(p, str))
    return text or None
