"""Draining a replica behind a load balancer, and the HAProxy agent that reports its free slots.

A session is one WebSocket, one TCP connection held for the session's life, so a balancer
that routes connections keeps a session on its replica without any stickiness of its own.
What it needs from the replica is (1) how many new sessions it can still take and (2) a way
to take a replica out without cutting the sessions on it. `SIGTERM` starts a drain: `/healthz`
answers 503 `draining`, the agent answers `drain`, new sessions get an HTTP 503 with a JSON
reason before the upgrade (so HAProxy can retry them on another replica), and live sessions
go on until they end or `grace_s` passes; then the process exits. A second `SIGTERM` or a
`SIGINT` exits at once, as uvicorn does.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field
from types import FrameType

import uvicorn

from ..errors import ConfigError
from .hub import Hub, Live

FLUSH_S = 1.0  # at the grace's end: for the goodbyes to go out before uvicorn closes the sockets


@dataclass
class Drain:
    """Whether this replica is draining, since when, and how long live sessions may go on."""

    grace_s: float = 300.0
    started: float | None = None  # time.monotonic() at SIGTERM
    _told: list[Live] = field(default_factory=list)  # closed at the grace's end, goodbye in flight
    _told_at: float = 0.0

    def __post_init__(self) -> None:
        if not self.grace_s >= 0:
            raise ConfigError(f"drain grace {self.grace_s!r}: expected seconds >= 0")

    @property
    def draining(self) -> bool:
        return self.started is not None

    def begin(self) -> None:
        if self.started is None:
            self.started = time.monotonic()

    def refusal(self) -> dict:
        """The body a new session gets while draining."""
        return {"error": {"code": "server_draining", "message": (
            "this replica is draining for shutdown and takes no new sessions; connect again "
            "(a load balancer sends you to another replica)")}}

    def finished(self, hub: Hub) -> bool:
        """True once every live session has ended, or the grace has run out and those left have
        been told why and closed."""
        if self.started is None:
            return False
        now = time.monotonic()
        if hub.live and now - self.started < self.grace_s:
            return False
        for live in list(hub.live.values()):
            hub._send(live, {"type": "error", "code": "server_shutdown", "message": (
                f"the replica is shutting down: the {self.grace_s:g} s drain grace ran out; "
                "reconnect to continue")})
            hub.close(live)
            self._told.append(live)
            self._told_at = now
        # each session's sender closes its socket after the goodbye: wait for the queues to empty
        flushed = all(t.out.empty() for t in self._told) and now - self._told_at > 0.2
        return flushed or now - self._told_at > FLUSH_S


def agent_reply(hub: Hub, drain: Drain) -> str:
    """One HAProxy agent-check line: weight as the percentage of slots free, the slot count as
    maxconn (so HAProxy itself never sends more sessions than fit), and the admin state."""
    if drain.draining:
        return "drain 0%\n"
    free = max(0, hub.max_sessions - hub.occupied)
    pct = round(100 * free / hub.max_sessions) if hub.max_sessions else 0
    return f"ready up {pct}% maxconn:{hub.max_sessions}\n"


async def start_agent(hub: Hub, drain: Drain, host: str, port: int) -> asyncio.AbstractServer:
    """Serve `agent_reply` on a TCP port: HAProxy's agent-check connects, reads a line, closes."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(agent_reply(hub, drain).encode())
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM drains instead of closing every socket."""

    def __init__(self, config: uvicorn.Config, hub: Hub, drain: Drain) -> None:
        super().__init__(config)
        self.hub, self.drain = hub, drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and not self.drain.draining and not self.should_exit:
            self.drain.begin()  # on_tick ends it; not captured, so a finished drain exits 0
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self.drain.finished(self.hub):
            self.should_exit = True
        return await super().on_tick(counter)
