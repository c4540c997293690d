"""Background tasks: concurrency, cancel, failure, timeout, and weaving results into a session."""

import asyncio
import time

import numpy as np
import pytest

from conftest import tone
from microturn.background.agent import EmbeddedAgent
from microturn.background.context import ContextPackage
from microturn.background.tasks import BackgroundRunner, TaskManager
from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.runtime.conversation import Conversation, DeliveryPolicy
from microturn.streams.text import ByteTokenizer
from microturn.streams.turns import SILENT, TurnOutput

TOK = ByteTokenizer()


class ScriptedAgent:
    """An agent whose behaviour a test sets: delays, failures, hangs (stands in for slow tools)."""

    name = "scripted"

    def __init__(self, delay=0.0, fail=False, hang=False, timeout_s=0.5, gate=None):
        self.delay, self.fail, self.hang, self.timeout_s, self.gate = (
            delay,
            fail,
            hang,
            timeout_s,
            gate,
        )
        self.closed = []

    async def run(self, ctx: ContextPackage):
        try:
            if self.hang:
                await asyncio.sleep(3600)
            if self.gate is not None:  # held until the test opens the gate
                await self.gate.wait()
            await asyncio.sleep(self.delay)
            if self.fail:
                raise RuntimeError(f"tool broke on {ctx.request!r}")
            yield f"answer to {ctx.request}. "
            yield "Second sentence."
        finally:
            self.closed.append(ctx.task_id)


def wait_for(manager, kinds, limit=5.0):
    seen, deadline = [], time.monotonic() + limit
    while time.monotonic() < deadline:
        seen += manager.poll()
        if kinds <= {(e.task_id, e.kind) for e in seen}:
            return seen
        time.sleep(0.01)
    raise AssertionError(
        f"timed out waiting for {kinds}; saw {[(e.task_id, e.kind) for e in seen]}"
    )


@pytest.fixture
def runner():
    r = BackgroundRunner()
    yield r
    r.close()


def test_two_tasks_at_once_are_not_mixed_up(runner):
    tm = TaskManager(ScriptedAgent(delay=0.2), runner)
    a = tm.start("alpha", [], 0.0)
    b = tm.start("beta", [], 0.0)
    assert tm.running() == [a, b]  # both in flight together
    events = wait_for(tm, {(a, "done"), (b, "done")})
    texts = {i: [e.text for e in events if e.task_id == i and e.kind == "progress"] for i in (a, b)}
    assert texts == {
        a: ["answer to alpha.", "Second sentence."],
        b: ["answer to beta.", "Second sentence."],
    }


def test_cancel_stops_the_task(runner):
    agent = ScriptedAgent(delay=30)
    tm = TaskManager(agent, runner)
    t = tm.start("slow", [], 0.0)
    time.sleep(0.05)
    assert tm.cancel(t) == [t]
    wait_for(tm, {(t, "cancelled")})
    assert tm.states[t] == "cancelled" and t in agent.closed


def test_failing_tool_is_a_failed_event(runner):
    tm = TaskManager(ScriptedAgent(fail=True), runner)
    t = tm.start("x", [], 0.0)
    events = wait_for(tm, {(t, "failed")})
    assert "tool broke on 'x'" in [e.text for e in events if e.kind == "failed"][0]


def test_hung_backend_hits_its_timeout(runner):
    tm = TaskManager(ScriptedAgent(hang=True), runner)
    t = tm.start("x", [], 0.0)
    events = wait_for(tm, {(t, "failed")}, limit=5)
    assert "timed out" in [e.text for e in events if e.kind == "failed"][0]


def test_too_many_tasks_are_refused_clearly(runner):
    tm = TaskManager(ScriptedAgent(delay=5), runner, max_running=1)
    tm.start("a", [], 0.0)
    second = tm.start("b", [], 0.0)
    assert tm.states[second] == "failed"
    assert any("already running" in e.text for e in tm.poll())
    tm.cancel()


# ---- in a conversation ---------------------------------------------------------------------
def delegate(text):
    """Text-slot outputs that spell <delegate>text</delegate>, 4 tokens a turn."""
    ids = [TOK.DELEGATE] + TOK.encode(text) + [TOK.DELEGATE_END]
    ids += [TOK.PAD] * (-len(ids) % 4)
    return [TurnOutput(SILENT, ids[i : i + 4], None) for i in range(0, len(ids), 4)]


QUIET = TurnOutput(SILENT, [TOK.PAD] * 4, None)


def drive(conv, turns, script=None, loud=lambda k: False):
    """Step a conversation; script[k] forces OUT_k (other turns: silent). Returns step times,
    inputs."""
    times, inputs = [], []
    for k in range(turns):
        audio = tone(0.2) if loud(k) else np.zeros(3200, np.float32)
        inp = conv.prepare(audio)
        inputs.append(inp)
        t0 = time.perf_counter()
        out = conv.engine.step([conv.session], [inp], [(script or {}).get(k, QUIET)]).outputs[0]
        times.append(time.perf_counter() - t0)
        conv.finish(out)
    return times, inputs


