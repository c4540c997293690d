"""`microturn <command>`: demo, run, train, perf, bench, configs, background."""

from __future__ import annotations

import argparse
import os
import sys

import torch

from .config import NAMED_MODELS, load_config, named_config
from .errors import MicroturnError

# serve's engine precision: bf16 held the eval bench's scores against fp32 and ran up to 1.9x
# as fast (16 sessions); bench and perf default to fp32, the parity reference (docs/serving.md)
SERVE_DTYPE = "bf16"


def _typed(spec: str) -> tuple[float, str]:
    t, sep, text = spec.partition(":")
    try:
        if not sep or not text:
            raise ValueError
        return float(t), text
    except ValueError:
        raise argparse.ArgumentTypeError(f"--typed {spec!r}: expected SECONDS:TEXT, e.g. '2.5:what time is it?'")


def _config_and_model(args: argparse.Namespace):
    """The config and model a command runs: --checkpoint if given; with neither it nor
    --config, the shipped default model; with only --config, random weights (said so)."""
    from .config import Config
    from .model.checkpoint import load_default, load_model
    from .model.interaction import InteractionModel

    torch.manual_seed(args.seed)
    if args.config is None and not args.checkpoint:
        model = load_default()
        return Config(model=model.cfg, name="default"), model
    if args.checkpoint:
        model = load_model(args.checkpoint, expect=load_config(args.config).model if args.config else None)
        return (load_config(args.config) if args.config else Config(model=model.cfg, name="checkpoint")), model
    cfg = load_config(args.config)
    print("note: no --checkpoint: the model has untrained random weights", file=sys.stderr)
    return cfg, InteractionModel(cfg.model)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DURATION_S, run_demo

    _, model = _config_and_model(args)
    print(f"microturn demo: a {DURATION_S:g} s scripted conversation through the "
          f"{'default' if not args.checkpoint else args.checkpoint} model ({model.num_params() / 1e6:.1f}M parameters)",
          file=sys.stderr)
    summary = run_demo(model, args.out, live=not args.quiet, seed=args.seed)
    print(f"{summary['seconds']:g} s of conversation in {summary['wall_s']:g} s "
          f"({summary['real_time_factor']:g}x real time); wrote " + ", ".join(summary["files"]))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses

    import uvicorn

    from .engine.engine import Engine
    from .server.app import create_app
    from .server.drain import Drain, DrainingServer

    # The engine thread shares the machine with the event loop's sockets and JSON: leaving it
    # half the cores measured 5 sessions with no missed turn on 2 cores, against 1 with both.
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 2) // 2))
    cfg, model = _config_and_model(args)
    engine_cfg = dataclasses.replace(cfg.engine, max_sessions=args.max_sessions or cfg.engine.max_sessions)
    drain = Drain(args.drain_grace)
    lb_agent = (args.host, args.agent_port) if args.agent_port else None
    engine = Engine(model, engine_cfg, **_engine_kwargs(args))
    app = create_app(engine, token=args.token, idle_timeout_s=args.idle_timeout,
                     max_session_s=args.max_session_length, drain=drain, lb_agent=lb_agent)
    agent_note = f", HAProxy agent on port {args.agent_port}" if args.agent_port else ""
    print(f"microturn serve: ws://{args.host}:{args.port}/v1/ws, up to {engine_cfg.max_sessions} "
          f"sessions{agent_note}", file=sys.stderr)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                            ws_max_size=2 * 1024 * 1024)
    DrainingServer(config, app.state.hub, drain).run()
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .model.checkpoint import load_model, save_model

    model = load_model(args.checkpoint)
    save_model(model, args.out, {"exported_from": str(args.checkpoint)}, half=args.half)
    print(f"wrote {args.out}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    from pathlib import Path

    from .background.agent import EmbeddedAgent
    from .engine.engine import Engine
    from .engine.session import SamplerSettings
    from .runtime.offline import RecordedInput, run_offline
    from .streams.audio import read_wav

    cfg, model = _config_and_model(args)
    audio = read_wav(args.wav, cfg.model.layout.sample_rate) if args.wav else None
    rec = RecordedInput(audio=audio, typed=list(args.typed), duration=args.duration)
    agent = None
    if args.background_url:
        from .background.openai_agent import OpenAIAgent
        agent = OpenAIAgent(args.background_url, args.background_model)
    elif not args.no_background:
        agent = EmbeddedAgent()
    result = run_offline(Engine(model, cfg.engine), rec, SamplerSettings(temperature=args.temperature, seed=args.seed),
                         progress=True, agent=agent)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "conversation.wav").write_bytes(result.stereo_wav)
    events = [dataclasses.asdict(e) for e in result.timeline.events]
    (out / "timeline.json").write_text(json.dumps({"duration": result.timeline.duration, "events": events}, indent=1))
    for e in result.timeline.events:
        if e.kind != "model_word":
            print(f"{e.t:7.2f}s  {e.kind:<15} {e.text or f'until {e.end:.2f}s'}")
    words = " ".join(e.text for e in result.model_words)
    print(f"model said: {words[:300]}{'…' if len(words) > 300 else ''}")
    print(f"wrote {out / 'conversation.wav'} (user left, model right) and {out / 'timeline.json'}")
    return 0


