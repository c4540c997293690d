"""One live conversation: a session, its background tasks and its transcript.

The runtime sits above the engine and the background model and joins them, turn by turn:

    prepare(k): typed text in; task results (held while the user is talking) into the
                background slots; this turn's media packed -> TurnInput
    engine.step(...)                    (batched with other conversations)
    finish(k):  TurnOutput -> events and audio; a delegation starts a task,
                `<delegate>cancel ...</delegate>` cancels one
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..background.agent import BackgroundAgent
from ..background.tasks import BackgroundRunner, TaskEvent, TaskManager
from ..engine.engine import Engine
from ..engine.session import SamplerSettings, Session
from ..streams.turns import Event, TurnInput, TurnOutput


@dataclass
class DeliveryPolicy:
    """When a background result enters the model's input.

    The model decides when to *say* a result; this only keeps a result out of its input
    while the user is audibly talking, so it is never tempted to talk over them with it.
    """

    hold_while_user_speaks: bool = True
    speech_dbfs: float = -40.0  # a turn whose audio is louder counts as the user talking
    max_hold_s: float = 4.0  # after this a held result goes in anyway
    min_latency_s: float = 0.0  # offline demos: a result is not seen sooner after its request


@dataclass
class Conversation:
    engine: Engine
    session: Session
    tasks: TaskManager | None = None
    policy: DeliveryPolicy = field(default_factory=DeliveryPolicy)
    events: list[Event] = field(default_factory=list)  # the transcript, as heard
    task_log: list[TaskEvent] = field(default_factory=list)
    _held: deque = field(default_factory=deque)  # (task_id, text, since)
    _started: dict = field(default_factory=dict)  # task id -> conversation time it started

    @staticmethod
    def open(
        engine: Engine,
        agent: BackgroundAgent | None = None,
        runner: BackgroundRunner | None = None,
        sampler: SamplerSettings | None = None,
        policy: DeliveryPolicy | None = None,
        vocoder: bool = True,
        settle: bool = False,
    ) -> "Conversation":
        session = engine.open(sampler, vocoder=vocoder)
        tasks = (
            TaskManager(agent, runner, settle=settle)
            if agent is not None and runner is not None
            else None
        )
        return Conversation(engine, session, tasks, policy or DeliveryPolicy())

    @property
    def now(self) -> float:
        return round(self.session.turn * self.engine.layout.turn_seconds, 6)

    def prepare(
        self,
        audio: np.ndarray | None = None,
        frame: np.ndarray | None = None,
        typed: list[str] = (),
        user_words: list[Event] = (),
    ) -> TurnInput:
        now = self.now
        for text in typed:
            self.session.push_text(text)
            self.events.append(Event(now, "user_text", text))
        self.events.extend(user_words)  # known words of the user (a recording's alignment, say)
        if self.tasks is not None:
            self.tasks.advance(now)
            for ev in self.tasks.poll():
                self.task_log.append(ev)
                if ev.kind == "progress" and ev.text:
                    self._held.append((ev.task_id, ev.text, now))
        talking = audio is not None and _dbfs(audio) > self.policy.speech_dbfs
        while (
            self._held
            and now - self._started.get(self._held[0][0], 0.0) >= self.policy.min_latency_s
            and (
                not (self.policy.hold_while_user_speaks and talking)
                or now - self._held[0][2] >= self.policy.max_hold_s
            )
        ):
            task_id, text, _ = self._held.popleft()
            self.session.push_background(f"{task_id}: {text}")
            self.events.append(Event(now, "result", text))
        return self.session.packer.pack(audio, frame)

    def finish(
        self, out: TurnOutput, wav: np.ndarray | None = None
    ) -> tuple[list[Event], np.ndarray | None]:
        """`wav`: this turn's samples when the caller vocoded many sessions in one batch."""
        k = self.session.turn - 1
        events, wav = self.session.unpacker.unpack(k, out, wav)
        for e in events:
            if e.kind == "delegation" and self.tasks is not None:
                request = e.text.strip()
                if request.lower().startswith("cancel"):
                    target = request.split()[1] if len(request.split()) > 1 else None
                    self.tasks.cancel(target if target in self.tasks.states else None)
                else:
                    self._started[self.tasks.start(request, self.events + events, e.t)] = e.t
        self.events.extend(events)
        return events, wav

    def close(self) -> None:
        """End the conversation: its tasks are cancelled, its KV slot freed."""
        self.events.extend(self.session.unpacker.flush(self.session.turn - 1))
        if self.tasks is not None:
            self.tasks.cancel()
        self.engine.close(self.session)

    def timeline_events(self) -> list[Event]:
        """Transcript plus task lifecycle (kind 'task_<state>'), sorted by time."""
        tasks = [
            Event(ev.t, f"task_{ev.kind}", f"{ev.task_id}: {ev.text}".rstrip(": "))
            for ev in self.task_log
        ]
        return sorted(self.events + tasks, key=lambda e: (e.t, e.kind))


def _dbfs(audio: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    return 20 * np.log10(max(rms, 1e-10))
