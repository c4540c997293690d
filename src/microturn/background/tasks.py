"""Background tasks: started by a delegation, run on their own event loop, never waited on.

One `BackgroundRunner` (an asyncio loop in a daemon thread) serves every session; each
session has a `TaskManager` with its own tasks, ids and states. The engine thread only
starts, cancels and polls: a slow or hung task never delays a turn.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Coroutine

from .agent import BackgroundAgent
from .context import ContextPackage
from .tools import Clock

STATES = ("created", "running", "done", "failed", "cancelled")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class TaskEvent:
    t: float  # conversation time it was seen by the session
    task_id: str
    kind: str  # created | progress | done | failed | cancelled
    text: str = ""


class BackgroundRunner:
    """An asyncio loop on a daemon thread, shared by all sessions."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="microturn-background", daemon=True
        )
        self._thread.start()

    def submit(self, coro: Coroutine):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        """Cancel whatever still runs, let it finish cancelling, stop the loop."""

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.submit(drain()).result(timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


class TaskManager:
    """The background tasks of one session."""

    def __init__(
        self,
        agent: BackgroundAgent,
        runner: BackgroundRunner,
        clock: Clock | None = None,
        max_running: int = 4,
        settle: bool = False,
    ) -> None:
        """`settle`: offline runs with a local agent wait, at each start and clock advance,
        until every task has finished or waits on the conversation clock, so results land in
        the same turn on every run. Live sessions never wait."""
        self.agent, self.runner, self.settle = agent, runner, settle
        self.clock = clock or getattr(agent, "clock", None) or Clock()
        self.max_running = max_running
        self.states: dict[str, str] = {}
        self._futures: dict[str, object] = {}
        self._ids = itertools.count(1)
        self._events: deque[TaskEvent] = deque()
        self._lock = threading.Lock()
        self.now = 0.0

    # ---- called from the engine's thread ----------------------------------------------
    def running(self) -> list[str]:
        return [i for i, s in self.states.items() if s in ("created", "running")]

    def start(self, request: str, ctx_events: list, now: float) -> str:
        """Start a task for `request` with the conversation so far; returns its id."""
        task_id = f"t{next(self._ids)}"
        if len(self.running()) >= self.max_running:
            self.states[task_id] = "failed"
            self._emit(task_id, "failed", f"{self.max_running} tasks are already running")
            return task_id
        ctx = ContextPackage.from_events(task_id, request, now, ctx_events)
        self.states[task_id] = "created"
        self._emit(task_id, "created", request)
        self._futures[task_id] = self.runner.submit(self._run(task_id, ctx))
        self._settle()
        return task_id

    def cancel(self, task_id: str | None = None) -> list[str]:
        """Cancel one task, or (None) every running one. Interruptions do not call this."""
        ids = [task_id] if task_id else self.running()
        done = []
        for i in ids:
            fut = self._futures.get(i)
            if fut is not None and self.states.get(i) in ("created", "running"):
                fut.cancel()
                done.append(i)
        return done

    def advance(self, now: float) -> None:
        """Move the conversation clock (timers run on it)."""
        self.now = now
        self.runner.call(self.clock.advance, now)
        self._settle()

    def _settle(self, limit_s: float = 10.0) -> None:
        if not self.settle:
            return
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            live = [i for i, f in self._futures.items() if not f.done()]
            if len(self.clock.waiting()) >= len(live):
                return
            time.sleep(0.001)

    def poll(self) -> list[TaskEvent]:
        with self._lock:
            out = list(self._events)
            self._events.clear()
        for ev in out:
            ev.t = self.now
        return out

    # ---- on the background loop ---------------------------------------------------------
    def _emit(self, task_id: str, kind: str, text: str = "") -> None:
        if kind in STATES:
            self.states[task_id] = kind
        with self._lock:
            self._events.append(TaskEvent(self.now, task_id, kind, text))

    async def _run(self, task_id: str, ctx: ContextPackage) -> None:
        self.states[task_id] = "running"
        chunks = self.agent.run(ctx)
        buf = ""
        try:
            while True:
                try:  # inactivity timeout: a hung backend fails, a slow but talking one does not
                    chunk = await asyncio.wait_for(anext(chunks), self.agent.timeout_s)
                except StopAsyncIteration:
                    break
                buf += chunk
                *sentences, buf = SENTENCE_END.split(buf)
                if buf.rstrip().endswith(
                    (".", "!", "?")
                ):  # a chunk that ends a sentence goes out now
                    sentences, buf = sentences + [buf], ""
                for s in sentences:
                    self._emit(task_id, "progress", s.strip())
            if buf.strip():
                self._emit(task_id, "progress", buf.strip())
            self._emit(task_id, "done")
        except asyncio.CancelledError:
            self._emit(task_id, "cancelled")
        except asyncio.TimeoutError:
            self._emit(task_id, "failed", f"no answer for {self.agent.timeout_s:g} s (timed out)")
        except Exception as e:  # a failing tool or backend ends this task, not the conversation
            self._emit(task_id, "failed", f"{type(e).__name__}: {e}")
        finally:
            await chunks.aclose()