def _cmd_perf(args: argparse.Namespace) -> int:
    from .model.checkpoint import load_model
    from .perf import PerfOptions, format_table, run_perf, write_json

    cfg = load_config(args.config)
    model = load_model(args.checkpoint, expect=cfg.model) if args.checkpoint else None
    sizes = tuple(int(x) for x in args.sessions.split(","))
    opts = PerfOptions(turns=args.turns, batch_sizes=sizes, speaking_turns=args.speaking_turns,
                       **_engine_kwargs(args))
    result = run_perf(cfg, model, opts, progress=not args.quiet)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .engine.engine import Engine
    from .eval.baseline import PIPECAT, SERVER_VAD
    from .eval.bench import run_bench
    from .eval.report import format_table, write_plots, write_timeline_html
    from .world.scenario import load_suite

    cfg, model = _config_and_model(args)
    if args.conditions:
        vad = PIPECAT if args.vad == "pipecat" else SERVER_VAD
        return _bench_conditions(args, Engine(model, cfg.engine, **_engine_kwargs(args)), vad)
    if args.suite == "eval":  # the world's held-out split: the generators training used, other seeds
        from .world.families import eval_split
        scenarios = eval_split(args.per_family, progress=not args.quiet)
    else:
        scenarios = load_suite(args.suite)
    engine = Engine(model, cfg.engine, **_engine_kwargs(args))
    result = run_bench(engine, scenarios, suite=str(args.suite), seed=args.seed,
                       vad=PIPECAT if args.vad == "pipecat" else SERVER_VAD, progress=not args.quiet)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.summary(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plots:
        for p in write_plots(result, args.plots):
            print(f"wrote {p}")
    if args.timeline:
        print(f"wrote {write_timeline_html(result, args.timeline, Path(args.out) / f'{args.timeline}.html')}")
    return 0


def _bench_conditions(args: argparse.Namespace, engine, vad) -> int:
    import json
    from pathlib import Path

    from .errors import ConfigError
    from .eval.conditions import format_conditions_table, plot_conditions, run_conditions

    if args.suite != "eval":
        raise ConfigError(f"--conditions runs the world's eval split: give --suite eval, "
                          f"not {args.suite!r}")
    result = run_conditions(engine, args.per_family, seed=args.seed, vad=vad, progress=not args.quiet)
    print(format_conditions_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.summary(), indent=2) + "\n")
        print(f"wrote {args.json}")
    print(f"wrote {plot_conditions(result, Path(args.plots or args.out) / 'conditions.png')}")
    return 0


