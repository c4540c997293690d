"""The FastAPI app: the native full-duplex WebSocket (`/v1/ws`), the OpenAI Realtime-compatible
one (`/v1/realtime`), `/healthz`, `/metrics`.

A session is one WebSocket. Bad messages get an `error` event and the session goes on; a
full server refuses a new session with `server_full`; every KV slot is freed when its
socket goes away, however it goes.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
from pathlib import Path
from contextlib import asynccontextmanager
from typing import Callable

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from ..background.agent import BackgroundAgent, EmbeddedAgent
from ..engine.engine import Engine
from . import protocol as P
from .drain import Drain, start_agent
from .hub import Hub, Live, ServerFull
from .realtime import RealtimeSession

MAX_FRAME_BYTES = 1024 * 1024
STATIC = Path(__file__).parent / "static"  # any larger WebSocket message is refused before parsing


def _authorised(ws: WebSocket, token: str | None) -> bool:
    if token is None:
        return True
    given = ws.headers.get("authorization", "").removeprefix(
        "Bearer "
    ).strip() or ws.query_params.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


def decode_jpeg(data: bytes, width: int, height: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (width, height))  # JPEG: decode at reduced size when it can
        return np.asarray(img.convert("RGB").resize((width, height)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"input.video.jpeg: not a readable JPEG ({e})") from e


def create_app(
    engine: Engine,
    max_sessions: int | None = None,
    token: str | None = None,
    agent: Callable[[], BackgroundAgent] | None = EmbeddedAgent,
    idle_timeout_s: float = 60.0,
    max_session_s: float = 3600.0,
    drain: Drain | None = None,
    lb_agent: tuple[str, int] | None = None,
) -> FastAPI:
    """`drain` is begun by `DrainingServer` on SIGTERM; `lb_agent` (host, port) serves HAProxy's
    agent-check there (see `drain.py`)."""
    hub = Hub(
        engine,
        min(max_sessions or engine.cfg.max_sessions, engine.cfg.max_sessions),
        agent,
        idle_timeout_s,
        max_session_s,
    )
    drain = drain or Drain()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        hub.start()
        lb = await start_agent(hub, drain, *lb_agent) if lb_agent else None
        yield
        if lb is not None:
            lb.close()
        await hub.stop()

    app = FastAPI(title="microturn", lifespan=lifespan)
    app.state.hub, app.state.drain = hub, drain

    @app.get("/healthz")
    async def healthz():
        if drain.draining:  # 503: a balancer's health check sends no new sessions here
            return JSONResponse(
                {
                    "status": "draining",
                    "live_sessions": len(hub.live),
                    "max_sessions": hub.max_sessions,
                    "free_slots": 0,
                },
                status_code=503,
            )
        # token_required lets the browser client ask for a token before the refused handshake
        return JSONResponse(
            {
                "status": "ok",
                "live_sessions": len(hub.live),
                "max_sessions": hub.max_sessions,
                "free_slots": hub.max_sessions - hub.occupied,
                "token_required": token is not None,
            }
        )

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(
            hub.metrics.render(len(hub.live)), media_type="text/plain; version=0.0.4"
        )

    @app.websocket("/v1/ws")
    async def native(ws: WebSocket):
        if not _authorised(ws, token):
            await ws.close(code=1008, reason="missing or wrong bearer token")
            return
        if drain.draining:  # an HTTP 503 before the upgrade: HAProxy can retry it elsewhere
            await ws.send_denial_response(JSONResponse(drain.refusal(), status_code=503))
            return
        await ws.accept()
        live = None
        sender = None
        try:
            live = await _start(ws, hub, drain)
            if live is None:
                return
            sender = asyncio.create_task(_pump(ws, live))
            await _receive(ws, hub, live)
        except WebSocketDisconnect:
            pass
        finally:
            if live is not None:
                hub.close(live)
            if sender is not None:
                sender.cancel()

    @app.get("/")
    async def index():
        return FileResponse(STATIC / "index.html")

    @app.websocket("/v1/realtime")
    async def realtime(ws: WebSocket, model: str = "microturn"):
        if not _authorised(ws, token):
            await ws.close(code=1008, reason="missing or wrong bearer token")
            return
        if drain.draining:
            await ws.send_denial_response(JSONResponse(drain.refusal(), status_code=503))
            return
        await ws.accept()
        beta = "realtime=v1" in ws.headers.get("openai-beta", "")
        await RealtimeSession(ws, hub, model, beta=beta).run()

    app.mount(
        "/", StaticFiles(directory=STATIC), name="client"
    )  # the browser client; no build step
    return app


async def _error(ws: WebSocket, code: str, message: str) -> None:
    await ws.send_json(P.ErrorEvent(code=code, message=message).model_dump())


async def _read(ws: WebSocket) -> str | bytes | None:
    msg = await ws.receive()
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    return msg.get("text") if msg.get("text") is not None else msg.get("bytes")


async def _start(ws: WebSocket, hub: Hub, drain: Drain) -> Live | None:
    raw = await _read(ws)
    try:
        msg = P.parse_client(raw if raw is not None else "")
    except ValueError as e:
        await _error(ws, "bad_message", f"{e}; the first message must be session.start")
        await ws.close(code=1008)
        return None
    if not isinstance(msg, P.SessionStart):
        await _error(ws, "bad_message", f"the first message must be session.start, not {msg.type}")
        await ws.close(code=1008)
        return None
    if drain.draining:  # the socket opened before the drain began, the session after
        await _error(ws, "server_draining", drain.refusal()["error"]["message"])
        await ws.close(code=1013)
        return None
    try:
        live = hub.open(msg.sample_rate, msg.temperature, msg.background, msg.text_temperature)
    except ServerFull as e:
        await _error(ws, "server_full", str(e))
        await ws.close(code=1013)
        return None
    await ws.send_json(
        P.SessionStarted(
            session_id=live.id, turn_ms=hub.lay.turn_ms, output_sample_rate=hub.lay.sample_rate
        ).model_dump()
    )
    return live


async def _receive(ws: WebSocket, hub: Hub, live: Live) -> None:
    lay = hub.lay
    while not live.closed:
        raw = await _read(ws)
        if raw is None or len(raw) > MAX_FRAME_BYTES:
            hub.metrics.bad_messages += 1
            await _error(
                ws, "message_too_large", f"messages are limited to {MAX_FRAME_BYTES} bytes"
            )
            continue
        try:
            msg = P.parse_client(raw)
            if isinstance(msg, P.InputAudio):
                hub.push_audio(live, msg.pcm())
            elif isinstance(msg, P.InputText):
                live.typed.append(msg.text)
            elif isinstance(msg, P.InputVideo):
                live.frame = decode_jpeg(msg.data(), lay.video_width, lay.video_height)
            elif isinstance(msg, P.SessionEnd):
                return
            else:
                raise ValueError(f"{msg.type}: the session has already started")
        except ValueError as e:
            hub.metrics.bad_messages += 1
            await _error(ws, "bad_message", str(e))


async def _pump(ws: WebSocket, live: Live) -> None:
    """Outputs to the socket, in order; audio as base64 PCM16."""
    while True:
        msg = await live.out.get()
        if "pcm" in msg:
            msg = P.OutputAudioDelta(
                turn=msg["turn"], audio=base64.b64encode(msg["pcm"]).decode()
            ).model_dump()
        try:
            await ws.send_json(msg)
        except Exception:  # the socket went away; the receive side closes the session
            return
        if msg["type"] == "error" and live.closed:
            await ws.close(code=1000)
            return