def script_from(k0, outputs):
    return {k0 + i: o for i, o in enumerate(outputs)}


def test_delegation_mid_conversation_and_the_result_is_woven_in(small_model, runner):
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    conv = Conversation.open(engine, EmbeddedAgent(), runner, vocoder=False, settle=True)
    _, inputs = drive(conv, 20, script_from(3, delegate("17 * 23")))
    kinds = [(e.kind, e.text) for e in conv.timeline_events()]
    assert ("delegation", "17 * 23") in kinds and ("task_created", "t1: 17 * 23") in kinds
    assert ("result", "17 times 23 is 391.") in kinds and ("task_done", "t1") in kinds
    background = [tok for inp in inputs for tok in inp.background if tok != TOK.PAD]
    assert TOK.decode(background) == "t1: 17 times 23 is 391."  # entered a few bytes a turn
    conv.close()


def test_result_is_held_while_the_user_talks(small_model, runner):
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    conv = Conversation.open(engine, EmbeddedAgent(), runner, vocoder=False, settle=True)
    loud_until = 15  # the user talks through turn 14, then pauses
    _, inputs = drive(conv, 25, script_from(2, delegate("2 + 2")), loud=lambda k: k < loud_until)
    done = next(e for e in conv.timeline_events() if e.kind == "task_done")
    result = next(e for e in conv.events if e.kind == "result")
    assert done.t < 1.5 and result.t == pytest.approx(
        loud_until * 0.2
    )  # ready early, said at the pause
    assert all(tok == TOK.PAD for inp in inputs[:loud_until] for tok in inp.background)
    conv.close()


def test_result_goes_in_after_the_longest_hold(small_model, runner):
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    conv = Conversation.open(
        engine,
        EmbeddedAgent(),
        runner,
        vocoder=False,
        settle=True,
        policy=DeliveryPolicy(max_hold_s=2.0),
    )
    drive(conv, 30, script_from(2, delegate("2 + 2")), loud=lambda k: True)
    done = next(e for e in conv.timeline_events() if e.kind == "task_done")
    result = next(e for e in conv.events if e.kind == "result")
    assert result.t - done.t == pytest.approx(2.0, abs=0.21)
    conv.close()


def test_a_slow_task_never_delays_a_turn(small_model, runner):
    """The session keeps stepping while a task is blocked; the task finishes once released.
    (Turn times with a slow task in flight are measured in benchmarks/background.py.)"""
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    gate = asyncio.Event()
    conv = Conversation.open(engine, ScriptedAgent(gate=gate, timeout_s=600), runner, vocoder=False)
    drive(conv, 12, script_from(1, delegate("slow")))
    assert (
        conv.session.turn == 12 and conv.tasks.states["t1"] == "running"
    )  # every turn ran meanwhile
    runner.call(gate.set)
    deadline = time.monotonic() + 10
    while conv.tasks.states["t1"] == "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert conv.tasks.states["t1"] == "done"
    drive(conv, 2)
    assert [e.text for e in conv.events if e.kind == "result"] == [
        "answer to slow.",
        "Second sentence.",
    ]
    conv.close()


def test_interruption_does_not_cancel_but_asking_does(small_model, runner):
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    conv = Conversation.open(engine, EmbeddedAgent(), runner, vocoder=False, settle=True)
    script = script_from(1, delegate("set a timer for 30 seconds for tea"))
    script.update(script_from(12, delegate("cancel t1")))
    drive(conv, 20, script, loud=lambda k: 6 <= k < 10)  # the user talks over it: no cancel
    assert conv.tasks.states["t1"] == "cancelled"
    cancelled = next(e for e in conv.timeline_events() if e.kind == "task_cancelled")
    assert cancelled.t >= 12 * 0.2
    conv.close()


def test_a_failed_task_leaves_the_conversation_going(small_model, runner):
    engine = Engine(small_model, EngineConfig(max_sessions=1))
    conv = Conversation.open(engine, ScriptedAgent(fail=True), runner, vocoder=False)
    script = script_from(1, delegate("break"))
    script.update(script_from(10, delegate("again")))
    drive(conv, 14, script)
    deadline = time.monotonic() + 5
    while any(s == "running" for s in conv.tasks.states.values()) and time.monotonic() < deadline:
        time.sleep(0.02)
    drive(conv, 2)
    assert conv.tasks.states == {"t1": "failed", "t2": "failed"} and conv.session.turn == 16
    failed = [e.text for e in conv.timeline_events() if e.kind == "task_failed"]
    assert len(failed) == 2 and "RuntimeError: tool broke on 'break'" in failed[0]
    conv.close()
