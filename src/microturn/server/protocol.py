"""The native full-duplex WebSocket protocol: JSON text frames, one `type` each.

No commits and no turn boundaries: the client streams input whenever it has it, the server
streams what the model does every micro-turn. These models are the source of truth;
`docs/protocol.md` shows them with examples.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

SAMPLE_RATES = (16_000, 24_000, 48_000)
MAX_AUDIO_B64 = 256 * 1024  # per message: ~2.7 s of 48 kHz PCM16
MAX_TEXT = 2_000
MAX_JPEG_B64 = 512 * 1024


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _b64(value: str, limit: int, what: str) -> bytes:
    if len(value) > limit:
        raise ValueError(
            f"{what} is {len(value)} base64 characters; the limit per message is {limit}"
        )
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"{what} is not valid base64: {e}") from e


# ---- client -> server -----------------------------------------------------------------------
class SessionStart(_Msg):
    type: Literal["session.start"]
    sample_rate: int = 16_000  # of the input audio the client will send
    temperature: float = Field(0.8, ge=0.0, le=2.0)  # the control: when to speak
    text_temperature: float = Field(0.8, ge=0.0, le=2.0)  # the words
    background: bool = True  # delegations start background tasks

    @field_validator("sample_rate")
    @classmethod
    def _rate(cls, v: int) -> int:
        if v not in SAMPLE_RATES:
            raise ValueError(f"sample_rate {v}: expected one of {SAMPLE_RATES}")
        return v


class InputAudio(_Msg):
    type: Literal["input.audio"]
    audio: str  # base64 PCM16 little-endian mono at the session's sample_rate

    def pcm(self) -> bytes:
        data = _b64(self.audio, MAX_AUDIO_B64, "input.audio.audio")
        if len(data) % 2:
            raise ValueError("input.audio.audio: PCM16 needs an even number of bytes")
        return data


class InputText(_Msg):
    type: Literal["input.text"]
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class InputVideo(_Msg):
    type: Literal["input.video"]
    jpeg: str  # base64 JPEG; resized to the model's frame size

    def data(self) -> bytes:
        return _b64(self.jpeg, MAX_JPEG_B64, "input.video.jpeg")


class SessionEnd(_Msg):
    type: Literal["session.end"]


ClientMessage = Annotated[
    Union[SessionStart, InputAudio, InputText, InputVideo, SessionEnd], Field(discriminator="type")
]
CLIENT = TypeAdapter(ClientMessage)


# ---- server -> client -----------------------------------------------------------------------
class SessionStarted(_Msg):
    type: Literal["session.started"] = "session.started"
    session_id: str
    turn_ms: int
    output_sample_rate: int


class OutputAudioDelta(_Msg):
    type: Literal["output.audio.delta"] = "output.audio.delta"
    turn: int
    audio: str  # base64 PCM16 mono at output_sample_rate, one turn


class TranscriptDelta(_Msg):
    type: Literal["output.transcript.delta", "input.transcript.delta"]
    t: float  # seconds on the session clock, as heard
    text: str


class DelegationEvent(_Msg):
    type: Literal[
        "delegation.created",
        "delegation.progress",
        "delegation.done",
        "delegation.failed",
        "delegation.cancelled",
    ]
    task_id: str
    t: float
    text: str = ""


class TurnTiming(_Msg):
    type: Literal["turn.timing"] = "turn.timing"
    turn: int
    compute_ms: float
    missed_deadline: bool
    speaking: bool


class ErrorEvent(_Msg):
    type: Literal["error"] = "error"
    code: str
    message: str


def parse_client(raw: str | bytes) -> ClientMessage:
    """A client frame -> its message; raises ValueError with a readable reason."""
    try:
        return CLIENT.validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ValueError(
            f"{where + ': ' if where else ''}{first.get('msg', 'invalid message')}"
        ) from None