def _cmd_voices(args: argparse.Namespace) -> int:
    import json

    from .world.voices import MODEL_VOICE, REGISTRY

    rows = [{"id": v.id, "engine": v.engine, "voice": v.voice, "split": v.split}
            for v in (*REGISTRY, MODEL_VOICE)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':<26} {'engine':<10} {'voice':<24} split")
    for r in rows:
        print(f"{r['id']:<26} {r['engine']:<10} {r['voice']:<24} {r['split']}")
    return 0


def _cmd_configs(args: argparse.Namespace) -> int:
    from .model.interaction import InteractionModel

    print(f"{'name':<10} {'params':>10} {'active':>10} {'layers':>6} {'d_model':>7} {'experts':>7} {'window s':>8}")
    for name in NAMED_MODELS:
        cfg = named_config(name).model
        with torch.device("meta"):
            model = InteractionModel(cfg)
        total = model.num_params()
        active = total
        if cfg.moe_experts:  # only top_k of the experts' weights run per token
            per_expert = 3 * cfg.d_model * cfg.ffn_hidden
            active = total - cfg.n_layers * per_expert * (cfg.moe_experts - cfg.moe_top_k)
        print(f"{name:<10} {total / 1e6:>9.1f}M {active / 1e6:>9.1f}M {cfg.n_layers:>6} {cfg.d_model:>7} "
              f"{cfg.moe_experts or '-':>7} {cfg.window_turns * cfg.layout.turn_seconds:>8.0f}")
    return 0


def _cmd_background(args: argparse.Namespace) -> int:
    import time

    from .background.tasks import BackgroundRunner, TaskManager
    from .streams.turns import Event

    if args.background_url:
        from .background.openai_agent import OpenAIAgent
        agent = OpenAIAgent(args.background_url, args.background_model, timeout_s=args.timeout)
    else:
        from .background.agent import EmbeddedAgent
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


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from .train.trainer import Trainer

    cfg = load_config(args.config)
    if args.steps:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=args.steps))
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = Trainer(cfg, args.out or Path("runs") / cfg.name, progress=not args.quiet)
    if trainer.rank == 0:
        print(f"{cfg.name}: {trainer.model.num_params() / 1e6:.1f}M parameters, step {trainer.step} of "
              f"{cfg.train.steps}, {trainer.world} process(es) on {trainer.device}, out: {trainer.out}", file=sys.stderr)
    trainer.fit(args.stop_at)
    if trainer.rank == 0:
        print(f"model: {trainer.out / 'model.safetensors'}", file=sys.stderr)
    return 0


def _engine_options(p: argparse.ArgumentParser, dtype: str) -> None:
    p.add_argument("--dtype", choices=["fp32", "bf16"], default=dtype,
                   help=f"engine precision: fp32 (on CPU the bitwise parity mode) or bf16 (trunk in "
                        f"bf16, flow head in fp32) (default: {dtype})")
    p.add_argument("--device", help="cpu or cuda (default: cpu)")
    p.add_argument("--flow-steps", type=int, help="the flow head's Euler steps (default: the model's)")


