"""The vocoder's weights: safetensors with the config inside; a clear error for a bad file.

`load_vocoder` never falls back by itself: callers that serve audio decide (streams/turns.py
`make_streaming_vocoder`) whether Griffin-Lim may stand in, and say so with a warning.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from safetensors import safe_open

from ..errors import CheckpointError
from ..model.checkpoint import check_tensors
from .model import Vocoder, VocoderConfig

FORMAT = "microturn-vocoder/1"
DEFAULT_VOCODER = Path(__file__).resolve().parent.parent / "checkpoints" / "vocoder.safetensors"


def save_vocoder(model: Vocoder, path: str | Path, extra: dict[str, str] | None = None) -> None:
    """float16 weights (half the size; the vocoder computes in float32 after loading)."""
    from ..model.checkpoint import atomic_save  # lazily: model/ imports streams/, which imports us

    tensors = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(dataclasses.asdict(model.cfg)), **(extra or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_save(tensors, path, meta)


def load_vocoder(path: str | Path | None = None) -> Vocoder:
    """The vocoder stored at `path` (default: the shipped one), in float32, eval mode."""
    path = Path(path) if path is not None else DEFAULT_VOCODER
    if not path.is_file():
        raise CheckpointError(
            f"vocoder weights '{path}': no such file; run `microturn train-vocoder`, "
            "pass --vocoder griffin-lim, or set MICROTURN_VOCODER=griffin-lim"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as e:  # safetensors raises several types for a bad header or payload
        raise CheckpointError(
            f"vocoder weights '{path}' are corrupt or not safetensors: {e}"
        ) from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"vocoder weights '{path}': format {meta.get('format')!r}, expected {FORMAT!r}"
        )
    try:
        cfg = VocoderConfig(**json.loads(meta["config"]))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"vocoder weights '{path}': stored config unreadable: {e}") from e
    model = Vocoder(cfg)
    check_tensors(model, tensors, f"vocoder weights '{path}'")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.eval()
