"""Checkpoints: safetensors only (never pickle), the config stored inside, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import ModelConfig
from ..errors import CheckpointError, ConfigError
from .interaction import InteractionModel

FORMAT = "microturn-checkpoint/1"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "default.safetensors"
_UMASK = os.umask(
    0
)  # read once, at import: setting it back and forth later would race other threads
os.umask(_UMASK)


def save_model(
    model: InteractionModel,
    path: str | Path,
    extra: dict[str, str] | None = None,
    half: bool = False,
) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file.
    `half` stores the weights as float16 (buffers such as the dMel range stay float32); they
    load back into the float32 model."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    params = {name for name, _ in model.named_parameters()}
    tensors = {
        k: (v.half() if half and k in params else v).detach().contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    meta = {"format": FORMAT, "config": model.cfg.to_json(), **(extra or {})}
    atomic_save(tensors, path, meta)


def atomic_save(tensors: dict[str, torch.Tensor], path: str | Path, meta: dict[str, str]) -> None:
    """Write a safetensors file so that `path` is either the old file or the whole new one,
    never half of it (a crash mid-write leaves only a stray .tmp beside it)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=meta)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_checkpoint(
    path: str | Path,
) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}': no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for a bad header or payload
        raise CheckpointError(
            f"checkpoint '{path}' is corrupt or not a safetensors file "
            f"(pickle checkpoints are refused): {e}"
        ) from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"checkpoint '{path}': format {meta.get('format')!r}, expected {FORMAT!r}"
        )
    try:
        cfg = ModelConfig.from_json(meta["config"])
    except (KeyError, ConfigError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint '{path}': its stored config is unreadable: {e}") from e
    return cfg, tensors, meta


def config_diff(a: ModelConfig, b: ModelConfig) -> list[str]:
    da, db = json.loads(a.to_json()), json.loads(b.to_json())
    flat = lambda d, p="": (
        {f"{p}{k}": v for k, v in d.items() if not isinstance(v, dict)}
        | {
            kk: vv
            for k, v in d.items()
            if isinstance(v, dict)
            for kk, vv in flat(v, f"{p}{k}.").items()
        }
    )
    fa, fb = flat(da), flat(db)
    return [
        f"{k}: checkpoint {fa.get(k)!r} vs config {fb.get(k)!r}"
        for k in sorted(fa)
        if fa.get(k) != fb.get(k)
    ]


def load_model(path: str | Path, expect: ModelConfig | None = None) -> InteractionModel:
    """Build the model the checkpoint describes; with `expect`, refuse one from another config."""
    cfg, tensors, _ = read_checkpoint(path)
    if expect is not None and cfg != expect:
        raise CheckpointError(
            f"checkpoint '{path}' was trained with another config: "
            + "; ".join(config_diff(cfg, expect))
        )
    model = InteractionModel(cfg)
    check_tensors(model, tensors, f"checkpoint '{path}'")
    model.load_state_dict(tensors)
    return model.eval()


def check_tensors(model: torch.nn.Module, tensors: dict, what: str) -> None:
    """Refuse stored tensors that do not fit `model` exactly, naming what differs."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    bad = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in tensors and tensors[k].shape != own[k].shape
    ]
    if missing or unexpected or bad:
        raise CheckpointError(
            f"{what} does not match its config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {bad[:5]}"
        )


def load_default() -> InteractionModel:
    """The shipped default model (trained on the synthetic world; see configs/default.toml
    and default_stage2.toml)."""
    if not DEFAULT_CHECKPOINT.is_file():
        raise CheckpointError(
            f"the default model is missing ({DEFAULT_CHECKPOINT}); reinstall microturn "
            "or pass --checkpoint"
        )
    return load_model(DEFAULT_CHECKPOINT)
