"""`microturn`'s argument parser: every subcommand, its options and its handler."""

from __future__ import annotations

import argparse

from .common import SERVE_DTYPE, _engine_options, _typed
from .measure import _cmd_bench, _cmd_perf
from .model import _cmd_configs, _cmd_export, _cmd_train, _cmd_voices
from .session import _cmd_background, _cmd_demo, _cmd_run, _cmd_serve


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="microturn", description="Open interaction models in 200 ms micro-turns."
    )
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="a scripted 90 s conversation through the default model: WAV, PNG, HTML"
    )
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--checkpoint", help="another model checkpoint (default: the shipped one)")
    demo.add_argument("--config", help=argparse.SUPPRESS)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="no live timeline")
    demo.set_defaults(func=_cmd_demo)
    serve = sub.add_parser("serve", help="serve live full-duplex sessions over WebSocket")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--token", help="require this bearer token (Authorization header or ?token=)"
    )
    serve.add_argument(
        "--max-sessions", type=int, help="sessions served at once (default: the engine config's)"
    )
    serve.add_argument(
        "--idle-timeout",
        type=float,
        default=60.0,
        help="close a session after this many quiet seconds",
    )
    serve.add_argument(
        "--max-session-length", type=float, default=3600.0, help="seconds a session may last"
    )
    serve.add_argument(
        "--config", help="a named config or TOML file: random weights unless --checkpoint"
    )
    serve.add_argument("--checkpoint", help="model checkpoint (default: the shipped default model)")
    serve.add_argument("--seed", type=int, default=0)
    serve.add_argument(
        "--threads", type=int, help="torch CPU threads of the engine (default: half the cores)"
    )
    serve.add_argument(
        "--drain-grace",
        type=float,
        default=300.0,
        help="on SIGTERM: seconds live sessions may go on while no new ones are "
        "taken (default 300)",
    )
    serve.add_argument(
        "--agent-port",
        type=int,
        help="answer HAProxy's agent-check on this TCP port (free slots as weight; drain)",
    )
    _engine_options(serve, SERVE_DTYPE)
    serve.set_defaults(func=_cmd_serve)
    export = sub.add_parser(
        "export", help="copy a model checkpoint, optionally as float16 (how the default ships)"
    )
    export.add_argument("checkpoint")
    export.add_argument("out")
    export.add_argument("--half", action="store_true", help="store weights as float16")
    export.set_defaults(func=_cmd_export)
    run = sub.add_parser(
        "run", help="a recorded conversation through one session, faster than real time"
    )
    run.add_argument(
        "wav", nargs="?", help="the user's audio (WAV, any common rate, mono or stereo)"
    )
    run.add_argument(
        "--typed",
        action="append",
        type=_typed,
        default=[],
        help="typed text as SECONDS:TEXT (repeatable)",
    )
    run.add_argument("--duration", type=float, help="seconds to run (default: the audio's length)")
    run.add_argument(
        "--config", help="a named config or TOML file: random weights unless --checkpoint"
    )
    run.add_argument(
        "--checkpoint", help="safetensors checkpoint (default: the shipped default model)"
    )
    run.add_argument("--temperature", type=float, default=0.8, help="control: when to speak")
    run.add_argument("--text-temperature", type=float, default=0.8, help="the words it writes")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--no-background", action="store_true", help="do not start background tasks")
    run.add_argument(
        "--background-url", help="an OpenAI-compatible server for the background model"
    )
    run.add_argument("--background-model", default="default", help="model name on that server")
    run.add_argument("--out", default="run_out", help="output folder (default: run_out)")
    run.set_defaults(func=_cmd_run)
    train = sub.add_parser(
        "train", help="train on the synthetic world (or real recordings); resumes from --out"
    )
    train.add_argument(
        "--config",
        required=True,
        help="a TOML file with [model] and [train] tables, or a named config",
    )
    train.add_argument(
        "--out", help="run folder: checkpoints, log.jsonl, model.safetensors (default: runs/NAME)"
    )
    train.add_argument("--steps", type=int, help="override train.steps (the schedule's length)")
    train.add_argument(
        "--stop-at", type=int, help="stop after this step (the schedule still ends at steps)"
    )
    train.add_argument("--threads", type=int, help="torch CPU threads")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(func=_cmd_train)
    perf = sub.add_parser("perf", help="streaming-session speed, parity and batching figures")
    perf.add_argument(
        "--config", default="tiny", help="a named config or a TOML file (default: tiny)"
    )
    perf.add_argument(
        "--checkpoint", help="safetensors checkpoint to measure (default: random weights)"
    )
    perf.add_argument(
        "--turns", type=int, default=1500, help="length of the long conversation (default: 1500)"
    )
    perf.add_argument("--sessions", default="1,4,16", help="batch sizes to time (default: 1,4,16)")
    perf.add_argument(
        "--speaking-turns",
        type=int,
        default=200,
        help="one session's speaking turns with the vocoder (default: 200)",
    )
    perf.add_argument("--json", help="write the figures to this JSON file")
    perf.add_argument("--quiet", action="store_true", help="no progress bars")
    _engine_options(perf, "fp32")
    perf.set_defaults(func=_cmd_perf)
    bench = sub.add_parser(
        "bench", help="microturn and a turn-based VAD harness on the same scenarios"
    )
    bench.add_argument(
        "--suite",
        default="dev",
        help="'dev' (shipped), 'eval' (the world's held-out split) or a directory of "
        "JSON/TOML scenarios",
    )
    bench.add_argument(
        "--per-family",
        type=int,
        default=3,
        help="with --suite eval: episodes per family (default: 3)",
    )
    bench.add_argument(
        "--config", help="a named config or TOML file: random weights unless --checkpoint"
    )
    bench.add_argument(
        "--checkpoint", help="checkpoint of the model to test (default: the shipped default model)"
    )
    bench.add_argument(
        "--vad", choices=["server_vad", "pipecat"], default="server_vad", help="baseline settings"
    )
    bench.add_argument("--json", help="write the side-by-side figures here")
    bench.add_argument("--plots", help="write a PNG per family into this directory")
    bench.add_argument("--timeline", help="write an HTML timeline of this scenario id")
    bench.add_argument(
        "--out", default="bench_out", help="where --timeline writes (default: bench_out)"
    )
    bench.add_argument(
        "--conditions",
        action="store_true",
        help="with --suite eval: the robustness families under each acoustic preset "
        "(clean, digital silence, gain, noise, reverb, telephone, echo); "
        "writes conditions.png into --plots or --out",
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes, each with its own engine and one torch thread (default: 1); the "
        "figures are those of one process on one thread",
    )
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument(
        "--temperature",
        type=float,
        default=0.8,
        help="the model's control sampling temperature: when it speaks (0: greedy; default: "
        "0.8, as served)",
    )
    bench.add_argument(
        "--text-temperature",
        type=float,
        default=0.8,
        help="the temperature of the words it writes (0: greedy; default: 0.8, as served)",
    )
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    _engine_options(bench, "fp32")
    bench.set_defaults(func=_cmd_bench)
    configs = sub.add_parser("configs", help="named model configs and their sizes")
    configs.set_defaults(func=_cmd_configs)
    voices = sub.add_parser(
        "voices", help="the world's voices: engine, voice and split (train, heldout, model)"
    )
    voices.add_argument("--json", action="store_true", help="print the registry as JSON")
    voices.set_defaults(func=_cmd_voices)
    bg = sub.add_parser("background", help="run one background task and print its events")
    bg.add_argument(
        "request", help="what the interaction model would delegate, e.g. 'what is 2**32 / 7'"
    )
    bg.add_argument("--context", action="append", default=[], help="earlier user text (repeatable)")
    bg.add_argument(
        "--background-url", help="an OpenAI-compatible server (default: the embedded agent)"
    )
    bg.add_argument("--background-model", default="default", help="model name on that server")
    bg.add_argument(
        "--timeout", type=float, default=30.0, help="seconds without an answer before failing"
    )
    bg.set_defaults(func=_cmd_background)
    from ..vocoder.commands import add_parsers as add_vocoder_parsers  # train-vocoder, vocoder-eval

    add_vocoder_parsers(sub)
    return p
