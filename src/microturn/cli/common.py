"""What the commands share: the model a command runs, the engine options, argument types."""

from __future__ import annotations

import argparse
import sys

import torch

from ..config import load_config

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
        raise argparse.ArgumentTypeError(
            f"--typed {spec!r}: expected SECONDS:TEXT, e.g. '2.5:what time is it?'"
        )


def _config_and_model(args: argparse.Namespace):
    """The config and model a command runs: --checkpoint if given; with neither it nor
    --config, the shipped default model; with only --config, random weights (said so)."""
    from ..config import Config
    from ..model.checkpoint import load_default, load_model
    from ..model.interaction import InteractionModel

    torch.manual_seed(args.seed)
    if args.config is None and not args.checkpoint:
        model = load_default()
        return Config(model=model.cfg, name="default"), model
    if args.checkpoint:
        model = load_model(
            args.checkpoint, expect=load_config(args.config).model if args.config else None
        )
        return (
            load_config(args.config) if args.config else Config(model=model.cfg, name="checkpoint")
        ), model
    cfg = load_config(args.config)
    print("note: no --checkpoint: the model has untrained random weights", file=sys.stderr)
    return cfg, InteractionModel(cfg.model)


def _engine_options(p: argparse.ArgumentParser, dtype: str) -> None:
    p.add_argument(
        "--dtype",
        choices=["fp32", "bf16"],
        default=dtype,
        help=f"engine precision: fp32 (on CPU the bitwise parity mode) or bf16 (trunk in "
        f"bf16, flow head in fp32) (default: {dtype})",
    )
    p.add_argument("--device", help="cpu or cuda (default: cpu)")
    p.add_argument(
        "--flow-steps", type=int, help="the flow head's Euler steps (default: the model's)"
    )


def _engine_kwargs(args: argparse.Namespace) -> dict:
    return {"dtype": args.dtype, "device": args.device, "flow_steps": args.flow_steps}
