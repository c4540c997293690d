"""The vocoder's subcommands: `microturn train-vocoder` and `microturn vocoder-eval`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from .train import TrainVocoderConfig, train_vocoder
    from .weights import DEFAULT_VOCODER

    cfg = TrainVocoderConfig(out=args.out, minutes=args.minutes, threads=args.threads)
    state = train_vocoder(cfg)
    best = Path(args.out) / "best.safetensors"
    print(
        f"{state['step']} steps in {state['elapsed_s'] / 60:.1f} min of training; best held-out "
        f"STOI {state['best_stoi']:.4f} -> {best}"
    )
    if args.ship:
        shutil.copyfile(best, DEFAULT_VOCODER)
        print(f"shipped as {DEFAULT_VOCODER}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from .evaluate import run_vocoder_eval

    result = run_vocoder_eval(args.weights, args.corpus, args.lines, args.asr_lines, args.drawn)
    text = json.dumps(result, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train-vocoder",
        help="train the streaming vocoder on joe's speech "
        "(1 CPU thread, time-boxed, resumes from --out)",
    )
    train.add_argument("--out", default="runs/vocoder")
    train.add_argument("--minutes", type=float, default=40.0, help="training wall-clock budget")
    train.add_argument("--threads", type=int, default=1)
    train.add_argument(
        "--ship",
        action="store_true",
        help="copy the best checkpoint over the packaged vocoder.safetensors",
    )
    train.set_defaults(func=_train)
    ev = sub.add_parser(
        "vocoder-eval",
        help="Griffin-Lim vs the vocoder: STOI, PESQ, MCD, ASR WER "
        "on held-out reference mels and on the default model's drawn frames",
    )
    ev.add_argument("--json", help="write the scores here")
    ev.add_argument("--weights", help="vocoder weights (default: the shipped ones)")
    ev.add_argument("--corpus", default="runs/vocoder/corpus", help="joe corpus (built if absent)")
    ev.add_argument("--lines", type=int, default=70, help="held-out reference lines to score")
    ev.add_argument(
        "--asr-lines", type=int, default=24, help="of those, lines the recogniser hears"
    )
    ev.add_argument("--drawn", type=int, default=12, help="drawn-frame lines (0: skip)")
    ev.set_defaults(func=_eval)
