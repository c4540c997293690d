"""`microturn <command>`: demo, run, train, perf, bench, configs, background.

The parser is in `parser.py`; the commands by concern: `session.py` (demo, serve, run,
background), `model.py` (train, export, configs, voices), `measure.py` (perf, bench)."""

from __future__ import annotations

import sys

from ..errors import MicroturnError
from .common import SERVE_DTYPE, _engine_kwargs
from .parser import build_parser

__all__ = ["SERVE_DTYPE", "_engine_kwargs", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MicroturnError as e:
        print(f"microturn: error: {e}", file=sys.stderr)
        return 2
