"""Rendered video at one frame a turn (5 fps): shapes that appear, move, stop and bounce.

Each renderer returns the frames on the conversation clock and the ground truth a
scorer needs (bounce times, the interval of motion, when the target appeared).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLORS = {
    "red": (220, 50, 47),
    "green": (60, 180, 75),
    "blue": (38, 139, 210),
    "yellow": (240, 200, 40),
    "white": (240, 240, 240),
}
FPS = 5


@dataclass
class Clip:
    frames: list[tuple[float, np.ndarray]]  # (t, [H, W, 3] uint8)
    truth: dict = field(default_factory=dict)


def _canvas(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), 24, np.uint8)


def _disc(img: np.ndarray, cy: float, cx: float, r: float, color: str) -> None:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = COLORS[color]


def _square(img: np.ndarray, cy: float, cx: float, r: float, color: str) -> None:
    img[max(0, int(cy - r)) : int(cy + r), max(0, int(cx - r)) : int(cx + r)] = COLORS[color]


def _times(duration: float) -> np.ndarray:
    return np.arange(int(duration * FPS)) / FPS


def bouncing_ball(
    duration: float,
    bounces: int,
    start: float = 1.0,
    period: float = 1.2,
    size: tuple[int, int] = (80, 80),
    color: str = "red",
) -> Clip:
    """A ball dropped at `start` bounces `bounces` times on the floor, `period` s apart, then
    rests."""
    h, w = size
    r, floor = 6, h - 7
    hits = [round(start + period * (i + 0.5), 3) for i in range(bounces)]
    frames = []
    for t in _times(duration):
        if t < start:
            y = r + 2.0
        elif t < start + period * bounces:
            phase = ((t - start) / period) % 1.0  # 0 top, 0.5 floor, 1 top
            y = r + 2.0 + (floor - r - 2.0) * (1 - (2 * phase - 1) ** 2)
        else:
            y = floor
        img = _canvas(h, w)
        _disc(img, y, w / 2, r, color)
        frames.append((round(float(t), 3), img))
    return Clip(frames, {"bounces": bounces, "bounce_times": hits})


def moving_then_still(
    duration: float,
    move: tuple[float, float],
    size: tuple[int, int] = (80, 80),
    color: str = "blue",
) -> Clip:
    """A ball at rest starts moving at move[0] (left to right and back) and stops at move[1]."""
    h, w = size
    frames = []
    x = 10.0
    for t in _times(duration):
        if move[0] <= t < move[1]:
            x = 10 + (w - 20) * abs(((t - move[0]) / 2.0) % 2 - 1)
        img = _canvas(h, w)
        _disc(img, h / 2, x, 6, color)
        frames.append((round(float(t), 3), img))
    return Clip(frames, {"motion": list(move)})


def shape_appears(
    duration: float,
    at: float,
    shape: str = "circle",
    color: str = "green",
    size: tuple[int, int] = (80, 80),
    seed: int = 0,
) -> Clip:
    """Distractor squares drift around; the target shape appears at `at` and stays."""
    h, w = size
    rng = np.random.default_rng(seed)
    pos = rng.uniform(10, min(h, w) - 10, (3, 2))
    vel = rng.uniform(-6, 6, (3, 2))
    frames = []
    for t in _times(duration):
        img = _canvas(h, w)
        for (y, x), c in zip(pos, ("red", "yellow", "blue")):
            _square(img, y, x, 5, c)
        pos = np.clip(pos + vel / FPS, 8, min(h, w) - 8)
        if t >= at:
            (_disc if shape == "circle" else _square)(img, h * 0.3, w * 0.7, 7, color)
        frames.append((round(float(t), 3), img))
    return Clip(frames, {"appears": at, "shape": shape, "color": color})


RENDERERS = {"bounce": bouncing_ball, "move": moving_then_still, "appear": shape_appears}
