"""Commands that run conversations: demo, serve, run and one background task."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from .common import _config_and_model, _engine_kwargs


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..demo import DURATION_S, run_demo

    _, model = _config_and_model(args)
    print(
        f"microturn demo: a {DURATION_S:g} s scripted conversation through the "
        f"{'default' if not args.checkpoint else args.checkpoint} model "
        f"({model.num_params() / 1e6:.1f}M parameters)",
        file=sys.stderr,
    )
    summary = run_demo(model, args.out, live=not args.quiet, seed=args.seed)
    print(
        f"{summary['seconds']:g} s of conversation in {summary['wall_s']:g} s "
        f"({summary['real_time_factor']:g}x real time); wrote " + ", ".join(summary["files"])
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses

    import uvicorn

    from ..engine.engine import Engine
    from ..server.app import create_app
    from ..server.drain import Drain, DrainingServer

    # The engine thread shares the machine with the event loop's sockets and JSON: leaving it
    # half the cores measured 5 sessions with no missed turn on 2 cores, against 1 with both.
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) // 2))
    cfg, model = _config_and_model(args)
    engine_cfg = dataclasses.replace(
        cfg.engine, max_sessions=args.max_sessions or cfg.engine.max_sessions
    )
    drain = Drain(args.drain_grace)
    lb_agent = (args.host, args.agent_port) if args.agent_port else None
    engine = Engine(model, engine_cfg, **_engine_kwargs(args))
    app = create_app(
        engine,
        token=args.token,
        idle_timeout_s=args.idle_timeout,
        max_session_s=args.max_session_length,
        drain=drain,
        lb_agent=lb_agent,
    )
    agent_note = f", HAProxy agent on port {args.agent_port}" if args.agent_port else ""
    print(
        f"microturn serve: ws://{args.host}:{args.port}/v1/ws, up to {engine_cfg.max_sessions} "
        f"sessions{agent_note}",
        file=sys.stderr,
    )
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", ws_max_size=2 * 1024 * 1024
    )
    DrainingServer(config, app.state.hub, drain).run()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from ..background.agent import EmbeddedAgent
    from ..engine.engine import Engine
    from ..engine.session import SamplerSettings
    from ..runtime.offline import RecordedInput, run_offline
    from ..streams.audio import read_wav

    cfg, model = _config_and_model(args)
    audio = read_wav(args.wav, cfg.model.layout.sample_rate) if args.wav else None
    rec = RecordedInput(audio=audio, typed=list(args.typed), duration=args.duration)
    agent = None
    if args.background_url:
        from ..background.openai_agent import OpenAIAgent

        agent = OpenAIAgent(args.background_url, args.background_model)
    elif not args.no_background:
        agent = EmbeddedAgent()
    result = run_offline(
        Engine(model, cfg.engine),
        rec,
        SamplerSettings(args.temperature, seed=args.seed, text_temperature=args.text_temperature),
        progress=True,
        agent=agent,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "conversation.wav").write_bytes(result.stereo_wav)
    events = [dataclasses.asdict(e) for e in result.timeline.events]
    (out / "timeline.json").write_text(
        json.dumps({"duration": result.timeline.duration, "events": events}, indent=1)
    )
    for e in result.timeline.events:
        if e.kind != "model_word":
            print(f"{e.t:7.2f}s  {e.kind:<15} {e.text or f'until {e.end:.2f}s'}")
    words = " ".join(e.text for e in result.model_words)
    print(f"model said: {words[:300]}{'…' if len(words) > 300 else ''}")
    print(f"wrote {out / 'conversation.wav'} (user left, model right) and {out / 'timeline.json'}")
    return 0


def _cmd_background(args: argparse.Namespace) -> int:
    import time

    from ..background.tasks import BackgroundRunner, TaskManager
    from ..streams.turns import Event

    if args.background_url:
        from ..background.openai_agent import OpenAIAgent

        agent = OpenAIAgent(args.background_url, args.background_model, timeout_s=args.timeout)
    else:
        from ..background.agent import EmbeddedAgent

        agent = EmbeddedAgent(timeout_s=args.timeout)
    runner = BackgroundRunner()
    try:
        tasks = TaskManager(agent, runner)
        history = [Event(0.0, "user_text", text) for text in args.context]
        task = tasks.start(args.request, history, now=0.0)
        t0 = time.monotonic()
        while tasks.states[task] in ("created", "running"):
            tasks.advance(time.monotonic() - t0)  # timers run on the wall clock here
            for ev in tasks.poll():
                print(f"{time.monotonic() - t0:6.2f}s  {ev.task_id} {ev.kind:<9} {ev.text}")
            time.sleep(0.02)
        for ev in tasks.poll():
            print(f"{time.monotonic() - t0:6.2f}s  {ev.task_id} {ev.kind:<9} {ev.text}")
        return 0 if tasks.states[task] == "done" else 1
    finally:
        runner.close()
