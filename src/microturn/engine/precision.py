"""Inference precision: the engine's numeric mode and the model copy it runs.

fp32 on CPU with `batch_invariant` is the parity mode: Engine.step equals the training
forward bit for bit, at the cost of fixed-tile GEMMs and padded appends. Any other mode
is the fast path: plain kernels, unpadded appends, and for bf16 a copy of the model whose
trunk, embeddings and text heads hold bf16 weights (AMX runs bf16 GEMMs ~4x fp32 here)
while the flow head stays fp32 (its Euler sum would lose the frame's fine detail).
"""

from __future__ import annotations

import copy

import torch

from ..errors import ConfigError
from ..model.interaction import InteractionModel

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """'fp32' | 'bf16' (or a torch dtype of those) -> the torch dtype; ConfigError otherwise."""
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise ConfigError(f"engine dtype {name}: expected one of {', '.join(DTYPES)}")
        return name
    if name not in DTYPES:
        raise ConfigError(f"engine dtype {name!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[name]


def parse_device(name: str | torch.device | None, model: InteractionModel) -> torch.device:
    """The engine's device (default: the model's); ConfigError for CUDA without a GPU."""
    if name is None:
        return next(model.parameters()).device
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"engine device {name!r}: {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"engine device {name!r}: this machine has no CUDA GPU (torch "
                          f"{torch.__version__}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"engine device {name!r}: expected cpu or cuda")
    return device


def is_parity_mode(model: InteractionModel, dtype: torch.dtype, device: torch.device) -> bool:
    return dtype == torch.float32 and model.cfg.batch_invariant and device.type == "cpu"


def inference_copy(model: InteractionModel, dtype: torch.dtype,
                   device: torch.device | None = None) -> InteractionModel:
    """The model as the engine runs it. fp32 on its own device: the model itself (shared);
    otherwise a copy, so the caller's fp32 weights (a trainer's, a parity check's) stay."""
    device = device or next(model.parameters()).device
    if dtype == torch.float32 and next(model.parameters()).device == device:
        return model
    out = copy.deepcopy(model).to(device)
    if dtype != torch.float32:
        # only the trunk side: frames are drawn and bounded in fp32, so the flow head, its
        # frame input and the codec buffers keep their fp32 values (a bf16 round trip would
        # round them)
        for module in (out.embed, out.trunk, out.control_head, out.text_head, out.transcript_head,
                       out.heard_before):
            if module is not None:
                module.to(dtype)
    return out.eval()