def _engine_kwargs(args: argparse.Namespace) -> dict:
    return {"dtype": args.dtype, "device": args.device, "flow_steps": args.flow_steps}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="microturn", description="Open interaction models in 200 ms micro-turns.")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a scripted 90 s conversation through the default model: WAV, PNG, HTML")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--checkpoint", help="another model checkpoint (default: the shipped one)")
    demo.add_argument("--config", help=argparse.SUPPRESS)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no live timeline")
    demo.set_defaults(func=_cmd_demo)
    serve = sub.add_parser("serve", help="serve live full-duplex sessions over WebSocket")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token", help="require this bearer token (Authorization header or ?token=)")
    serve.add_argument("--max-sessions", type=int, help="sessions served at once (default: the engine config's)")
    serve.add_argument("--idle-timeout", type=float, default=60.0, help="close a session after this many quiet seconds")
    serve.add_argument("--max-session-length", type=float, default=3600.0, help="seconds a session may last")
    serve.add_argument("--config", help="a named config or TOML file: random weights unless --checkpoint")
    serve.add_argument("--checkpoint", help="model checkpoint (default: the shipped default model)")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument("--threads", type=int, help="torch CPU threads of the engine (default: half the cores)")
    serve.add_argument("--drain-grace", type=float, default=300.0,
                       help="on SIGTERM: seconds live sessions may go on while no new ones are "
                            "taken (default 300)")
    serve.add_argument("--agent-port", type=int,
                       help="answer HAProxy's agent-check on this TCP port (free slots as weight; drain)")
    _engine_options(serve, SERVE_DTYPE)
    serve.set_defaults(func=_cmd_serve)
    export = sub.add_parser("export", help="copy a model checkpoint, optionally as float16 (how the default ships)")
    export.add_argument("checkpoint")
    export.add_argument("out")
    export.add_argument("--half", action="store_true", help="store weights as float16")
    export.set_defaults(func=_cmd_export)
    run = sub.add_parser("run", help="a recorded conversation through one session, faster than real time")
    run.add_argument("wav", nargs="?", help="the user's audio (WAV, any common rate, mono or stereo)")
    run.add_argument("--typed", action="append", type=_typed, default=[], help="typed text as SECONDS:TEXT (repeatable)")
    run.add_argument("--duration", type=float, help="seconds to run (default: the audio's length)")
    run.add_argument("--config", help="a named config or TOML file: random weights unless --checkpoint")
    run.add_argument("--checkpoint", help="safetensors checkpoint (default: the shipped default model)")
    run.add_argument("--temperature", type=float, default=0.8)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--no-background", action="store_true", help="do not start background tasks")
    run.add_argument("--background-url", help="an OpenAI-compatible server for the background model")
    run.add_argument("--background-model", default="default", help="model name on that server")
    run.add_argument("--out", default="run_out", help="output folder (default: run_out)")
    run.set_defaults(func=_cmd_run)
    train = sub.add_parser("train", help="train on the synthetic world (or real recordings); resumes from --out")
    train.add_argument("--config", required=True, help="a TOML file with [model] and [train] tables, or a named config")
    train.add_argument("--out", help="run folder: checkpoints, log.jsonl, model.safetensors (default: runs/NAME)")
    train.add_argument("--steps", type=int, help="override train.steps (the schedule's length)")
    train.add_argument("--stop-at", type=int, help="stop after this step (the schedule still ends at steps)")
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)
    perf = sub.add_parser("perf", help="streaming-session speed, parity and batching figures")
    perf.add_argument("--config", default="tiny", help="a named config or a TOML file (default: tiny)")
    perf.add_argument("--checkpoint", help="safetensors checkpoint to measure (default: random weights)")
    perf.add_argument("--turns", type=int, default=1500, help="length of the long conversation (default: 1500)")
    perf.add_argument("--sessions", default="1,4,16", help="batch sizes to time (default: 1,4,16)")
    perf.add_argument("--speaking-turns", type=int, default=200,
                      help="one session's speaking turns with the vocoder (default: 200)")
    perf.add_argument("--json", help="write the figures to this JSON file")
    perf.add_argument("--quiet", action="store_true", help="no progress bars")
    _engine_options(perf, "fp32")
    perf.set_defaults(func=_cmd_perf)
    bench = sub.add_parser("bench", help="microturn and a turn-based VAD harness on the same scenarios")
    bench.add_argument("--suite", default="dev",
                       help="'dev' (shipped), 'eval' (the world's held-out split) or a directory of JSON/TOML scenarios")
    bench.add_argument("--per-family", type=int, default=3, help="with --suite eval: episodes per family (default: 3)")
    bench.add_argument("--config", help="a named config or TOML file: random weights unless --checkpoint")
    bench.add_argument("--checkpoint", help="checkpoint of the model to test (default: the shipped default model)")
    bench.add_argument("--vad", choices=["server_vad", "pipecat"], default="server_vad", help="baseline settings")
    bench.add_argument("--json", help="write the side-by-side figures here")
    bench.add_argument("--plots", help="write a PNG per family into this directory")
    bench.add_argument("--timeline", help="write an HTML timeline of this scenario id")
    bench.add_argument("--out", default="bench_out", help="where --timeline writes (default: bench_out)")
    bench.add_argument("--conditions", action="store_true",
                       help="with --suite eval: the robustness families under each acoustic preset "
                            "(clean, digital silence, gain, noise, reverb, telephone, echo); "
                            "writes conditions.png into --plots or --out")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    _engine_options(bench, "fp32")
    bench.set_defaults(func=_cmd_bench)
    configs = sub.add_parser("configs", help="named model configs and their sizes")
    configs.set_defaults(func=_cmd_configs)
    voices = sub.add_parser("voices", help="the world's voices: engine, voice and split "
                                           "(train, heldout, model)")
    voices.add_argument("--json", action="store_true", help="print the registry as JSON")
    voices.set_defaults(func=_cmd_voices)
    bg = sub.add_parser("background", help="run one background task and print its events")
    bg.add_argument("request", help="what the interaction model would delegate, e.g. 'what is 2**32 / 7'")
    bg.add_argument("--context", action="append", default=[], help="earlier user text (repeatable)")
    bg.add_argument("--background-url", help="an OpenAI-compatible server (default: the embedded agent)")
    bg.add_argument("--background-model", default="default", help="model name on that server")
    bg.add_argument("--timeout", type=float, default=30.0, help="seconds without an answer before failing")
    bg.set_defaults(func=_cmd_background)
    from .vocoder.commands import add_parsers as add_vocoder_parsers  # train-vocoder, vocoder-eval

    add_vocoder_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MicroturnError as e:
        print(f"microturn: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
