"""Video stream: one RGB frame a turn -> a grid of 40x40 patches for the hMLP stem."""

from __future__ import annotations

import numpy as np
import torch

from ..config import PATCH, TurnLayout
from ..errors import InputError

MEAN, STD = 0.5, 0.25  # fixed pixel normalisation: no statistics to ship


def frame_to_patches(frame: np.ndarray, layout: TurnLayout) -> torch.Tensor:
    """[H, W, 3] uint8 (or float in [0, 1]) -> [video_slots, 3, 40, 40], row-major patches."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"video frame of shape {frame.shape}: expected [height, width, 3] RGB")
    h, w = frame.shape[:2]
    if h % PATCH or w % PATCH:
        raise InputError(f"video frame {w}x{h}: width and height must be multiples of {PATCH}")
    if (h, w) != (layout.video_height, layout.video_width):
        raise InputError(
            f"video frame {w}x{h}: this model's layout takes "
            f"{layout.video_width}x{layout.video_height}"
        )
    x = torch.from_numpy(frame.astype(np.float32) / (255.0 if frame.dtype == np.uint8 else 1.0))
    x = (x - MEAN) / STD
    x = x.permute(2, 0, 1)  # [3, H, W]
    x = x.unfold(1, PATCH, PATCH).unfold(2, PATCH, PATCH)  # [3, gh, gw, P, P]
    return x.permute(1, 2, 0, 3, 4).reshape(-1, 3, PATCH, PATCH).contiguous()


def patches_to_frame(patches: torch.Tensor, layout: TurnLayout) -> np.ndarray:
    """Inverse of `frame_to_patches` (for plots and round-trip tests), uint8 [H, W, 3]."""
    gh, gw = layout.video_height // PATCH, layout.video_width // PATCH
    x = (
        patches.reshape(gh, gw, 3, PATCH, PATCH)
        .permute(2, 0, 3, 1, 4)
        .reshape(3, gh * PATCH, gw * PATCH)
    )
    x = (x * STD + MEAN).clamp(0, 1).permute(1, 2, 0)
    return (x.numpy() * 255.0).round().astype(np.uint8)
