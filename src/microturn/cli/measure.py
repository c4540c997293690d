"""Commands that measure: perf (speed, parity, batching) and bench (against a VAD harness)."""

from __future__ import annotations

import argparse
import functools

from ..config import load_config
from .common import _config_and_model, _engine_kwargs


def _cmd_perf(args: argparse.Namespace) -> int:
    from ..model.checkpoint import load_model
    from ..perf import PerfOptions, format_table, run_perf, write_json

    cfg = load_config(args.config)
    model = load_model(args.checkpoint, expect=cfg.model) if args.checkpoint else None
    sizes = tuple(int(x) for x in args.sessions.split(","))
    opts = PerfOptions(
        turns=args.turns,
        batch_sizes=sizes,
        speaking_turns=args.speaking_turns,
        **_engine_kwargs(args),
    )
    result = run_perf(cfg, model, opts, progress=not args.quiet)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
    return 0


def _bench_engine(args: argparse.Namespace):
    """The engine a bench process runs (module level: worker processes unpickle it)."""
    from ..engine.engine import Engine

    cfg, model = _config_and_model(args)
    return Engine(model, cfg.engine, **_engine_kwargs(args))


def _cmd_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..engine.engine import Engine
    from ..errors import ConfigError
    from ..eval.baseline import PIPECAT, SERVER_VAD
    from ..eval.bench import run_bench_parallel
    from ..eval.report import format_table, write_plots, write_timeline_html
    from ..world.scenario import load_suite

    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers}: give 1 or more processes")
    cfg, model = _config_and_model(args)  # a bad checkpoint fails here, not in each worker
    if args.workers == 1:
        make_engine = lambda: Engine(model, cfg.engine, **_engine_kwargs(args))  # noqa: E731
    else:  # spawned workers load their own: a picklable recipe, not the model
        make_engine = functools.partial(_bench_engine, args)
    vad = PIPECAT if args.vad == "pipecat" else SERVER_VAD
    if args.conditions:
        return _bench_conditions(args, make_engine, vad)
    if args.suite == "eval":  # the world's held-out split: training's generators, other seeds
        from ..world.families import eval_split

        scenarios = eval_split(args.per_family, progress=not args.quiet)
    else:
        scenarios = load_suite(args.suite)
    result = run_bench_parallel(
        make_engine,
        scenarios,
        args.workers,
        suite=str(args.suite),
        seed=args.seed,
        vad=vad,
        progress=not args.quiet,
        temperature=args.temperature,
        text_temperature=args.text_temperature,
    )
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.summary(), indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plots:
        for p in write_plots(result, args.plots):
            print(f"wrote {p}")
    if args.timeline:
        html = Path(args.out) / f"{args.timeline}.html"
        print(f"wrote {write_timeline_html(result, args.timeline, html)}")
    return 0


def _bench_conditions(args: argparse.Namespace, make_engine, vad) -> int:
    import json
    from pathlib import Path

    from ..errors import ConfigError
    from ..eval.conditions import format_conditions_table, plot_conditions, run_conditions

    if args.suite != "eval":
        raise ConfigError(
            f"--conditions runs the world's eval split: give --suite eval, not {args.suite!r}"
        )
    result = run_conditions(
        make_engine,
        args.per_family,
        seed=args.seed,
        vad=vad,
        progress=not args.quiet,
        workers=args.workers,
        temperature=args.temperature,
        text_temperature=args.text_temperature,
    )
    print(format_conditions_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result.summary(), indent=2) + "\n")
        print(f"wrote {args.json}")
    print(f"wrote {plot_conditions(result, Path(args.plots or args.out) / 'conditions.png')}")
    return 0
