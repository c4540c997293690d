"""`microturn <command>`: perf, configs."""

from __future__ import annotations

import argparse
import sys

import torch

from .config import NAMED_MODELS, load_config, named_config
from .errors import MicroturnError


def _cmd_perf(args: argparse.Namespace) -> int:
    from .model.checkpoint import load_model
    from .perf import PerfOptions, format_table, run_perf, write_json

    cfg = load_config(args.config)
    model = load_model(args.checkpoint, expect=cfg.model) if args.checkpoint else None
    sizes = tuple(int(x) for x in args.sessions.split(","))
    result = run_perf(cfg, model, PerfOptions(turns=args.turns, batch_sizes=sizes), progress=not args.quiet)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)
        print(f"wrote {args.json}")
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="microturn", description="Open interaction models in 200 ms micro-turns.")
    sub = p.add_subparsers(dest="command", required=True)
    perf = sub.add_parser("perf", help="streaming-session speed, parity and batching figures")
    perf.add_argument("--config", default="tiny", help="a named config or a TOML file (default: tiny)")
    perf.add_argument("--checkpoint", help="safetensors checkpoint to measure (default: random weights)")
    perf.add_argument("--turns", type=int, default=1500, help="length of the long conversation (default: 1500)")
    perf.add_argument("--sessions", default="1,4,16", help="batch sizes to time (default: 1,4,16)")
    perf.add_argument("--json", help="write the figures to this JSON file")
    perf.add_argument("--quiet", action="store_true", help="no progress bars")
    perf.set_defaults(func=_cmd_perf)
    configs = sub.add_parser("configs", help="named model configs and their sizes")
    configs.set_defaults(func=_cmd_configs)
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
