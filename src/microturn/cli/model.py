"""Commands about models: train, export, the named configs and the world's voices."""

from __future__ import annotations

import argparse
import sys

import torch

from ..config import NAMED_MODELS, load_config, named_config


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from ..train.trainer import Trainer

    cfg = load_config(args.config)
    if args.steps:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=args.steps))
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer = Trainer(cfg, args.out or Path("runs") / cfg.name, progress=not args.quiet)
    if trainer.rank == 0:
        print(
            f"{cfg.name}: {trainer.model.num_params() / 1e6:.1f}M parameters, "
            f"step {trainer.step} of {cfg.train.steps}, {trainer.world} process(es) "
            f"on {trainer.device}, out: {trainer.out}",
            file=sys.stderr,
        )
    trainer.fit(args.stop_at)
    if trainer.rank == 0:
        print(f"model: {trainer.out / 'model.safetensors'}", file=sys.stderr)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ..model.checkpoint import load_model, save_model

    model = load_model(args.checkpoint)
    save_model(model, args.out, {"exported_from": str(args.checkpoint)}, half=args.half)
    print(f"wrote {args.out}")
    return 0


def _cmd_configs(args: argparse.Namespace) -> int:
    from ..model.interaction import InteractionModel

    print(
        f"{'name':<10} {'params':>10} {'active':>10} {'layers':>6} {'d_model':>7} "
        f"{'experts':>7} {'window s':>8}"
    )
    for name in NAMED_MODELS:
        cfg = named_config(name).model
        with torch.device("meta"):
            model = InteractionModel(cfg)
        total = model.num_params()
        active = total
        if cfg.moe_experts:  # only top_k of the experts' weights run per token
            per_expert = 3 * cfg.d_model * cfg.ffn_hidden
            active = total - cfg.n_layers * per_expert * (cfg.moe_experts - cfg.moe_top_k)
        print(
            f"{name:<10} {total / 1e6:>9.1f}M {active / 1e6:>9.1f}M {cfg.n_layers:>6} "
            f"{cfg.d_model:>7} {cfg.moe_experts or '-':>7} "
            f"{cfg.window_turns * cfg.layout.turn_seconds:>8.0f}"
        )
    return 0


def _cmd_voices(args: argparse.Namespace) -> int:
    import json

    from ..world.voices import MODEL_VOICE, REGISTRY

    rows = [
        {"id": v.id, "engine": v.engine, "voice": v.voice, "split": v.split}
        for v in (*REGISTRY, MODEL_VOICE)
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'id':<26} {'engine':<10} {'voice':<24} split")
    for r in rows:
        print(f"{r['id']:<26} {r['engine']:<10} {r['voice']:<24} {r['split']}")
    return 0
